"""The long listen: minutes of continuation per song, measured as a listener hears them (issue 21, item 5).

A 10 s window (:mod:`training.evaluate`) rewards a locally similar beat; a listener hears phrases. Here the
whole song is the memory and every generator plays ``minutes`` (10) of continuation after it. Measured on
each (:func:`listen`):

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

A figure per song and generator (the song's last 20 s and the first 60 s of continuation, as one log-mel
spectrogram, the song's end and every join marked) goes to ``OUT_DIR/figures/<song>/<generator>.png``, and the
first song's also to ``OUT_DIR/figures/<generator>.png``.

Over songs (:func:`judge`): medians of every measure; song by song, each generator against ``jukebox`` and
``match`` (mean difference ± standard error, :func:`.paired.paired_differences`); and the bar of issue 21, item
6, for resynth and jukebox: at most 8 jumps a minute, a median run of 16 beats or more, the beat grid kept at
95 % of joins or more, 60 % of a song's bars or more heard in 10 minutes (medians over songs).

Songs (:func:`song_listing`): whole tracks of the evaluation packages (:data:`training.evalset.EVAL_PACKAGES`,
never trained on), half from each, in the evaluation set's fixed shuffle of each package's tracks (its seed,
its variant filter), tracks under :data:`MIN_SONG_S` skipped; or every song of a folder.

Outputs: ``OUT_DIR/longlisten.json`` (every measure per song and generator, the summaries, paired differences
and the bar) and ``OUT_DIR/longlisten.md`` (the table, with the 10 s medians of ``training evaluate`` beside it
when its ``results.json`` is given or lies in ``OUT_DIR/..``).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.analysis import ANALYSIS_RATE, Analysis, analyse
from engine.audio import Waveform, load_audio, resample
from engine.errors import ConfigError, EncoreError
from engine.structure import Structure, find_structure

from .baselines import LoopGenerator, MatchGenerator, make_generator
from .files import jsonable, song_files
from .metrics.repetition import repetition
from .metrics.rhythm import SLIP_FAR_MS, beat_continuity_f
from .paired import paired_differences, paired_word, verdict_word
from .workers import run_in_workers

#: The generators a long listen can measure (each must say where its joins enter the song), in table order.
GENERATORS: tuple[str, ...] = ("resynth", "jukebox", "match", "loop")
#: Judged on the bar; the others are baselines.
JUDGED = ("resynth", "jukebox")
#: Each generator is compared song by song with these.
RIVALS = ("jukebox", "match")
DEFAULT_SONGS = 12
DEFAULT_MINUTES = 10.0
#: Tracks shorter than this are left out, in seconds.
MIN_SONG_S = 30.0
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

#: The bar (issue 21, item 6), on medians over songs.
BAR_JUMPS_PER_MINUTE = 8.0
BAR_RUN_BEATS = 16.0
BAR_GRID_KEPT = 0.95
BAR_BARS_HEARD = 0.60
BAR_MINUTES = 10.0

#: Measures summarised over songs, and which way is better (+1 higher, -1 lower). Fewer jumps is better as
#: the bar reads it: the programs listeners like jump about once in 24 beats.
MEASURES: dict[str, int] = {
    "jumps_per_minute": -1,
    "median_run_s": +1,
    "median_run_beats": +1,
    "median_run_bars": +1,
    "downbeat_share": +1,
    "grid_kept_share": +1,
    "bars_heard_share": +1,
    "bars_heard_share_10min": +1,
    "longest_repeat_s": -1,
}
#: Compared song by song (the run in beats stands for the run in seconds and bars).
PAIRED = ("jumps_per_minute", "median_run_beats", "downbeat_share", "grid_kept_share", "bars_heard_share",
          "longest_repeat_s")
#: The 10 s medians of ``training evaluate`` shown beside, from its ``results.json`` summary.
TEN_SECONDS = {"logmel_db": "log-mel dB", "harmony": "harmony", "tempo_held": "tempo %", "key_held": "key %",
               "beat_f": "beat F"}


# ------------------------------------------------------------------------------------------------ songs


def song_listing(*, songs: int | None = None, songs_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The songs of a long listen, as ``(name, path)``.

    Parameters
    ----------
    songs : int, optional
        How many: from the packages, :data:`DEFAULT_SONGS` when None, the first half (rounded down) from the
        first package and the rest from the second; from ``songs_dir``, all when None.
    songs_dir : str or os.PathLike, optional
        A folder of songs (sorted, not searched recursively) instead of the packages.

    Returns
    -------
    list of (str, pathlib.Path)
        From the packages, named ``<package>--<track>``, in the evaluation set's fixed shuffle of each
        package's tracks (variants left out), tracks under :data:`MIN_SONG_S` by their header skipped.

    Raises
    ------
    ConfigError
        A package is not installed, ``songs`` is under 1, or ``songs_dir`` holds no songs.
    """
    if songs is not None and songs < 1:
        raise ConfigError(f"songs must be 1 or more, got {songs}")
    if songs_dir is not None:
        return [(path.stem, path) for path in song_files(songs_dir)[:songs]]
    import soundfile

    from ..corpus import evalset
    from ..corpus.jobs import safe_name
    from ..corpus.packages import dpkg_files

    packages = evalset.EVAL_PACKAGES
    count = DEFAULT_SONGS if songs is None else songs
    wanted = [count // len(packages)] * len(packages)
    wanted[-1] += count - sum(wanted)
    listing = []
    for package, take in zip(packages, wanted, strict=True):
        tracks = sorted(evalset.package_tracks(package, dpkg_files(package)))
        if not tracks:
            raise ConfigError(f"the long listen needs {package}: sudo apt-get install {package} (make apt-eval)")
        # The evaluation set's shuffle (training.evalset._choose): the same tracks first everywhere.
        random.Random(f"encore-evalset:{package}").shuffle(tracks)
        for origin in tracks:
            if take == 0:
                break
            try:
                seconds = soundfile.info(origin).duration
            except (RuntimeError, OSError):
                seconds = math.inf  # decoded later; too short there, it is skipped then
            if seconds >= MIN_SONG_S:
                listing.append((f"{package}--{safe_name(Path(origin).stem)}", Path(origin)))
                take -= 1
    return listing


# ------------------------------------------------------------------------------------------- one song


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


# ------------------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class _ListenTask:
    """What measuring one song needs besides its generators (picklable, for workers)."""

    out_dir: Path
    minutes: float

    def run(self, name: str, path: Path, made: dict, say: Callable[[str], None]) -> dict | None:
        """Every generator's measures on one song, and its figures; None when the song is too short."""
        song = load_audio(path)
        if song.seconds < MIN_SONG_S:
            say(f"{name}: skipped, {song.seconds:.1f} s is under {MIN_SONG_S:g} s")
            return None
        started = time.monotonic()
        reference = SongReference.of(song)
        a = reference.analysis
        music = np.asarray(reference.music_slips_ms, float)
        entry = {"song": {"path": str(path), "seconds": round(song.seconds, 2), "sample_rate": song.sample_rate,
                          "mode": a.mode, "tempo_bpm": a.tempo_bpm, "meter": a.meter,
                          "bars": reference.structure.bars,
                          "music_grid_kept_share": float(np.mean(music <= SLIP_FAR_MS)) if music.size else math.nan,
                          "music_joins": int(music.size)}}
        say(f"{name}: {song.seconds:.0f} s, {a.describe()}, {reference.structure.bars} bars "
            f"({time.monotonic() - started:.1f} s)")
        for generator_name, generator in made.items():
            try:
                scores = listen(song, generator, minutes=self.minutes, reference=reference,
                                figure=self.out_dir / "figures" / name / f"{generator_name}.png",
                                title=f"{name}: {generator_name}")
            except EncoreError as e:
                raise EncoreError(f"{name}: {generator_name}: {e}") from e
            entry[generator_name] = scores
            say(f"{name}: {generator_name}: {_progress_line(scores)}")
        return entry


def _progress_line(scores: dict) -> str:
    def percent(value) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{100 * value:.0f} %"

    return (f"{scores['jumps_per_minute']:.1f} jumps/min, run {scores['median_run_s']:.1f} s "
            f"({scores['median_run_beats']:.1f} beats), downbeats {percent(scores['downbeat_share'])}, "
            f"grid kept {percent(scores['grid_kept_share'])}, bars heard {percent(scores['bars_heard_share'])}, "
            f"longest repeat {scores['longest_repeat_s']:.0f} s ({scores['seconds']:.1f} s)")


def _listen_in_worker(generators: dict, task: _ListenTask, name: str, path: Path) -> tuple[dict | None, list[str]]:
    lines: list[str] = []
    return task.run(name, path, generators, lines.append), lines


def longlisten(out_dir: str | os.PathLike, *, songs: int | None = None, minutes: float = DEFAULT_MINUTES,
               generators: Sequence[str] = GENERATORS, songs_dir: str | os.PathLike | None = None,
               ten_seconds: str | os.PathLike | None = None, jobs: int = 1,
               progress: Callable[[str], None] | None = None) -> dict:
    """Measure every generator over ``minutes`` of continuation of every song, judge them, write the results.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Where ``longlisten.json``, ``longlisten.md`` and ``figures/`` go (made if needed).
    songs : int, optional
        How many songs (:func:`song_listing`).
    minutes : float
        Continuation per song and generator.
    generators : sequence of str
        Names from :data:`GENERATORS`.
    songs_dir : str or os.PathLike, optional
        A folder of songs instead of the evaluation packages.
    ten_seconds : str or os.PathLike, optional
        A ``results.json`` of ``training evaluate`` whose 10 s medians go beside; ``out_dir/../results.json``
        when None and it exists.
    jobs : int
        Worker processes, each pinned to a core of its own (as ``training evaluate --jobs``); 1 runs here.
    progress : callable, optional
        Called with a line per song and generator (with workers, a song's lines when it is done).

    Returns
    -------
    dict
        What ``longlisten.json`` holds: ``settings``, ``songs`` (per song: the song's analysis, and each
        generator's measures from :func:`listen`), ``music`` (the tracker's own scatter), ``summary``,
        ``paired``, ``bar`` and ``ten_seconds`` (None without an evaluation).

    Raises
    ------
    ConfigError
        An unknown generator, bad settings, no song, or every song too short.
    """
    say = progress or (lambda line: None)
    names = list(dict.fromkeys(generators))
    unknown = [name for name in names if name not in GENERATORS]
    if unknown or not names:
        raise ConfigError(f"the long listen measures {', '.join(GENERATORS)}; got {', '.join(unknown) or 'none'}")
    if not 0 < minutes <= 120:
        raise ConfigError(f"minutes must be over 0 and at most 120, got {minutes}")
    cores = sorted(os.sched_getaffinity(0))
    if not 1 <= jobs <= len(cores):
        raise ConfigError(f"jobs must be 1 to {len(cores)} (the cores this process may use), got {jobs}")
    out_dir = Path(out_dir)
    ten_path = Path(ten_seconds) if ten_seconds is not None else out_dir.resolve().parent / "results.json"
    ten = read_ten_seconds(ten_path) if ten_seconds is not None or ten_path.is_file() else None
    listing = song_listing(songs=songs, songs_dir=songs_dir)
    if not listing:
        raise ConfigError("no songs to listen to")
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    task = _ListenTask(out_dir=out_dir, minutes=minutes)
    started = time.monotonic()
    if jobs == 1:
        made = {name: make_generator(name) for name in names}
        done = {name: task.run(name, path, made, say) for name, path in listing}
    else:
        done = _listen_in_workers(listing, task, names, cores[:jobs], say)
    per_song = {name: done[name] for name, _ in listing if done.get(name) is not None}
    if not per_song:
        raise ConfigError(f"every song is under {MIN_SONG_S:g} s")
    first = next(iter(per_song))
    for name in names:  # the first song's figures, where a reader looks first
        shutil.copyfile(out_dir / "figures" / first / f"{name}.png", out_dir / "figures" / f"{name}.png")
    results = {
        "settings": {"songs": len(per_song), "minutes": minutes, "generators": names,
                     "songs_dir": None if songs_dir is None else str(songs_dir), "jobs": jobs,
                     "ten_seconds": None if ten is None else str(ten_path),
                     "seconds": round(time.monotonic() - started, 1)},
        **judge(per_song, names, minutes),
        "ten_seconds": ten,
        "songs": per_song,
    }
    (out_dir / "longlisten.json").write_text(json.dumps(jsonable(results), indent=1) + "\n")
    (out_dir / "longlisten.md").write_text(format_table(results, markdown=True) + "\n")
    return results


def _listen_in_workers(listing: list[tuple[str, Path]], task: _ListenTask, names: list[str], cores: list[int],
                       say: Callable[[str], None]) -> dict[str, dict | None]:
    """:meth:`_ListenTask.run` for every song on one spawned worker per core, set up as ``training evaluate``'s
    (:func:`.workers.run_in_workers`: its own core, librosa loaded, freed memory kept, its generators)."""
    jobs = {name: (task, name, path) for name, path in listing}
    return run_in_workers(_listen_in_worker, jobs, names=names, variety=None, threads=1, cores=cores, say=say)


def read_ten_seconds(path: str | os.PathLike) -> dict:
    """The 10 s medians (:data:`TEN_SECONDS`) per generator from a ``training evaluate`` ``results.json``.

    Raises
    ------
    ConfigError
        Not a readable results file of ``training evaluate``.
    """
    path = Path(path)
    try:
        summary = json.loads(path.read_text())["summary"]
        return {name: {key: row.get(key) for key in TEN_SECONDS} for name, row in summary.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: not the results of training evaluate ({e.__class__.__name__}: {e})") from None


# ------------------------------------------------------------------------------------------------ judge


def judge(per_song: dict[str, dict], generators: Sequence[str], minutes: float) -> dict:
    """Medians over songs, paired differences and the bar, from per-song measures.

    Parameters
    ----------
    per_song : dict
        Song name to ``{"song": ..., <generator>: listen()'s dict}``.
    generators : sequence of str
    minutes : float
        The continuation's length (the 10-minute criterion needs 10 or more).

    Returns
    -------
    dict
        ``summary`` (per generator, the median of each of :data:`MEASURES` and ``songs``), ``music`` (the
        median share of the songs' own downbeats where the grid holds), ``paired`` (per generator, per rival
        of :data:`RIVALS`, per measure of :data:`PAIRED`: :func:`.paired.paired_differences`'s entry, the mean
        difference in the measure's own direction) and ``bar`` (resynth and jukebox, :func:`bar`).
    """
    def median(values) -> float:
        values = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
        return float(np.median(values)) if values.size else math.nan

    summary = {}
    for name in generators:
        rows = [song[name] for song in per_song.values() if name in song]
        summary[name] = {"songs": len(rows), **{key: median(row.get(key) for row in rows) for key in MEASURES}}
    music = {"grid_kept_share": median(song["song"].get("music_grid_kept_share") for song in per_song.values())}
    # paired_differences takes lower as better: measures where higher is better go in negated and come out turned back.
    oriented = {song: {name: {key: -MEASURES[key] * row[key] if row.get(key) is not None else None
                              for key in PAIRED}
                       for name, row in entry.items() if name in generators}
                for song, entry in per_song.items()}
    paired = {}
    for name in generators:
        rivals = [r for r in RIVALS if r in generators and r != name]
        found = paired_differences(name, oriented, rivals=rivals, distances=PAIRED, truth=False) if rivals else {}
        for by_measure in found.values():
            for key, difference in by_measure.items():
                difference["mean_difference"] = -MEASURES[key] * difference["mean_difference"] + 0.0  # no -0
        paired[name] = found
    bars = {name: bar(summary[name], minutes) for name in JUDGED if name in summary}
    return {"summary": summary, "music": music, "paired": paired, "bar": bars}


def bar(summary: dict, minutes: float) -> dict:
    """The long listen's bar (issue 21, item 6) on one generator's medians over songs.

    At most :data:`BAR_JUMPS_PER_MINUTE` jumps a minute, a median run of :data:`BAR_RUN_BEATS` beats or more,
    the beat grid kept at :data:`BAR_GRID_KEPT` of joins or more, :data:`BAR_BARS_HEARD` of a song's bars or
    more heard in :data:`BAR_MINUTES` minutes (not judged, ``pass`` None, in a shorter listen or where a median
    is NaN).

    Parameters
    ----------
    summary : dict
        One generator's ``summary`` entry (:func:`judge`).
    minutes : float

    Returns
    -------
    dict
        ``pass`` (every judged criterion passes, and one at least was judged) and ``criteria``: label to
        ``pass``, ``value`` and ``target``.
    """
    def check(ok: bool, value: float, target: float) -> dict:
        return {"pass": bool(ok) if np.isfinite(value) else None, "value": value, "target": target}

    heard = summary.get("bars_heard_share_10min", math.nan) if minutes >= BAR_MINUTES else math.nan
    criteria = {
        f"at most {BAR_JUMPS_PER_MINUTE:g} jumps a minute": check(
            summary["jumps_per_minute"] <= BAR_JUMPS_PER_MINUTE, summary["jumps_per_minute"], BAR_JUMPS_PER_MINUTE),
        f"median run of {BAR_RUN_BEATS:g} beats or more": check(
            summary["median_run_beats"] >= BAR_RUN_BEATS, summary["median_run_beats"], BAR_RUN_BEATS),
        f"beat grid kept at {BAR_GRID_KEPT * 100:g} % of joins or more": check(
            summary["grid_kept_share"] >= BAR_GRID_KEPT, summary["grid_kept_share"], BAR_GRID_KEPT),
        f"{BAR_BARS_HEARD * 100:g} % of a song's bars or more heard in {BAR_MINUTES:g} minutes": check(
            heard >= BAR_BARS_HEARD, heard, BAR_BARS_HEARD),
    }
    judged = [c["pass"] for c in criteria.values() if c["pass"] is not None]
    return {"pass": bool(judged) and all(judged), "criteria": criteria}


COLUMNS = ("generator", "jumps/min", "run s", "run beats", "run bars", "downbeat %", "grid kept %", "bars heard %",
           "in 10 min %", "repeat s")


def format_table(results: dict, *, markdown: bool = False) -> str:
    """The table: a row per generator (medians over songs) and the tracker's own scatter, the 10 s medians
    beside when there are any; then the paired differences and the bar."""
    def number(value, digits=1, scale=1.0) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{value * scale:.{digits}f}"

    ten = results.get("ten_seconds")
    columns = COLUMNS + (tuple(f"10 s {label}" for label in TEN_SECONDS.values()) if ten else ())
    rows = []
    for name, s in results["summary"].items():
        row = [name, number(s["jumps_per_minute"]), number(s["median_run_s"]), number(s["median_run_beats"]),
               number(s["median_run_bars"]), number(s["downbeat_share"], 0, 100),
               number(s["grid_kept_share"], 0, 100), number(s["bars_heard_share"], 0, 100),
               number(s["bars_heard_share_10min"], 0, 100), number(s["longest_repeat_s"], 0)]
        if ten:
            other = ten.get(name, {})
            row += [number(other.get("logmel_db")), number(other.get("harmony"), 2),
                    number(other.get("tempo_held"), 0, 100), number(other.get("key_held"), 0, 100),
                    number(other.get("beat_f"), 2)]
        rows.append(row)
    music = ["(music)", "", "", "", "", "", number(results["music"]["grid_kept_share"], 0, 100), "", "", ""]
    rows.append(music + ([""] * len(TEN_SECONDS) if ten else []))
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(str(row[i])) for row in [columns, *rows]) for i in range(len(columns))]
        lines = ["  ".join(str(cell).rjust(w) if i else str(cell).ljust(w)
                           for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in [columns, *rows]]
    settings = results["settings"]
    lines += ["", f"{settings['songs']} songs, the whole song as memory, {settings['minutes']:g} min of continuation "
              "each. Medians over songs of: jumps a minute (joins after the one at the song's end); the median run "
              "between joins in s, in the song's beats and bars; downbeat %: jumps entering within "
              f"{DOWNBEAT_TOLERANCE_S * 1000:g} ms of a downbeat of the song's analysis; grid kept %: joins whose "
              f"beats after it slip at most {SLIP_FAR_MS:g} ms against those before it ((music): the same at the "
              "songs' own downbeats, the tracker's own scatter); bars heard %: the song's whole bars played whole, "
              f"in the {settings['minutes']:g} min and in the first 10; repeat s: longest exact loop."
              + (f" 10 s: training evaluate's medians ({settings['ten_seconds']})." if ten else "")]
    for name, by_rival in results["paired"].items():
        for rival, by_measure in by_rival.items():
            parts = [f"{key} {d['mean_difference']:+.3g} ± {d['standard_error']:.2g} {paired_word(d)}"
                     for key, d in by_measure.items()]
            lines.append(f"{'- ' if markdown else '  '}{name} against {rival}, paired mean difference ± standard "
                         "error (better or worse: by over 2 of them): " + "; ".join(parts))
    for name, judged in results["bar"].items():
        lines.append("")
        lines.append(f"{'**' if markdown else ''}long-listen bar for {name}: {verdict_word(judged['pass'])}"
                     f"{'**' if markdown else ''}")
        for label, criterion in judged["criteria"].items():
            lines.append(f"{'- ' if markdown else '  '}{verdict_word(criterion['pass'])}  {label}: "
                         f"{number(criterion['value'], 3)} (target {number(criterion['target'], 3)})")
    return "\n".join(lines)
