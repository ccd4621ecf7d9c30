"""The corpus as sharded TFRecord: whole songs as 16-bit PCM, a manifest, and the check that reads it back.

A shards folder holds::

    manifest.json                        what is here, written last (see :func:`write_shards`)
    train-00000-of-00015.tfrecord        whole songs of the training split
    validation-00000-of-00006.tfrecord   whole songs of the validation split
    .state/<shard>.json                  how each shard was made, so a re-run rewrites only what changed

Each record is one song, a ``tf.train.Example`` with the features of :data:`FEATURES`:

    ``audio``        bytes  mono 16-bit PCM, little-endian, at the manifest's sample rate
    ``frames``       int64  frames in ``audio``
    ``sample_rate``  int64  Hz, the same for every song
    ``path``         bytes  the song's file, relative to the source folder

Songs are stored whole, not as windows: a window's length is the model's business (context + horizon), so one set
of shards serves every model at that rate, and the input pipeline (:func:`training.seed.data.make_shard_dataset`) cuts
fresh windows each epoch. PCM rather than FLAC: reading a song back is then a reinterpretation of bytes inside the
graph (``tf.io.decode_raw``), with no Python per example, at about 1.6 times FLAC's size on disk.

Writing needs TensorFlow (its TFRecord writer and ``tf.train.Example``); :func:`read_manifest` needs neither.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile

from engine.audio import load_audio, to_model_input
from engine.errors import AudioContentError, AudioFileError, ConfigError

from ..common.files import file_size, first_line, write_atomically

if TYPE_CHECKING:
    from ..corpus.split import DataConfig

SHARDS_FORMAT = "encore-shards"
SHARDS_VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "validation")
#: Full scale of the stored PCM: a float sample x is stored as round(x * 32768), clipped to int16, and read back
#: as int / 32768, the convention libsndfile uses for 16-bit files (so a 16-bit FLAC's samples are copied as is).
PCM_SCALE = 32768.0
#: Songs per shard by default: about 140 MB at 22050 Hz for the corpus's 3.2 min average song, in the
#: 100-200 MB range where a sequential read costs far more than opening the file.
SONGS_PER_SHARD = 16
#: The lowest model rate the engine's contract accepts; shards below it could never feed a model.
MIN_SAMPLE_RATE = 1000


@dataclass(frozen=True)
class Shard:
    """One TFRecord file of a shards folder.

    Parameters
    ----------
    path : pathlib.Path
        The ``.tfrecord`` file.
    split : {"train", "validation"}
    songs : int
        Records in the file.
    frames : int
        Frames of all its songs together, at the manifest's rate.
    files : tuple of str
        Its songs' files, relative to the source folder, in record order.
    """

    path: Path
    split: str
    songs: int
    frames: int
    files: tuple[str, ...]


@dataclass(frozen=True)
class ShardManifest:
    """A checked ``manifest.json`` of a shards folder (see :func:`read_manifest`).

    Parameters
    ----------
    root : pathlib.Path
        The shards folder.
    sample_rate : int
        Rate of every song, in Hz.
    source : str
        The folder the songs came from.
    shards : tuple of Shard
    skipped : tuple of dict
        ``{"path", "split", "reason"}`` of every file that could not be decoded.
    split : dict
        How files were split: ``{"by": "file", "ratio", "files", "seed"}``.
    """

    root: Path
    sample_rate: int
    source: str
    shards: tuple[Shard, ...]
    skipped: tuple[dict, ...]
    split: dict

    def paths(self, split: str) -> list[Path]:
        """The shard files of one split, ``"train"`` or ``"validation"``, in manifest order."""
        return [shard.path for shard in self.shards if shard.split == split]

    def files(self, split: str) -> list[str]:
        """The songs of one split, as paths relative to :attr:`source`."""
        return [name for shard in self.shards if shard.split == split for name in shard.files]

    def songs(self, split: str | None = None) -> int:
        """Songs in one split, or in both when ``split`` is None."""
        return sum(shard.songs for shard in self.shards if split in (None, shard.split))

    def hours(self, split: str | None = None) -> float:
        """Hours of audio in one split, or in both when ``split`` is None."""
        return sum(shard.frames for shard in self.shards if split in (None, shard.split)) / self.sample_rate / 3600

    def summary(self) -> str:
        """One line, e.g. ``"324 songs, 17.5 h at 22050 Hz in 21 shards (train 229 / validation 95 songs)"``."""
        return (f"{self.songs()} songs, {self.hours():.1f} h at {self.sample_rate} Hz in {len(self.shards)} shards "
                f"(train {self.songs('train')} / validation {self.songs('validation')} songs"
                + (f"; {len(self.skipped)} file{'s' * (len(self.skipped) != 1)} skipped" if self.skipped else "")
                + ")")


# --------------------------------------------------------------------------------------------- public API


def write_shards(files: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, sample_rate: int,
                 songs_per_shard: int = SONGS_PER_SHARD, split: DataConfig | None = None,
                 source: str | os.PathLike | None = None, workers: int = 2,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Write audio files as TFRecord shards of whole songs, split into training and validation by file.

    The split is :func:`training.corpus.split.split_files`'s, so shards and the file pipeline put the same songs on the
    same side for the same ``split``; within a side, songs are dealt to shards in a seeded order so every shard
    mixes the corpus's sources. The same inputs give the same bytes. A shard whose files (their sizes and
    modification times) and settings have not changed since it was written is kept, so an interrupted run
    resumes and a repeated one rewrites nothing; shards of an earlier, different set are removed.

    Parameters
    ----------
    files : sequence of path-like
        Audio files (any format, rate and channel count :func:`engine.audio.load_audio` reads). They are
        downmixed to mono and resampled to ``sample_rate``; a mono 16-bit file at that rate is copied exactly.
    out_dir : path-like
        Shards folder, created if needed; ``manifest.json`` is written last.
    sample_rate : int
        Rate of the stored songs, in Hz: the rate of the models they will train.
    songs_per_shard : int
        Most songs in one shard file.
    split : DataConfig, optional
        ``files`` and ``seed`` of the split; the default, ``DataConfig(files=0)``, shards every file.
    source : path-like, optional
        Folder the files' recorded paths are relative to; their common folder by default.
    workers : int
        Threads that decode and resample (libsndfile and soxr release the GIL).
    progress : callable, optional
        Called with one line per shard and per skipped file.

    Returns
    -------
    pathlib.Path
        ``out_dir/manifest.json``: format and version, sample rate, the source folder, the split, every shard
        with its split, song count, frames, hours, size and files, the skipped files with the reason, and totals.

    Raises
    ------
    ConfigError
        Bad settings, fewer than 2 files, or an ``out_dir`` that holds some other ``manifest.json``.
    """
    import tensorflow as tf

    from ..corpus.split import DataConfig, split_files

    say = progress or (lambda line: None)
    split = split or DataConfig(files=0)
    if sample_rate < MIN_SAMPLE_RATE:
        raise ConfigError(f"sample rate must be at least {MIN_SAMPLE_RATE} Hz, got {sample_rate}")
    if songs_per_shard < 1:
        raise ConfigError(f"songs per shard must be 1 or more, got {songs_per_shard}")
    if workers < 1:
        raise ConfigError(f"workers must be 1 or more, got {workers}")
    files = [Path(f).resolve() for f in files]
    if not files:
        raise ConfigError("no audio files to shard")
    source = Path(source).resolve() if source is not None else Path(os.path.commonpath(files))
    if source.is_file():  # a single file's common path is the file itself
        source = source.parent
    out_dir = Path(out_dir)
    _refuse_foreign_manifest(out_dir)
    train, validation = split_files(files, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".state").mkdir(exist_ok=True)

    plan: list[tuple[str, list[Path]]] = []
    for name, songs in zip(SPLITS, (train, validation), strict=True):
        songs = list(songs)
        # split_files returns each side sorted; a seeded deal spreads the sources over the shards.
        random.Random(f"shards:{split.seed}:{name}").shuffle(songs)
        count = -(-len(songs) // songs_per_shard)
        plan += [(name, songs[i * len(songs) // count:(i + 1) * len(songs) // count]) for i in range(count)]

    records, started = [], time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for index, (name, songs) in enumerate(plan):
            count = sum(1 for other, _ in plan if other == name)
            number = sum(1 for other, _ in plan[:index] if other == name)
            shard_name = f"{name}-{number:05d}-of-{count:05d}.tfrecord"
            record = _write_shard(tf, out_dir, shard_name, name, songs, source, sample_rate, pool, say)
            records.append(record)
            say(f"[{index + 1}/{len(plan)}] {shard_name}: {record['songs']} songs, "
                f"{record['frames'] / sample_rate / 3600:.2f} h{' (already written)' if record['reused'] else ''}")

    shards = [{key: r[key] for key in ("path", "split", "songs", "frames", "hours", "bytes", "files")}
              for r in records if r["songs"]]
    skipped = [skip for r in records for skip in r["skipped"]]
    # A shard whose every file was unreadable stays on disk (empty, so a re-run keeps it) but is not listed.
    _prune_stale(out_dir, {r["path"] for r in records})

    def totals(which: str | None) -> dict:
        chosen = [s for s in shards if which in (None, s["split"])]
        frames = sum(s["frames"] for s in chosen)
        return {"shards": len(chosen), "songs": sum(s["songs"] for s in chosen),
                "hours": round(frames / sample_rate / 3600, 3), "bytes": sum(s["bytes"] for s in chosen)}

    manifest = {
        "format": SHARDS_FORMAT,
        "version": SHARDS_VERSION,
        "created_by": "training shards",
        "sample_rate": sample_rate,
        "encoding": "one song per tf.train.Example: audio (mono 16-bit PCM, little-endian), frames, sample_rate, "
                    "path (relative to source)",
        "source": str(source),
        "corpus": _corpus_line(source),
        "split": {"by": "file", "ratio": list(_paper_split()), "files": split.files, "seed": split.seed},
        "songs_per_shard": songs_per_shard,
        "shards": shards,
        "skipped": skipped,
        "summary": {**totals(None), "train": totals("train"), "validation": totals("validation"),
                    "skipped": len(skipped)},
    }
    manifest_path = out_dir / MANIFEST_NAME
    write_atomically(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
    say(f"{len(shards)} shards in {time.monotonic() - started:.0f} s")
    return manifest_path


def read_manifest(path: str | os.PathLike, *, sample_rate: int | None = None) -> ShardManifest:
    """Read and check a shards folder's manifest.

    Parameters
    ----------
    path : path-like
        The shards folder or its ``manifest.json``.
    sample_rate : int, optional
        The model's rate in Hz; the shards must be at this rate.

    Returns
    -------
    ShardManifest

    Raises
    ------
    ConfigError
        One line naming what is wrong: no manifest, not a shard manifest (a corpus's, say), another format
        version, a missing or malformed field, a shard file missing or of another size than recorded (truncated
        or rewritten), a sample rate other than ``sample_rate``, or a split without songs.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME if path.is_dir() or path.suffix != ".json" else path
    root = manifest_path.parent
    if not manifest_path.is_file():
        raise ConfigError(f"{root}: no shard manifest ({MANIFEST_NAME}); write shards with: "
                          f"training shards DATA_DIR -o {root}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{manifest_path}: unreadable ({first_line(e)})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != SHARDS_FORMAT:
        what = "a corpus manifest" if isinstance(manifest, dict) and "items" in manifest else "another kind of file"
        raise ConfigError(f"{manifest_path}: not a shard manifest ({what}); write shards with: "
                          f"training shards {root} -o {root / 'shards'}")
    if manifest.get("version") != SHARDS_VERSION:
        raise ConfigError(f"{manifest_path}: shard format version {manifest.get('version')!r}, this Encore reads "
                          f"version {SHARDS_VERSION}; rewrite the shards with training shards")
    try:
        rate = int(manifest["sample_rate"])
        shards = tuple(Shard(path=root / entry["path"], split=str(entry["split"]), songs=int(entry["songs"]),
                             frames=int(entry["frames"]), files=tuple(entry["files"]))
                       for entry in manifest["shards"])
        sizes = [int(entry["bytes"]) for entry in manifest["shards"]]
        result = ShardManifest(root=root, sample_rate=rate, source=str(manifest["source"]), shards=shards,
                               skipped=tuple(manifest.get("skipped", ())), split=dict(manifest["split"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{manifest_path}: malformed shard manifest (bad or missing {first_line(e)})") from e
    for shard, size in zip(shards, sizes, strict=True):
        if shard.split not in SPLITS:
            raise ConfigError(f"{manifest_path}: shard {shard.path.name} has split {shard.split!r}, "
                              f"not one of {', '.join(SPLITS)}")
        actual = file_size(shard.path)
        if actual < 0:
            raise ConfigError(f"{root}: shard {shard.path.name} is missing; rewrite the shards with training shards")
        if actual != size:
            raise ConfigError(f"{root}: shard {shard.path.name} holds {actual} bytes, the manifest says {size} "
                              f"(truncated or rewritten); rewrite the shards with training shards")
    if sample_rate is not None and rate != sample_rate:
        raise ConfigError(f"{root}: shards are at {rate} Hz but the model runs at {sample_rate} Hz; write shards "
                          f"at the model's rate with: training shards {result.source} -o OUT_DIR "
                          f"--sample-rate {sample_rate}")
    for split in SPLITS:
        if not result.songs(split):
            raise ConfigError(f"{root}: no {split} songs in the shards")
    return result


def find_shards(data_dir: str | os.PathLike) -> Path | None:
    """The shard manifest that goes with a data folder, or None.

    ``data_dir/shards/manifest.json`` (what ``training corpus`` writes) or, when ``data_dir`` is itself a shards
    folder, ``data_dir/manifest.json``. A corpus's own manifest is not a shard manifest.
    """
    data_dir = Path(data_dir)
    for candidate in (data_dir / "shards" / MANIFEST_NAME, data_dir / MANIFEST_NAME):
        if candidate.is_file() and _is_shard_manifest(candidate):
            return candidate
    return None


def encode_song(pcm: np.ndarray, *, path: str, sample_rate: int) -> bytes:
    """One song as a serialised ``tf.train.Example`` (see the module docstring for its features).

    Parameters
    ----------
    pcm : numpy.ndarray
        [shape=(frames,), dtype=int16] mono.
    path : str
        The song's file, relative to the source folder.
    sample_rate : int
        In Hz.
    """
    import tensorflow as tf

    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    feature = {
        "audio": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pcm.tobytes()])),
        "frames": tf.train.Feature(int64_list=tf.train.Int64List(value=[pcm.shape[0]])),
        "sample_rate": tf.train.Feature(int64_list=tf.train.Int64List(value=[sample_rate])),
        "path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def song_pcm(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode a file to mono 16-bit PCM at ``sample_rate``.

    A mono 16-bit file already at ``sample_rate`` (every corpus FLAC) is read as integers, bit for bit; anything
    else is decoded to float, downmixed, resampled (soxr) and quantised with :data:`PCM_SCALE`.

    Returns
    -------
    numpy.ndarray
        [shape=(frames,), dtype=int16]

    Raises
    ------
    AudioFileError
        Missing, unreadable, corrupt or empty.
    """
    path = Path(path)
    try:
        with soundfile.SoundFile(str(path)) as f:
            exact = f.samplerate == sample_rate and f.channels == 1 and f.subtype == "PCM_16"
            pcm = f.read(dtype="int16") if exact else None
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
        pcm = None  # load_audio below says what is wrong, in the engine's words
    if pcm is None or pcm.size == 0:
        mono = to_model_input(load_audio(path), sample_rate)
        pcm = np.clip(np.round(mono * PCM_SCALE), -32768, 32767).astype(np.int16)
    return pcm


# ------------------------------------------------------------------------------------------- helpers


def _write_shard(tf, out_dir: Path, shard_name: str, split: str, songs: list[Path], source: Path,
                 sample_rate: int, pool: concurrent.futures.Executor, say: Callable[[str], None]) -> dict:
    """Write one shard unless the same one is already there; returns its record (manifest entry + state)."""
    names = [_relative(song, source) for song in songs]
    key = _shard_key(shard_name, names, songs, sample_rate)
    state_path = out_dir / ".state" / f"{shard_name}.json"
    try:
        stored = json.loads(state_path.read_text())
    except (OSError, ValueError):
        stored = None
    if (isinstance(stored, dict) and stored.get("key") == key
            and file_size(out_dir / shard_name) == stored.get("bytes")):
        return {**stored, "reused": True}

    def decode(song: Path, name: str) -> np.ndarray | str:
        try:
            return song_pcm(song, sample_rate)
        except (AudioFileError, AudioContentError) as e:
            # A damaged file in a big corpus costs its song, not the run; the manifest lists it.
            return first_line(e).removeprefix(f"{song}: ").replace(str(song), name)

    partial = out_dir / f".{shard_name}.partial"
    files, skipped, frames = [], [], 0
    with tf.io.TFRecordWriter(str(partial)) as writer:
        for name, result in zip(names, pool.map(decode, songs, names), strict=True):
            if isinstance(result, str):
                skipped.append({"path": name, "split": split, "reason": result})
                say(f"skipped {name}: {result}")
                continue
            writer.write(encode_song(result, path=name, sample_rate=sample_rate))
            files.append(name)
            frames += int(result.shape[0])
    os.replace(partial, out_dir / shard_name)
    record = {"key": key, "path": shard_name, "split": split, "songs": len(files), "frames": frames,
              "hours": round(frames / sample_rate / 3600, 4), "bytes": file_size(out_dir / shard_name),
              "files": files, "skipped": skipped}
    write_atomically(state_path, json.dumps(record, indent=1).encode())
    return {**record, "reused": False}


def _shard_key(shard_name: str, names: list[str], songs: list[Path], sample_rate: int) -> str:
    """What a shard's bytes depend on: the format, the rate, its name and its files as they are on disk."""
    files = []
    for name, song in zip(names, songs, strict=True):
        try:
            stat = song.stat()
            files.append([name, stat.st_size, stat.st_mtime_ns])
        except OSError:
            files.append([name, -1, 0])
    settings = {"format": SHARDS_FORMAT, "version": SHARDS_VERSION, "sample_rate": sample_rate,
                "shard": shard_name, "files": files}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _prune_stale(out_dir: Path, keep: set[str]) -> None:
    """Remove shards (and their state) that this build did not list: an earlier build with other settings."""
    for split in SPLITS:
        for path in sorted(out_dir.glob(f"{split}-*-of-*.tfrecord")):
            if path.name not in keep:
                path.unlink()
        for path in sorted((out_dir / ".state").glob(f"{split}-*-of-*.tfrecord.json")):
            if path.name.removesuffix(".json") not in keep:
                path.unlink()


def _refuse_foreign_manifest(out_dir: Path) -> None:
    manifest = out_dir / MANIFEST_NAME
    if manifest.is_file() and not _is_shard_manifest(manifest):
        raise ConfigError(f"{out_dir}: holds a {MANIFEST_NAME} that is not a shard manifest (a corpus?); "
                          f"write the shards into another folder, e.g. {out_dir / 'shards'}")


def _is_shard_manifest(path: Path) -> bool:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == SHARDS_FORMAT


def _corpus_line(source: Path) -> str | None:
    """The corpus summary when the source folder is a ``training corpus`` build, else None."""
    if not (source / MANIFEST_NAME).is_file():
        return None
    from ..corpus.build import corpus_summary

    try:
        return corpus_summary(source / MANIFEST_NAME)
    except ConfigError:
        return None  # documentation only: a folder with some other manifest.json is still a folder of audio


def _paper_split() -> tuple[int, int]:
    from ..corpus.split import PAPER_SPLIT

    return PAPER_SPLIT


def _relative(path: Path, source: Path) -> str:
    try:
        return path.relative_to(source).as_posix()
    except ValueError:
        return path.as_posix()


