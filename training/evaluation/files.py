"""The evaluations' files: the songs of a folder, the track each clip was cut from (by its name), and results as
strict JSON."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from engine.errors import ConfigError

#: The audio files :func:`song_files` takes, by suffix (any case).
SONG_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")


def song_files(songs_dir: str | os.PathLike) -> list[Path]:
    """The audio files directly in ``songs_dir``, sorted.

    Raises
    ------
    ConfigError
        Not a folder, or no audio file in it.
    """
    folder = Path(songs_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder of songs")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SONG_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"{folder}: holds no audio files ({', '.join(SONG_SUFFIXES)})")
    return files


def source_tracks(songs) -> dict[str, list[str]]:
    """Songs grouped by the track they were cut from, in first-seen order.

    The evaluation set names a clip ``<package>--<track>--<start s>.<ext>`` (:mod:`training.corpus.evalset`); a name
    of any other form is a track of its own.

    Parameters
    ----------
    songs : iterable of str
        File names.

    Returns
    -------
    dict
        Track name to the file names cut from it.
    """
    tracks: dict[str, list[str]] = {}
    for song in songs:
        match = _CLIP_NAME.match(song)
        tracks.setdefault(match.group(1) if match else song, []).append(song)
    return tracks


_CLIP_NAME = re.compile(r"^(.+--.+)--\d+\.[^.]+$")


def jsonable(value):
    """NaN and inf as null, numpy scalars as Python numbers: strict JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
