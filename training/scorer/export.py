"""Export a resynth run to ONNX: its best weights, with the resynth contract in the file's metadata.

Inputs ``context`` and ``candidates``, outputs ``query`` and ``keys``, batch and candidate axes dynamic; the
contract is :func:`training.scorer.model.contract_for`'s. The seed model's twin is :mod:`training.seed.export`;
``training export`` picks the one a run needs (:func:`training.scorer.run.is_resynth_run`).
"""

from __future__ import annotations

from pathlib import Path

import keras

from engine.analysis import FEATURE_DIM
from engine.errors import ConfigError

from .model import CANDIDATES_NAME, CONTEXT_NAME, KEYS_NAME, QUERY_NAME, ScorerConfig, contract_for
from .report import training_summary
from .run import load_resynth_run


def to_onnx(scorer: keras.Model, config: ScorerConfig, metadata: dict[str, str]):
    """Convert a Keras scorer to an ONNX ModelProto with dynamic batch and candidate axes, carrying ``metadata``."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from ..common.onnx_graph import OPSET, finish_graph

    # One structured argument: tf2onnx calls model(*args), and a second positional one would be ``training``.
    signature = [(tf.TensorSpec((None, config.context_segments, FEATURE_DIM + 1), tf.float32, name=CONTEXT_NAME),
                  tf.TensorSpec((None, None, config.candidate_dim), tf.float32, name=CANDIDATES_NAME))]
    proto, _ = tf2onnx.convert.from_keras(scorer, input_signature=signature, opset=OPSET)
    finish_graph(proto, metadata, inputs=(CONTEXT_NAME, CANDIDATES_NAME), outputs=(QUERY_NAME, KEYS_NAME),
                 doc="Encore resynth segment scorer, exported from Keras with tf2onnx")
    try:  # tf2onnx leaves an op it cannot convert in the graph with a warning; ONNX Runtime would refuse the file
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConfigError(f"exported scorer is not valid ONNX: {str(e).strip().splitlines()[0][:200]}") from e
    return proto


def export_resynth(run_dir: str | Path, out_path: str | Path) -> Path:
    """Write a resynth run's best weights as ONNX with the resynth contract (the seed model's twin:
    :func:`training.seed.export.export`)."""
    import onnx

    from ..common.onnx_graph import checked_output_path, project_version

    out_path = checked_output_path(out_path)
    scorer, config, settings = load_resynth_run(run_dir)
    contract = contract_for(config, corpus=str(settings.get("corpus", "")), project_version=project_version())
    metadata = {**contract.to_metadata(), "encore.parameters": str(scorer.count_params()),
                "encore.training": training_summary(Path(run_dir))}
    onnx.save_model(to_onnx(scorer, config, metadata), str(out_path))
    return out_path
