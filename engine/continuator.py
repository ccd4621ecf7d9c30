"""A generator model behind ONNX Runtime: load, check the contract, continue a context.

Only ONNX Runtime is used here; the engine never imports TensorFlow or Keras.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .contract import ModelContract
from .errors import ModelContractError
from .shipped import DEFAULT_MODEL, DEFAULT_RESYNTH_MODEL


def default_model_path() -> Path:
    """The model to use when none is named: ``$ENCORE_MODEL``, else the shipped default."""
    return Path(os.environ.get("ENCORE_MODEL", DEFAULT_MODEL))


def default_resynth_model_path() -> Path:
    """The resynth scorer to use when none is named: ``$ENCORE_RESYNTH_MODEL``, else the shipped one."""
    return Path(os.environ.get("ENCORE_RESYNTH_MODEL", DEFAULT_RESYNTH_MODEL))


def open_model(path: Path, *, threads: int, default_hint: str = ""):
    """Open an ONNX file on the CPU and read its contract.

    Parameters
    ----------
    path : pathlib.Path
    threads : int
        ONNX Runtime intra-op threads (inter-op: 1).
    default_hint : str
        Added to the "no such file" message (how to name another model), when ``path`` was a default.

    Returns
    -------
    tuple
        ``(onnxruntime.InferenceSession, ModelContract, load seconds)``.

    Raises
    ------
    ModelContractError
        The file is missing, not ONNX, or carries no valid Encore contract.
    """
    import onnxruntime as ort

    if not path.is_file():
        raise ModelContractError(f"{path}: no such model file{default_hint}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
    started = time.perf_counter()
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for every kind of unreadable file
        from .audio import is_audio_file

        if is_audio_file(path):
            raise ModelContractError(f"{path}: that is a song, not a model (a model is an ONNX file that carries "
                                     "Encore's contract)") from e
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelContractError(f"{path}: not a loadable ONNX model ({reason[:200]})") from e
    load_seconds = time.perf_counter() - started
    contract = ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    return session, contract, load_seconds


class Continuator:
    """Runs a seed model: the last ``context_s`` of audio in, the next ``horizon_s`` out.

    Parameters
    ----------
    path : str or os.PathLike, optional
        An ONNX file carrying Encore's contract; the shipped default when None.
    threads : int
        ONNX Runtime intra-op threads. One is the default: the models are bound by reading their weights, and a
        second thread measured slower here (see ``engine bench``).
    opened : tuple, optional
        What :func:`open_model` returned for ``path``, when the caller has already opened it to read its
        contract (:func:`engine.generators.load_model`); ``threads`` is then the session's.

    Raises
    ------
    ModelContractError
        The file is missing, not ONNX, not an Encore model, or its graph disagrees with its contract.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, threads: int = 1, opened: tuple | None = None):
        self.path = Path(path) if path is not None else default_model_path()
        hint = (" (the default model ships with Encore as encore_assets: reinstall it, pass --model "
                "or set ENCORE_MODEL)") if path is None else ""
        self.session, self.contract, self.load_seconds = opened or open_model(self.path, threads=threads,
                                                                              default_hint=hint)
        if self.contract.generator != "seed":
            raise ModelContractError(f"{self.path}: a {self.contract.generator} model, not a seed generator "
                                     f"(a resynth model is a segment scorer, engine.scorer.SegmentScorer)")
        self._check_graph()

    def _check_graph(self) -> None:
        """Refuse a file whose graph does not do what its metadata says, naming both sides."""
        c = self.contract
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        problems = []
        if c.input_name not in inputs:
            problems.append(f"contract input {c.input_name!r}, graph inputs {sorted(inputs)}")
        elif not _shape_matches(inputs[c.input_name].shape, c.input_shape):
            problems.append(f"contract input shape (batch, {c.context_chunks}, {c.chunk_samples}), graph "
                            f"{tuple(inputs[c.input_name].shape)}")
        if c.output_name not in outputs:
            problems.append(f"contract output {c.output_name!r}, graph outputs {sorted(outputs)}")
        elif not _shape_matches(outputs[c.output_name].shape, c.output_shape):
            problems.append(f"contract output shape (batch, {c.horizon_chunks}, {c.chunk_samples}), graph "
                            f"{tuple(outputs[c.output_name].shape)}")
        if problems:
            raise ModelContractError(f"{self.path}: graph does not match its contract: " + "; ".join(problems))

    @property
    def name(self) -> str:
        """Short name for summaries: the file's stem."""
        return self.path.stem

    def predict(self, context: np.ndarray) -> np.ndarray:
        """Predict the audio that follows ``context``.

        Parameters
        ----------
        context : numpy.ndarray
            [shape=(context_samples,), dtype=float32] mono at the contract's sample rate.

        Returns
        -------
        numpy.ndarray
            [shape=(horizon_samples,), dtype=float32], raw model output: it may hold NaN/inf or be out of range,
            so callers pass it through the seam stage (:mod:`engine.seam`).
        """
        c = self.contract
        if context.shape != (c.context_samples,):
            raise ModelContractError(f"context must be ({c.context_samples},) samples at {c.sample_rate} Hz, "
                                     f"got {context.shape}")
        batch = np.ascontiguousarray(context, dtype=np.float32).reshape(1, *c.input_shape)
        (out,) = self.session.run([c.output_name], {c.input_name: batch})
        return np.asarray(out, dtype=np.float32).reshape(c.horizon_samples)


def _shape_matches(graph_shape, expected: tuple[int, ...]) -> bool:
    """A graph shape matches when it has a batch axis and every fixed dimension agrees."""
    if len(graph_shape) != len(expected) + 1:
        return False
    return all(not isinstance(g, int) or g == e for g, e in zip(graph_shape[1:], expected, strict=True))
