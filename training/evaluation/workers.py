"""Scoring songs side by side: one spawned worker process per core, each pinned to its core, with generators of its
own, taking whole songs one at a time (``training evaluate --jobs`` and ``training longlisten --jobs``)."""

from __future__ import annotations

from collections.abc import Callable

from .baselines import make_generator

#: This worker process's generators by name, made once by :func:`_start_worker` (empty in the parent).
_generators: dict = {}


def run_in_workers(work: Callable, jobs: dict, *, names: list[str], variety: float | None, threads: int,
                   cores: list[int], say: Callable[[str], None]) -> dict:
    """``work(generators, *args)`` for every ``key: args`` of ``jobs``, on one worker process per core in
    ``cores``, each set up by :func:`_start_worker` with the generators ``names``.

    Workers are spawned (not forked: ONNX Runtime's and OpenMP's threads do not survive a fork) and take jobs
    one at a time, so a slow song holds up one worker only. ``work`` is a module-level function; it is given the
    worker's own generators (name to generator, made once per worker by :func:`.baselines.make_generator`) and
    returns ``(result, progress lines)``; a job's lines go to ``say`` when it is done.

    Returns
    -------
    dict
        ``key: result`` for every job.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    free_cores = context.Queue()
    for core in cores:
        free_cores.put(core)
    done: dict = {}
    with ProcessPoolExecutor(max_workers=len(cores), mp_context=context, initializer=_start_worker,
                             initargs=(free_cores, names, variety, threads)) as pool:
        futures = {pool.submit(_with_generators, work, *args): key for key, args in jobs.items()}
        try:
            for future in as_completed(futures):
                done[futures[future]], lines = future.result()
                for line in lines:
                    say(line)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return done


def _start_worker(free_cores, names: list[str], variety: float | None, threads: int) -> None:
    """Initialise a worker of :func:`run_in_workers`: its own core, librosa loaded, its generators, and
    freed memory kept for the next song (:mod:`training.evaluation.allocator`)."""
    from engine.analysis import warm_up
    from engine.cores import pin_process

    from .allocator import keep_freed_memory

    keep_freed_memory()
    warm_up()  # the one-time load belongs to the process, not to its first song's chunk
    pin_process({free_cores.get()})  # every thread, numpy's and scipy's BLAS threads too
    _generators.update({name: make_generator(name, variety=variety, threads=threads) for name in names})


def _with_generators(work: Callable, *args):
    """``work`` run in a worker, given the worker's generators."""
    return work(_generators, *args)
