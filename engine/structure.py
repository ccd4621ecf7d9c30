"""Bars and phrases of a memory: where a continuation may jump, and where it prefers to.

A listener hears a song in phrases: 4, 8 or 16 bars that begin and end together. The sequencer
(:mod:`engine.sequencer`) plays the song's own material in runs of whole bars, and jumps from a bar line to a bar
line, preferring phrase lines. This module finds them from the song itself:

- **Bars**: the analysis's beats grouped from each downbeat (``Analysis.phase == 0``), ``meter`` beats a bar. A
  memory with no steady beat (onsets, a grid) is grouped into pseudo-bars of about :data:`PSEUDO_BAR_S`.
  Only whole bars count: a pickup before the first downbeat and the bar the memory ends in are never entered.
- **Bar distances**: each bar as its beats' timbre and harmony, beat by beat (so the bar's own pattern counts),
  compared with every other bar: the beat-synchronous self-similarity matrix.
- **Phrase lines**: a novelty curve on that matrix (a checkerboard kernel, Foote's method: where what comes
  after a bar line is unlike what came before) plus the bar lines where a repetition begins (a diagonal stripe
  of the recurrence matrix starts: each bar's mutual nearest neighbours, as librosa.segment.recurrence_matrix),
  on a grid of 4 bars whose offset fits those peaks best; then the 8- and 16-bar lines of the same grid, each
  offset chosen the same way. Strong novelty peaks off the grid are section starts too.
- **Transitions**: what playing bar ``j`` right after bar ``i`` costs: how unlike the two bars before ``j``
  are to the two just played, and ``j`` to the bar that would have come next. Going on in order costs 0.

Everything is numpy on a few hundred bars (a 5-minute song at 120 bpm has 150), so it costs milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .analysis import HARMONY, TIMBRE, Analysis

#: Length of a pseudo-bar where the memory has no beat to count bars by, in seconds.
PSEUDO_BAR_S = 2.0
#: Bars per phrase, and the grid levels above it: a phrase line is level 1, an 8-bar line 2, a 16-bar line 3.
PHRASE_BARS = 4
LEVEL_BARS = (PHRASE_BARS, 2 * PHRASE_BARS, 4 * PHRASE_BARS)
#: Half-width of the novelty kernel, in bars: a phrase on each side.
NOVELTY_HALF_BARS = 4
#: A novelty peak this many standard deviations above the mean starts a section, on the grid or not.
SECTION_Z = 1.5
#: Harmony counts twice timbre in a bar's description, as in the engine's join cost (chroma is 12 numbers
#: against 32 mel bands, and a wrong chord is what a listener hears first).
HARMONY_WEIGHT = 2.0
#: Weight of the older of the two bars compared before an entry (the one just before it counts 1).
OLDER_BAR_WEIGHT = 0.5


@dataclass(frozen=True)
class Structure:
    """Bars, phrase lines and transition costs of one memory.

    Attributes
    ----------
    bar_starts : numpy.ndarray
        [shape=(bars + 1,), dtype=int64] the segment each whole bar starts at, then the segment after the last
        whole bar (so bar ``k`` is segments ``bar_starts[k]`` to ``bar_starts[k + 1] - 1``).
    beats_per_bar : int
        Segments per bar: the meter with a beat, else a pseudo-bar's segments.
    level : numpy.ndarray
        [shape=(bars,), dtype=int64] what the line at the start of each bar is: 0 a bar line, 1 a phrase line
        (4 bars), 2 an 8-bar line, 3 a 16-bar line or a section start.
    transition : numpy.ndarray
        [shape=(bars, bars), dtype=float64] cost of playing bar ``j`` right after bar ``i``, in units of its
        median over all jumps; 0 where ``j == i + 1``.
    novelty : numpy.ndarray
        [shape=(bars,), dtype=float64] the novelty at the start of each bar, standardised.
    bar_seconds : float
        The median whole bar's length.
    """

    bar_starts: np.ndarray
    beats_per_bar: int
    level: np.ndarray
    transition: np.ndarray
    novelty: np.ndarray
    bar_seconds: float

    @property
    def bars(self) -> int:
        return int(self.bar_starts.shape[0] - 1)

    @property
    def phrase_starts(self) -> np.ndarray:
        """[shape=(phrases,), dtype=int64] bars that start a phrase (level 1 or more)."""
        return np.flatnonzero(self.level >= 1)

    @property
    def sections(self) -> int:
        """Sections: the song's 16-bar lines and section starts."""
        return int(np.count_nonzero(self.level >= 3))

    def bar_of_segment(self, segments: int) -> np.ndarray:
        """[shape=(segments,), dtype=int64] the whole bar each segment of the memory lies in, -1 outside any."""
        out = np.full(segments, -1, np.int64)
        for k in range(self.bars):
            out[self.bar_starts[k]:self.bar_starts[k + 1]] = k
        return out

    def describe(self) -> str:
        """``92 bars, 23 phrases of 4 bars, 6 sections`` for the segmentation line."""
        return (f"{self.bars} bars, {self.phrase_starts.shape[0]} phrases of {PHRASE_BARS} bars, "
                f"{self.sections} sections")


def find_structure(analysis: Analysis) -> Structure:
    """Group a memory's segments into bars and find its phrase lines and transition costs.

    Parameters
    ----------
    analysis : Analysis
        The memory's segmentation (:func:`engine.analysis.analyse`).

    Returns
    -------
    Structure
        Always at least one bar: a memory too short for two whole bars has one bar of all its usable segments.
    """
    bar_starts, per_bar = _bar_starts(analysis)
    n = bar_starts.shape[0] - 1
    bar_seconds = float(np.median(np.diff(analysis.bounds[bar_starts]))) / analysis.sample_rate
    look = np.concatenate([analysis.features[:, TIMBRE], HARMONY_WEIGHT * analysis.features[:, HARMONY]], axis=1)
    # Each bar as its first per_bar segments side by side (a bar of the grid fallback may hold more).
    index = bar_starts[:-1, None] + np.arange(per_bar)[None, :]
    stacked = look[np.minimum(index, bar_starts[1:, None] - 1)].reshape(n, -1) / np.sqrt(per_bar)
    squared = (stacked ** 2).sum(axis=1)
    distance = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * stacked @ stacked.T, 0.0))
    novelty = _novelty(distance)
    starts = _repetition_starts(distance)
    level = _levels(novelty + _standard(starts), novelty)
    return Structure(bar_starts=bar_starts, beats_per_bar=per_bar, level=level,
                     transition=_transitions(distance), novelty=novelty, bar_seconds=bar_seconds)


def _bar_starts(analysis: Analysis) -> tuple[np.ndarray, int]:
    """Whole bars: from each downbeat, ``meter`` segments, never the memory's last (cut short) segment."""
    usable = analysis.segments - 1  # the last segment ends where the memory ends: it is never a whole one
    if analysis.mode == "beats" and analysis.meter > 1:
        per_bar = int(analysis.meter)
        downbeats = np.flatnonzero(analysis.phase[:usable] == 0)
        downbeats = downbeats[downbeats + per_bar <= usable]
    else:
        median_s = float(np.median(analysis.durations)) / analysis.sample_rate
        per_bar = max(1, round(PSEUDO_BAR_S / max(median_s, 1e-3)))
        downbeats = np.arange(0, usable - per_bar + 1, per_bar)
    if downbeats.shape[0] < 2:  # too short for two whole bars: one bar of what there is
        return np.array([0, max(1, usable)], np.int64), max(1, min(per_bar, usable))
    # Bars follow each other: a gap (a tracker's skipped beat) ends one bar where the next begins.
    return np.append(downbeats, downbeats[-1] + per_bar).astype(np.int64), per_bar


def _standard(x: np.ndarray) -> np.ndarray:
    spread = float(x.std())
    return (x - x.mean()) / spread if spread > 1e-12 else np.zeros_like(x)


def _novelty(distance: np.ndarray) -> np.ndarray:
    """Foote novelty at each bar line: a Gaussian-tapered checkerboard kernel along the self-similarity's
    diagonal. High where the bars after the line are alike, the bars before it are alike, and the two differ.
    Standardised over the lines where the whole kernel lies inside the memory; 0 (the mean) nearer its ends,
    where it would read padding."""
    n = distance.shape[0]
    scale = float(np.median(distance[distance > 0])) if np.any(distance > 0) else 1.0
    similarity = np.exp(-distance / scale)
    half = min(NOVELTY_HALF_BARS, n // 2)
    out = np.zeros(n)
    if half < 1:
        return out
    offsets = np.arange(-half, half)
    sign = np.where(offsets < 0, -1.0, 1.0)
    taper = np.exp(-0.5 * ((offsets + 0.5) / (0.5 * half)) ** 2)
    kernel = (sign[:, None] * sign[None, :]) * (taper[:, None] * taper[None, :])
    lines = np.arange(half, n - half + 1)
    lines = lines[lines < n]
    for b in lines:  # the line at the start of bar b: bars b - half .. b + half - 1 around it
        out[b] = float((kernel * similarity[b - half:b + half, b - half:b + half]).sum())
    out[lines] = _standard(out[lines])
    return out


def recurrence(distance: np.ndarray, *, width: int = 2) -> np.ndarray:
    """Which bars recur as each other: the mutual ``k``-nearest-neighbour recurrence matrix, with
    ``k = ceil(sqrt(bars))`` and bars closer than ``width`` on the timeline never each other's neighbours.

    The definition of ``librosa.segment.recurrence_matrix(..., k=k, width=width, sym=True,
    mode="connectivity")``, computed from the distance matrix already at hand: librosa's builds a
    nearest-neighbour index with scikit-learn, whose first import alone took 0.26 s here, on the way to a song's
    first continuation. (In connectivity mode librosa 0.11 keeps ``k`` of its ``k + 2 * width`` nearest by
    index order, its link weights all being 1; this keeps the ``k`` nearest.)

    Parameters
    ----------
    distance : numpy.ndarray
        [shape=(bars, bars)] symmetric distances.

    Returns
    -------
    numpy.ndarray
        [shape=(bars, bars), dtype=bool] symmetric; True where each bar is among the other's neighbours.
    """
    n = distance.shape[0]
    k = max(2, int(np.ceil(np.sqrt(n))))
    masked = distance.astype(np.float64, copy=True)
    near = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) < width
    masked[near] = np.inf
    k = min(k, max(1, n - 2 * width + 1))
    nearest = np.argpartition(masked, k - 1, axis=1)[:, :k]
    neighbours = np.zeros((n, n), bool)
    neighbours[np.repeat(np.arange(n), k), nearest.ravel()] = True
    neighbours &= ~near
    return neighbours & neighbours.T


def _repetition_starts(distance: np.ndarray) -> np.ndarray:
    """How many repetitions begin at each bar: diagonal stripes of the recurrence matrix that start there and
    last two bars at least (one look-alike bar is no repetition), counted on both sides of the stripe."""
    n = distance.shape[0]
    if n < 6:
        return np.zeros(n)
    recurring = recurrence(distance)
    begins = recurring.copy()
    begins[1:, 1:] &= ~recurring[:-1, :-1]
    begins[:-1, :-1] &= recurring[1:, 1:]
    # At the memory's first and last bars a stripe only seems to begin: what lies beyond them is not known.
    begins[0, :] = begins[:, 0] = begins[-1, :] = begins[:, -1] = False
    return begins.sum(axis=0).astype(np.float64)


def _levels(peaks: np.ndarray, novelty: np.ndarray) -> np.ndarray:
    """Phrase, 8-bar and 16-bar lines: the grid offset of each level that the ``peaks`` curve fits best (the
    finer level's lines are candidates for the coarser one's), and novelty peaks off the grid as sections."""
    n = peaks.shape[0]
    level = np.zeros(n, np.int64)
    offset, previous = 0, 1
    for rank, bars in enumerate(LEVEL_BARS, start=1):
        if n < bars and rank > 1:
            break
        choices = [offset + k * previous for k in range(bars // previous)]
        # argmax keeps the first of equals: the memory's first whole bar, where a song's phrases usually start.
        fits = [peaks[c % bars::bars].mean() if peaks[c % bars::bars].size else -np.inf for c in choices]
        offset = choices[int(np.argmax(fits))] % bars
        level[offset::bars] = rank
        previous = bars
    if n < LEVEL_BARS[-1]:  # shorter than one 16-bar line to the next: too short to have sections
        return level
    inner = np.arange(1, n - 1)
    peak = inner[(novelty[inner] >= novelty[inner - 1]) & (novelty[inner] >= novelty[inner + 1])
                 & (novelty[inner] > SECTION_Z)]
    level[peak] = np.maximum(level[peak], len(LEVEL_BARS))
    return level


def _transitions(distance: np.ndarray) -> np.ndarray:
    """[shape=(bars, bars)] cost of bar ``j`` right after bar ``i``: the two bars before ``j`` against the two
    just played (the older at :data:`OLDER_BAR_WEIGHT`), and ``j`` against the bar that would have come next;
    terms that fall outside the memory are left out. Normalised by the median over all jumps."""
    n = distance.shape[0]
    total, weight = np.zeros((n, n)), np.zeros((n, n))
    # j - 1 against i: what leads into the entry sounds like what was just played.
    total[:, 1:] += distance[:, :-1]
    weight[:, 1:] += 1.0
    # j - 2 against i - 1.
    total[1:, 2:] += OLDER_BAR_WEIGHT * distance[:-1, :-2]
    weight[1:, 2:] += OLDER_BAR_WEIGHT
    # j against i + 1: the entry sounds like what would have come next.
    total[:-1, :] += distance[1:, :]
    weight[:-1, :] += 1.0
    cost = total / np.maximum(weight, 1e-9)
    cost[weight == 0] = np.inf
    in_order = np.arange(n - 1)
    cost[in_order, in_order + 1] = 0.0
    jumps = cost[np.isfinite(cost) & (cost > 0)]
    return cost / (float(np.median(jumps)) if jumps.size else 1.0)
