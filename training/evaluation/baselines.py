"""The generators an evaluation runs, by name (:func:`make_generator`), and the three baselines defined here.

``seed``, ``resynth`` and ``jukebox`` come from the engine. The baselines learn nothing: ``loop`` (the memory's last
10 s repeated, equal-power crossfade at each repeat), ``match`` (one jump back to the beat whose last 8 beats best
match the memory's last 8, and that stretch repeated) and ``silence``. Every generator has the same small interface:
``extend(song, seconds, only_extension=...)`` returning a :class:`engine.Waveform`, ``joins`` (frames in the
continuation where joins are centred; 0 is the join with the song's end) and ``stats`` (``chunk_seconds``,
``seconds_generated``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engine.analysis import ANALYSIS_RATE, HARMONY, TIMBRE, analyse
from engine.audio import Waveform, resample
from engine.errors import ConfigError
from engine.seam import equal_power_ramps

#: Every generator :func:`make_generator` knows, in table order.
GENERATORS: tuple[str, ...] = ("seed", "resynth", "jukebox", "loop", "match", "silence")
#: The baselines: rivals that no model may fall below, never held to the bar themselves.
BASELINES = ("loop", "match", "silence")


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
