"""tf.data pipelines over a folder of audio files or over sharded TFRecord songs.

Files (:func:`make_dataset`)
    Each file becomes one or more training windows of ``context_s + horizon_s`` seconds (the paper: one window,
    the song's first 30 s, split 20 s in / 10 s out). Decoding runs in ``tf.numpy_function`` with the engine's
    decoder (soundfile + soxr), in parallel, and the decoded windows are cached in memory after the first epoch:
    simple, and right for a corpus that fits in memory.
Shards (:func:`make_shard_dataset`)
    Whole songs stored as 16-bit PCM in TFRecord shards (:mod:`training.seed.shards`) are streamed, never cached:
    shard files are interleaved in parallel, and each song is parsed, converted and cut into windows inside the
    graph, so memory depends on the batch and buffer sizes, not on the corpus. Training windows start at random
    (seeded) places, new ones every epoch; validation windows are the file pipeline's, evenly spaced from the
    song's start.

Both split songs into training and validation *by file* (:func:`split_files`), so no song is on both sides, and
both yield the same ``(context, continuation)`` batches. :func:`datasets_for` picks one for a data folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio import load_audio, to_model_input
from engine.errors import AudioFileError, ConfigError

from ..corpus.split import DataConfig, list_audio_files, split_files
from .model import ModelConfig

#: Memory the training shuffle buffer of the shard pipeline may hold by default: about 100 windows of 30 s at
#: 22050 Hz. Windows are large (2.6 MB), so a buffer counted in windows alone would grow with the rate.
SHUFFLE_BUFFER_BYTES = 256 * 2**20
#: Shard files read at once: songs from this many shards are mixed before the window shuffle.
CYCLE_LENGTH = 8
#: Read buffer per open shard: a song is a few MB, and TensorFlow's 256 kB default reads it in many small calls.
READ_BUFFER_BYTES = 8 * 2**20


@dataclass(frozen=True)
class Augmentation:
    """Random changes to training windows, drawn per window from the pipeline's seed.

    Done: a gain, a polarity flip, and (shards only) a varispeed. Not done: pitch shift without tempo change or
    time stretch without pitch change (a phase vocoder per window would cost more than the training step),
    equalisation, noise, reverb, or mixing songs.

    Parameters
    ----------
    gain_db : float
        Gain drawn uniformly in [-gain_db, +gain_db] dB per window, context and continuation alike, and lowered
        where needed so the window's peak stays at or under full scale: the model never sees clipping that the
        engine's input could not have.
    polarity : bool
        Flip the sign of half the windows.
    speed : float
        Varispeed: read the window at a rate drawn uniformly in [1 - speed, 1 + speed], as a tape played fast or
        slow, so pitch and tempo move together (0.02 is about a third of a semitone). Linear interpolation without
        an anti-alias filter: two gathers per window (on the corpus, one window per song, the pipeline alone then
        delivers 123 instead of 276 windows/s on 2 cores) and harmless at a few percent, where the aliased band is
        the top few percent of the spectrum, which music barely uses; not for large shifts. Needs whole songs, so
        the file pipeline, which caches cut windows, ignores it.
    """

    gain_db: float = 6.0
    polarity: bool = True
    speed: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 <= self.gain_db <= 24.0:
            raise ConfigError(f"augmentation gain must be 0 to 24 dB, got {self.gain_db}")
        if not 0.0 <= self.speed <= 0.1:
            raise ConfigError(f"augmentation speed change must be 0 to 0.1 (10 %), got {self.speed}")

    def describe(self, *, varispeed: bool = True) -> str:
        parts = [f"gain ±{self.gain_db:g} dB"] if self.gain_db else []
        parts += ["polarity"] if self.polarity else []
        parts += [f"speed ±{self.speed * 100:g} %"] if self.speed and varispeed else []
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class DatasetDescription:
    """What :func:`datasets_for` chose, for a run's ``config.json`` and log.

    Parameters
    ----------
    kind : {"shards", "files"}
    path : pathlib.Path
        The shards folder, or the folder of audio files.
    summary : str
        One line: the source, its songs and split, the augmentation.
    train_files, validation_files : tuple of str
        The songs on each side.
    """

    kind: str
    path: Path
    summary: str
    train_files: tuple[str, ...]
    validation_files: tuple[str, ...]

    def __str__(self) -> str:
        return self.summary

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "summary": self.summary,
                "train_files": list(self.train_files), "validation_files": list(self.validation_files)}


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
                 shuffle: bool, seed: int = 0, augment: bool | Augmentation = False):
    """A ``tf.data.Dataset`` of ``(context, continuation)`` batches, decoded once and cached in memory.

    ``augment`` (True for the default :class:`Augmentation`) applies its gain and polarity after the cache, so
    they change every epoch; its varispeed needs whole songs and is left to :func:`make_shard_dataset`.

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
    augmentation = _augmentation(augment)
    if augmentation is None:
        dataset = dataset.map(lambda w: (w[: model.context_chunks], w[model.context_chunks:]),
                              num_parallel_calls=tf.data.AUTOTUNE)
    else:
        def split_augmented(window, window_seed):
            window = _gain_and_polarity(window[None], window_seed, augmentation)[0]
            return window[: model.context_chunks], window[model.context_chunks:]

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(split_augmented, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_shard_dataset(shard_paths: list[str | Path], model: ModelConfig, *, batch_size: int,
                       windows_per_song: int, shuffle: bool, seed: int = 0, augment: bool | Augmentation = False,
                       repeat: bool = False, shuffle_buffer: int | None = None, input_context=None):
    """A streaming ``tf.data.Dataset`` of ``(context, continuation)`` batches from TFRecord shards of songs.

    Shard files (shuffled when ``shuffle``) -> ``interleave(TFRecordDataset)`` over :data:`CYCLE_LENGTH` files in
    parallel -> per song, in parallel and inside the graph: parse, cut the windows' bytes, int16 to float32, augment ->
    shuffle buffer of windows (when ``shuffle``) -> batch -> prefetch. Nothing is cached: memory is bounded by
    the songs in flight, the shuffle buffer and the prefetched batches, whatever the corpus size.

    Windows per song follow :func:`song_windows`: ``min(windows_per_song, 1 + (frames - window) // horizon)``,
    at least one, and a song shorter than a window is looped to one. With ``shuffle`` they start at uniformly
    random places drawn from ``seed`` (new ones each epoch, the same sequence for the same seed); without, they
    are evenly spaced from the song's start, exactly :func:`song_windows`'s, so validation loss is comparable
    from epoch to epoch and with the file pipeline.

    Parameters
    ----------
    shard_paths : list of path-like
        ``.tfrecord`` files written by :func:`training.seed.shards.write_shards` at ``model.sample_rate``.
    model : ModelConfig
        Gives the rate, chunk length and the context and horizon chunk counts.
    batch_size : int
    windows_per_song : int
    shuffle : bool
        Shuffle shard order and windows, and draw random window starts (training); off for validation.
    seed : int
        Seed of every random choice: shard order, window starts, the shuffle buffer, augmentation.
    augment : bool or Augmentation
        True for the default :class:`Augmentation`.
    repeat : bool
        Repeat the windows endlessly (each pass reshuffled, new windows) before batching, so every batch is full;
        for a step-counted loop (``steps_per_epoch``) or a benchmark.
    shuffle_buffer : int, optional
        Windows in the shuffle buffer; by default as many as fit in :data:`SHUFFLE_BUFFER_BYTES`, at least a batch.
    input_context : tf.distribute.InputContext, optional
        When given (``distribute_datasets_from_function``), this input pipeline reads only its share of the shard
        files, so workers read disjoint songs.

    Yields
    ------
    context : tf.Tensor
        [shape=(batch, context_chunks, chunk_samples), dtype=float32]
    continuation : tf.Tensor
        [shape=(batch, horizon_chunks, chunk_samples), dtype=float32]

    Raises
    ------
    ConfigError
        No shard files, or fewer than the input pipelines that share them.
    """
    import tensorflow as tf

    paths = [str(p) for p in shard_paths]
    if not paths:
        raise ConfigError("no shard files to read")
    if batch_size < 1 or windows_per_song < 1:
        raise ConfigError(f"batch size and windows per song must be 1 or more, got {batch_size} and "
                          f"{windows_per_song}")
    augmentation = _augmentation(augment)
    window_bytes = (model.context_chunks + model.horizon_chunks) * model.chunk_samples * 4
    if shuffle_buffer is None:
        shuffle_buffer = max(batch_size, SHUFFLE_BUFFER_BYTES // window_bytes)

    files = tf.data.Dataset.from_tensor_slices(paths)
    if input_context is not None:
        if len(paths) < input_context.num_input_pipelines:
            raise ConfigError(f"{len(paths)} shard files cannot feed {input_context.num_input_pipelines} input "
                              f"pipelines; write smaller shards (training shards --songs-per-shard)")
        files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES),
                               cycle_length=min(CYCLE_LENGTH, len(paths)), block_length=1,
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # One stateless seed per song, from a stream that is the same for the same seed and new each epoch: the
    # windows are reproducible however many threads cut them.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)

    def cut(record, song_seed):
        return _cut_windows(record, song_seed, model, windows_per_song, random_starts=shuffle,
                            augmentation=augmentation)

    windows = tf.data.Dataset.zip((records, seeds)).map(cut, num_parallel_calls=tf.data.AUTOTUNE,
                                                        deterministic=True)
    windows = windows.unbatch()
    if repeat:
        windows = windows.repeat()
    if shuffle:
        windows = windows.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return windows.batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)


def datasets_for(data_dir: str | Path, model: ModelConfig, data_config: DataConfig, *, batch_size: int,
                 validation_batch_size: int, augment: bool | Augmentation = False):
    """Training and validation datasets for a data folder: from shards when it has them, else from its files.

    Shards are used when ``data_dir/shards/manifest.json`` exists (what ``training corpus`` writes) or
    ``data_dir`` is itself a shards folder; they are then checked against the model's rate. Otherwise every audio
    file under ``data_dir`` is split with :func:`split_files` and read by :func:`make_dataset`.

    With shards, the songs and their split are the ones fixed when the shards were written (``training shards
    --files --seed``): ``data_config.files`` is not applied again, while ``windows_per_song`` and ``seed`` (window
    starts, shuffles) are. Augmentation applies to the training side only.

    Returns
    -------
    train, validation : tf.data.Dataset
        ``(context, continuation)`` batches of ``batch_size`` and ``validation_batch_size``.
    description : DatasetDescription
        Which source was used, its songs on each side, and a one-line summary.

    Raises
    ------
    ConfigError
        No audio files, fewer than 2, or shards that are broken or at another rate than the model.
    """
    from .shards import find_shards, read_manifest

    augmentation = _augmentation(augment)
    windows = data_config.windows_per_song
    manifest_path = find_shards(data_dir)
    if manifest_path is not None:
        shards = read_manifest(manifest_path, sample_rate=model.sample_rate)
        train = make_shard_dataset(shards.paths("train"), model, batch_size=batch_size, windows_per_song=windows,
                                   shuffle=True, seed=data_config.seed, augment=augmentation or False)
        validation = make_shard_dataset(shards.paths("validation"), model, batch_size=validation_batch_size,
                                        windows_per_song=windows, shuffle=False, seed=data_config.seed)
        split = shards.split
        summary = (f"shards {shards.root}: {shards.summary()}; split fixed when written (files {split.get('files')}, "
                   f"seed {split.get('seed')}); augmentation: "
                   f"{augmentation.describe() if augmentation else 'none'}")
        source = Path(shards.source)
        return train, validation, DatasetDescription(
            kind="shards", path=shards.root, summary=summary,
            train_files=tuple(str(source / name) for name in shards.files("train")),
            validation_files=tuple(str(source / name) for name in shards.files("validation")))

    train_files, validation_files = split_files(list_audio_files(data_dir), data_config)
    train = make_dataset(train_files, model, batch_size=batch_size, windows_per_song=windows, shuffle=True,
                         seed=data_config.seed, augment=augmentation or False)
    validation = make_dataset(validation_files, model, batch_size=validation_batch_size, windows_per_song=windows,
                              shuffle=False)
    summary = (f"files {Path(data_dir)}: train {len(train_files)} / validation {len(validation_files)} songs, "
               f"decoded once and cached in memory; augmentation: "
               f"{augmentation.describe(varispeed=False) if augmentation else 'none'}")
    return train, validation, DatasetDescription(
        kind="files", path=Path(data_dir), summary=summary, train_files=tuple(str(p) for p in train_files),
        validation_files=tuple(str(p) for p in validation_files))


# ------------------------------------------------------------------------------------------- in the graph


def _augmentation(augment: bool | Augmentation | None) -> Augmentation | None:
    if isinstance(augment, Augmentation):
        return augment
    return Augmentation() if augment else None


def _cut_windows(record, song_seed, model: ModelConfig, windows: int, *, random_starts: bool,
                 augmentation: Augmentation | None):
    """Parse one song record and cut its windows, all as graph ops.

    Returns
    -------
    context : tf.Tensor
        [shape=(count, context_chunks, chunk_samples), dtype=float32]
    continuation : tf.Tensor
        [shape=(count, horizon_chunks, chunk_samples), dtype=float32]
    """
    import tensorflow as tf

    from .shards import PCM_SCALE

    steps = model.context_chunks + model.horizon_chunks
    window = steps * model.chunk_samples
    hop = model.horizon_chunks * model.chunk_samples
    speed = augmentation.speed if augmentation is not None and random_starts else 0.0
    # A sped-up window reads more of the song than it yields: room for the fastest rate and one interpolation
    # sample. (Its start is then drawn a little short of the song's end, at most 2 * speed windows.)
    need = window if not speed else math.ceil((window - 1) * (1 + speed)) + 2

    features = {"audio": tf.io.FixedLenFeature([], tf.string)}
    audio = tf.io.parse_single_example(record, features)["audio"]  # 2 bytes a frame
    frames = tf.strings.length(audio) // 2
    # A song shorter than a window is looped to one, as song_windows does (a copy, but only of a short song).
    audio = tf.cond(frames < need,
                    lambda: tf.strings.reduce_join(tf.repeat(audio[None], -(-need // tf.maximum(frames, 1)))),
                    lambda: audio)
    frames = tf.strings.length(audio) // 2
    last_start = frames - window
    count = tf.maximum(1, tf.minimum(windows, last_start // hop + 1))
    seeds = tf.random.experimental.stateless_split(song_seed, 4)

    if not random_starts:
        starts = tf.cast(tf.linspace(tf.constant(0.0, tf.float64), tf.cast(last_start, tf.float64), count), tf.int32)
    else:
        starts = tf.random.stateless_uniform([count], seeds[0], 0, frames - need + 1, dtype=tf.int32)
    # Only the windows' bytes are decoded: a song is 10 to 100 windows' worth, and decoding it whole, or
    # gathering from it, cost more than reading it.
    pieces = tf.strings.substr(audio, starts * 2, tf.fill([count], 2 * need))
    samples = tf.cast(tf.io.decode_raw(pieces, tf.int16, little_endian=True), tf.float32)  # [count, need]
    if speed:
        # Output sample i reads position i * rate = i + i * (rate - 1). The drift i * (rate - 1) stays under
        # speed * window, small enough for float32 to place it within 1e-3 of a sample; i * rate itself would not.
        drift = tf.random.stateless_uniform([count], seeds[1], -speed, speed)
        drift = tf.range(window, dtype=tf.float32)[None, :] * drift[:, None]
        shift = tf.math.floor(drift)
        fraction = drift - shift
        whole = tf.range(window)[None, :] + tf.cast(shift, tf.int32)
        left = tf.gather(samples, whole, batch_dims=1)
        right = tf.gather(samples, whole + 1, batch_dims=1)
        samples = left + (right - left) * fraction
    if augmentation is not None:
        samples = _gain_and_polarity(samples, seeds[2], augmentation, scale=1.0 / PCM_SCALE)
    else:
        samples = samples * (1.0 / PCM_SCALE)
    samples = tf.reshape(samples, [-1, steps, model.chunk_samples])
    return samples[:, : model.context_chunks], samples[:, model.context_chunks:]


def _gain_and_polarity(windows, seed, augmentation: Augmentation, scale: float = 1.0):
    """Scale each window by ``scale`` and a random gain (capped at full scale) and sign.

    ``windows`` is [shape=(count, ...), dtype=float32]; ``scale`` converts it to full scale 1 (1 / 32768 for
    integer PCM values), folded into the one multiplication.
    """
    import tensorflow as tf

    count = tf.shape(windows)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    peaks = tf.reduce_max(tf.abs(tf.reshape(windows, [count, -1])), axis=1) * scale
    gain_db = tf.random.stateless_uniform([count], seeds[0], -augmentation.gain_db, augmentation.gain_db)
    headroom_db = -20.0 * tf.math.log(tf.maximum(peaks, 1e-5)) / math.log(10.0)
    gains = tf.pow(10.0, tf.minimum(gain_db, headroom_db) / 20.0)
    if augmentation.polarity:
        flips = tf.random.stateless_uniform([count], seeds[1]) < 0.5
        gains = tf.where(flips, -gains, gains)
    return windows * tf.reshape(gains * scale, tf.concat([[count], tf.ones([tf.rank(windows) - 1], tf.int32)], axis=0))
