"""An offline, deterministic training corpus of real music, and the shipped demo song.

Two kinds of source, neither downloaded:

* ``music21``: public-domain scores from music21's bundled corpus, each arranged for General MIDI
  instruments at a tempo chosen from a seed of its corpus path, and rendered with FluidSynth and the
  FluidR3 GM soundfont (Debian's ``fluidsynth`` and ``fluid-soundfont-gm``).
* Debian soundtrack packages (``debian`` means all of :data:`DEBIAN_PACKAGES`): the games' music, decoded
  and resampled. Their licences come from each package's ``/usr/share/doc/PKG/copyright``.

Everything lands in ``OUT_DIR/audio/<source>/<name>.flac`` as mono 16-bit FLAC at one sample rate, with
``OUT_DIR/manifest.json`` recording where each file came from, its licence and how it was made. The same
inputs give the same bytes whatever the scheduling of the worker processes. Each finished file leaves a
small record under ``OUT_DIR/.state/``, so a build that is interrupted (or re-run with more sources)
redoes only what is missing or was made with other settings.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fnmatch
import hashlib
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

from engine.audio import Waveform, load_audio, resample, save_audio
from engine.errors import AudioContentError, AudioFileError, ConfigError

from ..common.files import file_size, first_line, write_atomically
from .split import list_audio_files

MANIFEST_VERSION = 1
#: Bump when rendering or transcoding changes: every stored record then stops matching and is redone.
RECIPE_VERSION = 2

#: The music21 corpus path of the demo song's score (Scott Joplin, Maple Leaf Rag, 1899); never in the corpus.
DEMO_SCORE = "joplin/maple_leaf_rag.mxl"
#: Tempo of the demo, quarter notes per minute (Joplin asks for "Tempo di marcia", and "not fast").
DEMO_TEMPO_QPM = 96.0

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SOUNDFONT_COPYRIGHT = Path("/usr/share/doc/fluid-soundfont-gm/copyright")
#: FluidSynth's master gain; renders are float, so this only sets the synth's internal headroom.
FLUIDSYNTH_GAIN = 0.6

#: Debian packages whose music ``"debian"`` stands for, smallest first (0ad-data installs 3 GB).
DEBIAN_PACKAGES: tuple[str, ...] = ("warzone2100-music", "ufoai-music", "planetblupi-music-ogg", "0ad-data")
#: A package file (or a member of a package's zip/pk3 archive, written ``archive!member``) is music when its
#: path has a ``music`` folder: 0ad-data's ``public.zip!audio/music/``, ufoai-music's ``0music.pk3!music/``.
MUSIC_PATH = re.compile(r"(^|[/!])music/")
AUDIO_SUFFIXES = (".ogg", ".opus", ".oga", ".flac", ".wav")
ARCHIVE_SUFFIXES = (".zip", ".pk3")

#: The training recipe takes each song's first 30 s; shorter pieces are repeated (scores) or skipped.
MIN_SECONDS = 30.0
#: Scores are cut here (with a 1 s fade): the corpus wants many pieces more than whole long movements.
MAX_SCORE_SECONDS = 180.0
#: Most plays of a short score (a chorale, a fiddle tune) to reach :data:`MIN_SECONDS`.
MAX_SCORE_PLAYS = 4
#: Correlation at which a soundtrack file counts as a loop repeated over and over (see :func:`_loop_period`).
LOOP_SIMILARITY = 0.98
#: Renders are normalised to this peak; soundtrack files keep their own mastering.
PEAK_DBFS = -1.0
#: Wall-clock budget per score for parsing and arranging; music21 is slow on some big files.
SCORE_TIME_BUDGET_S = 60.0
#: Larger corpus files are skipped unparsed (they are huge scores, slow to parse and cut at 3 min anyway).
MAX_SCORE_FILE_BYTES = 500_000

#: Score formats in order of preference when one work comes in several.
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc")
#: Collections taken first in each round of the selection (the rest follow alphabetically), so a small
#: ``max_scores`` still spans composers and styles.
SCORE_COLLECTIONS = (
    "bach", "mozart", "beethoven", "haydn", "ryansMammoth", "schumann_robert", "schumann_clara", "handel",
    "chopin", "corelli", "cpebach", "monteverdi", "palestrina", "trecento", "josquin", "schubert", "verdi",
    "weber", "liliuokalani", "johnson_j_r", "leadSheet", "beach",
)
#: Test files and exercises, not music.
EXCLUDED_COLLECTIONS = ("demos", "theoryExercises")

#: General MIDI programs (0-based) the arrangements draw from.
GM_NAMES = {
    0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 4: "Electric Piano 1", 6: "Harpsichord",
    11: "Vibraphone", 12: "Marimba", 16: "Drawbar Organ", 19: "Church Organ", 21: "Accordion",
    24: "Acoustic Guitar (nylon)", 32: "Acoustic Bass", 40: "Violin", 41: "Viola", 42: "Cello",
    43: "Contrabass", 46: "Orchestral Harp", 48: "String Ensemble 1", 52: "Choir Aahs", 56: "Trumpet",
    57: "Trombone", 58: "Tuba", 60: "French Horn", 68: "Oboe", 70: "Bassoon", 71: "Clarinet", 73: "Flute",
    74: "Recorder",
}
#: Ensembles as programs from the top part down; parts in between take the nearest voice.
ENSEMBLES: dict[str, tuple[int, ...]] = {
    "string quartet": (40, 40, 41, 42),
    "string orchestra": (48, 48, 48, 43),
    "wind quintet": (73, 68, 71, 60, 70),
    "brass": (56, 56, 60, 57, 58),
    "choir": (52,),
    "church organ": (19,),
    "piano": (0,),
    "harpsichord": (6,),
}
KEYBOARD_PROGRAMS = (0, 0, 1, 4, 6, 19)
LEAD_PROGRAMS = (40, 68, 71, 73, 74, 56, 11, 12, 24, 21, 46, 0)
MIDDLE_PROGRAMS = (41, 60, 71, 52, 24, 48, 0, 46)
BASS_PROGRAMS = (42, 43, 70, 57, 32, 58)
#: Beats per minute drawn for a score without a metronome mark, and the spread applied to one that has it.
CHOSEN_BEAT_BPM = (72.0, 120.0)
SCORE_TEMPO_SPREAD = (0.9, 1.1)
QPM_RANGE = (48.0, 200.0)


# --------------------------------------------------------------------------------------------- public API


def build_corpus(out_dir: str | os.PathLike, *, sources: Sequence[str] = ("music21", "debian"),
                 max_scores: int = 160, sample_rate: int = 22050, workers: int = 2,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Render and transcode the training corpus into ``out_dir``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to fill (created if needed): ``audio/<source>/<name>.flac`` and ``manifest.json``.
    sources : sequence of str
        ``"music21"``, ``"debian"`` (every package in :data:`DEBIAN_PACKAGES`) or single package names.
    max_scores : int
        music21 scores to render. Scores that fail are replaced by the next ones in the selection order.
    sample_rate : int
        Rate of every output file, in Hz.
    workers : int
        Processes that render and transcode; 1 works in this process.
    progress : callable, optional
        Called with one line per finished file and for warnings.

    Returns
    -------
    pathlib.Path
        The manifest, ``out_dir/manifest.json``.

    Raises
    ------
    ConfigError
        Bad settings; FluidSynth, its soundfont or music21 missing for ``music21``; none of the requested
        Debian packages installed (the message names the ``apt-get install`` command). Some packages
        missing is a warning, recorded in the manifest.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    say = progress or (lambda line: None)
    want_music21, packages = _parse_sources(sources)
    if max_scores < 0:
        raise ConfigError(f"max_scores must be 0 or more, got {max_scores}")
    if sample_rate < 8000:
        raise ConfigError(f"sample rate must be at least 8000 Hz, got {sample_rate}")
    if workers < 1:
        raise ConfigError(f"workers must be 1 or more, got {workers}")
    if want_music21 and max_scores:
        _check_renderer()
        music21_version, corpus_root = _music21_corpus()
    installed, missing = _installed_packages(packages)
    for package in missing:
        message = f"{package} is not installed (sudo apt-get install {package}); building without it"
        say(f"warning: {message}")
        if progress is None:
            warnings.warn(message, stacklevel=2)

    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    manifest_sources: dict[str, dict] = {}
    with _executor(workers) as pool:
        if want_music21 and max_scores:
            candidates, excluded = _select_scores(corpus_root)
            records += _render_scores(candidates, max_scores, out_dir, sample_rate, music21_version, corpus_root,
                                      pool, say)
            manifest_sources["music21"] = _music21_source_entry(music21_version, corpus_root, excluded)
        for package, files in installed.items():
            jobs, entry = _package_jobs(package, files, sample_rate)
            manifest_sources[package] = entry
            records += _run_jobs(jobs, out_dir, pool, say)

    items = sorted((r["item"] for r in records if r["status"] == "ok"), key=lambda item: item["path"])
    skipped = sorted((r["skip"] for r in records if r["status"] == "skipped"),
                     key=lambda skip: (skip["source"], skip["origin"]))
    for source, entry in manifest_sources.items():
        entry["items"] = sum(1 for item in items if item["source"] == source)
    _prune_stale(out_dir, manifest_sources, items, say)
    manifest = {
        "version": MANIFEST_VERSION,
        "created_by": "training corpus",
        "sample_rate": sample_rate,
        "format": "mono 16-bit FLAC",
        "recipe": _recipe(),
        "sources": manifest_sources,
        "missing_packages": missing,
        "items": items,
        "skipped": skipped,
        "summary": _summarise(items, list(manifest_sources), len(skipped)),
    }
    manifest_path = out_dir / "manifest.json"
    write_atomically(manifest_path, (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    say(f"{len(items)} files, {manifest['summary']['hours']:.2f} h, {len(skipped)} skipped, "
        f"in {time.monotonic() - started:.0f} s")
    return manifest_path


def corpus_summary(manifest_path: str | os.PathLike) -> str:
    """One line that says what a corpus holds, from its manifest.

    For example ``"music21: 160 pieces 2.1 h; warzone2100-music: 30 tracks 1.3 h"``: the text the model
    export stores in its ONNX metadata.

    Raises
    ------
    ConfigError
        The manifest is missing or is not a corpus manifest.
    """
    manifest_path = Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
        by_source = manifest["summary"]["by_source"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{manifest_path}: not a corpus manifest ({e})") from e
    parts = []
    for source, figures in by_source.items():
        noun = "piece" if source == "music21" else "track"
        noun += "" if figures["items"] == 1 else "s"
        parts.append(f"{source}: {figures['items']} {noun} {figures['hours']:.1f} h")
    return "; ".join(parts) if parts else "empty corpus"


def render_demo_song(path: str | os.PathLike, *, sample_rate: int = 44100, seconds: float = 45.0) -> Path:
    """Render the demo song: the start of :data:`DEMO_SCORE` on FluidSynth's piano, in stereo.

    The song is cut at ``seconds`` in the middle of the music (it is where Encore carries on), with a 5 ms
    ramp against a click and no fade. Its peak is :data:`PEAK_DBFS`. The same call writes the same bytes.

    Parameters
    ----------
    path : str or os.PathLike
        ``.ogg`` (Vorbis), ``.flac`` or ``.wav`` (16-bit). Missing folders are created.
    sample_rate : int
        Output rate, in Hz.
    seconds : float
        Length of the song, in seconds.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    AudioFileError
        Unsupported extension or a destination that cannot be written.
    ConfigError
        Bad settings, or FluidSynth, its soundfont or music21 missing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".ogg", ".flac", ".wav"):
        raise AudioFileError(f"{path}: cannot write '{path.suffix}'; use .ogg, .flac or .wav")
    if not 1.0 <= seconds <= 600.0:
        raise ConfigError(f"demo song length must be 1 to 600 s, got {seconds}")
    if sample_rate < 8000:
        raise ConfigError(f"sample rate must be at least 8000 Hz, got {sample_rate}")
    _check_renderer()
    _, corpus_root = _music21_corpus()

    with tempfile.TemporaryDirectory(prefix="encore-demo-") as tmp:
        midi_path = Path(tmp) / "demo.mid"
        score = _parse_score(corpus_root / DEMO_SCORE)
        score = _expand_repeats(score)[0]
        # Only the start is heard: writing and rendering the whole rag would take three times as long.
        _drop_measures_after(score, (seconds + 5.0) * DEMO_TEMPO_QPM / 60.0)
        _set_tempo(score, DEMO_TEMPO_QPM)
        _set_programs(score, [0] * len(score.parts))
        _write_midi(score, midi_path)
        stereo = _fluidsynth([midi_path], sample_rate, Path(tmp) / "demo.wav", max_seconds=seconds + 60.0)

    start, end = _audible_span(stereo.mean(axis=1), sample_rate)
    length = round(seconds * sample_rate)
    if end - start < length:
        raise ConfigError(f"the demo score lasts only {(end - start) / sample_rate:.0f} s, "
                          f"shorter than the {seconds} s asked for")
    song = stereo[start:start + length]
    ramp = max(1, round(0.005 * sample_rate))
    song[-ramp:] *= np.linspace(1.0, 0.0, ramp, dtype=np.float32)[:, None]
    song *= 10 ** (PEAK_DBFS / 20) / max(float(np.max(np.abs(song))), 1e-9)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AudioFileError(f"{path}: cannot create its folder ({first_line(e)})") from e
    if suffix != ".ogg":
        return save_audio(path, Waveform(song, sample_rate))
    return _write_ogg_vorbis(path, song, sample_rate)


# ------------------------------------------------------------------------------------------ job types


@dataclass(frozen=True)
class _ScoreJob:
    """Render one music21 score (the worker decides the arrangement and how many plays it needs)."""

    corpus_path: str  # relative to the music21 corpus folder, e.g. "bach/bwv1.6.mxl"
    corpus_root: str
    sample_rate: int
    music21_version: str

    @property
    def source(self) -> str:
        return "music21"

    @property
    def name(self) -> str:
        return _safe_name(str(Path(self.corpus_path).with_suffix("")).replace("/", "-"))

    @property
    def origin(self) -> str:
        return self.corpus_path

    def key(self) -> str:
        return _settings_key(self, soundfont_bytes=file_size(SOUNDFONT))


@dataclass(frozen=True)
class _TrackJob:
    """Transcode one soundtrack file (or archive member, ``archive!member``) of a Debian package."""

    package: str
    origin: str
    name: str
    licence: str
    licence_file: str | None
    sample_rate: int

    @property
    def source(self) -> str:
        return self.package

    def key(self) -> str:
        return _settings_key(self, origin_fingerprint=_origin_fingerprint(self.origin))


_Job = _ScoreJob | _TrackJob


# ------------------------------------------------------------------------------------- running jobs


class _InlineExecutor(concurrent.futures.Executor):
    """Runs each job at once in this process (``workers=1``), keeping the pool's interface."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the caller through the future, as a pool would
            future.set_exception(e)
        return future


def _executor(workers: int) -> concurrent.futures.Executor:
    if workers == 1:
        return _InlineExecutor()
    # spawn, not fork: the caller may hold threads (TensorFlow, a GUI) that a fork would copy half-locked.
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _run_jobs(jobs: Sequence[_Job], out_dir: Path, pool: concurrent.futures.Executor,
              say: Callable[[str], None]) -> list[dict]:
    """Run jobs not already done with the same settings; records come back in ``jobs`` order."""
    records: list[dict | None] = [None] * len(jobs)
    futures = {}
    for index, job in enumerate(jobs):
        record = _stored_record(out_dir, job)
        if record is not None:
            records[index] = record
        else:
            futures[pool.submit(_run_job, job, str(out_dir))] = index
    reused = len(jobs) - len(futures)
    if jobs:
        say(f"{jobs[0].source}: {len(jobs)} files, {reused} already done")
    for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
        record = future.result()
        records[futures[future]] = record
        say(f"[{done}/{len(futures)}] {_describe(record)}")
    return [r for r in records if r is not None]


def _run_job(job: _Job, out_dir: str) -> dict:
    """Worker entry: make one file, store its record, return the record."""
    out_dir_path = Path(out_dir)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="encore-corpus-") as tmp:
            if isinstance(job, _ScoreJob):
                samples, details = _render_score_job(job, Path(tmp))
            else:
                samples, details = _transcode_track_job(job, Path(tmp))
    except _Skip as skip:
        record = {"status": "skipped", "skip": {"source": job.source, "origin": job.origin,
                                                "reason": str(skip)}}
    else:
        relative = Path("audio") / job.source / f"{job.name}.flac"
        output = out_dir_path / relative
        output.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a killed build never leaves a truncated file that looks like audio.
        partial = output.with_name(f".{output.name}.partial")
        try:
            soundfile.write(str(partial), np.clip(samples, -1.0, 1.0), job.sample_rate, format="FLAC",
                            subtype="PCM_16")
        except (soundfile.LibsndfileError, OSError, RuntimeError) as e:
            raise AudioFileError(f"{output}: cannot write ({first_line(e)})") from e
        os.replace(partial, output)
        item = {"path": relative.as_posix(), "source": job.source, "origin": job.origin,
                "seconds": round(len(samples) / job.sample_rate, 3), **details}
        record = {"status": "ok", "item": item}
    record["seconds_taken"] = round(time.monotonic() - started, 2)
    state = _state_path(out_dir_path, job)
    state.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(state, json.dumps({"key": job.key(), **record}, indent=1).encode())
    return record


def _stored_record(out_dir: Path, job: _Job) -> dict | None:
    """The record of an earlier run of the same job with the same settings, if its file is still there."""
    try:
        stored = json.loads(_state_path(out_dir, job).read_text())
    except (OSError, ValueError):
        return None
    if stored.get("key") != job.key():
        return None
    if stored.get("status") == "ok" and not (out_dir / stored["item"]["path"]).is_file():
        return None
    stored.pop("key")
    return stored


def _state_path(out_dir: Path, job: _Job) -> Path:
    return out_dir / ".state" / job.source / f"{job.name}.json"


def _settings_key(job: _Job, **extra) -> str:
    settings = {"recipe": RECIPE_VERSION, "job": type(job).__name__, **asdict(job), **extra}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def _describe(record: dict) -> str:
    if record["status"] == "ok":
        item = record["item"]
        return f"{item['path']}: {item['seconds']:.0f} s ({record['seconds_taken']:.0f} s)"
    skip = record["skip"]
    return f"skipped {skip['source']} {skip['origin']}: {skip['reason']}"


class _Skip(Exception):
    """This piece cannot join the corpus (unparsable, silent, too short); the build goes on."""


class _OverBudget(BaseException):
    # BaseException, so the parser's own broad ``except Exception`` cannot swallow the deadline.
    pass


@contextlib.contextmanager
def _time_budget(seconds: float):
    """Interrupt the block after ``seconds`` of wall-clock time (main thread on Unix; else no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise _OverBudget

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------------------- music21


def _check_renderer() -> None:
    if shutil.which("fluidsynth") is None:
        raise ConfigError("fluidsynth is not installed: sudo apt-get install fluidsynth fluid-soundfont-gm")
    if not SOUNDFONT.is_file():
        raise ConfigError(f"{SOUNDFONT} is missing: sudo apt-get install fluid-soundfont-gm")


def _music21_corpus() -> tuple[str, Path]:
    try:
        import music21
    except ImportError as e:
        raise ConfigError("music21 is not installed: pip install 'encore[train]'") from e
    root = Path(music21.__file__).parent / "corpus"
    if not (root / DEMO_SCORE).is_file():
        raise ConfigError(f"music21 {music21.__version__} has no bundled corpus at {root}")
    return music21.__version__, root


def _select_scores(corpus_root: Path) -> tuple[list[str], list[dict]]:
    """Every usable corpus score, in the order the build takes them, and what was left out and why.

    One file per work (the preferred format), no multi-tune collections, no files over
    :data:`MAX_SCORE_FILE_BYTES`, never :data:`DEMO_SCORE`. Collections take turns, one score each per
    round (:data:`SCORE_COLLECTIONS` first); within a collection any prefix of the order is spread evenly
    over its sorted files, so a build with a larger ``max_scores`` only adds scores.
    """
    works: dict[tuple[str, str], Path] = {}
    for path in sorted(corpus_root.rglob("*")):
        if path.suffix.lower() not in SCORE_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(corpus_root)
        work = (str(relative.parent), relative.stem)
        best = works.get(work)
        if best is None or SCORE_SUFFIXES.index(path.suffix.lower()) < SCORE_SUFFIXES.index(best.suffix.lower()):
            works[work] = path

    excluded: list[dict] = []
    collections: dict[str, list[str]] = {}
    for path in sorted(works.values()):
        relative = path.relative_to(corpus_root).as_posix()
        collection = relative.split("/")[0]
        reason = None
        if relative == DEMO_SCORE:
            reason = "the demo song's score"
        elif collection in EXCLUDED_COLLECTIONS:
            reason = "test file, not music"
        elif path.stat().st_size > MAX_SCORE_FILE_BYTES:
            reason = f"file over {MAX_SCORE_FILE_BYTES // 1000} kB"
        elif path.suffix.lower() == ".abc" and _abc_tune_count(path) > 1:
            reason = f"collection of {_abc_tune_count(path)} tunes"
        if reason:
            excluded.append({"origin": relative, "reason": reason})
        else:
            collections.setdefault(collection, []).append(relative)

    order = [c for c in SCORE_COLLECTIONS if c in collections]
    order += sorted(c for c in collections if c not in SCORE_COLLECTIONS)
    if not order:
        return [], excluded
    spread = {c: _spread(collections[c]) for c in order}
    selection = []
    for turn in range(max(len(files) for files in spread.values())):
        selection += [spread[c][turn] for c in order if turn < len(spread[c])]
    return selection, excluded


def _spread(items: list[str]) -> list[str]:
    """Reorder so that every prefix samples the whole list evenly: positions 0, 1/2, 1/4, 3/4, 1/8, ..."""
    n, order, taken, i = len(items), [], set(), 0
    while len(order) < n:
        # Van der Corput sequence in base 2: the bits of i, mirrored after the binary point.
        position, bit, k = 0.0, 0.5, i
        while k:
            position += bit * (k & 1)
            k >>= 1
            bit /= 2
        index = int(position * n)
        if index not in taken:
            taken.add(index)
            order.append(items[index])
        i += 1
    return order


def _abc_tune_count(path: Path) -> int:
    return sum(1 for line in path.read_text(errors="replace").splitlines() if line.startswith("X:"))


def _render_scores(candidates: list[str], max_scores: int, out_dir: Path, sample_rate: int,
                   music21_version: str, corpus_root: Path, pool: concurrent.futures.Executor,
                   say: Callable[[str], None]) -> list[dict]:
    """Render ``max_scores`` scores, taking further candidates in order for any that are skipped."""
    records: list[dict] = []
    taken = 0
    while taken < len(candidates):
        missing = max_scores - sum(1 for r in records if r["status"] == "ok")
        if missing <= 0:
            break
        batch = candidates[taken:taken + missing]
        taken += len(batch)
        jobs = [_ScoreJob(path, str(corpus_root), sample_rate, music21_version) for path in batch]
        records += _run_jobs(jobs, out_dir, pool, say)
    return records


def _render_score_job(job: _ScoreJob, tmp: Path) -> tuple[np.ndarray, dict]:
    """Arrange, render and tidy one score.

    Returns
    -------
    samples : numpy.ndarray
        [shape=(frames,), dtype=float32] at ``job.sample_rate``, peak at :data:`PEAK_DBFS`.
    details : dict
        Manifest fields: licence, instruments, tempo, repeats and cuts.
    """
    rng = random.Random(hashlib.sha256(job.corpus_path.encode()).hexdigest())
    midi_path = tmp / "score.mid"
    try:
        with _time_budget(SCORE_TIME_BUDGET_S):
            score = _parse_score(Path(job.corpus_root) / job.corpus_path)
            score, expanded = _expand_repeats(score)
            arrangement = _arrange(score, rng)
            # Past the cap nothing is kept, so nothing past it is written or rendered.
            _drop_measures_after(score, (MAX_SCORE_SECONDS + 5.0) * arrangement["tempo_qpm"] / 60.0)
            _write_midi(score, midi_path)
    except _OverBudget:
        raise _Skip(f"parsing took over {SCORE_TIME_BUDGET_S:.0f} s") from None
    except _Skip:
        raise
    except Exception as e:  # music21's parsers raise all sorts on odd files; one bad score is not fatal
        raise _Skip(f"music21 cannot parse or write it ({type(e).__name__}: {first_line(e)})") from None

    rate = job.sample_rate
    max_render = MAX_SCORE_SECONDS + 60.0
    mono = _fluidsynth([midi_path], rate, tmp / "render.wav", max_render).mean(axis=1)
    start, end = _audible_span(mono, rate)
    plays = 1
    if end - start < MIN_SECONDS * rate:
        if end <= start:
            raise _Skip("renders silent")
        plays = math.ceil((MIN_SECONDS + 1.0) * rate / (end - start))
        if plays > MAX_SCORE_PLAYS:
            raise _Skip(f"lasts {(end - start) / rate:.1f} s, too short even played {MAX_SCORE_PLAYS} times")
        # FluidSynth plays the files as a playlist, one straight after the other: a da capo.
        mono = _fluidsynth([midi_path] * plays, rate, tmp / "render.wav", max_render).mean(axis=1)
        start, end = _audible_span(mono, rate)
        if end - start < MIN_SECONDS * rate:
            raise _Skip(f"lasts {(end - start) / rate:.1f} s even played {plays} times")
    mono = mono[start:end]
    cut_at = None
    if len(mono) > MAX_SCORE_SECONDS * rate:
        cut_at = MAX_SCORE_SECONDS
        mono = mono[: round(MAX_SCORE_SECONDS * rate)]
        fade = round(1.0 * rate)
        mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    gain = 10 ** (PEAK_DBFS / 20) / float(np.max(np.abs(mono)))
    details = {
        "licence": "public-domain",
        "collection": job.corpus_path.split("/")[0],
        **_score_credits(score),
        **arrangement,
        "repeats_expanded": expanded,
        "plays": plays,
        "cut_at_s": cut_at,
        "gain_db": round(20 * math.log10(gain), 2),
        "renderer": f"fluidsynth -g {FLUIDSYNTH_GAIN}, {SOUNDFONT.name}",
    }
    return (mono * gain).astype(np.float32), details


def _parse_score(path: Path):
    """Parse a corpus file into one ``Score`` (never reading or writing music21's pickle cache)."""
    from music21 import converter, stream

    parsed = converter.parse(str(path), forceSource=True)
    if isinstance(parsed, stream.Opus):
        if len(parsed.scores) != 1:
            raise _Skip(f"holds {len(parsed.scores)} pieces")
        parsed = parsed.scores[0]
    if isinstance(parsed, stream.Part):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    if not parsed.parts or not parsed.recurse().notes:
        raise _Skip("holds no notes")
    return parsed


def _expand_repeats(score) -> tuple[object, bool]:
    """Write out repeat signs (a fiddle tune is twice as long with them).

    When music21 rejects the marks (inconsistent ones are common in old encodings) they are dropped and
    the score plays straight through; the MIDI writer would otherwise fail on them too.
    """
    from music21 import bar, repeat, spanner, stream

    try:
        return score.expandRepeats(), True
    except Exception:  # music21's ExpanderException and friends from malformed repeat structures
        pass
    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline("regular")
    for mark in list(score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        mark.activeSite.remove(mark)
    return score, False


def _arrange(score, rng: random.Random) -> dict:
    """Give every part a General MIDI instrument and the score one tempo; return the choices.

    Keyboard music stays on one keyboard; other music gets an ensemble, or a random mix, from
    :data:`ENSEMBLES`, mapped onto the parts from the top down.
    """
    from music21 import instrument

    parts = list(score.parts)
    part_names = [_part_name(p, i) for i, p in enumerate(parts)]
    originals = [p.getInstrument(returnDefault=False) for p in parts]
    if any(isinstance(i, instrument.KeyboardInstrument) for i in originals):
        style = "keyboard"
        programs = [rng.choice(KEYBOARD_PROGRAMS)] * len(parts)
    else:
        style = rng.choice([*ENSEMBLES, "mixed", "mixed"])
        if style == "mixed":
            programs = [rng.choice(LEAD_PROGRAMS)]
            programs += [rng.choice(MIDDLE_PROGRAMS) for _ in parts[1:-1]]
            if len(parts) > 1:
                programs.append(rng.choice(BASS_PROGRAMS))
        else:
            voices = ENSEMBLES[style]
            programs = [voices[round(i * (len(voices) - 1) / max(len(parts) - 1, 1))] if len(parts) > 1
                        else voices[0] for i in range(len(parts))]
    _set_programs(score, programs)

    qpm, tempo_from = _score_qpm(score)
    if qpm is None:
        beat = _beat_quarters(score)
        qpm, tempo_from = rng.uniform(*CHOSEN_BEAT_BPM) * beat, "chosen"
    else:
        qpm *= rng.uniform(*SCORE_TEMPO_SPREAD)
    qpm = round(min(max(qpm, QPM_RANGE[0]), QPM_RANGE[1]), 1)
    _set_tempo(score, qpm)
    return {
        "arrangement": style,
        "instruments": [{"part": name, "program": program, "name": GM_NAMES[program]}
                        for name, program in zip(part_names, programs, strict=True)],
        "tempo_qpm": qpm,
        "tempo_from": tempo_from,
    }


def _write_midi(score, path: Path) -> None:
    """Write a score as MIDI with one channel per part and every channel silenced at the end.

    music21 gives parts that share a program one channel; two violins in unison then overlap on one
    key, and FluidSynth can leave that note sounding for ever (its player renders until every voice has
    died away, so the render never ends). Own channels avoid the overlap; the closing All Notes Off
    catches anything else.
    """
    from music21 import midi
    from music21.midi import translate

    midi_file = translate.music21ObjectToMidiFile(score)
    pitched_channels = [c for c in range(1, 17) if c != 10]  # 10 is General MIDI percussion
    pitched_tracks = 0
    for track in midi_file.tracks:
        voice_events = [e for e in track.events if isinstance(e, midi.MidiEvent) and e.channel
                        and e.type in midi.ChannelVoiceMessages]
        if not any(e.type == midi.ChannelVoiceMessages.NOTE_ON for e in voice_events):
            continue
        if all(e.channel != 10 for e in voice_events):
            channel = pitched_channels[pitched_tracks % len(pitched_channels)]
            pitched_tracks += 1
            for event in voice_events:
                event.channel = channel
        channels = sorted({e.channel for e in voice_events})
        end = next((i for i in range(len(track.events) - 1, -1, -1)
                    if getattr(track.events[i], "type", None) == midi.MetaEvents.END_OF_TRACK), None)
        if end is None:
            continue
        closing = []
        for channel in channels:
            all_notes_off = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=channel)
            all_notes_off.parameter1, all_notes_off.parameter2 = 123, 0
            closing += [all_notes_off, midi.DeltaTime(track, time=0, channel=channel)]
        track.events[end:end] = closing
    midi_file.open(str(path), "wb")
    try:
        midi_file.write()
    finally:
        midi_file.close()


def _drop_measures_after(score, quarters: float) -> None:
    """Remove every measure that starts ``quarters`` quarter notes or more into the score."""
    from music21 import stream

    for part in score.parts:
        for measure in list(part.getElementsByClass(stream.Measure)):
            if measure.offset >= quarters:
                part.remove(measure)


def _set_programs(score, programs: Sequence[int]) -> None:
    """Replace each part's instruments by one General MIDI program (percussion parts are left alone)."""
    from music21 import instrument

    for part, program in zip(score.parts, programs, strict=True):
        current = list(part.recurse().getElementsByClass(instrument.Instrument))
        if any(isinstance(i, instrument.UnpitchedPercussion) for i in current):
            continue
        for old in current:
            old.activeSite.remove(old)
        new = instrument.Instrument()
        new.midiProgram = program
        new.instrumentName = GM_NAMES.get(program, f"program {program}")
        part.insert(0, new)


def _score_qpm(score) -> tuple[float | None, str]:
    """The first metronome mark's tempo in quarter notes per minute, if the score gives a number."""
    from music21 import tempo

    for mark in score.recurse().getElementsByClass(tempo.MetronomeMark):
        qpm = mark.getQuarterBPM()
        if qpm and qpm > 0:
            return float(qpm), "score"
    return None, "chosen"


def _beat_quarters(score) -> float:
    """Length of the first time signature's beat in quarter notes (1 for 4/4, 1.5 for 6/8, 2 for 2/2)."""
    from music21 import meter

    signatures = list(score.recurse().getElementsByClass(meter.TimeSignature))
    return float(signatures[0].beatDuration.quarterLength) if signatures else 1.0


def _set_tempo(score, qpm: float) -> None:
    """One tempo for the whole score: its own marks go, as the arrangement already chose from them."""
    from music21 import tempo

    for mark in list(score.recurse().getElementsByClass(tempo.TempoIndication)):
        mark.activeSite.remove(mark)
    score.insert(0, tempo.MetronomeMark(number=qpm))


def _part_name(part, index: int) -> str:
    # An unnamed part has a numeric id (its memory address): not worth recording.
    return str(part.partName or (part.id if isinstance(part.id, str) else None) or f"part {index + 1}")


def _score_credits(score) -> dict:
    metadata = score.metadata
    credits = {}
    if metadata is not None:
        for field in ("composer", "title", "movementName", "copyright"):
            value = getattr(metadata, field, None)
            if value and not str(value).endswith((".mxl", ".xml", ".krn", ".abc")):
                credits["encoding_copyright" if field == "copyright" else field] = str(value)
    return credits


def _fluidsynth(midi_paths: Sequence[Path], sample_rate: int, wav_path: Path, max_seconds: float) -> np.ndarray:
    """Render MIDI files back to back with FluidSynth, headless and faster than real time.

    Parameters
    ----------
    midi_paths : sequence of pathlib.Path
        Played one straight after the other.
    sample_rate : int
        In Hz.
    wav_path : pathlib.Path
        Scratch file for the render.
    max_seconds : float
        A render that runs longer is stopped and the piece skipped.

    Returns
    -------
    numpy.ndarray
        [shape=(frames, 2), dtype=float32] at ``sample_rate``.
    """
    command = ["fluidsynth", "-n", "-i", "-q", "-g", str(FLUIDSYNTH_GAIN), "-r", str(sample_rate),
               "-O", "float", "-T", "wav", "-F", str(wav_path), str(SOUNDFONT), *map(str, midi_paths)]
    # A voice that never dies away keeps FluidSynth rendering for ever: stop it at a sane length.
    max_bytes = int(max_seconds * sample_rate * 2 * 4)  # stereo float32
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while process.poll() is None:
            if file_size(wav_path) > max_bytes or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise _Skip(f"FluidSynth rendered past {max_seconds:.0f} s (or for 600 s): a note never ends")
            time.sleep(0.1)
        log.seek(0)
        output = log.read().decode(errors="replace")
    if process.returncode != 0 or not wav_path.is_file():
        raise _Skip(f"FluidSynth failed: {first_line(output or 'no output')}")
    return load_audio(wav_path).samples


def _music21_source_entry(version: str, corpus_root: Path, excluded: list[dict]) -> dict:
    corpus_licence = corpus_root / "license.txt"
    notice = corpus_licence.read_text() if corpus_licence.is_file() else ""
    return {
        "licence": "public-domain scores; music21 itself is BSD-3-Clause",
        "copyright": (
            "The compositions rendered here are in the public domain: their composers died long ago and they "
            "were published before 1929 (the newest are Beach, Berlin, J. R. Johnson, Schoenberg and Webern). "
            f"The score encodings come from the corpus bundled with music21 {version}, software by Michael "
            "Scott Asato Cuthbert and contributors under the BSD 3-Clause licence; the corpus's own notice "
            "follows.\n\n" + notice),
        "renderer": (f"FluidSynth with {SOUNDFONT} (FluidR3_GM, MIT licence, see {SOUNDFONT_COPYRIGHT}); "
                     "General MIDI instruments and tempo drawn from a seed of each score's corpus path"),
        "excluded": excluded,
    }


# ------------------------------------------------------------------------------------------ Debian


def _parse_sources(sources: Sequence[str]) -> tuple[bool, list[str]]:
    """Split ``sources`` into music21 (yes/no) and Debian package names, in :data:`DEBIAN_PACKAGES` order."""
    if isinstance(sources, str):
        sources = sources.split(",")
    want_music21, packages = False, []
    for source in (s.strip() for s in sources):
        if source == "music21":
            want_music21 = True
        elif source == "debian":
            packages += DEBIAN_PACKAGES
        elif source in DEBIAN_PACKAGES:
            packages.append(source)
        else:
            raise ConfigError(f"unknown corpus source '{source}': use music21, debian or one of "
                              f"{', '.join(DEBIAN_PACKAGES)}")
    packages = sorted(set(packages), key=lambda p: DEBIAN_PACKAGES.index(p) if p in DEBIAN_PACKAGES else -1)
    if not want_music21 and not packages:
        raise ConfigError("no corpus sources given: use music21, debian or both")
    return want_music21, packages


def _installed_packages(packages: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Each installed package's files (``dpkg -L``), and the packages that are missing.

    Raises
    ------
    ConfigError
        Packages were asked for and none is installed.
    """
    installed, missing = {}, []
    for package in packages:
        files = _dpkg_files(package)
        if files and any(_music_files(files)):
            installed[package] = files
        else:
            missing.append(package)
    if packages and not installed:
        raise ConfigError(f"none of the Debian soundtrack packages is installed ({', '.join(missing)}): "
                          f"sudo apt-get install {' '.join(missing)}")
    return installed, missing


def _dpkg_files(package: str) -> list[str]:
    try:
        result = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted(line for line in result.stdout.splitlines() if line.startswith("/")) if result.returncode == 0 else []


def _music_files(package_files: Iterable[str]) -> Iterable[str]:
    """Music in a package: audio files under a ``music`` folder, and such members of its zip archives."""
    for path in package_files:
        suffix = Path(path).suffix.lower()
        if suffix in AUDIO_SUFFIXES and MUSIC_PATH.search(path) and os.path.isfile(path):
            yield path
        elif suffix in ARCHIVE_SUFFIXES and os.path.isfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    members = sorted(archive.namelist())
            except (OSError, zipfile.BadZipFile):
                continue
            for member in members:
                logical = f"{path}!{member}"
                if Path(member).suffix.lower() in AUDIO_SUFFIXES and MUSIC_PATH.search(logical):
                    yield logical


def _package_jobs(package: str, files: list[str], sample_rate: int) -> tuple[list[_TrackJob], dict]:
    """One job per music file of an installed package, and the package's manifest entry."""
    copyright_path = Path("/usr/share/doc") / package / "copyright"
    copyright_text = copyright_path.read_text(errors="replace") if copyright_path.is_file() else ""
    stanzas = _dep5_stanzas(copyright_text)
    music = list(_music_files(files))
    names = _unique_names(music)
    licence_files = {}
    jobs = []
    for origin in music:
        # Soundtrack folders may carry their own licence text next to the tracks (warzone2100's albums do).
        folder = os.path.dirname(origin) if "!" not in origin else None
        licence_file = next((f for f in files if folder and os.path.dirname(f) == folder
                             and Path(f).name.lower().startswith(("license", "licence", "copying"))), None)
        if licence_file and licence_file not in licence_files:
            licence_files[licence_file] = Path(licence_file).read_text(errors="replace")
        jobs.append(_TrackJob(package, origin, names[origin], _dep5_licence(stanzas, origin), licence_file,
                              sample_rate))
    licences = sorted({job.licence for job in jobs})
    entry = {
        "licence": ", ".join(licences),
        "copyright": copyright_text or f"({copyright_path} not found)",
        "copyright_file": str(copyright_path),
        "version": _package_version(package),
    }
    if licence_files:
        entry["licence_files"] = licence_files
    return jobs, entry


def _unique_names(origins: list[str]) -> dict[str, str]:
    """Output names: the file's stem, with as many parent folders as it takes to tell files apart."""
    split = {o: [p for p in re.split(r"[/!]", o) if p] for o in origins}
    depth = 1
    while True:
        names = {o: "-".join(parts[-depth:]) for o, parts in split.items()}
        names = {o: _safe_name(str(Path(n).with_suffix(""))) for o, n in names.items()}
        if len(set(names.values())) == len(names) or depth > 8:
            return names
        depth += 1


def _dep5_stanzas(text: str) -> list[tuple[list[str], str]]:
    """``(patterns, short licence)`` of each ``Files:`` stanza of a machine-readable copyright file."""
    stanzas = []
    for block in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        current = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
            elif ":" in line:
                current, _, value = line.partition(":")
                fields[current] = value.strip()
        if "Files" in fields and "License" in fields:
            stanzas.append((fields["Files"].split(), fields["License"].splitlines()[0].strip()))
    return stanzas


def _dep5_licence(stanzas: list[tuple[list[str], str]], origin: str) -> str:
    """The licence of the last stanza matching ``origin`` (the DEP-5 rule), or ``"see copyright"``.

    Installed paths rarely equal the source-tree paths the copyright file names (ufoai-music's
    ``base/music/X.ogg`` is installed inside ``0music.pk3`` as ``music/X.ogg``), so a pattern is compared
    with as many trailing path components of the origin as it has, at most two.
    """
    parts = [p for p in re.split(r"[/!]", origin) if p]
    licence = "see copyright"
    for patterns, stanza_licence in stanzas:
        for pattern in patterns:
            pattern_parts = pattern.split("/")[-2:]
            if fnmatch.fnmatchcase("/".join(parts[-len(pattern_parts):]), "/".join(pattern_parts)):
                licence = stanza_licence
                break
    return licence


def _package_version(package: str) -> str:
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                                timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def _origin_fingerprint(origin: str) -> str:
    """Size and checksum of the source file or archive member, so an upgraded package is redone."""
    archive, _, member = origin.partition("!")
    if member:
        try:
            with zipfile.ZipFile(archive) as zf:
                info = zf.getinfo(member)
            return f"{info.file_size}:{info.CRC}"
        except (OSError, KeyError, zipfile.BadZipFile):
            return "missing"
    return str(file_size(Path(origin)))


def _transcode_track_job(job: _TrackJob, tmp: Path) -> tuple[np.ndarray, dict]:
    """Decode, downmix, resample and trim one soundtrack file.

    Returns
    -------
    samples : numpy.ndarray
        [shape=(frames,), dtype=float32] at ``job.sample_rate``, levels as mastered.
    details : dict
        Manifest fields: licence and the original's format.
    """
    archive, _, member = job.origin.partition("!")
    if member:
        source = tmp / f"track{Path(member).suffix}"
        try:
            with zipfile.ZipFile(archive) as zf, zf.open(member) as packed, open(source, "wb") as unpacked:
                shutil.copyfileobj(packed, unpacked)
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise _Skip(f"cannot unpack ({first_line(e)})") from None
    else:
        source = Path(archive)
    try:
        waveform = load_audio(source)
    except (AudioFileError, AudioContentError) as e:
        raise _Skip(first_line(e).replace(str(source), "file")) from None
    mono = resample(waveform.mono(), waveform.sample_rate, job.sample_rate)
    start, end = _audible_span(mono, job.sample_rate, threshold_db=-60.0)
    if end - start < MIN_SECONDS * job.sample_rate:
        raise _Skip(f"lasts {max(end - start, 0) / job.sample_rate:.1f} s, under {MIN_SECONDS:.0f} s")
    mono = mono[start:end]
    details = {"licence": job.licence, "original_sample_rate": waveform.sample_rate,
               "original_channels": waveform.channels, "original_seconds": round(waveform.seconds, 3)}
    loop = _loop_period(mono, job.sample_rate)
    if loop is not None:
        # A game track stored as its loop played over and over (planetblupi's run to 30 min): keep one pass.
        period, similarity = loop
        mono = mono[: round(period * job.sample_rate)].copy()
        fade = round(1.0 * job.sample_rate)
        mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        details.update(loop_period_s=period, loop_similarity=round(similarity, 4))
    if job.licence_file:
        details["licence_file"] = job.licence_file
    return np.clip(mono, -1.0, 1.0), details


def _loop_period(mono: np.ndarray, sample_rate: int, *,
                 threshold: float = LOOP_SIMILARITY) -> tuple[float, float] | None:
    """Period of a track that repeats itself exactly, or None.

    Compares 30 s of log band energies (24 bands, 10 frames/s), taken 5 s in, with every later stretch
    at least :data:`MIN_SECONDS` on; the first lag whose correlation reaches ``threshold`` is the period.
    Played music repeats a section at 0.9 or so; a digital loop at 0.99.

    Parameters
    ----------
    mono : numpy.ndarray
        [shape=(frames,), dtype=float32]
    sample_rate : int
        In Hz.

    Returns
    -------
    tuple of float or None
        ``(period_s, correlation)``.
    """
    rate = 10
    hop = sample_rate // rate
    frames = len(mono) // hop
    start, width, min_lag = 5 * rate, 30 * rate, round(MIN_SECONDS * rate)
    if frames < start + min_lag + width:
        return None
    windowed = mono[: frames * hop].reshape(frames, hop) * np.hanning(hop).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(windowed, axis=1))
    edges = np.searchsorted(np.fft.rfftfreq(hop, 1 / sample_rate),
                            np.geomspace(60.0, min(8000.0, sample_rate / 2), 25))
    bands = np.stack([spectrum[:, lo:max(hi, lo + 1)].sum(axis=1)
                      for lo, hi in zip(edges[:-1], edges[1:], strict=True)], axis=1)
    features = np.log(bands + 1e-3).astype(np.float64)
    template = features[start:start + width]
    template = (template - template.mean()) / (template.std() + 1e-12)
    later = features[start + min_lag:]
    size = template.size
    # Pearson correlation of the template with every window of ``later``; the template's zero mean
    # removes the window mean from the numerator, so only the window's spread is needed.
    numerator = sum(np.correlate(later[:, b], template[:, b], mode="valid") for b in range(later.shape[1]))
    box = np.ones(width)
    mean = np.convolve(later.sum(axis=1), box, mode="valid") / size
    mean_sq = np.convolve((later ** 2).sum(axis=1), box, mode="valid") / size
    correlation = numerator / size / np.sqrt(np.maximum(mean_sq - mean ** 2, 1e-12))
    hits = np.flatnonzero(correlation >= threshold)
    if not hits.size:
        return None
    lag = int(hits[0])
    while lag + 1 < len(correlation) and correlation[lag + 1] > correlation[lag]:
        lag += 1
    return (min_lag + lag) / rate, float(correlation[lag])


# ------------------------------------------------------------------------------------------- helpers


def _audible_span(mono: np.ndarray, sample_rate: int, threshold_db: float = -50.0) -> tuple[int, int]:
    """First and one-past-last frame louder than ``threshold_db`` below the peak, padded by 50 ms.

    Parameters
    ----------
    mono : numpy.ndarray
        [shape=(frames,)]

    Returns
    -------
    tuple of int
        ``(start, end)``; ``start >= end`` when everything is silent.
    """
    magnitude = np.abs(mono)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if peak < 1e-5:
        return 0, 0
    loud = np.flatnonzero(magnitude > peak * 10 ** (threshold_db / 20))
    pad = round(0.05 * sample_rate)
    return max(int(loud[0]) - pad, 0), min(int(loud[-1]) + 1 + pad, len(mono))


def _summarise(items: list[dict], sources: list[str], skipped: int) -> dict:
    by_source = {}
    for source in sources:
        seconds = [item["seconds"] for item in items if item["source"] == source]
        by_source[source] = {"items": len(seconds), "hours": round(sum(seconds) / 3600, 3)}
    return {"items": len(items), "hours": round(sum(i["seconds"] for i in items) / 3600, 3),
            "skipped": skipped, "by_source": by_source}


def _recipe() -> dict:
    return {"recipe_version": RECIPE_VERSION, "min_seconds": MIN_SECONDS, "max_score_seconds": MAX_SCORE_SECONDS,
            "max_score_plays": MAX_SCORE_PLAYS, "score_peak_dbfs": PEAK_DBFS,
            "soundfont": str(SOUNDFONT), "fluidsynth_gain": FLUIDSYNTH_GAIN,
            "silence_trim": "leading and trailing audio 50 dB (scores) or 60 dB (tracks) under the peak",
            "loops": f"soundtrack files that repeat with correlation >= {LOOP_SIMILARITY} keep one period"}


def _prune_stale(out_dir: Path, sources: dict[str, dict], items: list[dict], say: Callable[[str], None]) -> None:
    """Delete FLAC files of this build's sources that it no longer lists (an earlier, larger selection)."""
    listed = {item["path"] for item in items}
    for source in sources:
        folder = out_dir / "audio" / source
        for path in sorted(folder.glob("*.flac")) if folder.is_dir() else []:
            if path.relative_to(out_dir).as_posix() not in listed:
                say(f"removing {path.relative_to(out_dir)}: not in this build")
                path.unlink()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "untitled"


# ---------------------------------------------------------------------------------------- Ogg Vorbis


#: Ogg stream serial number of the demo song; libsndfile draws a random one, which would change the bytes.
OGG_SERIAL = 0x656E636F  # "enco"


def _write_ogg_vorbis(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write Ogg Vorbis with a fixed stream serial number, so the same audio gives the same bytes."""
    with tempfile.TemporaryDirectory(prefix="encore-ogg-") as tmp:
        raw = Path(tmp) / "song.ogg"
        try:
            soundfile.write(str(raw), np.clip(samples, -1.0, 1.0), sample_rate, format="OGG", subtype="VORBIS")
        except (soundfile.LibsndfileError, OSError, RuntimeError) as e:
            raise AudioFileError(f"{path}: cannot encode Ogg Vorbis ({first_line(e)})") from e
        data = _with_ogg_serial(raw.read_bytes(), OGG_SERIAL)
    try:
        write_atomically(path, data)
    except OSError as e:
        raise AudioFileError(f"{path}: cannot write ({first_line(e)})") from e
    return path


def _with_ogg_serial(data: bytes, serial: int) -> bytes:
    """Set every page's stream serial number and recompute the page checksums (single-stream files)."""
    pages = bytearray(data)
    offset = 0
    while offset < len(pages):
        if pages[offset:offset + 4] != b"OggS":
            raise AudioFileError("libsndfile wrote a malformed Ogg stream")
        segments = pages[offset + 26]
        length = 27 + segments + sum(pages[offset + 27:offset + 27 + segments])
        pages[offset + 14:offset + 18] = serial.to_bytes(4, "little")
        pages[offset + 22:offset + 26] = b"\0\0\0\0"
        pages[offset + 22:offset + 26] = _ogg_crc(bytes(pages[offset:offset + length])).to_bytes(4, "little")
        offset += length
    return bytes(pages)


def _ogg_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
        table.append(crc & 0xFFFFFFFF)
    return table


_OGG_CRC_TABLE = _ogg_crc_table()


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, not reflected, zero start, no final xor."""
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def corpus_summary_of(data_dir: str | Path) -> str:
    """One line that says what a folder of training audio is (from its manifest when it has one)."""
    manifest = Path(data_dir) / "manifest.json"
    if manifest.exists():
        try:
            return corpus_summary(manifest)
        except Exception as e:  # a summary is documentation: never fail a run over it
            return f"{Path(data_dir).name} (manifest unreadable: {e})"
    files = list_audio_files(data_dir)
    return f"{Path(data_dir).name}: {len(files)} audio files, no manifest"
