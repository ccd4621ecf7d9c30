"""Debian soundtrack packages as training music: the games' music files, their licences, and transcoding.

``debian`` stands for every package in :data:`DEBIAN_PACKAGES`. A package's music is every audio file under a
``music`` folder, also inside its zip and pk3 archives (``archive!member``); its licences come from the
machine-readable ``/usr/share/doc/PKG/copyright`` (DEP-5). A track job (:class:`_TrackJob`) decodes one file,
downmixes, resamples and trims it, and keeps one pass of a track stored as its loop played over and over.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio import load_audio, resample
from engine.errors import AudioContentError, AudioFileError, ConfigError

from ..common.files import file_size, first_line
from .jobs import MIN_SECONDS, Skip, audible_span, safe_name, settings_key

#: Debian packages whose music ``"debian"`` stands for, smallest first (0ad-data installs 3 GB).
DEBIAN_PACKAGES: tuple[str, ...] = ("warzone2100-music", "ufoai-music", "planetblupi-music-ogg", "0ad-data")
#: A package file (or a member of a package's zip/pk3 archive, written ``archive!member``) is music when its
#: path has a ``music`` folder: 0ad-data's ``public.zip!audio/music/``, ufoai-music's ``0music.pk3!music/``.
MUSIC_PATH = re.compile(r"(^|[/!])music/")
AUDIO_SUFFIXES = (".ogg", ".opus", ".oga", ".flac", ".wav")
ARCHIVE_SUFFIXES = (".zip", ".pk3")
#: Correlation at which a soundtrack file counts as a loop repeated over and over (see :func:`_loop_period`).
LOOP_SIMILARITY = 0.98


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
        return settings_key(self, origin_fingerprint=_origin_fingerprint(self.origin))

    def make(self, tmp: Path) -> tuple[np.ndarray, dict]:
        return _transcode_track_job(self, tmp)


def installed_packages(packages: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Each installed package's files (``dpkg -L``), and the packages that are missing.

    Raises
    ------
    ConfigError
        Packages were asked for and none is installed.
    """
    installed, missing = {}, []
    for package in packages:
        files = dpkg_files(package)
        if files and any(music_files(files)):
            installed[package] = files
        else:
            missing.append(package)
    if packages and not installed:
        raise ConfigError(f"none of the Debian soundtrack packages is installed ({', '.join(missing)}): "
                          f"sudo apt-get install {' '.join(missing)}")
    return installed, missing


def dpkg_files(package: str) -> list[str]:
    try:
        result = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted(line for line in result.stdout.splitlines() if line.startswith("/")) if result.returncode == 0 else []


def music_files(package_files: Iterable[str]) -> Iterable[str]:
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


def package_jobs(package: str, files: list[str], sample_rate: int) -> tuple[list[_TrackJob], dict]:
    """One job per music file of an installed package, and the package's manifest entry."""
    copyright_path = Path("/usr/share/doc") / package / "copyright"
    copyright_text = copyright_path.read_text(errors="replace") if copyright_path.is_file() else ""
    stanzas = dep5_stanzas(copyright_text)
    music = list(music_files(files))
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
        jobs.append(_TrackJob(package, origin, names[origin], dep5_licence(stanzas, origin), licence_file,
                              sample_rate))
    licences = sorted({job.licence for job in jobs})
    entry = {
        "licence": ", ".join(licences),
        "copyright": copyright_text or f"({copyright_path} not found)",
        "copyright_file": str(copyright_path),
        "version": package_version(package),
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
        names = {o: safe_name(str(Path(n).with_suffix(""))) for o, n in names.items()}
        if len(set(names.values())) == len(names) or depth > 8:
            return names
        depth += 1


def dep5_stanzas(text: str) -> list[tuple[list[str], str]]:
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


def dep5_licence(stanzas: list[tuple[list[str], str]], origin: str) -> str:
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


def package_version(package: str) -> str:
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
            raise Skip(f"cannot unpack ({first_line(e)})") from None
    else:
        source = Path(archive)
    try:
        waveform = load_audio(source)
    except (AudioFileError, AudioContentError) as e:
        raise Skip(first_line(e).replace(str(source), "file")) from None
    mono = resample(waveform.mono(), waveform.sample_rate, job.sample_rate)
    start, end = audible_span(mono, job.sample_rate, threshold_db=-60.0)
    if end - start < MIN_SECONDS * job.sample_rate:
        raise Skip(f"lasts {max(end - start, 0) / job.sample_rate:.1f} s, under {MIN_SECONDS:.0f} s")
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
    at least :data:`training.corpus.jobs.MIN_SECONDS` on; the first lag whose correlation reaches ``threshold``
    is the period.
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
