"""Small file helpers shared by the corpus builder and the shard writer."""

from __future__ import annotations

import os
from pathlib import Path


def file_size(path: Path) -> int:
    """Size in bytes, or -1 when the file cannot be read (so a changed or vanished source is noticed)."""
    try:
        return path.stat().st_size
    except OSError:
        return -1


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a hidden partial file and rename it, so an interrupted build never leaves half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def first_line(error: BaseException | str) -> str:
    """The first line of an error's text, for one-line messages."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
