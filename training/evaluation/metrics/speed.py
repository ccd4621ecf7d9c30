"""How fast a generator makes its audio: compute time per second of audio."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def real_time_factor(chunk_seconds: Iterable[float], audio_seconds_per_chunk: float) -> float:
    """Median compute time per chunk over the audio a chunk holds (below 1 is faster than real time).

    Parameters
    ----------
    chunk_seconds : iterable of float
        Compute time of each chunk, in seconds.
    audio_seconds_per_chunk : float
        Seconds of audio one chunk adds.

    Returns
    -------
    float
        NaN when there are no chunks.
    """
    times = np.asarray(list(chunk_seconds), dtype=float)
    if not times.size or not audio_seconds_per_chunk > 0:
        return math.nan
    return float(np.median(times) / audio_seconds_per_chunk)
