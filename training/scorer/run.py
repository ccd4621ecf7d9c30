"""A resynth run folder: telling it from a seed model's, and its scorer rebuilt with the best weights.

A run folder holds ``config.json`` (with ``"kind": "resynth"``), ``history.json``, ``model.weights.h5`` (best on
validation loss) and ``report.json``; ``training export`` writes the ONNX file with the resynth contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from engine.errors import ConfigError

from ..common.runs import WEIGHTS_FILE
from .model import ScorerConfig, build_scorer, build_training_model

#: ``kind`` of a resynth run in its config.json (a seed run has none).
RUN_KIND = "resynth"


def is_resynth_run(run_dir: str | Path) -> bool:
    """Whether a run folder holds a resynth scorer (its config.json says ``"kind": "resynth"``)."""
    config_path = Path(run_dir) / "config.json"
    return config_path.exists() and json.loads(config_path.read_text()).get("kind") == RUN_KIND


def load_resynth_run(run_dir: str | Path) -> tuple[keras.Model, ScorerConfig, dict]:
    """Rebuild a run's scorer with its best weights.

    Returns
    -------
    tuple
        ``(scorer keras.Model, ScorerConfig, settings dict)``.
    """
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / WEIGHTS_FILE
    if not config_path.exists() or not weights_path.exists():
        raise ConfigError(f"{run_dir}: not a training run (needs config.json and {WEIGHTS_FILE})")
    settings = json.loads(config_path.read_text())
    config = ScorerConfig.from_dict(settings["model"])
    scorer = build_scorer(config)
    build_training_model(scorer).load_weights(str(weights_path))
    return scorer, config, settings
