"""Pinning a whole process to cores, for the figures measured "on one core".

``os.sched_setaffinity(0, ...)`` moves only the calling thread (on Linux, pid 0 is the caller's thread). Threads
that already exist keep their cores: numpy's OpenBLAS starts its worker threads when numpy is imported, so a
process that pins itself after ``import numpy`` still does its matrix products (librosa's mel and chroma
filterbanks, the scorer's lookups) on every core, and a real-time factor measured so is not one core's. Moving
those threads is not enough either: a BLAS pool sized for two cores on one spins its idle thread against the
working one (OpenBLAS busy-waits for work), which measured the resynth generator's first chunk 1.8 times as slow
as the same chunk on two cores. A machine with one core starts its pools with one thread, so that is what
:func:`pin_process` leaves: every thread on the cores given, and every loaded thread pool at that many threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

#: In a busy loop's command line, so that it can be found by name (``pgrep -f``).
BUSY_LOOP_MARK = "encore bench busy loop"


def pin_process(cores: Iterable[int]) -> None:
    """Run every thread of this process, and every thread it starts later, on ``cores`` only, with every
    loaded thread pool (BLAS, OpenMP) cut to that many threads.

    Call it once the libraries that bring thread pools are loaded (numpy; scipy, through librosa:
    :func:`engine.analysis.warm_up`): a pool loaded later sizes itself for the whole machine.

    Parameters
    ----------
    cores : iterable of int
        CPU numbers, a subset of ``os.sched_getaffinity(0)``; pass the set read before pinning to undo it.
    """
    from threadpoolctl import threadpool_limits

    cores = set(cores)
    threadpool_limits(limits=len(cores))
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:  # the thread ended meanwhile
            pass
    os.sched_setaffinity(0, cores)  # new threads inherit the affinity of the thread that starts them


@contextmanager
def pinned(cores: Iterable[int]) -> Iterator[None]:
    """:func:`pin_process` to ``cores`` for the ``with`` block, then back to the cores the process had."""
    before = os.sched_getaffinity(0)
    pin_process(cores)
    try:
        yield
    finally:
        pin_process(before)


def process_cores() -> set[int]:
    """The cores any thread of this process may run on (the union over its threads).

    Returns
    -------
    set of int
    """
    cores = set(os.sched_getaffinity(0))
    for tid in _thread_ids():
        try:
            cores |= os.sched_getaffinity(tid)
        except ProcessLookupError:
            pass
    return cores


def _thread_ids() -> list[int]:
    """This process's thread ids; empty without /proc, where only the calling thread can be reached."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return []


def busy_loop(core: int) -> subprocess.Popen:
    """A process that spins on ``core``: the load of a machine doing other things (``encore bench --realtime``,
    ``--soak``). The caller kills it."""
    code = f"# {BUSY_LOOP_MARK}\nimport os\nos.sched_setaffinity(0, {{{core}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])
