"""Segment a corpus once, with the engine's own analysis, and keep the result on disk.

Every audio file goes through exactly what the engine does to a memory: :func:`engine.load_audio`, a mono copy at
:data:`engine.analysis.ANALYSIS_RATE` (:func:`engine.audio.to_model_input`) and :func:`engine.analysis.analyse`.
The :class:`~engine.analysis.Analysis` is written as one ``.npz`` per file into a cache folder (by default
``DATA_DIR/.segments``), under a name drawn from the file's path and tagged with its size, modification time and
:data:`engine.analysis.FEATURE_SPEC` and :data:`engine.analysis.SEGMENTATION_VERSION`: a changed file, a new
feature layout or a new way of finding beats and bars is analysed again; nothing else is. Worker processes are
spawned (not forked), so a parent that has already started TensorFlow is safe; they import only the engine.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from engine.analysis import ANALYSIS_RATE, FEATURE_SPEC, SEGMENTATION_VERSION, Analysis

#: Name of the cache folder inside a data folder.
CACHE_NAME = ".segments"


@dataclass(frozen=True)
class SegmentedCorpus:
    """The analyses of a list of files, and what could not be analysed.

    Attributes
    ----------
    analyses : dict
        ``{path: Analysis}`` for every file that decoded and was long enough.
    skipped : dict
        ``{path: one-line reason}``.
    analysed : int
        Files analysed in this call (the others came from the cache).
    seconds : float
        Wall time of this call.
    """

    analyses: dict[Path, Analysis]
    skipped: dict[Path, str] = field(default_factory=dict)
    analysed: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: songs, hours, segments per mode, and the cache's work."""
        modes: dict[str, int] = {}
        for a in self.analyses.values():
            modes[a.mode] = modes.get(a.mode, 0) + 1
        hours = sum(a.frames for a in self.analyses.values()) / ANALYSIS_RATE / 3600
        segments = sum(a.segments for a in self.analyses.values())
        by_mode = ", ".join(f"{modes[m]} {m}" for m in ("beats", "onsets", "grid") if m in modes)
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return (f"{len(self.analyses)} songs ({by_mode}), {hours:.1f} h, {segments} segments, {FEATURE_SPEC}; "
                f"{self.analysed} analysed now in {self.seconds:.0f} s{skipped}")


def segment_files(files: list[Path], cache_dir: str | Path, *, workers: int = 2,
                  progress: Callable[[str], None] | None = None) -> SegmentedCorpus:
    """Analyse every file (or read its analysis from the cache).

    Parameters
    ----------
    files : list of pathlib.Path
        Audio files (any format :func:`engine.load_audio` reads).
    cache_dir : path
        Folder of ``.npz`` analyses; created when missing.
    workers : int
        Processes analysing at once.
    progress : callable, optional
        Called with a line per file analysed or skipped.

    Returns
    -------
    SegmentedCorpus
    """
    started = time.monotonic()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = {path: (cache_dir / _cache_name(path), _cache_tag(path)) for path in files}
    found = {path: _read(*jobs[path]) for path in files}
    todo = [path for path in files if found[path] is None]
    skipped: dict[Path, str] = {}
    if todo:
        say = progress or (lambda line: None)
        say(f"analysing {len(todo)} of {len(files)} files ({len(files) - len(todo)} cached) with {workers} "
            f"processes into {cache_dir}")
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=get_context("spawn")) as pool:
            futures = {path: pool.submit(_analyse_to, str(path), str(jobs[path][0]), jobs[path][1]) for path in todo}
            for done, (path, future) in enumerate(futures.items(), 1):
                note = future.result()
                found[path] = None if note else _read(*jobs[path])
                if found[path] is None:
                    skipped[path] = note or "analysis missing from the cache"
                say(f"  [{done}/{len(todo)}] {path.name}: {skipped.get(path, 'ok')}")
    analyses = {path: a for path, a in found.items() if a is not None}
    return SegmentedCorpus(analyses, skipped, analysed=len(todo), seconds=time.monotonic() - started)


def default_cache_dir(data_dir: str | Path) -> Path:
    """``DATA_DIR/.segments``."""
    return Path(data_dir) / CACHE_NAME


def _cache_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    return f"{path.stem[:40]}-{digest}.npz"


def _cache_tag(path: Path) -> str:
    stat = path.stat()
    return f"{FEATURE_SPEC}|segmentation-{SEGMENTATION_VERSION}|{stat.st_size}|{stat.st_mtime_ns}"


def _analyse_to(path: str, cached: str, tag: str) -> str:
    """Worker: analyse one file into ``cached``; return "" or why it was skipped."""
    from engine.analysis import analyse
    from engine.audio import load_audio, to_model_input
    from engine.errors import EncoreError

    try:
        a = analyse(to_model_input(load_audio(path), ANALYSIS_RATE))
    except EncoreError as e:  # undecodable, or too short: a note, not a failed corpus
        return f"skipped ({e})"
    partial = Path(cached).with_suffix(".partial.npz")
    np.savez(partial, tag=tag, bounds=a.bounds, features=a.features, phase=a.phase, meter=a.meter, mode=a.mode,
             tempo_bpm=a.tempo_bpm, pulse_clarity=a.pulse_clarity, frames=a.frames)
    partial.replace(cached)  # a killed run never leaves a half-written analysis under the real name
    return ""


def _read(cached: Path, tag: str) -> Analysis | None:
    """The cached analysis, or None when absent, stale or unreadable."""
    if not cached.exists():
        return None
    try:
        with np.load(cached) as z:
            if str(z["tag"]) != tag:
                return None
            return Analysis(bounds=z["bounds"].astype(np.int64), features=z["features"].astype(np.float32),
                            phase=z["phase"].astype(np.int64), meter=int(z["meter"]), mode=str(z["mode"]),
                            tempo_bpm=float(z["tempo_bpm"]), pulse_clarity=float(z["pulse_clarity"]),
                            frames=int(z["frames"]))
    except (OSError, KeyError, ValueError):
        return None
