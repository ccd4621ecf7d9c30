"""How much of a long extension is an exact copy of itself one period earlier: the longest loop and the share of
time in repeats."""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from engine.audio import resample

from .signals import as_mono

#: :func:`repetition`: analysis rate (Hz), window (s), correlation of an exact repeat, lags tried, and the
#: shortest repeat counted in ``repeated_share`` (s).
REPEAT_RATE = 11025
REPEAT_WINDOW_S = 0.05
REPEAT_CORRELATION = 0.999
REPEAT_CANDIDATES = 20
REPEAT_WHITENING = 0.3
REPEAT_MIN_RUN_S = 10.0


def repetition(signal: np.ndarray, *, sample_rate: int, min_run_s: float = REPEAT_MIN_RUN_S) -> dict:
    """How much of a long extension is an exact copy of itself one period earlier.

    Method, at :data:`REPEAT_RATE` Hz: the candidate periods are the :data:`REPEAT_CANDIDATES` highest peaks
    at lags of 1 s or more of the signal's autocorrelation, computed by FFT from the power spectrum raised to
    :data:`REPEAT_WHITENING` (so held tones do not crowd out the sharp peak of an exact repeat). For each period ``P``
    the signal is cut into 50 ms windows and each window ``x[t:t+w]`` is compared with ``x[t-P:t-P+w]`` by
    normalised correlation; the window is *repeated* when the correlation is at least
    :data:`REPEAT_CORRELATION` and neither is silent (50 dB under the signal's RMS). Correlation is blind to
    gain, so a repeat played louder or softer still counts. Periods that are not a whole number of samples
    (a loop made at another rate) are found to 1/200 sample and compared through a fractional delay.

    ``longest_loop_s`` is the longest run of consecutive repeated windows for one period: how long the audio
    kept copying itself. A song looped for 10 minutes scores about 10 min less one period; music, noise or a
    sweep score 0. ``repeated_share`` is the share of the signal's windows that lie in such runs of at least
    ``min_run_s``, over all periods: how often the same stretch recurs.

    Parameters
    ----------
    signal : numpy.ndarray
        [shape=(frames,)] mono, minutes long.
    sample_rate : int
        In Hz.
    min_run_s : float
        Shortest run counted in ``repeated_share``, in seconds.

    Returns
    -------
    dict
        ``longest_loop_s`` (s), ``loop_period_s`` (s, the period of that run; NaN when none),
        ``repeated_share`` (0 to 1), ``seconds`` (the signal's length).
    """
    x = as_mono(signal)
    y = resample(x, sample_rate, REPEAT_RATE) if sample_rate != REPEAT_RATE else x
    rate, n = REPEAT_RATE, y.shape[0]
    hop = round(REPEAT_WINDOW_S * rate)
    windows = n // hop
    result = {"longest_loop_s": 0.0, "loop_period_s": math.nan, "repeated_share": 0.0, "seconds": n / rate}
    min_lag, max_lag = round(1.0 * rate), n - 2 * hop
    if max_lag <= min_lag or not np.any(y):
        return result

    size = scipy.fft.next_fast_len(2 * n, real=True)
    spectrum = scipy.fft.rfft(y, size, workers=-1)
    # The power spectrum raised to REPEAT_WHITENING (a "PHAT-beta" weighting) before the inverse transform:
    # held tones otherwise fill every candidate with lags of their own periods, while an exact repeat, being
    # correlated at every frequency, keeps a sharp peak.
    power = (spectrum.real ** 2 + spectrum.imag ** 2) ** REPEAT_WHITENING
    autocorrelation = scipy.fft.irfft(power, size, workers=-1)[:max_lag + 1]
    autocorrelation /= max(float(autocorrelation[0]), 1e-30)
    lags = _top_peaks(autocorrelation, min_lag, hop, REPEAT_CANDIDATES)

    frames = y[:windows * hop].reshape(windows, hop)
    cumulative = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
    loud_floor = max(1e-5, 10 ** (-50 / 20) * math.sqrt(cumulative[-1] / n))
    energy = cumulative[hop:windows * hop + 1:hop] - cumulative[:windows * hop:hop]
    loud = np.sqrt(np.maximum(energy, 0.0) / hop) > loud_floor
    comparer = _FractionalComparer(frames, hop)
    covered = np.zeros(windows, dtype=bool)
    periods: list[float] = []
    for lag in lags:
        lag = int(lag)
        # A multiple of a period already found repeats only where that period does: nothing new to see.
        if any(abs(lag / round(lag / p) - p) * round(lag / p) <= 2.0 for p in periods if round(lag / p) >= 2):
            continue
        first = -(-(lag + 1) // hop)  # the first window with a whole window (and a sample to spare) one lag back
        if first >= windows:
            continue
        starts = np.arange(first, windows) * hop - lag
        earlier = y[first * hop - lag:windows * hop - lag].reshape(-1, hop)
        energy_b = cumulative[starts + hop] - cumulative[starts]
        candidates = loud[first:] & (np.sqrt(np.maximum(energy_b, 0.0) / hop) > loud_floor)
        if not np.any(candidates):
            continue
        products = np.einsum("ij,ij->i", frames[first:], earlier, dtype=np.float64)
        correlation = products / np.sqrt(np.maximum(energy[first:] * energy_b, 1e-30))
        offset, best = comparer.refine(first, earlier, np.where(candidates, correlation, -1.0))
        if best < REPEAT_CORRELATION:
            continue
        periods.append(lag + offset)
        if abs(offset) > 0.01:
            correlation = comparer.correlate(first, earlier, offset)
        repeated = candidates & (correlation >= REPEAT_CORRELATION)
        for start, stop in _runs(repeated):
            seconds = (stop - start) * hop / rate
            if seconds > result["longest_loop_s"]:
                result.update(longest_loop_s=seconds, loop_period_s=(lag + offset) / rate)
            if seconds >= min_run_s:
                covered[first + start:first + stop] = True
    result["repeated_share"] = float(covered.sum() / windows)
    return result


class _FractionalComparer:
    """Correlates windows with windows a fractional number of samples away, through their spectra.

    Both windows are Hann-tapered; delaying the earlier one by ``f`` samples multiplies its spectrum by
    ``exp(-2j pi k f / size)``, so the correlation at any ``f`` is a weighted sum over the cross-spectrum.
    """

    def __init__(self, frames: np.ndarray, hop: int):
        self.frames = frames
        self.size = scipy.fft.next_fast_len(hop, real=True)
        self.taper = np.hanning(hop + 2)[1:-1]
        bins = self.size // 2 + 1
        self.weights = np.full(bins, 2.0)
        self.weights[0] = 1.0
        if self.size % 2 == 0:
            self.weights[-1] = 1.0
        self.bins = np.arange(bins)
        self._spectra: np.ndarray | None = None

    def _spectrum(self, frames: np.ndarray) -> np.ndarray:
        return scipy.fft.rfft(frames * self.taper, self.size, axis=1)

    def _correlations(self, a: np.ndarray, b: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        cross = a * np.conj(b) * self.weights
        norms = np.sqrt(np.sum(self.weights * np.abs(a) ** 2, axis=1) * np.sum(self.weights * np.abs(b) ** 2, axis=1))
        phase = np.exp(2j * np.pi * np.outer(self.bins, offsets) / self.size)
        return (cross @ phase).real / np.maximum(norms, 1e-30)[:, None]

    def refine(self, first: int, earlier: np.ndarray, correlation: np.ndarray, probes: int = 64) -> tuple[float, float]:
        """The fractional offset (-1 to 1 samples) that best aligns the most-correlated windows, and the
        highest correlation of a window there."""
        chosen = np.argpartition(correlation, -probes)[-probes:] if correlation.shape[0] > probes else (
            np.arange(correlation.shape[0]))
        chosen = chosen[correlation[chosen] > -1.0]
        a = self._spectrum(self.frames[first + chosen])
        b = self._spectrum(earlier[chosen])
        grid = np.linspace(-1.0, 1.0, 41)
        scores = self._correlations(a, b, grid)
        centre = grid[int(np.argmax(scores.mean(axis=0)))]
        fine = centre + np.linspace(-0.05, 0.05, 21)
        scores = self._correlations(a, b, fine)
        best = int(np.argmax(scores.mean(axis=0)))
        return float(fine[best]), float(scores[:, best].max())

    def correlate(self, first: int, earlier: np.ndarray, offset: float) -> np.ndarray:
        """Correlation of every window from ``first`` on with its partner delayed by ``offset`` samples."""
        if self._spectra is None:
            self._spectra = self._spectrum(self.frames)
        return self._correlations(self._spectra[first:], self._spectrum(earlier), np.array([offset]))[:, 0]


def _top_peaks(curve: np.ndarray, start: int, spacing: int, count: int) -> np.ndarray:
    """Positions of the ``count`` highest local maxima of ``curve[start:]``, at most one per ``spacing`` samples.

    The curve is cut into blocks of ``spacing``; a block's maximum is a peak when no neighbouring block holds a
    higher one. Positive peaks only, highest first.
    """
    blocks = (curve.shape[0] - start) // spacing
    if blocks < 1:
        return np.array([], dtype=int)
    tiles = curve[start:start + blocks * spacing].reshape(blocks, spacing)
    where = np.argmax(tiles, axis=1)
    heights = tiles[np.arange(blocks), where]
    padded = np.concatenate([[-np.inf], heights, [-np.inf]])
    peak = (heights >= padded[:-2]) & (heights >= padded[2:]) & (heights > 0)
    chosen = np.flatnonzero(peak)
    chosen = chosen[np.argsort(heights[chosen], kind="stable")[::-1][:count]]
    return start + chosen * spacing + where[chosen]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
