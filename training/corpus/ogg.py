"""Ogg Vorbis with a fixed stream serial number, so the same audio gives the same bytes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile

from engine.errors import AudioFileError

from ..common.files import first_line, write_atomically

#: Ogg stream serial number of the demo song; libsndfile draws a random one, which would change the bytes.
OGG_SERIAL = 0x656E636F  # "enco"


def write_ogg_vorbis(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
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
