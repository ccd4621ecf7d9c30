"""Score Encore's generators against the real continuation of songs they have never heard.

For each song the memory is ``song[:cut]``; every generator continues it for ``horizon_s`` (10 s), and the
result is compared with the song's real next 10 s (:mod:`.metrics`): log-mel and harmony distance,
how the joins score against the music's own beat boundaries, tempo and key held, beat continuity, the
loudness step at the cut, spectral flatness, and then, over a long extension (10 min), how much of it is an
exact loop. The real continuation itself is scored too, as the row ``true``: it is what a perfect generator
would reach on the measures that do not compare with it (tempo, key, beats, seams).

Generators (:func:`make_generator`): ``seed``, ``resynth`` and ``jukebox`` from the engine, and three baselines
defined here, none of which learns anything: ``loop`` (the memory's last 10 s repeated, equal-power crossfade at
each repeat), ``match`` (one jump back to the beat whose last 8 beats best match the memory's last 8, and that
stretch repeated) and ``silence``. Every generator has the same small interface:
``extend(song, seconds, only_extension=...)`` returning a :class:`engine.Waveform`, ``joins`` (frames in the
continuation where joins are centred; 0 is the join with the song's end) and ``stats`` (``chunk_seconds``,
``seconds_generated``).

Resynth and jukebox draw at random (their variety noise): each song's 10 s measures are averaged over ``draws``
continuations (seeds 0, 1, ...), and each model generator is also compared with jukebox, loop and match song by
song (mean difference and its standard error, :func:`_paired`), so that a gap can be told from noise: "better"
is better than no difference by more than two standard errors, "not worse" not worse than it by more than two.
Each verdict of the bar also says how firmly it stands: the share of resamplings of the songs (with replacement)
in which it comes out the same (:func:`_bar_stability`; clips cut from one track are drawn together).

Outputs: ``OUT/results.json`` (every metric per song and generator, per-generator summaries and the bar),
``OUT/results.md`` (the summary table) and ``OUT/spectrograms/<song>.png``.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.analysis import ANALYSIS_RATE, HARMONY, TIMBRE, analyse
from engine.audio import Waveform, load_audio, resample
from engine.errors import ConfigError, EncoreError
from engine.seam import equal_power_ramps

from .metrics.harmony import harmony_distance, key_held
from .metrics.repetition import repetition
from .metrics.rhythm import SLIP_FAR_MS, beat_continuity_f, tempo_held
from .metrics.seams import loudness_step_lu, reference_seam_scores, seam_scores, seam_summary
from .metrics.spectra import logmel_distance, spectral_flatness_ratio
from .metrics.speed import real_time_factor

#: Every generator :func:`make_generator` knows, in table order.
GENERATORS: tuple[str, ...] = ("seed", "resynth", "jukebox", "loop", "match", "silence")
BASELINES = ("loop", "match", "silence")
#: What each model generator is compared with song by song (:func:`_paired`), and on which distances.
PAIRED_RIVALS = ("jukebox", "loop", "match")
#: A paired difference is "better" (or "worse") when it is more than this many standard errors from 0.
PAIRED_STANDARD_ERRORS = 2.0
#: The distances to the true continuation every generator is scored on and compared on song by song (a results
#: file may lack newer ones).
SCORED = ("logmel_db", "harmony")
#: The row of the real continuation.
TRUE = "true"
SONG_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")

#: The bar a generator must clear (see :func:`_bar`).
BAR_FLATNESS_TOLERANCE = 0.1
BAR_REAL_TIME_FACTOR = 0.01
#: Resamplings of the songs (with replacement) over which each criterion of the bar is judged again.
BAR_RESAMPLES = 1000
#: Beat boundaries of each song scored for the music's own seam range.
REFERENCE_SEAMS_PER_SONG = 16


# ------------------------------------------------------------------------------------------ generators


@dataclass
class GeneratorStats:
    """What a baseline's last extension cost, as :class:`engine.ExtendStats` reports it for a model."""

    chunks: int = 0
    seconds_generated: float = 0.0
    #: Compute time of each chunk, in seconds.
    chunk_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    #: The first chunk's compute time with whatever preceded it (``match``: the memory's analysis); NaN when
    #: nothing does.
    first_chunk_seconds: float = math.nan


def _repeat(song: Waveform, start: int, fade: int, frames: int,
            stats: GeneratorStats) -> tuple[np.ndarray, list[int], np.ndarray]:
    """``frames`` of the song played from ``start`` to its end over and over, an equal-power crossfade at each return.

    After the song's end the stream is ``song[start:-F]``, then a seam (the song's last ``F`` frames fading out
    while ``song[start-F:start]`` fades in), then the same again (``F = fade``); the song's own last ``F``
    frames hold the first seam, so the continuation starts exactly at ``song[start]`` and is periodic, with
    period ``frames - start`` of the song. One chunk per repeat, timed into ``stats``.

    Returns
    -------
    continuation : numpy.ndarray
        [shape=(frames, channels), dtype=float32]
    joins : list of int
        Frames of the continuation where the seams are centred: 0 for the one over the song's end, then one
        per return.
    seam : numpy.ndarray
        [shape=(F, channels), dtype=float32] the first seam, which replaces the song's last ``F`` frames.
    """
    stretch = song.samples[start - fade:]
    period = stretch.shape[0]
    fade_in, fade_out = equal_power_ramps(fade)
    seam = stretch[-fade:] * fade_out[:, None] + stretch[:fade] * fade_in[:, None]
    chunks, made = [], 0
    while made < frames:  # one chunk per repeat: the stretch after the previous crossfade, then the next one
        started = time.perf_counter()
        chunk = np.concatenate([stretch[fade:period - fade], seam])[:frames - made]
        chunks.append(chunk)
        made += chunk.shape[0]
        stats.chunks += 1
        stats.chunk_seconds.append(time.perf_counter() - started)
    stats.seconds_generated = frames / song.sample_rate
    cycle = period - fade
    joins = [0] + [k * cycle + period - 2 * fade + fade // 2 for k in range(len(chunks))
                   if k * cycle + period - 2 * fade + fade // 2 < frames]
    continuation = np.concatenate(chunks) if chunks else np.zeros((0, song.channels), np.float32)
    return continuation, joins, seam


class LoopGenerator:
    """Baseline: the song's last ``period_s`` repeated for ever, with an equal-power crossfade at each repeat.

    The stream is ``song[:-F]``, then ``song[-S:]`` over and over, each repeat's first ``F`` frames crossfaded
    with the previous one's last ``F`` (``S = period_s``, ``F = crossfade_s``). The song's own last ``F`` frames
    are the first crossfade, so from the song's end on the audio is exactly periodic, with period ``S - F``.

    Parameters
    ----------
    period_s : float
        Length of the repeated stretch, in seconds (the whole song when shorter).
    crossfade_s : float
        Length of each crossfade, in seconds.
    """

    name = "loop"

    def __init__(self, *, period_s: float = 10.0, crossfade_s: float = 0.05):
        if not 0 < 2 * crossfade_s < period_s:
            raise ConfigError(f"the loop's crossfade ({crossfade_s} s) must be under half its period ({period_s} s)")
        self.period_s, self.crossfade_s = period_s, crossfade_s
        self.joins: list[int] = []
        self.stats = GeneratorStats()

    def extend(self, song: Waveform, seconds: float, *, only_extension: bool = False) -> Waveform:
        """``seconds`` of loop after ``song`` (and the song before it unless ``only_extension``).

        Returns
        -------
        Waveform
            [shape=(frames, channels), dtype=float32] at the song's rate: ``round(seconds * rate)`` frames that
            follow the song's end, preceded (unless ``only_extension``) by the song, whose last ``F`` frames
            hold the first crossfade.
        """
        rate = song.sample_rate
        fade = max(1, round(self.crossfade_s * rate))
        period = min(round(self.period_s * rate), song.frames)
        if period <= 2 * fade:
            raise ConfigError(f"the song ({song.seconds:.2f} s) is too short to loop")
        self.stats = GeneratorStats()
        continuation, self.joins, seam = _repeat(song, song.frames - period + fade, fade, round(seconds * rate),
                                                 self.stats)
        if only_extension:
            return Waveform(continuation, rate)
        return Waveform(np.concatenate([song.samples[:-fade], seam, continuation]), rate)


@dataclass(frozen=True)
class Match:
    """Where :class:`MatchGenerator` goes on from, for one memory.

    Attributes
    ----------
    segment : int
        The matched segment (a beat, or an onset or grid cell without a beat) of the memory's analysis: the one
        that stands where the memory's last segment stands.
    start : int
        Frame of the song (at its own rate) the continuation starts at: ``segment``'s start plus as far as the
        song's end is into its last segment.
    period : int
        Frames from ``start`` to the song's end: the length of the repeated stretch.
    distance : float
        Euclidean distance of the two stretches of ``beats`` segments before each point (timbre, and harmony
        weighted :attr:`MatchGenerator.harmony_weight`).
    beats : int
        Segments compared (:attr:`MatchGenerator.beats`, fewer in a short memory).
    mode : str
        The analysis's segmentation: ``beats``, ``onsets`` or ``grid``.
    """

    segment: int
    start: int
    period: int
    distance: float
    beats: int
    mode: str


class MatchGenerator:
    """Baseline: one jump, no learning: back to the earlier beat whose last beats best match the memory's last beats.

    The memory (the whole song given) is analysed as the engine analyses it (:func:`engine.analysis.analyse`,
    mono at :data:`engine.analysis.ANALYSIS_RATE`). With ``L`` the segment the memory ends in and ``w = beats``,
    every beat ``j`` with ``w`` beats before it, and not among the memory's last ``w`` (``j <= L - w - 1``), is a
    candidate; with a beat, only those at ``L``'s bar phase. The one whose segments ``j-w .. j-1`` are nearest
    to ``L-w .. L-1`` wins: Euclidean distance over the timbre and the harmony slices of the features, harmony
    weighted 2 as in the engine's join cost. The continuation is the song played on from ``j``, at the same
    offset into ``j`` as the song's end is into ``L``, in the song's own order; when that run reaches the
    memory's end it jumps back to the same point, so it is a loop of the matched stretch, with an equal-power
    crossfade at each jump, rendered from the original samples at the song's rate and channels. Onset and grid
    analyses (no beat) work alike, with segments for beats and no phase.

    It is what a jukebox with one well-placed jump does: the bar a learned sequencer's many jumps must not fall
    below. The memory's analysis is kept for the next call on the same song (the evaluation's 10-minute run).

    Parameters
    ----------
    beats : int
        Segments compared on each side of a jump (fewer when the memory has not ``2 * beats + 2`` segments).
    crossfade_s : float
        Length of each crossfade, in seconds.
    harmony_weight : float
        Weight of the chroma slice against the log-mel slice in the distance.
    """

    name = "match"

    def __init__(self, *, beats: int = 8, crossfade_s: float = 0.05, harmony_weight: float = 2.0):
        if beats < 1 or not crossfade_s > 0 or not harmony_weight >= 0:
            raise ConfigError(f"match needs beats >= 1, a crossfade > 0 s and a harmony weight >= 0 (got {beats}, "
                              f"{crossfade_s} s and {harmony_weight})")
        self.beats, self.crossfade_s, self.harmony_weight = beats, crossfade_s, harmony_weight
        self.joins: list[int] = []
        self.stats = GeneratorStats()
        self._memory: tuple[Waveform, Match] | None = None  # the last song (kept, so its id stays its own)

    @property
    def segmentation(self) -> str:
        """The last memory's segmentation (``beats``, ``onsets`` or ``grid``); empty before the first."""
        return self._memory[1].mode if self._memory is not None else ""

    def match(self, song: Waveform) -> Match:
        """Analyse ``song`` (or reuse the analysis of the same array) and find where to go on from.

        Raises
        ------
        ConfigError
            A memory with too few segments to match (under 4), or whose matched stretch is too short to hold
            two crossfades.
        AudioContentError
            A memory under 0.5 s (:func:`engine.analysis.analyse`).
        """
        if self._memory is not None and self._memory[0].samples is song.samples and (
                self._memory[0].frames, self._memory[0].sample_rate) == (song.frames, song.sample_rate):
            return self._memory[1]
        rate = song.sample_rate
        # A matrix-vector product, as the engine downmixes: ndarray.mean(axis=1) over (frames, 2) is strided.
        mono = song.samples @ np.full(song.channels, 1.0 / song.channels, np.float32)
        analysis = analyse(resample(mono, rate, ANALYSIS_RATE))
        bounds = np.minimum(np.round(analysis.bounds * (rate / ANALYSIS_RATE)).astype(np.int64), song.frames)
        bounds[-1] = song.frames
        last = analysis.segments - 1
        window = min(self.beats, (last - 1) // 2)
        if window < 1:
            raise ConfigError(f"the song ({song.seconds:.2f} s, {analysis.segments} segments) is too short to "
                              "match its end with an earlier point")
        candidates = np.arange(window, last - window)  # w segments before each, none within the last w
        if analysis.mode == "beats":
            in_phase = candidates[analysis.phase[candidates] == analysis.phase[last]]
            candidates = in_phase if in_phase.size else candidates
        look = np.concatenate([analysis.features[:, TIMBRE],
                               self.harmony_weight * analysis.features[:, HARMONY]], axis=1).astype(np.float64)
        target = look[last - window:last]
        distances = np.array([np.linalg.norm(look[j - window:j] - target) for j in candidates])
        best = int(np.argmin(distances))
        segment = int(candidates[best])
        offset = song.frames - int(bounds[last])
        fade = self._fade(rate)
        start = int(np.clip(bounds[segment] + offset, fade, song.frames))
        if song.frames - start <= 2 * fade:
            raise ConfigError(f"the stretch matched in the song ({(song.frames - start) / rate:.2f} s) is too short "
                              "to repeat with crossfades")
        found = Match(segment=segment, start=start, period=song.frames - start, distance=float(distances[best]),
                      beats=window, mode=analysis.mode)
        self._memory = (song, found)
        return found

    def extend(self, song: Waveform, seconds: float, *, only_extension: bool = False) -> Waveform:
        """``seconds`` of the matched stretch, repeated, after ``song`` (and the song before it unless
        ``only_extension``).

        Returns
        -------
        Waveform
            [shape=(frames, channels), dtype=float32] at the song's rate: ``round(seconds * rate)`` frames that
            follow the song's end, starting at :attr:`Match.start` of the song, preceded (unless
            ``only_extension``) by the song, whose last ``F`` frames hold the first crossfade.
        """
        rate = song.sample_rate
        fade = self._fade(rate)
        started = time.perf_counter()
        found = self.match(song)
        analysed = time.perf_counter() - started
        self.stats = GeneratorStats()
        continuation, self.joins, seam = _repeat(song, found.start, fade, round(seconds * rate), self.stats)
        if self.stats.chunk_seconds:
            self.stats.first_chunk_seconds = analysed + self.stats.chunk_seconds[0]
        if only_extension:
            return Waveform(continuation, rate)
        return Waveform(np.concatenate([song.samples[:-fade], seam, continuation]), rate)

    def _fade(self, rate: int) -> int:
        return max(1, round(self.crossfade_s * rate))


class SilenceGenerator:
    """Baseline: nothing at all after the song (one 10 s chunk of zeros after another)."""

    name = "silence"
    chunk_s = 10.0

    def __init__(self) -> None:
        self.joins: list[int] = []
        self.stats = GeneratorStats()

    def extend(self, song: Waveform, seconds: float, *, only_extension: bool = False) -> Waveform:
        """``round(seconds * rate)`` frames of zeros, after the song unless ``only_extension``.

        Returns
        -------
        Waveform
            [shape=(frames, channels), dtype=float32] at the song's rate.
        """
        self.stats = GeneratorStats()
        frames = round(seconds * song.sample_rate)
        chunk = round(self.chunk_s * song.sample_rate)
        pieces = []
        for start in range(0, frames, chunk):
            started = time.perf_counter()
            pieces.append(np.zeros((min(chunk, frames - start), song.channels), np.float32))
            self.stats.chunks += 1
            self.stats.chunk_seconds.append(time.perf_counter() - started)
        self.stats.seconds_generated = frames / song.sample_rate
        self.joins = [0]
        continuation = np.concatenate(pieces) if pieces else np.zeros((0, song.channels), np.float32)
        return Waveform(continuation if only_extension else np.concatenate([song.samples, continuation]),
                        song.sample_rate)


def make_generator(name: str, *, variety: float | None = None, threads: int = 1):
    """A generator by name, with the interface every generator here has (see the module docstring).

    Parameters
    ----------
    name : str
        One of :data:`GENERATORS`.
    variety : float, optional
        Passed to the engine's generators (the engine's default when None); the baselines ignore it.
    threads : int
        ONNX Runtime threads of the engine's generators.

    Raises
    ------
    ConfigError
        An unknown name.
    """
    if name == "loop":
        return LoopGenerator()
    if name == "match":
        return MatchGenerator()
    if name == "silence":
        return SilenceGenerator()
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator '{name}': use {', '.join(GENERATORS)}")
    from engine import ResynthConfig, open_generator

    # variety is a setting of the resynth sequencer (the seed model has none).
    resynth = ResynthConfig(variety=variety) if variety is not None and name != "seed" else None
    return open_generator(generator=name, threads=threads, resynth=resynth)


# ------------------------------------------------------------------------------------------ evaluation


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


def judge(per_song: dict[str, dict], generators: Sequence[str], music: dict) -> dict:
    """Summaries, the bar (with how firmly each verdict stands) and the paired comparisons, from per-song scores.

    Parameters
    ----------
    per_song : dict
        Song name to generator name to that generator's scores on the song (``results["songs"]``).
    generators : sequence of str
        The generators run, in order.
    music : dict
        The songs' own beat boundaries scored as joins (:func:`.metrics.seams.seam_summary`).

    Returns
    -------
    dict
        ``summary``, ``bar`` and ``paired``, as in ``results.json``, and ``missing``: the scores of
        :data:`SCORED` that no song holds (an evaluation from before they existed), judged nowhere.
    """
    names = list(generators)
    summary = {name: _summarise(name, per_song) for name in [TRUE] + names}
    paired = {name: _paired(name, per_song) for name in names if name not in BASELINES}
    bar = {name: _bar(name, summary, music, paired[name]) for name in names if name not in BASELINES}
    _bar_stability(bar, per_song, music)
    rows = [row for song in per_song.values() for row in song.values()]
    return {"summary": summary, "bar": bar, "paired": paired,
            "missing": [key for key in SCORED if not any(key in row for row in rows)]}


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
    (out_dir / "results.json").write_text(json.dumps(_jsonable(results), indent=1) + "\n")
    (out_dir / "results.md").write_text(format_table(results, markdown=True) + "\n")


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
        _write_spectrograms(self.out_dir / "spectrograms" / f"{path.stem}.png", strips, song.sample_rate,
                            cut_s=self.context_s, horizon_s=self.horizon_s, title=path.name)
        return entry, seams


#: A worker process's generators, made once by :func:`_start_worker`.
_worker_generators: dict = {}


def _start_worker(free_cores, names: list[str], variety: float | None, threads: int) -> None:
    """Initialise a worker of :func:`run_in_workers`: its own core, librosa loaded, its generators, and
    freed memory kept for the next song (:mod:`training.allocator`)."""
    from engine.analysis import warm_up
    from engine.cores import pin_process

    from .allocator import keep_freed_memory

    keep_freed_memory()
    warm_up()  # the one-time load belongs to the process, not to its first song's chunk
    pin_process({free_cores.get()})  # every thread, numpy's and scipy's BLAS threads too
    _worker_generators.update({name: make_generator(name, variety=variety, threads=threads) for name in names})


def _score_in_worker(task: _SongTask, index: int, path: Path) -> tuple[tuple[dict, list[dict]] | None, list[str]]:
    lines: list[str] = []
    return task.run(index, path, _worker_generators, lines.append), lines


def _evaluate_in_workers(files: list[Path], task: _SongTask, names: list[str], *, variety: float | None,
                         threads: int, cores: list[int],
                         say: Callable[[str], None]) -> dict[int, tuple[dict, list[dict]] | None]:
    """:meth:`_SongTask.run` for every song, on one worker process per core in ``cores``
    (:func:`run_in_workers`)."""
    jobs = {index: (task, index, path) for index, path in enumerate(files)}
    return run_in_workers(_score_in_worker, jobs, names=names, variety=variety, threads=threads, cores=cores, say=say)


def run_in_workers(work: Callable, jobs: dict, *, names: list[str], variety: float | None, threads: int,
                   cores: list[int], say: Callable[[str], None]) -> dict:
    """``work(*args)`` for every ``key: args`` of ``jobs``, on one worker process per core in ``cores``, each
    set up by :func:`_start_worker` with the generators ``names``.

    Workers are spawned (not forked: ONNX Runtime's and OpenMP's threads do not survive a fork) and take jobs
    one at a time, so a slow song holds up one worker only. ``work`` is a module-level function that returns
    ``(result, progress lines)``; a job's lines go to ``say`` when it is done.

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
        futures = {pool.submit(work, *args): key for key, args in jobs.items()}
        try:
            for future in as_completed(futures):
                done[futures[future]], lines = future.result()
                for line in lines:
                    say(line)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return done


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


# --------------------------------------------------------------------------------------------- summary


def _summarise(name: str, per_song: dict[str, dict]) -> dict:
    """Medians (and shares) over songs of one generator's metrics."""
    rows = [song[name] for song in per_song.values() if name in song]

    def median(values) -> float:
        values = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
        return float(np.median(values)) if values.size else math.nan

    seams = [s for row in rows for s in row["seams"] + row.get("seams_long", [])]
    repeats = [row["repetition"] for row in rows if "repetition" in row]
    slips = np.array([slip for row in rows for slip in row["beat"].get("join_slips_ms", [])], dtype=float)
    return {
        "songs": len(rows),
        "logmel_db": median(row["logmel_db"] for row in rows),
        # .get: results scored before the harmony criterion hold "chroma" instead (see rejudge)
        "harmony": median(row.get("harmony") for row in rows),
        "seams": seam_summary(seams),
        "tempo_held": float(np.mean([row["tempo"]["held"] for row in rows])) if rows else math.nan,
        "key_held": float(np.mean([row["key"]["held"] for row in rows])) if rows else math.nan,
        "beat_f": median(row["beat"]["f"] for row in rows),
        "join_slip_ms": median(slips),
        "join_slip_far_share": float(np.mean(slips > SLIP_FAR_MS)) if slips.size else math.nan,
        "loudness_step_lu": median(abs(row["loudness_step_lu"]) for row in rows),
        "flatness_ratio": median(row["flatness_ratio"] for row in rows),
        "longest_loop_s": max((r["longest_loop_s"] for r in repeats), default=math.nan),
        "repeated_share": float(np.mean([r["repeated_share"] for r in repeats])) if repeats else math.nan,
        "repetition_songs": len(repeats),
        "real_time_factor": median(row.get("real_time_factor", math.nan) for row in rows),
        "first_chunk_real_time_factor": median(row.get("first_chunk_real_time_factor", math.nan) for row in rows),
    }


def _paired(name: str, per_song: dict[str, dict], *, rivals: Sequence[str] = PAIRED_RIVALS,
            distances: Sequence[str] = SCORED, truth: bool = True) -> dict:
    """Song by song, ``name`` against each rival: mean difference (``name`` minus rival), its standard error, and
    whether ``name`` is better or not worse beyond the song-to-song noise.

    Against ``rivals`` (:data:`PAIRED_RIVALS`) on the distances to the true continuation (negative is closer),
    and, when ``truth``, against the true continuation itself on tempo and key held (the share of draws minus
    the truth's 0 or 1; positive is held more often). Each entry: ``mean_difference``, ``standard_error``,
    ``better`` (the mean is better than 0 by more than :data:`PAIRED_STANDARD_ERRORS` standard errors),
    ``not_worse`` (it is not worse than 0 by more than that; None for both with fewer than two songs),
    ``songs_better`` (songs where ``name`` does better) and ``songs``. A rival or score no song has is left out.
    Clips of one track (:func:`source_tracks`) are averaged into one difference first, and counted as one song.

    A median over a few dozen songs moves with a single song, and a share held by a beat tracker flips with
    it; the paired difference says whether a gap is larger than the song-to-song noise.
    """
    tracks = source_tracks(per_song)

    def compare(rival: str, keys: Sequence[str], value, sign: float) -> dict:
        out = {}
        for key in keys:
            # Clips cut from one track share its sound: each track's differences are averaged, so that two
            # clips of a track count as one sample of the song-to-song noise, not two.
            per_track = []
            for clips in tracks.values():
                found = [value(per_song[c][name], key) - value(per_song[c][rival], key) for c in clips
                         if name in per_song[c] and rival in per_song[c]]
                found = [d for d in found if np.isfinite(d)]
                if found:
                    per_track.append(float(np.mean(found)))
            difference = np.array(per_track, dtype=float)
            if not difference.size:
                continue
            mean = float(difference.mean())
            error = float(difference.std(ddof=1) / np.sqrt(difference.size)) if difference.size > 1 else math.nan
            margin = PAIRED_STANDARD_ERRORS * error
            judged = np.isfinite(error)
            out[key] = {"mean_difference": mean, "standard_error": error,
                        "better": bool(sign * mean > margin) if judged else None,
                        "not_worse": bool(sign * mean >= -margin) if judged else None,
                        "songs_better": int(np.sum(sign * difference > 0)), "songs": int(difference.size)}
        return out

    def distance(row: dict, key: str) -> float:
        value = row.get(key)  # an evaluation from before a criterion has none of it
        return math.nan if value is None else float(value)

    out = {}
    for rival in rivals:
        if rival != name and (found := compare(rival, distances, distance, -1.0)):
            out[rival] = found
    if truth and (found := compare(TRUE, ("tempo", "key"), lambda row, key: float(row[key]["held"]), 1.0)):
        out[TRUE] = found
    return out


def _bar(name: str, summary: dict[str, dict], music: dict, paired: dict | None = None) -> dict:
    """The bar a generator must clear, criterion by criterion (``pass`` is None where it cannot be judged).

    Issue 21's 10 s bar. Every criterion that compares two generators is judged on the paired per-song
    difference (from ``paired``, :func:`_paired`): "better" by more than :data:`PAIRED_STANDARD_ERRORS` standard
    errors, "not worse" by no more than that. Its log-mel distance is better than ``loop``'s and not worse than
    ``match``'s, its harmony distance not worse than either's; it holds tempo and key not worse than the true
    continuation does; its joins' 95th percentile is within the music's own beat boundaries' (jump and HF ratio);
    its median flatness ratio is within 10 % of 1; its median real-time factor per chunk, and for the first
    chunk with the analysis inside, is at most :data:`BAR_REAL_TIME_FACTOR`. The longest exact loop in 10
    minutes is reported, not judged: runs of whole phrases from a 40 s clip repeat its stretches by design, and
    a continuation over minutes is judged on whole songs (``training longlisten``).
    """
    mine = summary[name]
    paired = paired or {}

    def check(ok, value, target) -> dict:
        ok = None if ok is None or (isinstance(value, float) and not np.isfinite(value)) else bool(ok)
        return {"pass": ok, "value": value, "target": target}

    def song_by_song(rival: str, key: str, verdict: str) -> dict:
        """``verdict`` ("better" or "not_worse") of the paired difference against ``rival`` on ``key``: the value
        is the mean difference, the target the margin of two standard errors."""
        found = paired.get(rival, {}).get(key)
        if found is None:
            return check(None, math.nan, math.nan)
        return check(found[verdict], found["mean_difference"], PAIRED_STANDARD_ERRORS * found["standard_error"])

    # The labels stay the same when a rival did not run (the criterion is n/a then): the resamplings of
    # _bar_stability look criteria up by label.
    criteria = {
        "log-mel better than loop, song by song": song_by_song("loop", "logmel_db", "better"),
        "log-mel not worse than match, song by song": song_by_song("match", "logmel_db", "not_worse"),
        "harmony not worse than loop, song by song": song_by_song("loop", "harmony", "not_worse"),
        "harmony not worse than match, song by song": song_by_song("match", "harmony", "not_worse"),
    }
    for key, label in (("jump", "seam jump"), ("hf_ratio", "seam HF ratio")):
        criteria[f"{label} p95 within the music's own"] = check(
            mine["seams"][f"{key}_p95"] <= music[f"{key}_p95"], mine["seams"][f"{key}_p95"], music[f"{key}_p95"])
    for key, label in (("tempo", "tempo held"), ("key", "key held")):
        criteria[f"{label} not less often than the true continuation, song by song"] = song_by_song(
            TRUE, key, "not_worse")
    criteria["flatness within 10 % of the original"] = check(
        abs(mine["flatness_ratio"] - 1.0) <= BAR_FLATNESS_TOLERANCE, mine["flatness_ratio"], 1.0)
    criteria[f"real-time factor at most {BAR_REAL_TIME_FACTOR:g} per chunk"] = check(
        mine["real_time_factor"] <= BAR_REAL_TIME_FACTOR, mine["real_time_factor"], BAR_REAL_TIME_FACTOR)
    first = mine.get("first_chunk_real_time_factor", math.nan)
    criteria[f"real-time factor at most {BAR_REAL_TIME_FACTOR:g} for the first chunk, analysis included"] = check(
        first <= BAR_REAL_TIME_FACTOR, first, BAR_REAL_TIME_FACTOR)
    judged = [c["pass"] for c in criteria.values() if c["pass"] is not None]
    return {"pass": bool(judged) and all(judged), "criteria": criteria}


def _bar_stability(bars: dict[str, dict], per_song: dict[str, dict], music: dict, *,
                   resamples: int = BAR_RESAMPLES, seed: int = 0) -> None:
    """Add to each bar (from :func:`_bar`, by generator) how firmly each verdict stands, as ``agreement`` (0 to 1).

    A few dozen songs are a sample: a median or a share held moves with a song or two, and a criterion whose
    gap is inside that noise flips with it. Each of ``resamples`` draws as many tracks as there are, with
    replacement (:func:`source_tracks`: clips cut from one track are drawn together, since they share its
    sound), summarises their songs again and judges every bar again (the music's own seam range stays as
    measured); ``agreement`` is the share of draws whose verdict is the one reported, for each criterion and
    for the whole bar. Near 0.5 the songs cannot tell; near 1 the verdict stands.
    """
    tracks = list(source_tracks(per_song).values())
    if len(tracks) < 2 or not bars:
        return
    rows = [TRUE] + list(dict.fromkeys([*bars, "loop", "jukebox", "match"]))  # every bar's rivals, once a draw
    rng = np.random.default_rng(seed)
    agree = {name: dict.fromkeys(bar["criteria"], 0) for name, bar in bars.items()}
    whole = dict.fromkeys(bars, 0)
    for _ in range(resamples):
        drawn = {f"{i}/{song}": per_song[song]
                 for i, k in enumerate(rng.integers(0, len(tracks), len(tracks))) for song in tracks[k]}
        summary = {r: _summarise(r, drawn) for r in rows if any(r in row for row in drawn.values())}
        for name, bar in bars.items():
            # Only the paired comparisons a bar reads: the rest is slow.
            paired = _paired(name, drawn, rivals=("loop", "match"), distances=("logmel_db", "harmony"))
            again = _bar(name, summary, music, paired)
            for label, criterion in again["criteria"].items():
                agree[name][label] += criterion["pass"] == bar["criteria"][label]["pass"]
            whole[name] += again["pass"] == bar["pass"]
    for name, bar in bars.items():
        for label, count in agree[name].items():
            bar["criteria"][label]["agreement"] = count / resamples
        bar["agreement"] = whole[name] / resamples
        bar["resamples"] = resamples
        bar["resampled_tracks"] = len(tracks)


def source_tracks(songs) -> dict[str, list[str]]:
    """Songs grouped by the track they were cut from, in first-seen order.

    The evaluation set names a clip ``<package>--<track>--<start s>.<ext>`` (:mod:`training.evalset`); a name
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


PAIRED_LABELS = {"logmel_db": "log-mel dB", "harmony": "harmony"}

COLUMNS = ("generator", "log-mel dB", "harmony", "jump med/p95", "HF med/p95", "tempo %", "key %", "beat F",
           "slip ms/%>40", "step LU", "flatness", "loop s", "recur %", "RTF", "RTF 1st")


def format_table(results: dict, *, markdown: bool = False) -> str:
    """The summary table: one row per generator (the true continuation first, the music's own seams last),
    then the bar of each model generator."""
    def number(value, digits=2, scale=1.0) -> str:
        if value is None or not np.isfinite(value):
            return "-"
        return f"{value * scale:.3g}" if abs(value * scale) >= 1e4 else f"{value * scale:.{digits}f}"

    def pair(a, b, digits=1) -> str:
        return f"{number(a, digits)}/{number(b, digits)}"

    rows = []
    for name, s in results["summary"].items():
        seams = s["seams"]
        rows.append((name, number(s["logmel_db"], 1), number(s.get("harmony", math.nan)),
                     pair(seams["jump_median"], seams["jump_p95"]),
                     pair(seams["hf_ratio_median"], seams["hf_ratio_p95"]),
                     number(s["tempo_held"], 0, 100), number(s["key_held"], 0, 100), number(s["beat_f"]),
                     f"{number(s.get('join_slip_ms', math.nan), 0)}/"
                     f"{number(s.get('join_slip_far_share', math.nan), 0, 100)}",
                     number(s["loudness_step_lu"], 1), number(s["flatness_ratio"]), number(s["longest_loop_s"], 0),
                     number(s["repeated_share"], 0, 100), number(s["real_time_factor"], 4),
                     number(s.get("first_chunk_real_time_factor", math.nan), 4)))
    music = results["reference_seams"]
    rows.append(("(music)", "", "", pair(music["jump_median"], music["jump_p95"]),
                 pair(music["hf_ratio_median"], music["hf_ratio_p95"]), "", "", "", "", "", "", "", "", "", ""))
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        lines = ["  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in
                           enumerate(zip(row, widths, strict=True))) for row in [COLUMNS, *rows]]
    settings = results["settings"]
    lines.append("")
    lines.append(f"{settings['songs']} songs, cut at {settings['cut_s']:g} s, {settings['horizon_s']:g} s generated. "
                 "Medians over songs; harmony: 1 - concordance of the key profiles (0 the same, 1 none shared, as "
                 "silence or noise); jump and HF ratio over all joins (med/p95); tempo % and key %: songs where "
                 "it is held; slip: how far the beats after each join are out of step with those before it (median ms, "
                 f"and the share over {SLIP_FAR_MS:g} ms; the true continuation at its cut: the tracker's own "
                 "scatter); step LU: |loudness step| at the cut; flatness: over the context's (20 s before the cut); "
                 f"loop s: longest exact loop (max over songs) and recur %: time in exact repeats of 10 s or more, "
                 f"over {settings['repetition_minutes']:g} min extensions; RTF: compute per second of audio, median "
                 "chunk, and RTF 1st: the first chunk (resynth: analysis of the memory included), on one core. "
                 "(music): the songs' own beat boundaries scored as joins."
                 + (f" Resynth and jukebox: each song's 10 s measures averaged over {settings['draws']} draws of "
                    "their variety noise (tempo % and key %: share of draws)." if settings.get("draws", 1) > 1
                    else ""))
    if results.get("missing"):
        lines.append("")
        lines.append(f"Not in these per-song scores, so not judged: {', '.join(results['missing'])} (an evaluation "
                     "from before the criterion; its 'chroma' is another measure and is not read as harmony). "
                     "training evaluate scores it.")

    def agreement(judged: dict) -> str:
        return f"the same in {judged['agreement'] * 100:.0f} % of song resamplings"

    for name, bar in results["bar"].items():
        lines.append("")
        tracks = bar.get("resampled_tracks", settings["songs"])
        drawn = ("drawn with replacement" if tracks == settings["songs"]
                 else f"each drawing {tracks} tracks with replacement, a track's clips together")
        lines.append(f"{'**' if markdown else ''}bar for {name}: {_verdict(bar['pass'])}{'**' if markdown else ''}"
                     + (f" ({agreement(bar)}, {bar['resamples']} {drawn})" if "agreement" in bar else ""))
        for label, criterion in bar["criteria"].items():
            lines.append(f"{'- ' if markdown else '  '}{_verdict(criterion['pass'])}  {label}: "
                         f"{number(criterion['value'], 3)} (target {number(criterion['target'], 3)})"
                         + (f"; {agreement(criterion)}" if "agreement" in criterion else ""))
        for rival, by_metric in results.get("paired", {}).get(name, {}).items():
            truth = rival == TRUE
            parts = [f"{f'{key} held' if truth else PAIRED_LABELS[key]} {d['mean_difference']:+.3f} ± "
                     f"{d['standard_error']:.3f}, {_paired_word(d)} ({'more often' if truth else 'closer'} on "
                     f"{d['songs_better']} of {d['songs']} songs)" for key, d in by_metric.items()]
            against = "the true continuation, share of draws" if truth else rival
            lines.append(f"{'- ' if markdown else '  '}paired against {against}, mean difference ± standard error "
                         f"(better or worse: by over {PAIRED_STANDARD_ERRORS:g} of them): " + "; ".join(parts))
    return "\n".join(lines)


def _paired_word(difference: dict) -> str:
    """"better", "not worse" (within the noise) or "worse", from a :func:`_paired` entry; "n/a" for one song."""
    if difference["better"] is None:
        return "n/a"
    return "better" if difference["better"] else "not worse" if difference["not_worse"] else "worse"


def _verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else "PASS" if ok else "FAIL"


def _jsonable(value):
    """NaN and inf as null, numpy scalars as Python numbers: strict JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------ spectrograms


def _write_spectrograms(path: Path, strips: dict[str, np.ndarray], rate: int, *, cut_s: float, horizon_s: float,
                        title: str) -> None:
    """One row per generator: context | generated | true as a log-mel spectrogram, lines at the cut and after."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    context, true = strips["context"], strips[TRUE]
    names = [n for n in strips if n not in ("context", TRUE)]
    analysis_rate = min(rate, 22050)
    images = []
    for name in names:
        audio = np.concatenate([context, strips[name], true])
        audio = librosa.resample(audio, orig_sr=rate, target_sr=analysis_rate) if rate != analysis_rate else audio
        mel = librosa.feature.melspectrogram(y=audio, sr=analysis_rate, n_fft=1024, hop_length=256, n_mels=64)
        images.append(librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None))
    top = max(float(image.max()) for image in images) if images else 0.0
    figure, axes = plt.subplots(len(names), 1, figsize=(11, 1.5 + 1.3 * len(names)), squeeze=False, sharex=True)
    total = cut_s + 2 * horizon_s
    for axis, name, image in zip(axes[:, 0], names, images, strict=True):
        axis.imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                    extent=(-cut_s, total - cut_s, 0, image.shape[0]))
        for x in (0.0, horizon_s):
            axis.axvline(x, color="white", linewidth=1.2)
        axis.set_ylabel(name, rotation=0, ha="right", va="center")
        axis.set_yticks([])
    axes[0, 0].set_title(f"{title}: context | generated | true (log-mel, 80 dB range)")
    axes[-1, 0].set_xlabel("seconds from the cut")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
