"""Score Encore's generators against the real continuation of songs they have never heard (``training evaluate``).

For each song the memory is ``song[:cut]``; every generator (:mod:`.baselines`) continues it for ``horizon_s``
(10 s), and the result is compared with the song's real next 10 s (:mod:`.metrics`): log-mel and harmony distance,
how the joins score against the music's own beat boundaries, tempo and key held, beat continuity, the
loudness step at the cut, spectral flatness, and then, over a long extension (10 min), how much of it is an
exact loop. The real continuation itself is scored too, as the row ``true``: it is what a perfect generator
would reach on the measures that do not compare with it (tempo, key, beats, seams).

Resynth and jukebox draw at random (their variety noise): each song's 10 s measures are averaged over ``draws``
continuations (seeds 0, 1, ...), and each model generator is also compared with jukebox, loop and match song by
song (mean difference and its standard error, :func:`.paired.paired_differences`), so that a gap can be told from
noise: "better" is better than no difference by more than two standard errors, "not worse" not worse than it by
more than two. Each verdict of the bar (:mod:`.criteria`) also says how firmly it stands: the share of resamplings
of the songs (with replacement) in which it comes out the same (:func:`.criteria.bar_stability`; clips cut from one
track are drawn together).

Outputs: ``OUT/results.json`` (every metric per song and generator, per-generator summaries and the bar),
``OUT/results.md`` (the summary table, :mod:`.report`) and ``OUT/spectrograms/<song>.png``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.audio import Waveform, load_audio
from engine.errors import ConfigError, EncoreError

from .baselines import GENERATORS, make_generator
from .criteria import judge
from .files import jsonable, song_files
from .metrics.harmony import harmony_distance, key_held
from .metrics.repetition import repetition
from .metrics.rhythm import beat_continuity_f, tempo_held
from .metrics.seams import loudness_step_lu, reference_seam_scores, seam_scores, seam_summary
from .metrics.spectra import logmel_distance, spectral_flatness_ratio
from .metrics.speed import real_time_factor
from .paired import TRUE
from .report import format_table, write_spectrograms
from .workers import run_in_workers

#: Beat boundaries of each song scored for the music's own seam range.
REFERENCE_SEAMS_PER_SONG = 16


def evaluate(songs_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
             generators: Sequence[str] = GENERATORS, songs: int = 0, cut_s: float = 30.0, context_s: float = 20.0,
             horizon_s: float = 10.0, repetition_minutes: float = 10.0, repetition_songs: int | None = None,
             variety: float | None = None, threads: int = 1, seed: int = 0, draws: int = 1, jobs: int = 1,
             progress: Callable[[str], None] | None = None) -> dict:
    """Run every generator on every song, score them, and write the results.

    Parameters
    ----------
    songs_dir : str or os.PathLike
        Folder of audio files (not searched recursively), taken in sorted order: the evaluation set.
    out_dir : str or os.PathLike
        Where ``results.json``, ``results.md`` and ``spectrograms/`` go (created if needed).
    generators : sequence of str
        Names from :data:`GENERATORS`.
    songs : int
        Most songs to use; 0 for all.
    cut_s : float
        Where each song is cut, in seconds: the generators see ``song[:cut_s]``.
    context_s, horizon_s : float
        The stretch before the cut that the continuation is compared with, and the length generated.
    repetition_minutes : float
        Length of the long extension scored for repetition and long-run seams, in minutes; 0 skips it.
    repetition_songs : int, optional
        Songs (the first ones) that get the long extension; all when None.
    variety : float, optional
        The engine generators' variety (their default when None).
    threads : int
        ONNX Runtime threads.
    seed : int
        Seed of the beat boundaries drawn for the music's own seam range.
    draws : int
        Continuations scored per song for a generator that draws at random (resynth and jukebox: their variety
        noise, seeds ``0 .. draws - 1``); its 10 s metrics are averaged over them (:func:`_mean_of_draws`), so
        that a comparison between two such generators is one of their typical continuations, not of one lucky
        or unlucky draw each. The long extension uses seed 0.
    jobs : int
        Worker processes, each pinned to a core of its own (at most the cores this process may use), each
        scoring whole songs; 1 runs everything in this process. The scores are the same either way (every
        song keeps its seeds); only the timings differ.
    progress : callable, optional
        Called with one line per song and generator (with workers, a song's lines when it is done).

    Returns
    -------
    dict
        What ``results.json`` holds: ``settings``, ``songs`` (per song, per generator, every metric),
        ``reference_seams`` (the music's own beat boundaries), ``summary`` (per generator) and ``bar``.

    Raises
    ------
    ConfigError
        An unknown generator, an empty folder, bad lengths, or songs all too short for ``cut_s + horizon_s``.
    """
    say = progress or (lambda line: None)
    names = list(dict.fromkeys(generators))
    for name in names:
        if name not in GENERATORS:
            raise ConfigError(f"unknown generator '{name}': use {', '.join(GENERATORS)}")
    if not names:
        raise ConfigError(f"no generators given: use some of {', '.join(GENERATORS)}")
    if not (0 < context_s <= cut_s and horizon_s >= 1.0):
        raise ConfigError(f"need 0 < context ({context_s} s) <= cut ({cut_s} s) and a horizon of 1 s or more "
                          f"(got {horizon_s} s)")
    if repetition_minutes < 0 or songs < 0 or (repetition_songs is not None and repetition_songs < 0):
        raise ConfigError("songs, repetition minutes and repetition songs must be 0 or more")
    if not 1 <= draws <= 64:
        raise ConfigError(f"draws must be 1 to 64, got {draws}")
    cores = sorted(os.sched_getaffinity(0))
    if not 1 <= jobs <= len(cores):
        raise ConfigError(f"jobs must be 1 to {len(cores)} (the cores this process may use), got {jobs}")
    files = song_files(songs_dir)[:songs or None]
    out_dir = Path(out_dir)
    (out_dir / "spectrograms").mkdir(parents=True, exist_ok=True)
    task = _SongTask(out_dir=out_dir, cut_s=cut_s, context_s=context_s, horizon_s=horizon_s,
                     repetition_minutes=repetition_minutes, repetition_songs=repetition_songs, seed=seed, draws=draws)
    started = time.monotonic()
    if jobs == 1:
        made = {name: make_generator(name, variety=variety, threads=threads) for name in names}
        done = {index: task.run(index, path, made, say) for index, path in enumerate(files)}
    else:
        done = _evaluate_in_workers(files, task, names, variety=variety, threads=threads,
                                    cores=cores[:jobs], say=say)
    # In song order, whoever scored them: the music's seam range then reads the same in any run.
    per_song: dict[str, dict] = {}
    reference_seams: list[dict] = []
    for index, path in enumerate(files):
        if done.get(index) is not None:
            per_song[path.name], seams = done[index]
            reference_seams += seams
    if not per_song:
        raise ConfigError(f"{songs_dir}: no song is {cut_s + horizon_s:g} s or longer")

    music = seam_summary(reference_seams)
    results = {
        "settings": {"songs_dir": str(songs_dir), "songs": len(per_song), "generators": names, "cut_s": cut_s,
                     "context_s": context_s, "horizon_s": horizon_s, "repetition_minutes": repetition_minutes,
                     "repetition_songs": repetition_songs, "variety": variety, "threads": threads, "seed": seed,
                     "draws": draws, "jobs": jobs,
                     "seconds": round(time.monotonic() - started, 1)},
        "reference_seams": music,
        **judge(per_song, names, music),
        "songs": per_song,
    }
    _write_results(out_dir, results)
    return results


def rejudge(out_dir: str | os.PathLike) -> dict:
    """Judge an evaluation again with this code's bar, from its ``results.json``; no generator runs.

    Rewrites ``results.json`` and ``results.md`` in ``out_dir`` (the per-song scores and settings as they were).
    Nothing is scored again: a score the per-song results lack (``harmony`` in an evaluation from before it
    replaced ``chroma``, whose old values are not read as harmony) is NaN in the summary, not judged in the
    bar or the paired comparisons, and named under ``missing`` and in the table.

    Raises
    ------
    ConfigError
        No readable ``results.json`` from ``training evaluate`` in ``out_dir``.
    """
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    try:
        results = json.loads(path.read_text())
        per_song, names, music = (results["songs"], results["settings"]["generators"],
                                  results["reference_seams"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not the results of training evaluate ({e.__class__.__name__}: {e})") from None
    results.update(judge(per_song, names, music))
    _write_results(out_dir, results)
    return results


def _write_results(out_dir: Path, results: dict) -> None:
    (out_dir / "results.json").write_text(json.dumps(jsonable(results), indent=1) + "\n")
    (out_dir / "results.md").write_text(format_table(results, markdown=True) + "\n")


@dataclass(frozen=True)
class _SongTask:
    """What scoring one song of an evaluation needs besides its generators (picklable, for workers)."""

    out_dir: Path
    cut_s: float
    context_s: float
    horizon_s: float
    repetition_minutes: float
    repetition_songs: int | None
    seed: int
    draws: int

    def run(self, index: int, path: Path, made: dict,
            say: Callable[[str], None]) -> tuple[dict, list[dict]] | None:
        """Score the ``index``-th song and write its spectrograms: ``(entry, its seam range)``, or None when
        the song is too short to be scored."""
        song = load_audio(path)
        if song.seconds < self.cut_s + self.horizon_s:
            say(f"{path.name}: skipped, {song.seconds:.1f} s is under cut + horizon "
                f"({self.cut_s + self.horizon_s:g} s)")
            return None
        long_run = self.repetition_minutes > 0 and (self.repetition_songs is None or index < self.repetition_songs)
        entry, strips, seams = _evaluate_song(song, made, cut_s=self.cut_s, context_s=self.context_s,
                                              horizon_s=self.horizon_s,
                                              repetition_s=self.repetition_minutes * 60 if long_run else 0.0,
                                              seed=self.seed + index, draws=self.draws,
                                              say=lambda line: say(f"{path.name}: {line}"))
        write_spectrograms(self.out_dir / "spectrograms" / f"{path.stem}.png", strips, song.sample_rate,
                           cut_s=self.context_s, horizon_s=self.horizon_s, title=path.name)
        return entry, seams


def _score_in_worker(generators: dict, task: _SongTask, index: int,
                     path: Path) -> tuple[tuple[dict, list[dict]] | None, list[str]]:
    lines: list[str] = []
    return task.run(index, path, generators, lines.append), lines


def _evaluate_in_workers(files: list[Path], task: _SongTask, names: list[str], *, variety: float | None,
                         threads: int, cores: list[int],
                         say: Callable[[str], None]) -> dict[int, tuple[dict, list[dict]] | None]:
    """:meth:`_SongTask.run` for every song, on one worker process per core in ``cores``
    (:func:`run_in_workers`)."""
    jobs = {index: (task, index, path) for index, path in enumerate(files)}
    return run_in_workers(_score_in_worker, jobs, names=names, variety=variety, threads=threads, cores=cores, say=say)


def _evaluate_song(song: Waveform, made: dict, *, cut_s: float, context_s: float, horizon_s: float,
                   repetition_s: float, seed: int, draws: int,
                   say: Callable[[str], None]) -> tuple[dict, dict, list[dict]]:
    """Every metric for every generator on one song, the audio for its spectrograms, and its own seam range."""
    rate = song.sample_rate
    mono = song.mono()
    cut, context, horizon = round(cut_s * rate), round(context_s * rate), round(horizon_s * rate)
    memory = Waveform(song.samples[:cut], rate)
    before, true = mono[cut - context:cut], mono[cut:cut + horizon]
    reference = reference_seam_scores(mono, sample_rate=rate, count=REFERENCE_SEAMS_PER_SONG, seed=seed)
    entry = {TRUE: _score(before, true, true, mono[:cut + horizon], [cut], rate)}
    strips = {}
    for name, generator in made.items():
        started = time.monotonic()
        settings = getattr(generator, "resynth", None)  # the sequencer's settings, seed included: it draws
        every_draw = []
        for draw in range(draws if settings is not None else 1):
            if settings is not None:
                generator.resynth = replace(settings, seed=settings.seed + draw)
            try:
                full = generator.extend(memory, horizon_s, only_extension=False)
            except EncoreError as e:
                raise EncoreError(f"{name}: {e}") from e
            joined = full.mono()[:cut + horizon]
            generated = joined[cut:]
            if generated.shape[0] < horizon:
                raise EncoreError(f"{name} returned {generated.shape[0] / rate:.2f} s, not the {horizon_s:g} s "
                                  "asked for")
            joins = [cut + int(j) for j in getattr(generator, "joins", [0])]
            every_draw.append(_score(before, generated, true, joined, joins, rate))
            if draw == 0:  # later draws reuse the memory's analysis: the first one's timing is the one to report
                timing = {"real_time_factor": _real_time_factor(generator),
                          "first_chunk_real_time_factor": _first_chunk_real_time_factor(generator)}
                strips[name] = generated
        if settings is not None:
            generator.resynth = settings
        scores = {**_mean_of_draws(every_draw), **timing}
        if repetition_s > 0:
            long_mono = _long_mono(generator, memory, repetition_s)
            long_joins = [cut + int(j) for j in getattr(generator, "joins", [0])]
            scores["repetition"] = repetition(long_mono[cut:], sample_rate=rate)
            scores["seams_long"] = seam_scores(long_mono, long_joins, sample_rate=rate)
            scores["real_time_factor"] = _real_time_factor(generator)
            del long_mono
        entry[name] = scores
        say(f"{name}: log-mel {scores['logmel_db']:.1f} dB, harmony {scores['harmony']:.2f}, "
            f"tempo {'held' if scores['tempo']['held'] else 'lost'}, key {'held' if scores['key']['held'] else 'lost'}"
            + (f", longest loop {scores['repetition']['longest_loop_s']:.0f} s" if "repetition" in scores else "")
            + f" ({time.monotonic() - started:.1f} s)")
    strips = {"context": before, TRUE: true, **strips}
    return entry, strips, reference


def _long_mono(generator, memory: Waveform, seconds: float) -> np.ndarray:
    """[shape=(frames,), dtype=float32] the memory and ``seconds`` of continuation, downmixed block by block.

    The same samples as ``generator.extend(...).mono()`` without the whole stereo render in memory: on the
    project's machines, first touching a fresh 10-minute array costs more (in page faults) than computing it.
    """
    render = getattr(generator, "render", None)  # the baselines only extend, and cheaply
    if render is None:
        return generator.extend(memory, seconds, only_extension=False).mono()
    return np.concatenate([Waveform(block, memory.sample_rate).mono()
                           for block in render(memory, seconds, only_extension=False)])


def _score(before: np.ndarray, generated: np.ndarray, true: np.ndarray, joined: np.ndarray, joins: list[int],
           rate: int) -> dict:
    """The 10 s metrics of one continuation (``generated``, following ``before``; ``joined`` holds both)."""
    cut = joined.shape[0] - generated.shape[0]
    return {
        "logmel_db": logmel_distance(generated, true, sample_rate=rate),
        "harmony": harmony_distance(generated, true, sample_rate=rate),
        "seams": seam_scores(joined, joins, sample_rate=rate),
        "tempo": tempo_held(before, generated, sample_rate=rate),
        "key": key_held(before, generated, sample_rate=rate),
        "beat": beat_continuity_f(before, generated, sample_rate=rate,
                                  joins_s=[(j - cut) / rate for j in joins if cut <= j < joined.shape[0]]),
        "loudness_step_lu": loudness_step_lu(joined, cut, sample_rate=rate),
        # Against the song as heard before the cut: is the continuation noisier than the music it continues?
        # The true next 10 s differ from it too (see the `true` row), so that is also kept, for calibration.
        "flatness_ratio": spectral_flatness_ratio(generated, before, sample_rate=rate),
        "flatness_ratio_vs_true": spectral_flatness_ratio(generated, true, sample_rate=rate),
    }


def _mean_of_draws(draws: list[dict]) -> dict:
    """One song's 10 s metrics over several continuations: the first draw's, with the continuous measures
    averaged, ``held`` (tempo, key) the share of draws that held, and the seams of every draw.

    With one draw, that draw's scores unchanged.
    """
    if len(draws) == 1:
        return draws[0]
    first = draws[0]
    merged = {**first, "draws": len(draws), "seams": [seam for d in draws for seam in d["seams"]]}
    for key in ("logmel_db", "harmony", "loudness_step_lu", "flatness_ratio", "flatness_ratio_vs_true"):
        merged[key] = float(np.mean([d[key] for d in draws]))
    for key in ("tempo", "key"):
        merged[key] = {**first[key], "held": float(np.mean([d[key]["held"] for d in draws]))}
    f = [d["beat"]["f"] for d in draws if d["beat"]["f"] is not None and np.isfinite(d["beat"]["f"])]
    merged["beat"] = {**first["beat"], "f": float(np.mean(f)) if f else first["beat"]["f"],
                      "join_slips_ms": [slip for d in draws for slip in d["beat"]["join_slips_ms"]]}
    return merged


def _first_chunk_real_time_factor(generator) -> float:
    """The first chunk's compute time (resynth: the memory's analysis included) per second of its audio."""
    stats = getattr(generator, "stats", None)
    first = getattr(stats, "first_chunk_seconds", math.nan)
    chunks = len(getattr(stats, "chunk_seconds", []))
    if not chunks or not np.isfinite(first):
        return math.nan
    return first / (stats.seconds_generated / chunks)


def _real_time_factor(generator) -> float:
    stats = getattr(generator, "stats", None)
    chunk_seconds = list(getattr(stats, "chunk_seconds", []))
    if not chunk_seconds:
        return math.nan
    return real_time_factor(chunk_seconds, stats.seconds_generated / len(chunk_seconds))
