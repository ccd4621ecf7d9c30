"""Keeping freed memory in the process, for batch jobs that allocate and free large arrays again and again.

An evaluation renders a 10-minute extension per song and generator, downmixes it, resamples it, and takes
spectra of twice its length: arrays of 100-250 MB, each freed before the next is made. glibc's malloc maps
every allocation above its mmap threshold (at most 32 MB) afresh and unmaps it when it is freed, so each new
array is page-faulted in again, and on the project's machines a page fault costs more than the arithmetic
done on the page. Three evaluation songs, all five generators, one core: 162 s wall, 50 s of it in the
system, as glibc does by default; 103 s and 6 s with freed memory kept for reuse (measured with the same two
settings given through glibc's environment variables, ``MALLOC_MMAP_MAX_=0`` and a trim threshold of 8 GB).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

# mallopt(3) parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_GLIBC_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}
_KEEP = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2 ** 31 - 1}  # the largest value mallopt's int takes


def keep_freed_memory(keep: bool = True) -> bool:
    """Let malloc keep freed memory for the next allocation (``keep``), or go back to glibc's defaults.

    Kept, every allocation comes from the heap and the heap is never trimmed: the process holds on to its
    peak footprint (for an evaluation, about 1.4 GB) and later arrays reuse pages that are already mapped.
    This is for batch processes such as ``training evaluate``; a player has no reason to hold memory.

    Parameters
    ----------
    keep : bool
        True to keep freed memory; False for glibc's defaults (its dynamic mmap threshold stays off).

    Returns
    -------
    bool
        Whether the C library took every setting: False where it has no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = _KEEP if keep else _GLIBC_DEFAULTS
    return all([mallopt(parameter, value) == 1 for parameter, value in settings.items()])


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """:func:`keep_freed_memory` for the duration of a block; yields whether it took."""
    took = keep_freed_memory(True)
    try:
        yield took
    finally:
        if took:
            keep_freed_memory(False)
