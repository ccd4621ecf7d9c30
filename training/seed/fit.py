"""Training a seed model: the paper's recipe by default, into a self-describing run folder.

A run folder holds ``config.json`` (model, data and optimiser settings, the file split), ``history.json`` (loss
per epoch), ``model.weights.h5`` (the best weights on validation) and ``train.log``. ``training export`` and
``training report`` read nothing else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import keras

from engine.errors import ConfigError

from ..common.runs import WEIGHTS_FILE, FitConfig, HistoryWriter, TimeBudget
from ..corpus.build import corpus_summary_of
from ..corpus.split import DataConfig
from .data import datasets_for
from .distribute import (
    backup_dir,
    fault_drill_callback,
    make_strategy,
    remove_empty_backup,
    train_multi_worker,
)
from .model import ModelConfig, build_model


def fit(data_dir: str | Path, run_dir: str | Path, model_config: ModelConfig, data_config: DataConfig,
        fit_config: FitConfig, *, verbose: int = 2) -> Path:
    """Train a seed model on a folder of audio and write a run folder.

    Returns
    -------
    pathlib.Path
        The run folder.
    """
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before any other TensorFlow work.
    strategy, kind, cluster = make_strategy(fit_config.strategy)
    run_dir = Path(run_dir)
    resuming = any(p.is_file() for p in (run_dir / "backup").rglob("*")) if (run_dir / "backup").exists() else False
    if run_dir.exists() and any(run_dir.iterdir()) and not resuming:
        raise ConfigError(f"{run_dir}: run folder exists and is not empty; choose a new one")
    if kind == "multi-worker" and fit_config.max_minutes:
        raise ConfigError("--max-minutes cannot stop several workers at the same step; use --epochs")
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(data_config.seed)

    def datasets(seed: int):
        """Shards when the folder has them, else its files (:func:`training.seed.data.datasets_for`)."""
        return datasets_for(data_dir, model_config, replace(data_config, seed=seed), batch_size=fit_config.batch_size,
                            validation_batch_size=fit_config.validation_batch_size, augment=fit_config.augment)

    train, val, description = datasets(data_config.seed)
    settings = {
        "model": model_config.to_dict(), "data": asdict(data_config), "fit": asdict(fit_config),
        "strategy": {"kind": kind, "replicas": strategy.num_replicas_in_sync, "workers": cluster.workers},
        "data_dir": str(Path(data_dir).resolve()), "corpus": corpus_summary_of(data_dir),
        "dataset": description.summary,
        "train_files": list(description.train_files), "validation_files": list(description.validation_files),
    }
    if cluster.is_chief:
        (run_dir / "config.json").write_text(json.dumps(settings, indent=2))

    def train_batches(seed: int):
        return datasets(seed)[0]

    def validation_batches():
        return val

    if kind == "multi-worker":
        # Only the chief writes the run; every other worker keeps its best weights beside it, named after itself.
        train_multi_worker(
            strategy, cluster, lambda: build_model(model_config), train_batches, validation_batches,
            run_dir=run_dir, epochs=fit_config.epochs, batch_size=fit_config.batch_size,
            learning_rate=fit_config.learning_rate, patience=fit_config.patience,
            backup_every=fit_config.backup_every, seed=data_config.seed,
            history_path=run_dir / "history.json" if cluster.is_chief else None,
            weights_path=run_dir / (WEIGHTS_FILE if cluster.is_chief else f"{cluster.name}.{WEIGHTS_FILE}"),
            log=print if verbose else (lambda *_: None))
        return run_dir

    with strategy.scope():
        model = build_model(model_config)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=fit_config.learning_rate), loss="mse")
    callbacks = [
        # First, so that a restored epoch and weights are in place before the other callbacks begin.
        keras.callbacks.BackupAndRestore(str(backup_dir(run_dir, cluster)),
                                         save_freq=fit_config.backup_every or "epoch"),
        keras.callbacks.ModelCheckpoint(str(run_dir / WEIGHTS_FILE), monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
        HistoryWriter(run_dir / "history.json"),
        keras.callbacks.TerminateOnNaN(),
    ]
    if fit_config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=fit_config.patience,
                                                       restore_best_weights=True))
    if fit_config.max_minutes:
        callbacks.append(TimeBudget(fit_config.max_minutes * 60))
    if (drill := fault_drill_callback()) is not None:
        callbacks.append(drill)
    # shuffle=False: the dataset shuffles itself (Keras cannot shuffle a tf.data pipeline).
    model.fit(train, validation_data=val, epochs=fit_config.epochs, callbacks=callbacks, verbose=verbose,
              shuffle=False)
    if not (run_dir / WEIGHTS_FILE).exists():  # every epoch's val_loss was NaN: keep the last weights anyway
        model.save_weights(str(run_dir / WEIGHTS_FILE))
    remove_empty_backup(run_dir, cluster)
    return run_dir


def load_run(run_dir: str | Path):
    """Rebuild a run's model with its best weights.

    Returns
    -------
    tuple
        ``(keras.Model, ModelConfig, settings dict)``.
    """
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / WEIGHTS_FILE
    if not config_path.exists() or not weights_path.exists():
        raise ConfigError(f"{run_dir}: not a training run (needs config.json and {WEIGHTS_FILE})")
    settings = json.loads(config_path.read_text())
    if settings.get("kind", "seed") != "seed":
        raise ConfigError(f"{run_dir}: a {settings['kind']} run, not a seed model (its report.json is written by "
                          f"training fit; training export converts it)")
    model_config = ModelConfig.from_dict(settings["model"])
    model = build_model(model_config)
    model.load_weights(str(weights_path))
    return model, model_config, settings
