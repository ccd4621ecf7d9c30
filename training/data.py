"""tf.data pipeline over any folder of audio files.

Each file becomes one or more training windows of ``context_s + horizon_s`` seconds (the paper: one window, the
song's first 30 s, split 20 s in / 10 s out). Files are split into training and validation *by file* so no song
is on both sides. Decoding runs in ``tf.numpy_function`` with the engine's decoder (soundfile + soxr), in
parallel, and the decoded windows are cached in memory after the first epoch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio import load_audio, to_model_input
from engine.errors import AudioFileError, ConfigError

from .model import ModelConfig

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


def song_windows(path: str | Path, model: ModelConfig, windows: int) -> np.ndarray:
    """Decode a song and cut its training windows.

    Returns
    -------
    numpy.ndarray
        [shape=(windows_found, context_chunks + horizon_chunks, chunk_samples), dtype=float32], at most
        ``windows`` evenly spaced windows at least one horizon apart; a song shorter than one window is
        loop-padded to one.
    """
    samples = to_model_input(load_audio(path), model.sample_rate)
    window = (model.context_chunks + model.horizon_chunks) * model.chunk_samples
    if samples.shape[0] < window:
        samples = np.tile(samples, -(-window // max(samples.shape[0], 1)))
    last_start = samples.shape[0] - window
    # Windows may overlap, but each starts at least one horizon after the previous one.
    count = max(1, min(windows, last_start // (model.horizon_chunks * model.chunk_samples) + 1))
    starts = np.linspace(0, last_start, count).astype(int) if count > 1 else np.array([0])
    cut = np.stack([samples[s: s + window] for s in starts])
    return cut.reshape(count, model.context_chunks + model.horizon_chunks, model.chunk_samples)


def make_dataset(files: list[Path], model: ModelConfig, *, batch_size: int, windows_per_song: int,
                 shuffle: bool, seed: int = 0):
    """A ``tf.data.Dataset`` of ``(context, continuation)`` batches.

    Yields
    ------
    context : tf.Tensor
        [shape=(batch, context_chunks, chunk_samples), dtype=float32]
    continuation : tf.Tensor
        [shape=(batch, horizon_chunks, chunk_samples), dtype=float32]
    """
    import tensorflow as tf

    steps = model.context_chunks + model.horizon_chunks

    def decode(path_bytes):
        path = path_bytes.decode()
        try:
            return song_windows(path, model, windows_per_song)
        except AudioFileError:
            # A damaged file in a big corpus costs its examples, not the run.
            return np.zeros((0, steps, model.chunk_samples), np.float32)

    def load(path):
        windows = tf.numpy_function(decode, [path], tf.float32, stateful=False)
        windows.set_shape((None, steps, model.chunk_samples))
        return tf.data.Dataset.from_tensor_slices(windows)

    paths = tf.data.Dataset.from_tensor_slices([str(p) for p in files])
    dataset = paths.interleave(load, cycle_length=4, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda w: (w[: model.context_chunks], w[model.context_chunks:]),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
