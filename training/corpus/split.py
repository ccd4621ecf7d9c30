"""Which audio files a run trains on and which it validates on: by file, so no song is on both sides.

Shared by the file pipeline (:mod:`training.seed.data`), the shards (:mod:`training.seed.shards`), the resynth
scorer and the dev set, so it imports none of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
#: The paper's split: 120 songs for training and 50 for validation.
PAPER_SPLIT = (120, 50)

@dataclass(frozen=True)
class DataConfig:
    """How songs become examples.

    Parameters
    ----------
    files : int
        Most files to use (the paper: 170 = 120 + 50); 0 uses every file.
    windows_per_song : int
        Windows taken per song, evenly spaced, at least one horizon apart (the paper: 1, the song's start).
    seed : int
        Seed of the file shuffle before the split.
    """

    files: int = sum(PAPER_SPLIT)
    windows_per_song: int = 1
    seed: int = 0


def list_audio_files(folder: str | Path) -> list[Path]:
    """Every audio file under ``folder``, recursively, in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder of audio files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise ConfigError(f"{folder}: holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files


def split_files(files: list[Path], config: DataConfig) -> tuple[list[Path], list[Path]]:
    """Shuffle deterministically and split by the paper's 120:50 ratio.

    With at least 170 files and ``config.files == 170`` this is exactly the paper's 120 / 50.
    """
    files = list(files)
    random.Random(config.seed).shuffle(files)
    if config.files:
        files = files[: config.files]
    if len(files) < 2:
        raise ConfigError(f"need at least 2 audio files to train and validate, found {len(files)}")
    n_train = round(len(files) * PAPER_SPLIT[0] / sum(PAPER_SPLIT))
    n_train = min(max(n_train, 1), len(files) - 1)
    return sorted(files[:n_train]), sorted(files[n_train:])
