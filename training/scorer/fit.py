"""Training a scorer: segment a folder of audio, draw examples, fit, and write a run folder with its report.

Loss: cross-entropy of the scores' softmax against the target (InfoNCE when the target is one-hot). The target's
favourite sits at index 0 (the key branch cannot see an index), so top-1 accuracy means "found it".
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from engine.errors import ConfigError

from ..common.runs import WEIGHTS_FILE, FitConfig, HistoryWriter, TimeBudget
from ..corpus.build import corpus_summary_of
from ..corpus.split import DataConfig, list_audio_files, split_files
from .examples import VALIDATION_SEED_OFFSET, ExampleBatches, ExampleConfig, validation_tasks
from .model import ScorerConfig, build_scorer, build_training_model
from .report import evaluate, format_table
from .run import RUN_KIND
from .segments import default_cache_dir, segment_files


def fit_resynth(data_dir: str | Path, run_dir: str | Path, config: ScorerConfig, examples: ExampleConfig,
                data_config: DataConfig, fit_config: FitConfig, *, segments_dir: str | Path | None = None,
                workers: int = 2, verbose: int = 2) -> Path:
    """Segment a folder of audio (cached), train the scorer and write a run folder with its report.

    Parameters
    ----------
    data_dir : path
        Folder of audio files, searched recursively; split into train and validation by file as
        ``training fit`` splits it (:func:`training.corpus.split.split_files`).
    run_dir : path
        New folder for the run.
    config, examples : ScorerConfig, ExampleConfig
    data_config : DataConfig
        ``files`` and ``seed`` of the split; ``seed`` also draws the examples.
    fit_config : FitConfig
        Epochs, batch size, learning rate, patience and time budget; the rest is for seed models.
    segments_dir : path, optional
        Analysis cache (default ``DATA_DIR/.segments``).
    workers : int
        Processes for the analysis.

    Returns
    -------
    pathlib.Path
        The run folder.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir}: run folder exists and is not empty; choose a new one")
    say = print if verbose else (lambda *_: None)
    train_files, validation_files = split_files(list_audio_files(data_dir), data_config)
    corpus = segment_files(train_files + validation_files, segments_dir or default_cache_dir(data_dir),
                           workers=workers, progress=lambda line: say(line, flush=True))
    say(f"segments: {corpus.summary()}", flush=True)
    for path, note in corpus.skipped.items():
        say(f"  skipped {path}: {note}")
    train = [corpus.analyses[p] for p in train_files if p in corpus.analyses]
    validation = [corpus.analyses[p] for p in validation_files if p in corpus.analyses]
    if not train or not validation:
        raise ConfigError(f"{data_dir}: no analysable songs on the {'training' if not train else 'validation'} side")

    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(data_config.seed)
    settings = {
        "kind": RUN_KIND, "model": config.to_dict(), "examples": asdict(examples), "data": asdict(data_config),
        "fit": asdict(fit_config), "data_dir": str(Path(data_dir).resolve()), "corpus": corpus_summary_of(data_dir),
        "segments": corpus.summary(),
        "train_files": [str(p) for p in train_files], "validation_files": [str(p) for p in validation_files],
        "skipped_files": {str(p): note for p, note in corpus.skipped.items()},
    }
    (run_dir / "config.json").write_text(json.dumps(settings, indent=2))

    train_batches = ExampleBatches(train, config, examples, batch_size=fit_config.batch_size, seed=data_config.seed,
                                   redraw=True)
    validation_batches = ExampleBatches(validation, config, examples, batch_size=fit_config.batch_size,
                                        seed=data_config.seed + VALIDATION_SEED_OFFSET, redraw=False)
    scorer = build_scorer(config)
    model = build_training_model(scorer)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=fit_config.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.CategoricalAccuracy(name="top1")])
    say(f"model: {scorer.count_params()} parameters; {len(train_batches.examples)} training examples per epoch "
        f"from {len(train)} songs (drawn anew each epoch), {len(validation_batches.examples)} validation examples "
        f"from {len(validation)} songs", flush=True)
    weights = run_dir / WEIGHTS_FILE
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(weights), monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
        HistoryWriter(run_dir / "history.json"),
        keras.callbacks.TerminateOnNaN(),
    ]
    if fit_config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=fit_config.patience))
    if fit_config.max_minutes:
        callbacks.append(TimeBudget(fit_config.max_minutes * 60))
    started = time.monotonic()
    model.fit(train_batches, validation_data=validation_batches, epochs=fit_config.epochs, callbacks=callbacks,
              verbose=verbose)
    minutes = (time.monotonic() - started) / 60
    if weights.exists():
        model.load_weights(str(weights))  # the report is of the weights that export ships
    else:  # every epoch's val_loss was NaN: keep the last weights anyway
        model.save_weights(str(weights))

    history = json.loads((run_dir / "history.json").read_text())
    losses = [row.get("val_loss", math.inf) for row in history]
    report = {
        "target": examples.target,
        "validation": evaluate(model, validation_tasks(validation, config, examples, data_config.seed,
                                                        drawn=validation_batches.examples),
                               batch_size=fit_config.batch_size),
        "validation_songs": len(validation), "train_songs": len(train),
        "train_examples_per_epoch": len(train_batches.examples),
        "epochs": len(history), "best_epoch": int(np.argmin(losses)) + 1 if history else 0,
        "best_val_loss": float(min(losses)) if history else math.nan,
        "training_minutes": round(minutes, 2), "parameters": scorer.count_params(),
        "segments": corpus.summary(),
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    say(format_table(report))
    say(f"trained {report['epochs']} epochs in {minutes:.1f} min (best at {report['best_epoch']})")
    return run_dir
