"""The resynth generator's learned scorer behind ONNX Runtime: which segment of the memory comes next.

A resynth model (``encore.generator resynth``, :mod:`engine.contract`) has two independent branches in one graph:
``context`` [shape=(batch, context_segments, FEATURE_DIM + 1)] -> ``query`` [shape=(batch, D)], and
``candidates`` [shape=(batch, segments, candidate_dim)] -> ``keys`` [shape=(batch, segments, D)] (rows of
:func:`engine.analysis.candidate_rows`). The score of candidate ``j`` after a context is ``query . keys[j]``. Keys
depend on a candidate's own features (the ``candidate_window - 1`` segments before it, and with a lookahead the
mean of those after it) alone, not on the context, so the engine computes them once
per memory (:meth:`SegmentScorer.keys`) and then asks only for queries (:meth:`SegmentScorer.queries`), a few
contexts at a time. ONNX Runtime wants every graph input fed on each run, so each call feeds the other branch a
small zero array (one candidate, or one context) and ignores its output.

Only ONNX Runtime is used here; the engine never imports TensorFlow or Keras.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .analysis import FEATURE_DIM, candidate_dim
from .continuator import default_resynth_model_path, open_model
from .errors import ModelContractError


class SegmentScorer:
    """Runs a resynth model: embeddings that score which segment follows a context.

    Parameters
    ----------
    path : str or os.PathLike, optional
        An ONNX file with a resynth contract; ``$ENCORE_RESYNTH_MODEL`` or the shipped
        ``assets/models/encore-resynth.onnx`` when None.
    threads : int
        ONNX Runtime intra-op threads (the model is small: one core serves the engine).
    opened : tuple, optional
        What :func:`engine.continuator.open_model` returned for ``path``, when the caller has already opened
        it to read its contract (:func:`engine.generators.load_model`); ``threads`` is then the session's.

    Attributes
    ----------
    path : pathlib.Path
    contract : engine.contract.ModelContract
    load_seconds : float
        Time ONNX Runtime took to open the file.
    embedding : int
        D, the length of a query and of a key.

    Raises
    ------
    ModelContractError
        The file is missing, not ONNX, not a resynth model, or its graph disagrees with its contract.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, threads: int = 1, opened: tuple | None = None):
        self.path = Path(path) if path is not None else default_resynth_model_path()
        hint = (" (the resynth model ships with Encore as encore_assets: reinstall it, pass --model "
                "or set ENCORE_RESYNTH_MODEL)") if path is None else ""
        self.session, self.contract, self.load_seconds = opened or open_model(self.path, threads=threads,
                                                                              default_hint=hint)
        if self.contract.generator != "resynth":
            raise ModelContractError(f"{self.path}: generator {self.contract.generator!r}, expected 'resynth' "
                                     f"(a segment scorer)")
        self.embedding = self._check_graph()

    def _check_graph(self) -> int:
        """Refuse a graph that lacks the declared inputs and outputs or has other fixed dimensions; return D."""
        c = self.contract
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        # Dimensions after the batch axis; a name stands for a size the contract leaves free.
        expected = {c.input_name: ("input", (c.context_segments, FEATURE_DIM + 1)),
                    c.candidate_name: ("input", ("segments", self.candidate_dim)),
                    c.output_name: ("output", ("embedding",)),
                    c.key_name: ("output", ("segments", "embedding"))}
        problems, embedding = [], set()
        for name, (where, dims) in expected.items():
            graph = inputs if where == "input" else outputs
            if name not in graph:
                problems.append(f"contract {where} {name!r}, graph {where}s {sorted(graph)}")
                continue
            shape = graph[name]
            if len(shape) != len(dims) + 1 or any(isinstance(g, int) and isinstance(e, int) and g != e
                                                  for g, e in zip(shape[1:], dims, strict=True)):
                problems.append(f"{where} {name!r} should be (batch, {', '.join(map(str, dims))}), "
                                f"graph {tuple(shape)}")
                continue
            embedding |= {g for g, e in zip(shape[1:], dims, strict=True) if e == "embedding" and isinstance(g, int)}
        if len(embedding) > 1:
            problems.append(f"query and keys disagree on the embedding size {sorted(embedding)}")
        if problems:
            raise ModelContractError(f"{self.path}: graph does not match its contract: " + "; ".join(problems))
        if embedding:
            return embedding.pop()
        return int(self.keys(np.zeros((1, self.candidate_dim), np.float32)).shape[1])  # a graph with a symbolic D

    @property
    def name(self) -> str:
        """Short name for summaries: the file's stem."""
        return self.path.stem

    @property
    def candidate_dim(self) -> int:
        """Features per candidate row: ``encore.candidate_window`` segments side by side, and one more block
        when ``encore.candidate_lookahead`` is above 0 (:func:`engine.analysis.candidate_rows`)."""
        return candidate_dim(self.contract.candidate_window, self.contract.candidate_lookahead)

    def keys(self, features: np.ndarray) -> np.ndarray:
        """Embed segments as candidates, once per memory.

        Parameters
        ----------
        features : numpy.ndarray
            [shape=(segments, candidate_dim), dtype=float32]: :func:`engine.analysis.candidate_rows`, which is
            :attr:`engine.analysis.Analysis.features` itself for a window of 1.

        Returns
        -------
        numpy.ndarray
            [shape=(segments, D), dtype=float32], unit length.
        """
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.candidate_dim:
            raise ModelContractError(f"features must be (segments, {self.candidate_dim}), got {features.shape}")
        c = self.contract
        dummy = np.zeros((1, c.context_segments, FEATURE_DIM + 1), np.float32)
        (out,) = self.session.run([c.key_name], {c.input_name: dummy,
                                                 c.candidate_name: np.ascontiguousarray(features[None])})
        return np.asarray(out[0], dtype=np.float32)

    def queries(self, contexts: np.ndarray) -> np.ndarray:
        """Embed contexts; the score of candidate ``j`` after context ``b`` is ``queries[b] @ keys[j]``.

        Parameters
        ----------
        contexts : numpy.ndarray
            [shape=(batch, context_segments, FEATURE_DIM + 1), dtype=float32]
            (:func:`engine.analysis.context_features`, stacked).

        Returns
        -------
        numpy.ndarray
            [shape=(batch, D), dtype=float32], scaled by the model's learned logit scale.
        """
        c = self.contract
        contexts = np.asarray(contexts, dtype=np.float32)
        if contexts.ndim != 3 or contexts.shape[1:] != (c.context_segments, FEATURE_DIM + 1):
            raise ModelContractError(f"contexts must be (batch, {c.context_segments}, {FEATURE_DIM + 1}), "
                                     f"got {contexts.shape}")
        dummy = np.zeros((contexts.shape[0], 1, self.candidate_dim), np.float32)
        (out,) = self.session.run([c.output_name], {c.input_name: np.ascontiguousarray(contexts),
                                                    c.candidate_name: dummy})
        return np.asarray(out, dtype=np.float32)
