"""Ogg Vorbis with a fixed stream serial number, so the same audio gives the same bytes.

libsndfile encodes the Vorbis stream but draws the Ogg stream serial number at random, which would change the
bytes of every file it writes. mutagen's Ogg page reader sets the serial number on each page and recomputes its
checksum; nothing else changes.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from engine.errors import AudioFileError, ConfigError

from ..common.files import first_line, write_atomically

#: Ogg stream serial number of the demo song; libsndfile draws a random one, which would change the bytes.
OGG_SERIAL = 0x656E636F  # "enco"


def write_ogg_vorbis(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write Ogg Vorbis with the stream serial number :data:`OGG_SERIAL`, so the same audio gives the same bytes.

    Parameters
    ----------
    path : pathlib.Path
        The file to write (atomically: an interrupted write leaves no half file).
    samples : numpy.ndarray
        [shape=(frames,) or (frames, channels), dtype=float32], clipped to [-1, 1].
    sample_rate : int
        In Hz.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    AudioFileError
        libsndfile cannot encode the audio, or ``path`` cannot be written.
    ConfigError
        mutagen is not installed.
    """
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
    """Set every page's stream serial number, each page's checksum recomputed (a file of one stream)."""
    try:
        from mutagen.ogg import OggPage, error
    except ImportError as e:
        raise ConfigError("mutagen is not installed: pip install 'encore[train]'") from e

    source, pages = io.BytesIO(data), []
    try:
        while source.tell() < len(data):
            page = OggPage(source)
            page.serial = serial
            pages.append(page.write())  # write() computes the CRC afresh
    except (error, EOFError) as e:
        raise AudioFileError(f"libsndfile wrote a malformed Ogg stream ({first_line(e)})") from e
    return b"".join(pages)
