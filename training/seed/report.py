"""The paper's figures for one run: loss curves and spectrograms of input, predicted and true continuation.

Writes into the run folder:
- ``loss.png``: training and validation MSE per epoch (the paper showed training loss only; it never validated);
- ``spectrograms.png``: the last 10 s of the input, the predicted 10 s and the true 10 s of one validation song;
- ``report.json``: the figures behind them, with two baselines on the same validation windows, so the model's
  MSE has a scale: predicting silence, and repeating the last 10 s of the input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.errors import ConfigError

from .data import song_windows
from .fit import load_run


def log_spectrogram(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Magnitude spectrogram in dB (no JIT-compiled code, so it is quick on a cold start).

    Returns
    -------
    tuple
        ``(frequencies [Hz], times [s], dB [shape=(frequencies, times)])``.
    """
    from scipy.signal import spectrogram

    freqs, times, power = spectrogram(samples, fs=sample_rate, nperseg=1024, noverlap=768, scaling="spectrum")
    return freqs, times, 10 * np.log10(np.maximum(power, 1e-12))


def write_report(run_dir: str | Path, *, song_index: int = 0) -> dict:
    """Write loss.png, spectrograms.png and report.json into a run folder.

    Returns
    -------
    dict
        The contents of report.json.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    history_path = run_dir / "history.json"
    if not history_path.exists():
        raise ConfigError(f"{run_dir}: no history.json: not a training run, or it never finished an epoch")
    history = json.loads(history_path.read_text())
    model, config, settings = load_run(run_dir)
    validation = [Path(p) for p in settings["validation_files"]]

    figure, axis = plt.subplots(figsize=(7, 4))
    epochs = [row["epoch"] for row in history]
    axis.plot(epochs, [row["loss"] for row in history], label="training")
    if all("val_loss" in row for row in history):
        axis.plot(epochs, [row["val_loss"] for row in history], label="validation")
    axis.set(xlabel="epoch", ylabel="MSE", yscale="log", title=f"{config.preset} preset: loss per epoch")
    axis.legend()
    figure.tight_layout()
    figure.savefig(run_dir / "loss.png", dpi=120)
    plt.close(figure)

    # Every validation song's first window: the model against two trivial predictors, same windows.
    windows = np.concatenate([song_windows(p, config, 1) for p in validation])
    inputs, truth = windows[:, : config.context_chunks], windows[:, config.context_chunks:]
    predicted = model.predict(inputs, batch_size=10, verbose=0)
    repeat_last = inputs[:, -config.horizon_chunks:]
    figures = {
        "validation_songs": len(validation),
        "model_mse": float(np.mean((predicted - truth) ** 2)),
        "silence_mse": float(np.mean(truth ** 2)),
        "repeat_last_mse": float(np.mean((repeat_last - truth) ** 2)),
        "predicted_rms": float(np.sqrt(np.mean(predicted ** 2))),
        "true_rms": float(np.sqrt(np.mean(truth ** 2))),
        "epochs": len(history),
        "best_val_loss": float(min(row.get("val_loss", np.inf) for row in history)),
        "final_loss": float(history[-1]["loss"]),
    }

    index = min(song_index, len(validation) - 1)
    rows = [("input, last 10 s", repeat_last[index]), ("predicted 10 s", predicted[index]),
            ("true 10 s", truth[index])]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    panels = [(title, *log_spectrogram(chunks.reshape(-1), config.sample_rate)) for title, chunks in rows]
    top = max(db.max() for *_, db in panels)  # one colour scale for all three, so levels compare honestly
    for axis, (title, freqs, times, db) in zip(axes, panels, strict=True):
        mesh = axis.pcolormesh(times, freqs, db, shading="auto", vmin=top - 90, vmax=top, cmap="magma")
        axis.set(title=title, xlabel="s")
    figure.colorbar(mesh, ax=axes, label="dB", shrink=0.8)
    axes[0].set_ylabel("Hz")
    figure.suptitle(f"{validation[index].name} (validation)")
    figure.savefig(run_dir / "spectrograms.png", dpi=100, bbox_inches="tight")
    plt.close(figure)

    (run_dir / "report.json").write_text(json.dumps(figures, indent=2))
    return figures
