"""How much a continuation's joins stand out from the music around them: click scores at the joins and at the
music's own beat boundaries, and the loudness step at a join."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from engine.errors import ConfigError
from engine.seam import click_score

from .signals import as_mono, is_silent

#: Integrated loudness of silence, in LUFS (BS.1770's absolute gate).
LOUDNESS_FLOOR_LUFS = -70.0


def seam_scores(signal: np.ndarray, joins: Iterable[int], *, sample_rate: int) -> list[dict]:
    """:func:`engine.seam.click_score` at each join: how much a join stands out from the music around it.

    Parameters
    ----------
    signal : numpy.ndarray
        [shape=(frames,)] mono: the audio the joins are in.
    joins : iterable of int
        Frames where joins are centred; those outside ``[1, frames)`` are left out.
    sample_rate : int
        In Hz.

    Returns
    -------
    list of dict
        ``{"position": int, "jump": float, "hf_ratio": float}`` per join: ``jump`` is the largest
        sample-to-sample step within 5 ms of the join over the median step around it, ``hf_ratio`` the power
        above 5 kHz within 5 ms over that of the 200 ms around it.
    """
    x = as_mono(signal)
    return [{"position": int(j), **click_score(x, int(j), sample_rate)} for j in joins if 1 <= j < x.shape[0]]


def reference_seam_scores(original: np.ndarray, *, sample_rate: int, count: int = 32, seed: int = 0) -> list[dict]:
    """The same scores as :func:`seam_scores` at the original music's own beat boundaries.

    No join is there, so these are the range that music itself reaches on the measure: a generator's joins
    are inaudible by this measure when they fall in it. Beats come from ``librosa.beat.beat_track``; ``count``
    of them are drawn (with replacement when there are fewer), or random positions when no beat is found.

    Parameters
    ----------
    original : numpy.ndarray
        [shape=(frames,)] mono music.
    sample_rate : int
        In Hz.
    count : int
        Positions scored.
    seed : int
        Seed of the draw.

    Returns
    -------
    list of dict
        As :func:`seam_scores`, ``count`` entries in time order.
    """
    import librosa

    x = as_mono(original)
    rng = np.random.default_rng(seed)
    if x.shape[0] < 2 or count < 1:
        return []
    beats = np.array([], dtype=int)
    if not is_silent(x):
        beats = librosa.beat.beat_track(y=x, sr=sample_rate, units="samples")[1].astype(int)
    beats = beats[(beats >= 1) & (beats < x.shape[0])]
    if beats.size:
        positions = rng.choice(beats, size=count, replace=beats.size < count)
    else:
        positions = rng.integers(1, x.shape[0], size=count)
    return seam_scores(x, np.sort(positions), sample_rate=sample_rate)


def seam_summary(scores: Sequence[dict]) -> dict:
    """Median and 95th percentile of ``jump`` and ``hf_ratio`` over seam scores (NaN when there are none)."""
    summary = {"count": len(scores)}
    for key in ("jump", "hf_ratio"):
        values = np.array([s[key] for s in scores], dtype=float)
        summary[f"{key}_median"] = float(np.median(values)) if values.size else math.nan
        summary[f"{key}_p95"] = float(np.percentile(values, 95)) if values.size else math.nan
    return summary


def loudness_step_lu(signal: np.ndarray, join: int, *, sample_rate: int, window_s: float = 3.0) -> float:
    """Loudness after a join minus loudness before it, in LU.

    Integrated loudness (ITU-R BS.1770, pyloudnorm's meter) of the ``window_s`` before and after ``join``;
    a silent side reads :data:`LOUDNESS_FLOOR_LUFS`, so the result is always finite.

    Parameters
    ----------
    signal : numpy.ndarray
        [shape=(frames,)] mono.
    join : int
        Frame of the join.
    sample_rate : int
        In Hz.
    window_s : float
        Seconds measured on each side (less where the signal is shorter, at least 0.4 s).

    Returns
    -------
    float
        In LU: positive when the audio got louder at the join.

    Raises
    ------
    ConfigError
        Less than 0.4 s (one BS.1770 block) on a side of the join.
    """
    import pyloudnorm

    x = as_mono(signal)
    width = round(window_s * sample_rate)
    before, after = x[max(0, join - width):max(0, join)], x[max(0, join):join + width]
    if min(before.shape[0], after.shape[0]) < 0.4 * sample_rate:
        raise ConfigError(f"loudness needs 0.4 s on each side of the join at frame {join}; the signal has "
                          f"{before.shape[0] / sample_rate:.2f} s before and "
                          f"{after.shape[0] / sample_rate:.2f} s after")
    meter = pyloudnorm.Meter(sample_rate)
    levels = []
    for side in (before, after):
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")
            level = float(meter.integrated_loudness(side.astype(np.float64)))
        levels.append(level if np.isfinite(level) and level > LOUDNESS_FLOOR_LUFS else LOUDNESS_FLOOR_LUFS)
    return levels[1] - levels[0]
