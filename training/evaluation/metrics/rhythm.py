"""Whether a continuation keeps the beat of the music before it: tempo, the beat grid carried over the cut, and how
far the beats slip at each join."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from engine.audio import resample

from .signals import as_mono, is_silent

#: A join whose beats slip by more than this (ms) is counted apart: a stumble a listener hears in a steady beat.
SLIP_FAR_MS = 40.0
#: Beats are tracked at this rate at most (librosa's own default rate; onsets need no more).
BEAT_RATE = 22050


def tempo_bpm(x: np.ndarray, *, sample_rate: int) -> float:
    """Tempo in beats per minute: the period of the beat grid that best fits the audio's onsets.

    librosa's tracker finds the beats, but its period is quantised to whole frames (about 1 % steps at
    110 bpm, enough to drift a beat off the grid within 10 s); the period is then refined to 0.05 % by the
    comb of beats that collects the most onset strength (:func:`beat_grid`).

    Parameters
    ----------
    x : numpy.ndarray
        [shape=(frames,)] mono.
    sample_rate : int
        In Hz.

    Returns
    -------
    float
        In bpm; NaN when fewer than 4 beats are found (silence, no pulse).
    """
    period, _ = beat_grid(x, sample_rate=sample_rate)
    return 60.0 / period if np.isfinite(period) else math.nan


def beat_grid(x: np.ndarray, *, sample_rate: int) -> tuple[float, float]:
    """The regular beat grid that best explains the audio: its period and its last beat.

    librosa's beat tracker gives the beats; a line through them gives a first period. Period (within 3 %, in
    0.05 % steps) and phase (within 40 ms of the last tracked beat) are then chosen to maximise the mean onset
    strength (3 ms frames) at the grid's beats over the whole signal.

    Parameters
    ----------
    x : numpy.ndarray
        [shape=(frames,)] mono.
    sample_rate : int
        In Hz.

    Returns
    -------
    period_s : float
        Seconds per beat; NaN when fewer than 4 beats are found.
    last_beat_s : float
        Time of the grid's last beat in the signal, in seconds from its start; NaN without a grid.
    """
    x, sample_rate = _beat_rate(as_mono(x), sample_rate)
    return _fit_grid(x, sample_rate, _beat_times(x, sample_rate))


def _fit_grid(x: np.ndarray, sample_rate: int, beats: np.ndarray) -> tuple[float, float]:
    """:func:`beat_grid` from beats already tracked (seconds, in ``x``'s time)."""
    import librosa

    beats = beats[beats <= x.shape[0] / sample_rate]
    if beats.shape[0] < 4:
        return math.nan, math.nan
    period = float(np.polyfit(np.arange(beats.shape[0]), beats, 1)[0])
    hop = 1 << max(4, round(math.log2(sample_rate / 344.0)))  # about 3 ms
    envelope = librosa.onset.onset_strength(y=x, sr=sample_rate, hop_length=hop)
    times = np.arange(envelope.shape[0]) * hop / sample_rate
    periods = period * (1.0 + np.linspace(-0.03, 0.03, 121))
    phases = beats[-1] + np.linspace(-0.04, 0.04, 33)
    count = int(beats[-1] / period * 0.97)  # beats back from the last one, all inside the signal
    steps = np.arange(count + 1)
    # grid[p, f, k]: the k-th beat back from phase f at period p
    grid = phases[None, :, None] - steps[None, None, :] * periods[:, None, None]
    score = np.interp(grid, times, envelope, left=0.0, right=0.0).mean(axis=2)
    best_p, best_f = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(periods[best_p]), float(phases[best_f])


def tempo_held(context: np.ndarray, generated: np.ndarray, *, sample_rate: int, tolerance: float = 0.04) -> dict:
    """Does the continuation keep the context's tempo?

    Held when the tempo ratio is within ``tolerance`` of 1, or of exactly 2 or 1/2 (a tracker may lock to
    another metrical level on each side).

    Parameters
    ----------
    context : numpy.ndarray
        [shape=(frames,)] mono: the seconds before the cut (20 s in the evaluation).
    generated : numpy.ndarray
        [shape=(frames,)] mono: what follows the cut (10 s).
    sample_rate : int
        In Hz.
    tolerance : float
        Relative tolerance of the ratio.

    Returns
    -------
    dict
        ``context_bpm``, ``generated_bpm``, ``ratio`` (generated / context; NaN when either has no tempo)
        and ``held`` (bool; False when there is no tempo to compare).
    """
    before, after = tempo_bpm(context, sample_rate=sample_rate), tempo_bpm(generated, sample_rate=sample_rate)
    ratio = after / before if np.isfinite(before) and np.isfinite(after) else math.nan
    held = bool(np.isfinite(ratio) and any(abs(ratio / m - 1.0) <= tolerance for m in (0.5, 1.0, 2.0)))
    return {"context_bpm": before, "generated_bpm": after, "ratio": ratio, "held": held}


def beat_continuity_f(context: np.ndarray, generated: np.ndarray, *, sample_rate: int,
                      joins_s: Sequence[float] = ()) -> dict:
    """Do the beats after the cut land on the context's beat grid carried on?

    Beats are tracked once, over context and continuation together. The reference: the grid of the beats
    before the cut, refined as in :func:`beat_grid` on the context's audio alone (period and last beat), and
    extrapolated over the continuation. The estimate: the tracked beats after the cut. Scored with
    ``mir_eval.beat.f_measure`` (+-70 ms), times taken from the cut; mir_eval's usual 5 s trim is not applied,
    since the tracker has the whole context behind it at the cut.

    The same tracked beats measure each join's slip: how far the beats just after it are out of step with the
    beats just before it (:func:`_join_slips`), which the F-measure, summed over 10 s, cannot place.

    Parameters
    ----------
    context, generated : numpy.ndarray
        [shape=(frames,)] mono, before and after the cut.
    sample_rate : int
        In Hz.
    joins_s : sequence of float
        Joins in seconds from the cut (0 is the cut itself), whose slips to measure.

    Returns
    -------
    dict
        ``f`` (0 to 1; 0 when the continuation has no beat although the context has one; NaN when the
        context has none), ``reason`` (why ``f`` is NaN or 0, else None), ``reference_beats`` and
        ``estimated_beats`` (counts after the cut), ``grid_bpm`` (the context's grid; NaN without one) and
        ``join_slips_ms`` (one per join with beats on both sides; empty without a grid).
    """
    import mir_eval

    context, generated = as_mono(context), as_mono(generated)
    cut, span = context.shape[0] / sample_rate, generated.shape[0] / sample_rate
    result = {"f": math.nan, "reason": None, "reference_beats": 0, "estimated_beats": 0, "grid_bpm": math.nan,
              "join_slips_ms": []}
    # One tracker run over both: two runs may settle on different phases of the same pulse (on- and
    # off-beat), which would read as a lost beat; the grid is fitted to the context's audio alone.
    tracked = _beat_times(np.concatenate([context, generated]), sample_rate)
    interval, last = _fit_grid(*_beat_rate(context, sample_rate), tracked[tracked < cut])
    if not np.isfinite(interval):
        return {**result, "reason": "no beat in the context"}
    reference = last + interval * np.arange(1, int(np.ceil((cut + span - last) / interval)) + 1) - cut
    reference = reference[(reference >= 0) & (reference < span)]
    tracked = tracked - cut
    estimated = tracked[(tracked >= 0) & (tracked < span)]
    result.update(reference_beats=int(reference.shape[0]), estimated_beats=int(estimated.shape[0]),
                  grid_bpm=60.0 / interval, join_slips_ms=_join_slips(tracked, interval, joins_s))
    if not reference.shape[0]:
        return {**result, "reason": "the context's beat grid has no beat in the continuation"}
    if not estimated.shape[0]:
        return {**result, "f": 0.0, "reason": "no beat tracked after the cut"}
    return {**result, "f": float(mir_eval.beat.f_measure(reference, estimated))}


#: A join's slip compares up to this many beats on each side of it.
SLIP_BEATS = 3


def _join_slips(tracked: np.ndarray, period: float, joins_s: Sequence[float]) -> list[float]:
    """Each join's slip in ms: the phase (against ``period``) of the beats tracked after it minus that of the
    beats before it, wrapped to half a period.

    Up to :data:`SLIP_BEATS` beats each side, those after starting 50 ms past the join (a beat on the join
    belongs to neither side); at least 2 each side, else the join is left out. Phases are averaged on the
    circle, so beats either side of the grid's half-way point do not cancel. The true continuation, measured
    at its cut, gives the tracker's own scatter.
    """
    slips = []
    for join in joins_s:
        before = tracked[(tracked < join) & (tracked > join - (SLIP_BEATS + 0.5) * period)][-SLIP_BEATS:]
        after = tracked[tracked > join + 0.05][:SLIP_BEATS]
        if before.shape[0] < 2 or after.shape[0] < 2:
            continue
        phase_before, phase_after = (np.angle(np.exp(2j * np.pi * beats / period).mean()) for beats in (before, after))
        turn = (phase_after - phase_before) / (2 * np.pi)
        slips.append(float(abs(turn - round(turn)) * period * 1000.0))
    return slips


def _beat_times(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times in seconds (librosa's dynamic-programming tracker); empty for silence."""
    import librosa

    if is_silent(x) or x.shape[0] < sample_rate:
        return np.array([])
    x, sample_rate = _beat_rate(x, sample_rate)
    return np.asarray(librosa.beat.beat_track(y=x, sr=sample_rate, units="time")[1], dtype=float)


def _beat_rate(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """``x`` at :data:`BEAT_RATE` when its rate is higher, else as it is."""
    if sample_rate <= BEAT_RATE:
        return x, sample_rate
    return resample(x, sample_rate, BEAT_RATE), BEAT_RATE
