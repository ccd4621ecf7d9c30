"""Where to enter a segment so that its rhythm carries on the rhythm being left: onset-pattern alignment of cuts.

A cut from position ``p`` of the memory to position ``q`` keeps the beat only if the beat grid that leads up to
``q`` in the original is in phase with the one that leads up to ``p``. Segment boundaries come from a beat
tracker whose beats wander by a frame or more from the true ones (more at a memory's end, which it cannot see
past), and the errors at two boundaries add up at a cut: measured on dev clips before this module, the first
beat after a join sat a median 78 ms off the context's grid carried on, against 20-26 ms for the song itself.
On a synthetic song whose boundaries are moved by up to 40 ms at random, the kick after a cut moved by up to
64 ms against the beats before it without alignment, and by 3.4 ms with it (``tests/test_resynth.py``).

So a cut does not trust the boundaries: it compares the onset envelope over the bar before ``p`` with the one before
``q + lag`` (after them, for a ``q`` in the memory's first bar) for every lag within a fraction of a beat, enters at
the lag whose pattern matches best (refined between frames), and reports how well the best lag matched. (That cost,
as a term of the sequencer's score, bought beat continuity with repetition and was not kept:
:class:`~engine.resynth.Sequencer`.) Everything here works on the analysis's onset envelope
(:data:`~engine.analysis.HOP` frames at :data:`~engine.analysis.ANALYSIS_RATE`); positions are samples at that rate.
"""

from __future__ import annotations

import numpy as np

from .analysis import ANALYSIS_RATE, HOP, Analysis

#: The stretch compared before a cut: 4 beats (a bar of 4/4; more than one of 3/4).
WINDOW_BEATS = 4
#: Farthest a cut's entry may move, as a share of a beat and in s. Farther (0.3 / 0.15 s) was tried: on the dev
#: set resynth held tempo more often and jukebox less, by about one standard error each (README, tempo).
MAX_LAG_SHARE = 0.2
MAX_LAG_S = 0.1
#: Lags away from the boundary cost this much correlation per frame, so that equally good lags keep the nearest.
LAG_PRIOR = 0.01


class RhythmAligner:
    """Onset-pattern alignment of cuts within one memory.

    Parameters
    ----------
    analysis : Analysis
        Its ``onset`` envelope is what is compared; without one (an analysis made for training, which keeps
        none), every lag and every rhythm cost is 0.

    Attributes
    ----------
    window : int
        Onset frames compared before a cut.
    max_lag : int
        Largest lag tried, in onset frames each way.
    """

    def __init__(self, analysis: Analysis):
        onset = analysis.onset
        beat_frames = float(np.median(analysis.durations)) / HOP
        per_s = ANALYSIS_RATE / HOP
        self.window = max(8, round(WINDOW_BEATS * beat_frames))
        #: Only with a beat: onsets and the grid have no phase to keep, and there (few segments, a free pulse)
        #: a rhythm term only narrowed the choice until the continuation looped. Aligning the entries at onsets
        #: too gained nothing the dev set shows and cost chroma (README, "Beats across joins").
        self.enabled = onset is not None and analysis.mode == "beats"
        self.max_lag = max(1, min(round(MAX_LAG_SHARE * beat_frames), round(MAX_LAG_S * per_s)))
        envelope = np.zeros(1, np.float64) if onset is None else np.asarray(onset, np.float64)
        self._pad = self.window + self.max_lag + 1
        self._envelope = np.pad(envelope, self._pad)
        self._lags = np.arange(-self.max_lag, self.max_lag + 1)
        self._rows = self._lags[:, None] + np.arange(-self.window, 0)[None, :]  # (lags, window) frame offsets
        self._rows_after = self._lags[:, None] + np.arange(0, self.window)[None, :]
        self._frames_total = envelope.shape[0]

    def _frames(self, positions: np.ndarray) -> np.ndarray:
        """[shape=(M,), dtype=int64] the onset frame nearest each sample position."""
        return np.clip(np.rint(np.asarray(positions, np.float64) / HOP).astype(np.int64), 0,
                       self._envelope.shape[0] - 2 * self._pad)

    def _windows(self, frames: np.ndarray, *, after: bool = False) -> np.ndarray:
        """[shape=(M, lags, window)] the onset envelope before (``after``: from) each frame shifted by every
        lag, each window with its mean removed and scaled to unit norm (all zero where the envelope is flat)."""
        rows = self._rows_after if after else self._rows
        windows = self._envelope[frames[:, None, None] + self._pad + rows[None]]
        windows = windows - windows.mean(axis=2, keepdims=True)
        norm = np.linalg.norm(windows, axis=2, keepdims=True)
        return np.divide(windows, norm, out=np.zeros_like(windows), where=norm > 1e-9)

    def align(self, source: int, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How to enter each target so its rhythm continues the one that leads up to ``source``.

        Parameters
        ----------
        source : int
            The sample where the audio being left stops (at :data:`ANALYSIS_RATE`).
        targets : numpy.ndarray
            [shape=(M,), dtype=int] samples where each candidate would be entered.

        Returns
        -------
        lags : numpy.ndarray
            [shape=(M,), dtype=float64] samples to add to each target (refined between onset frames).
        costs : numpy.ndarray
            [shape=(M,), dtype=float64] 0 (the onset patterns match at that lag) to 1 (opposite); 0.5 where
            either side has no onsets to compare. All lags and costs are 0 when :attr:`enabled` is False.
        at_edge : numpy.ndarray
            [shape=(M,), dtype=bool] the best lag is the farthest tried: the patterns line up beyond reach, or not
            at all. In the long listen, 5 of 6 such joins broke the beat grid (about 1 in 5 of the others did).
        """
        targets = np.asarray(targets, np.int64)
        if not self.enabled:
            return np.zeros(targets.shape[0]), np.zeros(targets.shape[0]), np.zeros(targets.shape[0], bool)
        source_frame, target_frames = self._frames(np.array([source])), self._frames(targets)
        reference = self._windows(source_frame)[0, self.max_lag]  # (window,), the pattern being left
        correlation = self._windows(target_frames) @ reference  # (M, lags)
        # A target near the memory's start has little before it (the song's first bar): there, what follows it
        # is compared with what followed the cut in the original, where the memory goes on past the cut.
        early = target_frames < self.window + self.max_lag
        if early.any() and source_frame[0] + self.window + self.max_lag <= self._frames_total:
            following = self._windows(source_frame, after=True)[0, self.max_lag]
            correlation[early] = self._windows(target_frames[early], after=True) @ following
        preferred = correlation - LAG_PRIOR * np.abs(self._lags)[None, :]
        best = np.argmax(preferred, axis=1)
        rows = np.arange(targets.shape[0])
        peak = correlation[rows, best]
        # A parabola through the best lag and its neighbours places the peak between frames.
        inner = (best > 0) & (best < self._lags.shape[0] - 1)
        left = correlation[rows, np.maximum(best - 1, 0)]
        right = correlation[rows, np.minimum(best + 1, self._lags.shape[0] - 1)]
        curvature = left - 2.0 * peak + right
        shift = np.where(inner & (curvature < -1e-9), 0.5 * (left - right) / np.where(curvature < -1e-9,
                                                                                     curvature, -1.0), 0.0)
        lags = (self._lags[best] + np.clip(shift, -0.5, 0.5)) * HOP
        # Frames were compared, positions asked for: add back how far each lies from its frame.
        lags += (target_frames * HOP - targets) + (source - source_frame[0] * HOP)
        at_edge = np.abs(self._lags[best]) == self.max_lag
        return lags, np.clip((1.0 - peak) / 2.0, 0.0, 1.0), at_edge
