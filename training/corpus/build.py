"""An offline, deterministic training corpus of real music.

Two kinds of source, neither downloaded:

* ``music21``: public-domain scores from music21's bundled corpus, each arranged for General MIDI
  instruments at a tempo chosen from a seed of its corpus path, and rendered with FluidSynth and the
  FluidR3 GM soundfont (Debian's ``fluidsynth`` and ``fluid-soundfont-gm``).
* Debian soundtrack packages (``debian`` means all of :data:`training.corpus.packages.DEBIAN_PACKAGES`): the
  games' music, decoded and resampled. Their licences come from each package's ``/usr/share/doc/PKG/copyright``.

Everything lands in ``OUT_DIR/audio/<source>/<name>.flac`` as mono 16-bit FLAC at one sample rate, with
``OUT_DIR/manifest.json`` recording where each file came from, its licence and how it was made. The same
inputs give the same bytes whatever the scheduling of the worker processes. Each finished file leaves a
small record under ``OUT_DIR/.state/``, so a build that is interrupted (or re-run with more sources)
redoes only what is missing or was made with other settings.

This module runs the build and writes the manifest. The scores are chosen and rendered in
:mod:`training.corpus.scores` (their instruments and tempo drawn in :mod:`training.corpus.arrangement`), the
packages' tracks found and transcoded in :mod:`training.corpus.packages`, and both kinds of job run by
:mod:`training.corpus.jobs`. The shipped demo song is :mod:`training.corpus.demo`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.errors import ConfigError

from ..common.files import write_atomically
from .jobs import MIN_SECONDS, RECIPE_VERSION, executor, run_jobs
from .packages import DEBIAN_PACKAGES, LOOP_SIMILARITY, installed_packages, package_jobs
from .scores import (
    FLUIDSYNTH_GAIN,
    MAX_SCORE_PLAYS,
    MAX_SCORE_SECONDS,
    PEAK_DBFS,
    SOUNDFONT,
    check_renderer,
    music21_corpus,
    music21_source_entry,
    render_scores,
    select_scores,
)
from .split import list_audio_files

MANIFEST_VERSION = 1


def build_corpus(out_dir: str | os.PathLike, *, sources: Sequence[str] = ("music21", "debian"),
                 max_scores: int = 160, sample_rate: int = 22050, workers: int = 2,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Render and transcode the training corpus into ``out_dir``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to fill (created if needed): ``audio/<source>/<name>.flac`` and ``manifest.json``.
    sources : sequence of str
        ``"music21"``, ``"debian"`` (every package in :data:`training.corpus.packages.DEBIAN_PACKAGES`) or
        single package names.
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
        check_renderer()
        music21_version, corpus_root = music21_corpus()
    installed, missing = installed_packages(packages)
    for package in missing:
        message = f"{package} is not installed (sudo apt-get install {package}); building without it"
        say(f"warning: {message}")
        if progress is None:
            warnings.warn(message, stacklevel=2)

    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    manifest_sources: dict[str, dict] = {}
    with executor(workers) as pool:
        if want_music21 and max_scores:
            candidates, excluded = select_scores(corpus_root)
            records += render_scores(candidates, max_scores, out_dir, sample_rate, music21_version, corpus_root,
                                     pool, say)
            manifest_sources["music21"] = music21_source_entry(music21_version, corpus_root, excluded)
        for package, files in installed.items():
            jobs, entry = package_jobs(package, files, sample_rate)
            manifest_sources[package] = entry
            records += run_jobs(jobs, out_dir, pool, say)

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


# ----------------------------------------------------------------------------------------- helpers


def _parse_sources(sources: Sequence[str]) -> tuple[bool, list[str]]:
    """Split ``sources`` into music21 (yes/no) and Debian package names, in
    :data:`training.corpus.packages.DEBIAN_PACKAGES` order."""
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
