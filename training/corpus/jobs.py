"""One file of the training corpus, made by one job, and the run that skips what is already made.

A job says what it makes and from what: a music21 score to render (:mod:`training.corpus.scores`) or a
soundtrack file to transcode (:mod:`training.corpus.packages`). :func:`run_jobs` hands the jobs that are not
already done with the same settings to a pool of worker processes (or runs them in this one), writes each
result as FLAC under ``OUT_DIR/audio/`` and leaves a record of it under ``OUT_DIR/.state/``. The steps both
kinds of job share are here too: the skip signal, the time budget, trimming silence and naming the file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import soundfile

from engine.errors import AudioFileError

from ..common.files import first_line, write_atomically

#: Bump when rendering or transcoding changes: every stored record then stops matching and is redone.
RECIPE_VERSION = 2
#: The training recipe takes each song's first 30 s; shorter pieces are repeated (scores) or skipped.
MIN_SECONDS = 30.0


class Job(Protocol):
    """What :func:`run_jobs` needs of a job: a frozen dataclass whose fields are the settings it is made with."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def source(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def origin(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...

    def key(self) -> str:
        """A digest of every setting the file depends on (:func:`settings_key`)."""
        ...

    def make(self, tmp: Path) -> tuple[np.ndarray, dict]:
        """The mono samples at ``sample_rate`` and the manifest fields; raises :class:`Skip`."""
        ...


# ------------------------------------------------------------------------------------ running jobs


class _InlineExecutor(concurrent.futures.Executor):
    """Runs each job at once in this process (``workers=1``), keeping the pool's interface."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the caller through the future, as a pool would
            future.set_exception(e)
        return future


def executor(workers: int) -> concurrent.futures.Executor:
    if workers == 1:
        return _InlineExecutor()
    # spawn, not fork: the caller may hold threads (TensorFlow, a GUI) that a fork would copy half-locked.
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def run_jobs(jobs: Sequence[Job], out_dir: Path, pool: concurrent.futures.Executor,
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


def _run_job(job: Job, out_dir: str) -> dict:
    """Worker entry: make one file, store its record, return the record."""
    out_dir_path = Path(out_dir)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="encore-corpus-") as tmp:
            samples, details = job.make(Path(tmp))
    except Skip as skip:
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


def _stored_record(out_dir: Path, job: Job) -> dict | None:
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


def _state_path(out_dir: Path, job: Job) -> Path:
    return out_dir / ".state" / job.source / f"{job.name}.json"


def settings_key(job: Job, **extra) -> str:
    # The class name is part of the key: renaming a job class makes every stored record stale.
    settings = {"recipe": RECIPE_VERSION, "job": type(job).__name__, **asdict(job), **extra}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def _describe(record: dict) -> str:
    if record["status"] == "ok":
        item = record["item"]
        return f"{item['path']}: {item['seconds']:.0f} s ({record['seconds_taken']:.0f} s)"
    skip = record["skip"]
    return f"skipped {skip['source']} {skip['origin']}: {skip['reason']}"


class Skip(Exception):
    """This piece cannot join the corpus (unparsable, silent, too short); the build goes on."""


class OverBudget(BaseException):
    # BaseException, so the parser's own broad ``except Exception`` cannot swallow the deadline.
    pass


@contextlib.contextmanager
def time_budget(seconds: float):
    """Interrupt the block after ``seconds`` of wall-clock time (main thread on Unix; else no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------ shared steps


def audible_span(mono: np.ndarray, sample_rate: int, threshold_db: float = -50.0) -> tuple[int, int]:
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


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "untitled"
