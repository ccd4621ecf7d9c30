"""What the engine's roles share: :class:`PlaybackState`, every attribute the transport, the callback, the
generation worker and live input read or write, set in one ``__init__``.

Each role (:mod:`.callback`, :mod:`.worker`, :mod:`.live`, :mod:`.transport`) is a subclass of this class, and
:class:`~engine.playback.Engine` joins them. Declaring the state here, once, means that no role sets an attribute
another role first created, and that a type checker sees each role's reads.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..aec import LiveCanceller
from ..audio import Waveform
from ..echo import EchoGate
from ..ring import RingBuffer
from .types import EngineConfig, EngineEvent, EngineState, LiveConfig

if TYPE_CHECKING:
    from ..rendering import Generator

_T = TypeVar("_T")


class PlaybackState:
    """The engine's state, shared by its roles.

    Parameters
    ----------
    config : EngineConfig
    extender : Generator
        The opened generator (:func:`engine.generators.open_generator`).
    clock : {"device", "offline"}
    device : int or str or None
        Output device for the ``device`` clock (sounddevice's notation).
    sample_rate : int or None
        The stream rate asked for, in Hz; None for the device's (or the song's) own.
    """

    def __init__(self, config: EngineConfig, extender: Generator, *, clock: str, device: Any,
                 sample_rate: int | None) -> None:
        self.config = config
        self.clock = clock
        self.device = device
        self.extender = extender
        self.events: queue.Queue[EngineEvent] = queue.Queue()
        self._requested_rate = sample_rate
        self._stream: Any = None  # a started sounddevice stream, or None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._write_lock = threading.Lock()
        self._state = EngineState.IDLE
        self._error = ""
        self.continuations = 0
        self._paused = False
        self.device_lost = False
        self._volume = 1.0
        self._endless = True
        self._cannot_extend: str | None = None
        # What play() and live() set up when a stream opens: declared here, so that every attribute exists
        # from the start (None: nothing was opened yet).
        self.sample_rate = 0  # the stream's rate, in Hz, once one was opened
        self._song: Waveform | None = None
        self._ring: RingBuffer | None = None  # the output ring the callback copies from
        self._x = 1  # the crossfade, in frames at the stream's rate
        self._lead_frames = 0
        self._unit_ramp: np.ndarray = np.ones((1, 1), np.float32)  # [shape=(blocksize, 1), dtype=float32]
        self._ramp_scratch = np.empty_like(self._unit_ramp)
        self._ramp_gain = self._volume
        self._overlap = 0  # the song's last frames that its continuation crossfades over
        self._song_frames = 0  # the song's frames on the timeline before its continuation
        self._continuation_from = 0
        self._hold_for = 0
        # Live input (live()): what was heard, what Encore played, the echo gate and the fades.
        self._live = LiveConfig()
        self._in_channels = 0
        self._input: RingBuffer | None = None
        self._played: RingBuffer | None = None
        self._played_silence = np.zeros(0, np.float32)
        self._echo: EchoGate | None = None
        self._canceller: LiveCanceller | None = None  # None: no libspeexdsp, or LiveConfig.cancel_echo is off
        self._canceller_note = ""  # why none runs, in one line
        self._delay_estimated_for = -1  # the continuation whose echo delay was last estimated
        self._relearn_from: int | None = None  # input frame of a new echo delay the gate has not learnt after yet
        self._output_level = 0.0  # the output envelope the echo gate last judged the live input against
        self._sounded: list[list[int]] = []  # [begin, end) input frames where Encore sounded; end -1 while it does
        self._fade = np.ones((0, 1), np.float32)
        self._carry_on = threading.Event()
        self._anticipated_heard: tuple[int, Waveform] | None = None  # (heard until, the memory) analysed ahead
        # Counters and per-run state, set again by every play() and live() (Engine._reset_counters).
        self._playhead = 0
        self._underruns = 0
        self._late_chunks = 0
        self._starved_frames = 0
        self._pending: np.ndarray | None = None
        self._after_filler = False
        self._song_written = False
        self._play_from: int | None = None
        self._fade_pos = 0
        self._written_all = False
        self._holding = False
        self._start_position = 0
        self._seams: deque[int] = deque(maxlen=100_000)
        self._ending = False

    # --- what play() and live() set up: a role that reads it before them is a bug, and says so ---------------
    def _output_ring(self) -> RingBuffer:
        """The output ring the callback copies from (``_prepare_output``)."""
        return _set_up(self._ring, "the output ring")

    def _playing_song(self) -> Waveform:
        """The song play() started, at the stream's rate."""
        return _set_up(self._song, "the song")

    def _input_ring(self) -> RingBuffer:
        """The live memory: what the input heard."""
        return _set_up(self._input, "the input ring")

    def _played_ring(self) -> RingBuffer:
        """What Encore itself sent out, frame for frame with the input."""
        return _set_up(self._played, "the ring of what was played")

    def _echo_gate(self) -> EchoGate:
        """The live echo gate (:mod:`engine.echo`)."""
        return _set_up(self._echo, "the echo gate")

    if TYPE_CHECKING:
        # What one role calls on another: defined by the role named, declared here for the type checker.
        def stop(self) -> None: ...  # transport

        def _emit(self, kind: str, detail: str = "") -> None: ...  # transport

        def _prepare_output(self, channels: int) -> None: ...  # transport

        def _start_threads(self, targets: dict) -> None: ...  # transport

        def _reset_counters(self) -> None: ...  # transport

        def _wait_for_analysis_warm_up(self) -> None: ...  # transport

        @staticmethod
        def _device_info(sd: Any, device: Any, kind: str) -> dict: ...  # transport

        def _write_generated(self, block: np.ndarray, *, after_song: bool = False,
                             begins: int | None = None) -> None: ...  # worker

        def _fail(self, what: str, error: Exception) -> None: ...  # worker

        def _append(self, block: np.ndarray, *, join: bool) -> None: ...  # worker

        def _guard(self) -> None: ...  # worker

        def _duplex_callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any,
                             status: Any) -> None: ...  # callback


def _set_up(value: _T | None, what: str) -> _T:
    """``value``, which play() or live() set up; a RuntimeError (a bug in the caller) while it is None."""
    if value is None:
        raise RuntimeError(f"{what} does not exist before play() or live() set it up")
    return value
