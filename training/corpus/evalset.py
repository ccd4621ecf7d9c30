"""The evaluation set: 40 s clips of real music that the models never train on.

Two Debian soundtrack packages that are *not* corpus sources (:data:`training.corpus.packages.DEBIAN_PACKAGES`
holds neither, and must never hold them): ``wesnoth-1.16-music`` (orchestral) and ``supertuxkart-data`` (its
``music`` folder: pop, electronic, folk). Nothing is downloaded; the packages come from apt
(``make apt-eval``).

From each package about half the clips are taken, one per track where there are tracks enough and at most two
(40 s apart or more) per track. Which tracks: a fixed shuffle of each package's track names, so the selection is
the same everywhere and is not biased towards one kind of piece. Where in a track: the 40 s window, starting on
a whole second at least :data:`SKIP_START_S` in and ending :data:`SKIP_END_S` before the end, with the highest
sum of two ranks among the track's windows: level (RMS) and spectral flux (onset strength), so the clip is
music in full flow. A window with any :data:`QUIET_WINDOW_S` stretch under :data:`QUIET_DBFS` is never taken.
Tracks that are a faster or older copy of another track of the package (``celtic_fast``, ``farm_f``,
``frantic-old``) are left out.

Clips keep the original's rate and channels and are written as 16-bit FLAC
``OUT_DIR/<package>--<track>--<start_s>.flac``; ``OUT_DIR/manifest.json`` records each clip's source package and
version, original path, start, length, rate, channels and licence (from the package's Debian copyright file,
copied in full to ``OUT_DIR/licenses/<package>.copyright``). The same packages give the same bytes; a re-run
rewrites nothing (each track's analysis is kept under ``OUT_DIR/.state/``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile

from engine.audio import Waveform, load_audio, resample
from engine.errors import AudioContentError, AudioFileError, ConfigError

from ..common.files import file_size, first_line, write_atomically
from .jobs import safe_name
from .packages import DEBIAN_PACKAGES, dep5_licence, dep5_stanzas, dpkg_files, music_files, package_version

MANIFEST_VERSION = 1
#: Bump when the window choice or the clip format changes: every cached analysis is then redone.
RECIPE_VERSION = 1

#: The evaluation set's sources, in order. Neither may ever be a training corpus source.
EVAL_PACKAGES: tuple[str, ...] = ("wesnoth-1.16-music", "supertuxkart-data")
#: Licence of packages whose copyright file is not machine-readable (DEP-5): Wesnoth's copyright file puts the
#: whole game, its music included, under "GNU General Public License version 2 or at your option any later".
LICENCE_FALLBACK = {"wesnoth-1.16-music": "GPL-2+"}
#: Where Debian keeps each package's copyright file (``DOC_ROOT/<package>/copyright``).
DOC_ROOT = Path("/usr/share/doc")
#: Track-name endings that mark a variant of another track of the same package (sped up, an older version).
VARIANT_SUFFIXES = ("_fast", "_f", "-old")

CLIP_S = 40.0
#: Skipped at each track's start (intros, fade-ins) and end (fade-outs, reverb tails), in seconds.
SKIP_START_S = 10.0
SKIP_END_S = 2.0
#: No stretch of this length in a clip may be quieter than :data:`QUIET_DBFS` (RMS, mono downmix).
QUIET_WINDOW_S = 2.0
QUIET_DBFS = -40.0
MAX_CLIPS_PER_TRACK = 2
#: Rate of the window analysis (not of the clips), in Hz.
ANALYSIS_RATE = 22050
_ANALYSIS_HOP_S = 0.1


def build_evalset(out_dir: str | os.PathLike, *, clips_per_package: int = 18,
                  progress: Callable[[str], None] | None = None) -> Path:
    """Cut the evaluation clips from :data:`EVAL_PACKAGES` into ``out_dir``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to fill (created if needed): the clips, ``manifest.json`` and ``licenses/``.
    clips_per_package : int
        Clips taken from each package: one per track while tracks last, then second clips.
    progress : callable, optional
        Called with one line per track analysed and per clip written.

    Returns
    -------
    pathlib.Path
        The manifest, ``out_dir/manifest.json``.

    Raises
    ------
    ConfigError
        A package is not installed (the message names the ``apt-get install`` command), a bad setting, or a
        package with no track long and loud enough.
    """
    started = time.monotonic()
    if not 1 <= clips_per_package <= 200:
        raise ConfigError(f"clips per package must be 1 to 200, got {clips_per_package}")
    say = progress or (lambda line: None)
    files = {package: dpkg_files(package) for package in EVAL_PACKAGES}
    missing = [package for package, found in files.items() if not any(music_files(found))]
    if missing:
        raise ConfigError(f"the evaluation set needs {', '.join(missing)}: sudo apt-get install {' '.join(missing)}")

    leaked = sorted(set(EVAL_PACKAGES) & set(DEBIAN_PACKAGES))
    if leaked:  # a guard for the code, not the user: the evaluation set must never be trained on
        raise ConfigError(f"{', '.join(leaked)} is a training corpus source and cannot be in the evaluation set")
    out_dir = Path(out_dir)
    previous = _previous_clips(out_dir / "manifest.json")
    (out_dir / "licenses").mkdir(parents=True, exist_ok=True)
    (out_dir / ".state").mkdir(exist_ok=True)
    clips: list[dict] = []
    sources: dict[str, dict] = {}
    for package in EVAL_PACKAGES:
        copyright_path = DOC_ROOT / package / "copyright"
        copyright_text = copyright_path.read_text(errors="replace") if copyright_path.is_file() else ""
        licence_copy = out_dir / "licenses" / f"{package}.copyright"
        _write_if_changed(licence_copy, copyright_text.encode())
        tracks = package_tracks(package, files[package])
        analyses = {origin: _analyse_cached(out_dir, package, origin, say) for origin in tracks}
        chosen = _choose(package, analyses, clips_per_package)
        if not chosen:
            raise ConfigError(f"{package}: no track has {CLIP_S:g} s of music without a quiet stretch")
        stanzas = dep5_stanzas(copyright_text)
        version = package_version(package)
        for origin, start_s in chosen:
            licence = dep5_licence(stanzas, origin)
            if licence == "see copyright":
                licence = LICENCE_FALLBACK.get(package, licence)
            name = f"{package}--{safe_name(Path(origin).stem)}--{start_s}.flac"
            entry = {"path": name, "package": package, "package_version": version, "origin": origin,
                     "start_s": float(start_s), "seconds": CLIP_S,
                     "sample_rate": int(analyses[origin]["sample_rate"]),
                     "channels": int(analyses[origin]["channels"]), "licence": licence,
                     "licence_file": licence_copy.relative_to(out_dir).as_posix()}
            clips.append(_write_clip(out_dir, entry, previous.get(name), say))
        sources[package] = {"version": version, "copyright_file": str(copyright_path),
                            "licence_copy": licence_copy.relative_to(out_dir).as_posix(),
                            "tracks": len(tracks), "clips": len(chosen)}

    clips.sort(key=lambda clip: clip["path"])
    _prune_stale(out_dir, {clip["path"] for clip in clips}, say)
    manifest = {
        "version": MANIFEST_VERSION,
        "created_by": "training evalset",
        "recipe": {"recipe_version": RECIPE_VERSION, "clip_s": CLIP_S, "skip_start_s": SKIP_START_S,
                   "skip_end_s": SKIP_END_S, "quiet": f"no {QUIET_WINDOW_S:g} s stretch under {QUIET_DBFS:g} dBFS",
                   "window": "highest rank sum of RMS level and spectral flux",
                   "max_clips_per_track": MAX_CLIPS_PER_TRACK, "clips_per_package": clips_per_package,
                   "format": "16-bit FLAC at the original's rate and channels"},
        "never_trained_on": "these packages are not training corpus sources (training.corpus.DEBIAN_PACKAGES)",
        "sources": sources,
        "clips": clips,
    }
    manifest_path = out_dir / "manifest.json"
    _write_if_changed(manifest_path, (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    say(f"{len(clips)} clips from {len(sources)} packages in {time.monotonic() - started:.0f} s")
    return manifest_path


# ------------------------------------------------------------------------------------------- tracks


def package_tracks(package: str, files: Sequence[str]) -> list[str]:
    """The package's music files, less variants of another track (``celtic_fast`` of ``celtic``)."""
    music = [path for path in music_files(files) if "!" not in path]  # neither package packs music in archives
    stems = {Path(path).stem for path in music}
    return [path for path in music
            if not any(Path(path).stem.endswith(suffix) and Path(path).stem[:-len(suffix)] in stems
                       for suffix in VARIANT_SUFFIXES)]


def _analyse_cached(out_dir: Path, package: str, origin: str, say: Callable[[str], None]) -> dict:
    """:func:`_analyse` of one track, kept under ``out_dir/.state/`` and reused while the file is unchanged."""
    key = {"recipe": RECIPE_VERSION, "origin": origin, "size": file_size(Path(origin)),
           "mtime": int(os.path.getmtime(origin)) if os.path.exists(origin) else -1}
    state = out_dir / ".state" / f"{package}--{safe_name(Path(origin).stem)}.json"
    try:
        record = json.loads(state.read_text())
        if record.get("key") == key:
            return record["analysis"]
    except (OSError, ValueError):
        pass
    try:
        analysis = _analyse(load_audio(origin))
    except (AudioFileError, AudioContentError) as e:
        analysis = {"error": first_line(e)}
    windows = len(analysis.get("starts", []))
    say(f"{package}: {Path(origin).name}: " + (analysis["error"] if "error" in analysis else
                                               f"{windows} usable {CLIP_S:g} s windows"))
    write_atomically(state, (json.dumps({"key": key, "analysis": analysis}) + "\n").encode())
    return analysis


def _analyse(waveform: Waveform) -> dict:
    """Rank a track's candidate windows.

    Returns
    -------
    dict
        ``sample_rate``, ``channels``, ``seconds``, and ``starts``: the whole-second starts of the usable
        40 s windows, best first (level rank plus spectral flux rank, ties to the earlier start).
    """
    import librosa

    info = {"sample_rate": waveform.sample_rate, "channels": waveform.channels,
            "seconds": round(waveform.seconds, 3), "starts": []}
    last_start = int(np.floor(waveform.seconds - SKIP_END_S - CLIP_S))
    first_start = int(np.ceil(SKIP_START_S))
    if last_start < first_start:
        return info
    mono = resample(waveform.mono(), waveform.sample_rate, ANALYSIS_RATE)
    hop = round(_ANALYSIS_HOP_S * ANALYSIS_RATE)
    frames = mono.shape[0] // hop
    power = np.mean(mono[:frames * hop].astype(np.float64).reshape(frames, hop) ** 2, axis=1)
    flux = librosa.onset.onset_strength(y=mono, sr=ANALYSIS_RATE, hop_length=hop)[:frames]
    flux = np.pad(flux, (0, frames - flux.shape[0]))

    per_s = round(1 / _ANALYSIS_HOP_S)
    clip, quiet = round(CLIP_S * per_s), round(QUIET_WINDOW_S * per_s)
    quiet_db = 10 * np.log10(np.convolve(power, np.ones(quiet) / quiet, mode="valid") + 1e-20)
    starts, levels, fluxes = [], [], []
    for start in range(first_start, last_start + 1):
        lo = start * per_s
        if lo + clip > frames or quiet_db[lo:lo + clip - quiet + 1].min() < QUIET_DBFS:
            continue
        starts.append(start)
        levels.append(power[lo:lo + clip].mean())
        fluxes.append(flux[lo:lo + clip].mean())
    if starts:
        score = _ranks(np.array(levels)) + _ranks(np.array(fluxes))
        order = sorted(range(len(starts)), key=lambda i: (-score[i], starts[i]))
        info["starts"] = [starts[i] for i in order]
    return info


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the smallest value up to ``len - 1``; stable, so equal values rank by position."""
    ranks = np.empty(values.shape[0])
    ranks[np.argsort(values, kind="stable")] = np.arange(values.shape[0])
    return ranks


def _choose(package: str, analyses: dict[str, dict], count: int) -> list[tuple[str, int]]:
    """``(origin, start_s)`` of the clips: one per track in a fixed shuffled order, then second clips."""
    usable = sorted(origin for origin, analysis in analyses.items() if analysis.get("starts"))
    random.Random(f"encore-evalset:{package}").shuffle(usable)
    chosen: list[tuple[str, int]] = []
    for rank in range(MAX_CLIPS_PER_TRACK):
        for origin in usable:
            if len(chosen) == count:
                return sorted(chosen)
            taken = [start for o, start in chosen if o == origin]
            if len(taken) != rank:
                continue
            start = next((s for s in analyses[origin]["starts"] if all(abs(s - t) >= CLIP_S for t in taken)), None)
            if start is not None:
                chosen.append((origin, start))
    return sorted(chosen)


# -------------------------------------------------------------------------------------------- clips


def _write_clip(out_dir: Path, entry: dict, previous: dict | None, say: Callable[[str], None]) -> dict:
    """Write one clip unless the same bytes are already there; its manifest entry with the file's checksum.

    A clip that the previous manifest lists with the same settings, and whose file still has the checksum
    recorded there, is not decoded again.
    """
    path = out_dir / entry["path"]
    if previous is not None and {k: v for k, v in previous.items() if k != "sha256"} == entry:
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() == previous.get("sha256"):
                return previous
        except OSError:
            pass
    waveform = load_audio(entry["origin"])
    rate = entry["sample_rate"]
    lo = round(entry["start_s"] * rate)
    samples = np.clip(waveform.samples[lo:lo + round(entry["seconds"] * rate)], -1.0, 1.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    data = buffer.getvalue()
    if _write_if_changed(path, data):
        say(f"wrote {entry['path']}")
    return {**entry, "sha256": hashlib.sha256(data).hexdigest()}


def _previous_clips(manifest_path: Path) -> dict[str, dict]:
    """The clips an earlier build's manifest lists, by file name (none when there is no readable manifest)."""
    try:
        return {clip["path"]: clip for clip in json.loads(manifest_path.read_text())["clips"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly it; whether it wrote."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomically(path, data)
    return True


def _prune_stale(out_dir: Path, listed: set[str], say: Callable[[str], None]) -> None:
    """Delete clips of an earlier build that this one no longer lists."""
    for path in sorted(out_dir.glob("*--*--*.flac")):
        if path.name not in listed:
            say(f"removing {path.name}: not in this build")
            path.unlink()
