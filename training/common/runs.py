"""What every training run shares, whichever model it trains: the optimiser settings, the run folder's weights
file and history, and the Keras callbacks that write the history and keep the wall-clock budget.

Used by the seed model's training (:mod:`training.seed.fit`, :mod:`training.seed.distribute`) and the resynth
scorer's (:mod:`training.scorer`), so neither imports the other.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras

WEIGHTS_FILE = "model.weights.h5"


@dataclass(frozen=True)
class FitConfig:
    """Optimiser settings; the defaults are the paper's.

    Parameters
    ----------
    epochs : int
        Most epochs (the paper: 200).
    batch_size, validation_batch_size : int
        The paper: 20 and 10.
    learning_rate : float
        Adam's learning rate (the paper: 0.01).
    patience : int
        Stop after this many epochs without a better validation loss and keep the best weights; 0 never stops
        early (the paper did not validate).
    max_minutes : float
        Wall-clock budget; 0 for none. Training stops at the end of the epoch that crosses it.
    augment : bool
        Random gain, polarity and (shards) a small varispeed on training windows
        (:class:`training.seed.data.Augmentation`).
    strategy : str
        tf.distribute strategy: ``auto``, ``default``, ``mirrored``, ``multi-worker`` or ``tpu``
        (:mod:`training.seed.distribute`).
    backup_every : int
        Steps between fault-tolerance backups; 0 backs up at every epoch's end only.
    """

    epochs: int = 200
    batch_size: int = 20
    validation_batch_size: int = 10
    learning_rate: float = 0.01
    patience: int = 0
    max_minutes: float = 0.0
    augment: bool = False
    strategy: str = "auto"
    backup_every: int = 0


def read_history(path: Path | None) -> list[dict]:
    """The epochs a run's history.json already holds (none when it is missing or unreadable)."""
    if path is None or not path.exists():
        return []
    try:
        return json.loads(path.read_text())
    except ValueError:
        return []


class HistoryWriter(keras.callbacks.Callback):
    """Writes history.json after every epoch, so a killed run still has its curves."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        # A run resumed from its backup keeps the epochs it had already written.
        self.rows = read_history(self.path)
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "seconds": round(time.time() - self.started, 1)}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)
        self.path.write_text(json.dumps(self.rows, indent=1))


class TimeBudget(keras.callbacks.Callback):
    """Stops training at the end of the epoch that crosses a wall-clock budget."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.deadline = time.time() + self.seconds

    def on_epoch_end(self, epoch, logs=None):
        if time.time() > self.deadline:
            self.model.stop_training = True
