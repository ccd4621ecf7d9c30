"""Export a trained run to an ONNX file that carries Encore's contract in its metadata.

Conversion goes through ``tf2onnx.convert.from_keras`` (it traces the Keras 3 model as a tf.function), with the
input named ``context`` and the output ``continuation``. Models whose weights pass protobuf's 2 GiB limit (the
paper preset: 400 M parameters, 1.6 GB) take tf2onnx's large-model path: it needs ``optimizers={}`` to fit in
24 GiB (its default optimisers copy the graph several times), and it writes a zip that ONNX Runtime cannot
open, so we unpack it and save the graph with its weights as one external-data file beside it (``.onnx`` +
``.onnx.data``).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from engine.contract import ModelContract

from ..common.onnx_graph import OPSET, checked_output_path, finish_graph, project_version
from .fit import load_run
from .model import INPUT_NAME, OUTPUT_NAME, ModelConfig

#: Above this many parameters the graph cannot be one protobuf (2 GiB) with room to spare.
LARGE_MODEL_PARAMETERS = 300_000_000
GRAPH_DOC = "Encore seed generator, exported from Keras with tf2onnx"


def export(run_dir: str | Path, out_path: str | Path, *, large_model: bool | None = None) -> Path:
    """Convert a run's best weights to ONNX with the contract metadata.

    Parameters
    ----------
    run_dir : path
        A folder written by ``training fit`` for a seed model (a resynth scorer's run is exported by
        :func:`training.scorer.export.export_resynth`; ``training export`` picks the one a run needs).
    out_path : path
        Destination ``.onnx`` file; large models also write ``<out_path>.data``.
    large_model : bool, optional
        Force tf2onnx's external-storage path; decided from the parameter count when None.

    Returns
    -------
    pathlib.Path
        The ONNX file written.
    """
    import onnx
    import tf2onnx

    out_path = checked_output_path(out_path)
    model, config, settings = load_run(run_dir)
    if large_model is None:
        large_model = model.count_params() > LARGE_MODEL_PARAMETERS
    metadata = contract_for(config, corpus=str(settings.get("corpus", ""))).to_metadata()
    metadata.update(architecture_metadata(model, config))
    metadata["encore.training"] = training_summary(Path(run_dir))
    if not large_model:
        onnx.save_model(to_onnx(model, config, metadata), str(out_path))
        return out_path

    if not hasattr(np, "product"):  # tf2onnx's large-model path still calls the alias numpy 2 removed
        np.product = np.prod
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        zipped = Path(tmp) / "model.zip"
        tf2onnx.convert.from_keras(model, input_signature=_signature(config), opset=OPSET, large_model=True,
                                   output_path=str(zipped), optimizers={})
        with zipfile.ZipFile(zipped) as archive:
            archive.extractall(tmp)
        proto = onnx.load_model(str(Path(tmp) / "__MODEL_PROTO.onnx"), load_external_data=True)
        finish_graph(proto, metadata, inputs=(INPUT_NAME,), outputs=(OUTPUT_NAME,), doc=GRAPH_DOC)
        data_name = out_path.name + ".data"
        (out_path.parent / data_name).unlink(missing_ok=True)
        onnx.save_model(proto, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        (out_path.parent / data_name).chmod(0o644)  # written from a private temp folder: readable like the .onnx
    return out_path


def contract_for(config: ModelConfig, *, corpus: str = "") -> ModelContract:
    """The contract a seed model of ``config`` is exported with."""
    return ModelContract(
        sample_rate=config.sample_rate, chunk_s=config.chunk_s, context_s=config.context_s,
        horizon_s=config.horizon_s, input_name=INPUT_NAME, output_name=OUTPUT_NAME, generator="seed",
        preset=config.preset, corpus=corpus, project_version=project_version(),
    )


def architecture_metadata(model, config: ModelConfig) -> dict[str, str]:
    """Informative metadata from which ``engine bench`` rebuilds the same architecture in Keras."""
    return {"encore.widths": ",".join(str(w) for w in config.widths),
            "encore.parameters": str(model.count_params())}


def to_onnx(model, config: ModelConfig, metadata: dict[str, str]):
    """Convert a Keras seed model (under 2 GiB) to an ONNX ModelProto carrying ``metadata``."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_keras(model, input_signature=_signature(config), opset=OPSET)
    finish_graph(proto, metadata, inputs=(INPUT_NAME,), outputs=(OUTPUT_NAME,), doc=GRAPH_DOC)
    return proto


def _signature(config: ModelConfig):
    import tensorflow as tf

    return (tf.TensorSpec((None, config.context_chunks, config.chunk_samples), tf.float32, name=INPUT_NAME),)


def training_summary(run_dir: Path) -> str:
    """One line on how a run trained: epochs and its best validation loss."""
    history_path = run_dir / "history.json"
    if not history_path.exists():
        return ""
    rows = json.loads(history_path.read_text())
    losses = [r["val_loss"] for r in rows if np.isfinite(r.get("val_loss", np.nan))]
    best = f", best validation MSE {min(losses):.5f}" if losses else ""
    return f"{len(rows)} epochs{best}"
