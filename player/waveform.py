"""The waveform: the song in one colour, its continuation in another, seams, playhead and the audio ahead.

Every item is created once and updated with ``setData``/``setValue``; long audio is peak-downsampled to
:data:`PEAK_BIN_S` bins before it is drawn, so an hour of continuation is 180,000 strokes, not 159 million samples.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal

from engine.seam import frame_peaks

#: Width of one peak bin, in seconds.
PEAK_BIN_S = 0.02
#: Colours (RGB): tests and the README refer to them by name.
SONG_COLOUR = (61, 139, 253)
CONTINUATION_COLOUR = (255, 140, 26)
SEAM_COLOUR = (235, 52, 214)
PLAYHEAD_COLOUR = (245, 245, 245)
AHEAD_BRUSH = (255, 140, 26, 45)
BACKGROUND = (24, 26, 32)
#: Seconds the view keeps ahead of the playhead once the timeline is longer than the window.
LOOKAHEAD_S = 15.0
MIN_WINDOW_S = 60.0
#: Continuation kept drawn behind the newest audio, in s: an endless day must not grow the view without bound.
KEEP_DRAWN_S = 3600.0


def peak_envelope(samples: np.ndarray, sample_rate: int, *, start_s: float = 0.0,
                  bin_s: float = PEAK_BIN_S) -> tuple[np.ndarray, np.ndarray]:
    """Peak-downsample audio into vertical strokes, one per bin, from -peak to +peak.

    Parameters
    ----------
    samples : numpy.ndarray
        [shape=(frames,) or (frames, channels)] audio; channels are combined by their largest magnitude.
    sample_rate : int
        In Hz.
    start_s : float
        Timeline position of the first frame, in seconds.
    bin_s : float
        Bin width in seconds; a last, shorter bin keeps the tail.

    Returns
    -------
    x, y : numpy.ndarray
        [shape=(2 * bins,), dtype=float64] seconds and amplitudes, in pairs (draw with ``connect="pairs"``).
    """
    magnitude = np.abs(samples) if samples.ndim == 1 else frame_peaks(samples)
    width = max(1, round(bin_s * sample_rate))
    bins = -(-magnitude.shape[0] // width)
    if bins == 0:
        return np.zeros(0), np.zeros(0)
    padded = np.zeros(bins * width, dtype=np.float32)
    padded[:magnitude.shape[0]] = magnitude
    peaks = padded.reshape(bins, width).max(axis=1).astype(np.float64)
    centres = start_s + (np.arange(bins) + 0.5) * width / sample_rate
    return np.repeat(centres, 2), np.column_stack([-peaks, peaks]).ravel()


class WaveformView(pg.PlotWidget):
    """A scrolling, peak-downsampled waveform of the song and its continuation.

    Signals
    -------
    seekRequested(float)
        The user clicked the waveform at this many seconds.
    """

    seekRequested = pyqtSignal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent, background=BACKGROUND)
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setYRange(-1.0, 1.0, padding=0.02)
        self.getPlotItem().hideAxis("left")
        self.getPlotItem().setLabel("bottom", "time", units="s")
        self.setMinimumHeight(180)
        self.song_curve = self.plot([], [], connect="pairs", pen=pg.mkPen(SONG_COLOUR, width=1))
        self.continuation_curve = self.plot([], [], connect="pairs", pen=pg.mkPen(CONTINUATION_COLOUR, width=1))
        for curve in (self.song_curve, self.continuation_curve):
            curve.setClipToView(True)  # build paths for the visible strokes only
        self.seam_lines = self.plot([], [], connect="pairs", pen=pg.mkPen(SEAM_COLOUR, width=2))
        self.ahead_region = pg.LinearRegionItem((0.0, 0.0), movable=False, brush=pg.mkBrush(*AHEAD_BRUSH),
                                                pen=pg.mkPen(None))
        self.addItem(self.ahead_region)
        self.playhead_line = pg.InfiniteLine(0.0, angle=90, movable=False, pen=pg.mkPen(PLAYHEAD_COLOUR, width=2))
        self.addItem(self.playhead_line)
        self.scene().sigMouseClicked.connect(self._clicked)
        self._song_s = 0.0
        self._continuation: list[tuple[np.ndarray, np.ndarray]] = []
        self._seams: set[float] = set()
        self._end_s = 0.0
        self._follow(0.0)

    # --- data ---------------------------------------------------------------------------------------------------
    def set_song(self, samples: np.ndarray, sample_rate: int) -> None:
        """Draw a new song (and forget the previous song's continuation)."""
        x, y = peak_envelope(samples, sample_rate)
        self.song_curve.setData(x, y, connect="pairs")
        self._song_s = samples.shape[0] / sample_rate
        self.clear_continuation()

    def add_continuation(self, start_s: float, samples: np.ndarray, sample_rate: int) -> None:
        """Append generated audio that starts at ``start_s`` on the timeline."""
        x, y = peak_envelope(samples, sample_rate, start_s=start_s)
        self._continuation.append((x, y))
        self._end_s = max(self._end_s, start_s + samples.shape[0] / sample_rate)
        oldest = self._end_s - KEEP_DRAWN_S
        if self._continuation[0][0].size and self._continuation[0][0][0] < oldest:
            self._continuation = [(x[x >= oldest], y[x >= oldest]) for x, y in self._continuation]
            self._seams = {s for s in self._seams if s >= oldest}
        self._draw_continuation()

    def cut_continuation(self, from_s: float) -> None:
        """Forget what was drawn from ``from_s`` on (it will be generated and drawn again after a seek)."""
        self._continuation = [(x[x < from_s], y[x < from_s]) for x, y in self._continuation]
        self._seams = {s for s in self._seams if s < from_s}
        self._end_s = min(self._end_s, from_s)
        self._draw_continuation()
        self._draw_seams()

    def clear_continuation(self) -> None:
        self._continuation, self._seams, self._end_s = [], set(), 0.0
        self._draw_continuation()
        self._draw_seams()

    def set_seams(self, seams_s: np.ndarray) -> None:
        """Mark joins, in seconds (merged with those already marked)."""
        self._seams.update(round(float(s), 3) for s in seams_s)
        self._draw_seams()

    def set_playhead(self, playhead_s: float, ahead_s: float = 0.0) -> None:
        """Move the playhead, shade the audio generated ahead of it, and scroll to keep both in view."""
        self.playhead_line.setValue(playhead_s)
        self.ahead_region.setRegion((playhead_s, playhead_s + ahead_s))
        self._follow(playhead_s)

    @property
    def seams_s(self) -> list[float]:
        return sorted(self._seams)

    # --- drawing ------------------------------------------------------------------------------------------------
    def _draw_continuation(self) -> None:
        if self._continuation:
            x = np.concatenate([x for x, _ in self._continuation])
            y = np.concatenate([y for _, y in self._continuation])
            self._continuation = [(x, y)]  # keep one pair of arrays: the next append concatenates two
        else:
            x = y = np.zeros(0)
        self.continuation_curve.setData(x, y, connect="pairs")

    def _draw_seams(self) -> None:
        seams = np.array(sorted(self._seams), dtype=np.float64)
        self.seam_lines.setData(np.repeat(seams, 2), np.tile([-1.0, 1.0], seams.shape[0]), connect="pairs")

    def _follow(self, playhead_s: float) -> None:
        """Show the whole song when it fits; beyond it, scroll so the playhead keeps LOOKAHEAD_S ahead."""
        window = max(MIN_WINDOW_S, self._song_s + LOOKAHEAD_S)
        left = max(0.0, playhead_s + LOOKAHEAD_S - window)
        self.setXRange(left, left + window, padding=0)

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        point = self.getPlotItem().vb.mapSceneToView(event.scenePos())
        self.seekRequested.emit(max(0.0, float(point.x())))
