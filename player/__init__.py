"""Encore's desktop player: a song that never ends, on screen.

The player observes :class:`engine.Engine` and holds no audio logic of its own: :class:`PlayerSession` is its one
link to the engine (every call into it, every observation of it), :class:`MainWindow` lays out the controls and
the :class:`WaveformView`. Run it with ``player [SONG]`` or ``python -m player``.
"""

from .session import PlayerSession
from .waveform import WaveformView, peak_envelope
from .window import MainWindow

__all__ = ["MainWindow", "PlayerSession", "WaveformView", "peak_envelope"]
