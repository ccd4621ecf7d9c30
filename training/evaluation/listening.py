"""One generator's continuation of one whole song, rendered and measured as a listener hears it (the measures of
the long listen, :mod:`.longlisten`).

The whole song is the memory and the generator plays ``minutes`` of continuation after it. Measured on each
(:func:`listen`):

- **jumps per minute**: the joins after the first one (the cut at the song's end, reported apart), per minute;
- **runs**: the median time between two joins, in seconds, in the song's beats (60 / its tempo, from
  :func:`engine.analysis.analyse` on the song) and in bars (beats / the meter);
- **jumps on downbeats**: the share of jumps whose entry into the song lies within
  :data:`DOWNBEAT_TOLERANCE_S` of a downbeat (``phase == 0``) of the song's analysis. Resynth and jukebox: the
  entry segment's start (``entries`` and ``analysis.bounds``; the rhythm lag of up to a fifth of a beat that
  the renderer adds is not counted); match and loop: the point they return to;
- **beat grid kept**: the share of joins where the beats just after the join do not slip more than
  :data:`.metrics.rhythm.SLIP_FAR_MS` (40 ms) against those just before it, on the rendered audio (the
  song's end, then the continuation), each join as ``training evaluate`` reads its joins (:func:`beat_slips`). The
  same measure at the song's own downbeats (:data:`MUSIC_JOINS` of them) is the tracker's own scatter, the row
  ``(music)``;
- **bars heard**: the share of the song's whole bars that were played whole, in ``minutes`` and in the first
  10. Resynth and jukebox: from the sequencer's history (every segment played, in order); the baselines: the
  bars that lie inside the stretch they repeat;
- **longest verbatim repeat**: :func:`.metrics.repetition.repetition`'s longest exact loop, in seconds.

With a figure asked for, the song's last 20 s and the first 60 s of continuation are drawn as one log-mel
spectrogram, the song's end and every join marked (:func:`write_figure`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.analysis import ANALYSIS_RATE, Analysis, analyse
from engine.audio import Waveform, resample
from engine.errors import ConfigError
from engine.structure import Structure, find_structure

from .baselines import LoopGenerator, MatchGenerator
from .metrics.repetition import repetition
from .metrics.rhythm import SLIP_FAR_MS, beat_continuity_f

#: The generators a long listen can measure (each must say where its joins enter the song), in table order.
GENERATORS: tuple[str, ...] = ("resynth", "jukebox", "match", "loop")
#: An entry this close to a downbeat is on it, in seconds (mir_eval's beat tolerance).
DOWNBEAT_TOLERANCE_S = 0.07
#: Each join's beat slip is read on this much audio before it and after it, in seconds (as the 10 s
#: evaluation reads it: its 20 s context and 10 s continuation).
SLIP_BEFORE_S = 20.0
SLIP_AFTER_S = 10.0
#: The song's end put before the continuation, so the first join has beats before it, in seconds.
GRID_CONTEXT_S = SLIP_BEFORE_S
#: The song's own downbeats measured as joins, for the tracker's own scatter.
MUSIC_JOINS = 32
#: The figure: this much of the song's end and of the continuation, in seconds.
FIGURE_BEFORE_S = 20.0
FIGURE_AFTER_S = 60.0
#: The span of ``bars_heard_share_10min``, in minutes: the bar judges the bars heard in that long.
BAR_MINUTES = 10.0


@dataclass(frozen=True)
class SongReference:
    """What every generator's measures on one song are read against.

    Attributes
    ----------
    analysis : Analysis
        The whole song's, as the engine and the match baseline make it (mono by a matrix-vector downmix, at
        :data:`~engine.analysis.ANALYSIS_RATE`).
    structure : Structure
        Its bars and phrases.
    beat_s : float
        The song's beat, 60 / ``analysis.tempo_bpm``, in seconds; NaN without a beat.
    music_slips_ms : list of float
        The join-slip measure (:func:`beat_slips`) at up to :data:`MUSIC_JOINS` of the song's own downbeats, on
        the song's own audio.
    """

    analysis: Analysis
    structure: Structure
    beat_s: float
    music_slips_ms: list[float]

    @classmethod
    def of(cls, song: Waveform) -> SongReference:
        """Analyse ``song`` (any rate and channels)."""
        rate = song.sample_rate
        mono = song.samples @ np.full(song.channels, 1.0 / song.channels, np.float32)
        analysis = analyse(resample(mono, rate, ANALYSIS_RATE))
        structure = find_structure(analysis)
        beat_s = 60.0 / analysis.tempo_bpm if analysis.tempo_bpm > 0 else math.nan
        downbeats = analysis.bounds[:-1][analysis.phase == 0] / ANALYSIS_RATE
        # Far enough from both ends for beats on each side.
        inside = downbeats[(downbeats > 5.0) & (downbeats < song.seconds - 5.0)]
        chosen = inside[np.unique(np.linspace(0, inside.size - 1, min(MUSIC_JOINS, inside.size)).astype(int))]
        slips = beat_slips(mono, chosen.tolist(), sample_rate=rate, apart=False) if chosen.size else []
        return cls(analysis, structure, beat_s, [slip for slip in slips if slip is not None])


def beat_slips(mono: np.ndarray, joins_s: Sequence[float], *, sample_rate: int,
               apart: bool = True) -> list[float | None]:
    """How far the beats just after each join are out of step with those just before it, in ms.

    Each join is measured as ``training evaluate`` measures the joins of its 10 s continuations
    (:func:`.metrics.rhythm.beat_continuity_f`'s ``join_slips_ms``): beats tracked once over up to
    :data:`SLIP_BEFORE_S` before the join and :data:`SLIP_AFTER_S` after it, read against the beat grid fitted
    to the part before. Only the two runs the join connects: with other joins inside, the tracker and the grid
    bend their tempo until a whole number of beats fits between them. Over a whole 10-minute loop the tracker
    found 16.0, 19.0 and 12.0 beats per 9.95 s cycle on three evaluation tracks (their own beats are 15.6, 25.2
    and 23.8), and with two returns in the 20 s before each return the grid still fitted them, so every return
    read as in step.

    Parameters
    ----------
    mono : numpy.ndarray
        [shape=(frames,), dtype=float32]
    joins_s : sequence of float
        Joins, in seconds from the signal's start.
    sample_rate : int
        In Hz.
    apart : bool
        The joins of one render: each is read between the joins either side of it. False: points in music
        that goes on through them (a song's own downbeats), each read on its whole window.

    Returns
    -------
    list of float or None
        One per join; None where the part before has no beat grid, there are not 2 beats on each side, or
        either run is under a second.
    """
    slips: list[float | None] = []
    at_joins = [round(join * sample_rate) for join in joins_s]
    for at in at_joins:
        lo = at - round(SLIP_BEFORE_S * sample_rate)
        hi = at + round(SLIP_AFTER_S * sample_rate)
        if apart:
            lo = max([lo] + [j for j in at_joins if j < at])
            hi = min([hi] + [j for j in at_joins if j > at])
        before, after = mono[max(0, lo):at], mono[at:hi]
        if before.shape[0] < sample_rate or after.shape[0] < sample_rate:
            slips.append(None)
            continue
        measured = beat_continuity_f(before, after, sample_rate=sample_rate, joins_s=[0.0])["join_slips_ms"]
        slips.append(measured[0] if measured else None)
    return slips


@dataclass(frozen=True)
class Listened:
    """One generator's continuation of one song, as rendered, before it is measured.

    Attributes
    ----------
    continuation : numpy.ndarray
        [shape=(frames,), dtype=float32] mono at the song's rate, the song's end at frame 0.
    joins : numpy.ndarray
        [shape=(joins,), dtype=int64] frames of the continuation where joins are centred, the song's end first.
    entries_s : numpy.ndarray
        [shape=(joins,), dtype=float64] where in the song each join enters, in seconds.
    on_downbeat : numpy.ndarray
        [shape=(joins,), dtype=bool] whether each entry is within :data:`DOWNBEAT_TOLERANCE_S` of a downbeat.
    bar_heard_s : numpy.ndarray
        [shape=(bars,), dtype=float64] when each whole bar of the song had first been played whole, in seconds
        of continuation (inf when never).
    """

    continuation: np.ndarray
    joins: np.ndarray
    entries_s: np.ndarray
    on_downbeat: np.ndarray
    bar_heard_s: np.ndarray


def render(generator, song: Waveform, seconds: float, reference: SongReference) -> Listened:
    """Let ``generator`` continue the whole ``song`` for ``seconds`` and note where it went.

    Parameters
    ----------
    generator : Resynthesizer, MatchGenerator or LoopGenerator
        From :func:`.baselines.make_generator` (``resynth``, ``jukebox``, ``match``, ``loop``).
    song : Waveform
        The memory, whole.
    seconds : float
        Length of the continuation.
    reference : SongReference
        The song's (:meth:`SongReference.of`): the baselines' downbeats and bars are its.

    Returns
    -------
    Listened
        The continuation in mono, its joins within it and where they enter the song, and when each bar was
        first heard whole.

    Raises
    ------
    ConfigError
        A generator that cannot say where its joins enter the song.
    """
    from engine.resynth import Resynthesizer

    rate, frames = song.sample_rate, round(seconds * song.sample_rate)
    if isinstance(generator, Resynthesizer):
        tap = _HistoryTap(generator)
        # Block by block, downmixed as it comes: the whole stereo render need not be in memory at once.
        continuation = np.concatenate([Waveform(block, rate).mono()
                                       for block in generator.render(song, seconds, only_extension=True,
                                                                     progress=tap)])
        joins = np.asarray(generator.joins, np.int64)
        kept = joins < frames  # the renderer plans ahead of what it returned
        a, s = generator.analysis, generator.structure
        # The memory is the song's last memory_s: its analysis counts from there.
        memory_start_s = (song.frames - min(song.frames, round(generator.memory_s * rate))) / rate
        offset = int(a.frames - a.bounds[a.segments - 1])  # how far into its last segment the memory ends
        entries = np.asarray(generator.entries, np.int64)[kept]
        positions = a.bounds[entries] + np.where(np.arange(entries.size) == 0, offset, 0)
        on_downbeat = _on_downbeat(a.bounds[entries], a)
        on_downbeat[:1] = _on_downbeat(positions[:1], a)
        heard = _bars_heard_from_history(tap.played, a, s, offset)
        return Listened(continuation, joins[kept], memory_start_s + positions / ANALYSIS_RATE, on_downbeat, heard)
    if isinstance(generator, MatchGenerator):
        start = generator.match(song).start
    elif isinstance(generator, LoopGenerator):
        fade = max(1, round(generator.crossfade_s * rate))
        start = song.frames - min(round(generator.period_s * rate), song.frames) + fade
    else:
        raise ConfigError(f"{getattr(generator, 'name', generator)!r}: the long listen measures only "
                          f"{', '.join(GENERATORS)}")
    continuation = generator.extend(song, seconds, only_extension=True).mono()
    joins = np.asarray(generator.joins, np.int64)
    joins = joins[joins < frames]
    # Every join, the first too, goes on from ``start``: the stretch from there to the song's end repeats.
    entry = np.array([round(start * ANALYSIS_RATE / rate)])
    on_downbeat = np.repeat(_on_downbeat(entry, reference.analysis), joins.size)
    heard = _bars_heard_in_span(start / rate, song.seconds, reference, seconds)
    return Listened(continuation, joins, np.full(joins.size, start / rate), on_downbeat, heard)


def listen(song: Waveform, generator, *, minutes: float, reference: SongReference | None = None,
           figure: str | os.PathLike | None = None, title: str = "") -> dict:
    """Every long-listen measure of one generator on one song (see the module docstring).

    Parameters
    ----------
    song : Waveform
        The whole song, the memory.
    generator
        ``resynth``, ``jukebox``, ``match`` or ``loop`` from :func:`.baselines.make_generator`.
    minutes : float
        Length of the continuation.
    reference : SongReference, optional
        The song's (computed here when None; pass it to measure several generators on one song).
    figure : str or os.PathLike, optional
        Where to write the song's end and the continuation's first minute as a spectrogram (:func:`write_figure`).
    title : str
        The figure's title.

    Returns
    -------
    dict
        ``minutes``, ``jumps`` and ``jumps_per_minute`` (joins after the song's end), ``song_end`` (the first
        cut: ``entry_s``, ``on_downbeat``, ``slip_ms``), ``runs`` and ``median_run_s``, ``median_run_beats``,
        ``median_run_bars`` (NaN without a beat; with no jump at all, the whole continuation, a lower bound),
        ``downbeat_share`` (of jumps; NaN with none), ``join_slips_ms`` (one per join with beats on both
        sides, None for the others), ``grid_kept_share`` (of those), ``bars`` (the song's whole bars),
        ``bars_heard_share``, ``bars_heard_share_10min`` (only when ``minutes >= 10``), ``longest_repeat_s``
        and ``seconds`` (wall time).
    """
    started = time.monotonic()
    if not minutes > 0:
        raise ConfigError(f"minutes must be positive, got {minutes}")
    reference = reference or SongReference.of(song)
    rate, seconds = song.sample_rate, minutes * 60.0
    heard = render(generator, song, seconds, reference)
    joins_s = heard.joins / rate
    runs = np.diff(joins_s)  # the last run is cut off by the render's end: not a run's length
    if not runs.size:
        runs = np.array([seconds])
    run_s = float(np.median(runs))
    a = reference.analysis
    run_beats = run_s / reference.beat_s
    run_bars = run_beats / a.meter if a.mode == "beats" else math.nan

    tail = song.mono()[-round(GRID_CONTEXT_S * rate):]
    context_s = tail.shape[0] / rate
    slips = beat_slips(np.concatenate([tail, heard.continuation]), (context_s + joins_s).tolist(), sample_rate=rate)
    measured = np.array([s for s in slips if s is not None], dtype=float)

    bars = heard.bar_heard_s.shape[0]
    result = {
        "minutes": minutes,
        "jumps": int(joins_s.size - 1),
        "jumps_per_minute": (joins_s.size - 1) / minutes,
        "song_end": {"entry_s": float(heard.entries_s[0]), "on_downbeat": bool(heard.on_downbeat[0]),
                     "slip_ms": slips[0]},
        "runs": int(max(1, joins_s.size - 1)),
        "median_run_s": run_s,
        "median_run_beats": float(run_beats),
        "median_run_bars": float(run_bars),
        "downbeat_share": float(heard.on_downbeat[1:].mean()) if joins_s.size > 1 else math.nan,
        "join_slips_ms": slips,
        "grid_kept_share": float(np.mean(measured <= SLIP_FAR_MS)) if measured.size else math.nan,
        "bars": int(bars),
        "bars_heard_share": float(np.mean(heard.bar_heard_s <= seconds)) if bars else math.nan,
        "longest_repeat_s": repetition(heard.continuation, sample_rate=rate)["longest_loop_s"],
    }
    if minutes >= BAR_MINUTES:
        result["bars_heard_share_10min"] = (float(np.mean(heard.bar_heard_s <= BAR_MINUTES * 60.0)) if bars
                                            else math.nan)
    if figure is not None:
        write_figure(figure, tail[-round(FIGURE_BEFORE_S * rate):],
                     heard.continuation[:round(FIGURE_AFTER_S * rate)], joins_s, sample_rate=rate, title=title)
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def _on_downbeat(positions: np.ndarray, analysis: Analysis) -> np.ndarray:
    """[shape=(n,), dtype=bool] whether each position (samples at the analysis's rate) is within
    :data:`DOWNBEAT_TOLERANCE_S` of a downbeat of ``analysis`` (a segment start with ``phase == 0``)."""
    downbeats = analysis.bounds[:-1][analysis.phase == 0].astype(np.float64)
    positions = np.atleast_1d(np.asarray(positions, np.float64))
    if not downbeats.size:
        return np.zeros(positions.shape, bool)
    nearest = np.min(np.abs(positions[:, None] - downbeats[None, :]), axis=1)
    return nearest <= DOWNBEAT_TOLERANCE_S * analysis.sample_rate


def _bars_heard_from_history(played: Sequence[int], analysis: Analysis, structure: Structure,
                             offset: int) -> np.ndarray:
    """[shape=(bars,)] when each whole bar was first played whole, in seconds of continuation (inf: never).

    ``played`` is every segment of the continuation in order, the first entered ``offset`` samples in (where
    the song ends in its last segment), so the continuation's clock starts at ``-offset``; a bar counts once
    all its segments were played one after the other, from the first. The first segment, entered part-way,
    never starts a whole bar.
    """
    played = np.asarray(played, np.int64)
    heard = np.full(structure.bars, np.inf)
    if not played.size:
        return heard
    durations = analysis.durations[played].astype(np.float64)
    starts = (np.concatenate([[0.0], np.cumsum(durations)[:-1]]) - offset) / analysis.sample_rate
    ends = starts + durations / analysis.sample_rate
    first = {int(segment): bar for bar, segment in enumerate(structure.bar_starts[:-1])}
    for i in range(1 if offset else 0, played.size):
        bar = first.get(int(played[i]))
        if bar is None or np.isfinite(heard[bar]):
            continue
        length = int(structure.bar_starts[bar + 1] - structure.bar_starts[bar])
        whole = played[i:i + length]
        if whole.size == length and np.array_equal(whole, played[i] + np.arange(length)):
            heard[bar] = ends[i + length - 1]
    return heard


def _bars_heard_in_span(start_s: float, end_s: float, reference: SongReference, seconds: float) -> np.ndarray:
    """[shape=(bars,)] when each whole bar of the song was first heard whole by a baseline that plays the song
    from ``start_s`` to ``end_s`` over and over (seconds of continuation; inf: never within ``seconds``)."""
    a, s = reference.analysis, reference.structure
    bar_start = a.bounds[s.bar_starts[:-1]] / a.sample_rate
    bar_end = a.bounds[s.bar_starts[1:]] / a.sample_rate
    # A bar is heard when its end comes, first time round; one that begins before the span is never whole.
    heard = np.where(bar_start >= start_s - 1e-3, bar_end - start_s, np.inf)
    heard[(bar_end > end_s + 1e-3) | (heard > seconds)] = np.inf
    return heard


class _HistoryTap:
    """Every segment a resynth sequencer plays in the continuation, gathered after each block.

    The sequencer's ``history`` holds the memory's segments then the continuation's, but an endless run
    keeps only its most recent ones; looking after every block (10 s, a few dozen segments) misses none.
    """

    #: The entries matched to find where a shortened history takes up again.
    TAIL = 64

    def __init__(self, generator):
        self.generator = generator
        self.played: list[int] = []
        self._seen: int | None = None  # len(history) at the last look

    def __call__(self, *_progress) -> None:
        history = self.generator.sequencer.history
        if self._seen is None:
            new = history[self.generator.analysis.segments - 1:]
        elif len(history) >= self._seen:
            new = history[self._seen:]
        else:  # shortened since the last look: its oldest entries went, the newest are after what was seen
            new = history[len(history) - _appended_since(self.played, history):]
        self.played.extend(int(k) for k in new)
        self._seen = len(history)


def _appended_since(seen: Sequence[int], history: Sequence[int], tail: int = _HistoryTap.TAIL) -> int:
    """How many of ``history``'s last entries follow the end of ``seen`` (a shortened copy of a history that
    ``seen`` was gathered from): the fewest whose removal leaves ``history`` ending as ``seen`` does."""
    for appended in range(len(history)):
        end = len(history) - appended
        width = min(tail, len(seen), end)
        if width and list(history[end - width:end]) == list(seen[-width:]):
            return appended
    return len(history)


# ----------------------------------------------------------------------------------------------- figure


def write_figure(path: str | os.PathLike, before: np.ndarray, after: np.ndarray, joins_s: Sequence[float], *,
                 sample_rate: int, title: str = "") -> Path:
    """The song's end and its continuation as one log-mel spectrogram, the song's end and each join marked.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.png`` (its folder is made).
    before, after : numpy.ndarray
        [shape=(frames,), dtype=float32] mono: the song's last seconds, then the continuation's first.
    joins_s : sequence of float
        Joins in seconds of continuation (0 the song's end); those past ``after`` are not drawn.
    sample_rate : int
        In Hz.
    title : str
    """
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = min(sample_rate, 22050)
    audio = np.concatenate([before, after])
    audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=rate) if rate != sample_rate else audio
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=audio, sr=rate, n_fft=1024, hop_length=256, n_mels=64),
                              ref=1.0, amin=1e-10, top_db=None)
    start, stop = -before.shape[0] / sample_rate, after.shape[0] / sample_rate
    figure, axis = plt.subplots(figsize=(14, 3.2))
    top = float(mel.max())
    axis.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                extent=(start, stop, 0, mel.shape[0]))
    for join in joins_s:
        if 0 < join <= stop:
            axis.axvline(join, color="cyan", linewidth=1.4, linestyle=(0, (4, 2)))
    axis.axvline(0.0, color="white", linewidth=1.6)
    axis.set_yticks([])
    axis.set_ylabel("log-mel")
    axis.set_xlabel("seconds from the song's end (white); dashed: joins")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
