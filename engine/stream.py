"""Real-time playback: a song, then its continuation, generated ahead of the playhead, endlessly.

These activities share one output ring buffer (``RingBuffer``, absolute frame positions):

- **the audio callback** (PortAudio's thread, or the offline clock's) only copies: frames
  ``[playhead, playhead + n)`` out of the ring into ``outdata[:]``, then advances ``playhead``, scaling by the
  volume (ramped over a block on a change, a pause or a resume). No allocation of audio buffers, no inference,
  no logging, no lock. It counts true underruns from PortAudio's status flags, and frames it had to fill with
  silence because nothing was written yet (starved frames). While the lead is first written after a start or
  a seek (``buffering``) it plays silence and stands still.
- **the generator thread** writes ahead of the playhead: the song first, then chunk after chunk from the
  :class:`~engine.extend.Extender`, keeping ``lead_s`` seconds written ahead (at least one whole chunk).
- **the guard thread** watches the lead. When the generator falls behind (lead below ``guard_s``) it writes a
  crossfaded repeat of the last seconds, so the listener hears music, not a click or silence, and counts a
  late chunk. The generator's next chunk is crossfaded in after it. It also ends ``buffering`` once the lead
  is written, and notices a stream that stopped by itself (a lost device).
- **the live thread** (live input only, in place of the generator): the callback also copies ``indata`` into
  an input ring, and what Encore itself sent out into a ring of its own, frame for frame; this thread watches the
  input level, carries on from what was heard when the performer stops, generates while continuing, and asks
  the callback to fade out when the performer plays again, not when the input is only Encore heard back
  through speakers (:mod:`engine.echo`).
- **the controller** (:class:`Engine`'s public methods: the CLI, the desktop player) starts, pauses, seeks,
  stops and observes; observers poll :meth:`Engine.status` and read :attr:`Engine.events`, and may read the
  continuation written ahead (:meth:`Engine.continuation_since`) to draw it.

Positions are absolute frames of the timeline: the song starts at frame 0 and the continuation follows it, so
after :meth:`Engine.seek` the playhead still says where in the song (or its continuation) playback is.

Why sharing is safe: the two writers (generator or live thread, and guard) take ``_write_lock`` around each
append, and hold it only to copy; the callback never takes it. The callback reads only frames below ``ring.end``
and at or above ``playhead``; the writers never write past ``playhead + capacity``, so what the callback reads
is never being overwritten. ``playhead`` is written by the callback alone; an int assignment is atomic under the
GIL. Pause, volume and Endless are single attributes the controller sets and the other threads only read.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from .audio import Waveform, resample
from .config import ExtendConfig
from .echo import (
    ENVELOPE_SPAN_S,
    LEVEL_WINDOW_S,
    MAX_ECHO_DELAY_S,
    EchoGate,
    output_envelope,
    performer_spans,
    splice,
)
from .errors import ConfigError, EncoreError
from .generators import open_generator
from .ring import RingBuffer
from .seam import crossfade, rms

#: Failures on the engine's threads are logged here, traceback and all; the user gets one line (an ``error`` event
#: and :attr:`EngineStatus.error`).
log = logging.getLogger(__name__)

#: In live mode, once the performer has been quiet for this share of ``LiveConfig.silence_s``, what a
#: continuation would continue is analysed in the background (playing again before the rest of the silence
#: only wastes that analysis).
ANTICIPATE_AFTER = 0.3
#: Crossfade where the live memory skips a stretch in which Encore sounded (engine.echo), in seconds.
SPLICE_FADE_S = 0.01


@dataclass(frozen=True)
class EngineConfig:
    """Real-time settings; lengths in seconds.

    Parameters
    ----------
    lead_s : float
        Audio the generator keeps written ahead of the playhead (at least one chunk is always asked for).
    guard_s : float
        When less than this is written ahead, the guard plays a crossfaded repeat of recent audio.
    filler_s : float
        Length of each repeat the guard writes.
    blocksize : int
        Frames per audio callback.
    crossfade_s : float
        Crossfade at every join (chunks, song end, late repeats).
    """

    lead_s: float = 10.0
    guard_s: float = 0.5
    filler_s: float = 1.0
    blocksize: int = 1024
    crossfade_s: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.guard_s < self.lead_s:
            raise ConfigError(f"guard ({self.guard_s} s) must be positive and below the lead ({self.lead_s} s)")
        if not self.filler_s > 2 * self.crossfade_s:
            raise ConfigError(f"filler ({self.filler_s} s) must be longer than two crossfades")
        if not 16 <= self.blocksize <= 65536:
            raise ConfigError(f"blocksize must be 16 to 65536 frames, got {self.blocksize}")


@dataclass(frozen=True)
class LiveConfig:
    """When live-input extension carries on and when it gives the stage back; times in seconds.

    Parameters
    ----------
    silence_s : float
        The performer has stopped once the input stays below ``threshold_db`` this long.
    threshold_db : float
        Input level (RMS of 50 ms, dBFS) that counts as playing.
    min_heard_s : float
        Music that must have been heard before Encore carries on by itself (Enter carries on at once).
    resume_s : float
        The performer plays again once the input stays above the threshold this long; Encore fades out.
    fade_s : float
        Length of that fade-out.
    monitor : bool
        Pass the input through to the output while listening.
    """

    silence_s: float = 1.5
    threshold_db: float = -40.0
    min_heard_s: float = 2.0
    resume_s: float = 0.2
    fade_s: float = 0.5
    monitor: bool = False

    def __post_init__(self) -> None:
        for name in ("silence_s", "resume_s", "fade_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not -90 <= self.threshold_db <= 0:
            raise ConfigError(f"threshold must be -90 to 0 dBFS, got {self.threshold_db}")


class EngineState(StrEnum):
    """Where the transport is (:attr:`EngineStatus.state`). A ``StrEnum``: each state equals its name's string
    (``EngineState.PLAYING == "playing"``), so observers may compare with either.

    idle -> playing (the song, then its continuation) -> finished (its own ending, or the song's end without
    Endless) or stopped; live: listening -> continuing (Encore carries on) -> fading (the performer plays again)
    -> listening. ``paused`` is what :meth:`Engine.status` reports while a playing transport is paused; ``error``
    ends either, with :attr:`EngineStatus.error` saying why.
    """

    IDLE = "idle"
    PLAYING = "playing"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    LISTENING = "listening"
    CONTINUING = "continuing"
    FADING = "fading"
    ERROR = "error"


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot for observers (CLI, GUI); times in seconds."""

    state: EngineState
    playhead_s: float
    ahead_s: float
    song_s: float
    chunks: int
    late_chunks: int
    underruns: int
    starved_s: float
    model: str
    real_time_factor: float
    continuations: int = 0
    #: The last minute's median chunk (``ExtendStats.recent_real_time_factor``); ``real_time_factor`` is the
    #: whole run's.
    recent_real_time_factor: float = math.nan
    endless: bool = True
    volume: float = 1.0
    buffering: bool = False
    generator: str = ""
    segmentation: str = ""
    #: Live input: how far below Encore's output the input hears Encore (speakers), in dB; inf when it does not
    #: (headphones, a line input); nan until a continuation's first second has measured it, or not live.
    echo_db: float = math.nan
    #: :meth:`Engine.end_song` was asked: the song is heading for its own ending.
    ending: bool = False
    #: Why playback stopped, in one line, when ``state`` is ``"error"`` (a bug's traceback is in the log).
    error: str = ""


@dataclass(frozen=True)
class AudioDevice:
    """An audio device as PortAudio sees it; ``index`` is valid only until devices change, ``name`` is stable."""

    index: int
    name: str
    host_api: str
    inputs: int
    outputs: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool


@dataclass(frozen=True)
class EngineEvent:
    """Something observers may react to: ``chunk``, ``song_end``, ``late``, ``ending`` (the song's own ending is
    on its way), ``finished``, ``error``, and in live mode ``continuing`` (the performer stopped; Encore carries
    on) and ``listening`` (the performer is back)."""

    kind: str
    playhead_s: float
    detail: str = ""


class Engine:
    """Plays a song and then its endless continuation, generated ahead of the playhead.

    Use it as a context manager::

        with Engine(model="model.onnx") as eng:
            eng.play(engine.load_audio("song.ogg"), endless=True)
            print(eng.status())

    Parameters
    ----------
    config : EngineConfig, optional
    model : str or a loaded model, optional
        An ONNX file or a loaded model (:func:`engine.generators.load_model`); ``generator``'s shipped default
        when None.
    generator : {"jukebox", "resynth", "seed"}, optional
        Default :data:`engine.generators.DEFAULT_GENERATOR` (or what ``model`` declares).
    resynth : ResynthConfig, optional
        Settings of the resynth and jukebox generators (``variety``).
    extend_config : ExtendConfig, optional
    clock : {"device", "offline"}
        ``device`` plays through sounddevice; ``offline`` is driven by :meth:`render`, as fast as the CPU
        allows, with the same callback (for renders and soak tests).
    device : int or str, optional
        Output device for the ``device`` clock (sounddevice's notation).
    sample_rate : int, optional
        Stream rate in Hz; the device's default rate (``device`` clock) or the song's (``offline``) when None.
    """

    def __init__(self, config: EngineConfig | None = None, *, model=None, generator: str | None = None, resynth=None,
                 extend_config: ExtendConfig | None = None, clock: str = "device", device=None,
                 sample_rate: int | None = None):
        if clock not in ("device", "offline"):
            raise ValueError(f"clock must be 'device' or 'offline', got {clock!r}")
        self.config = config or EngineConfig()
        if extend_config is not None and extend_config.crossfade_s != self.config.crossfade_s:
            # The song's held-back tail is exactly the continuation's first crossfade; they must agree.
            raise ConfigError(f"the extender's crossfade ({extend_config.crossfade_s} s) must equal the engine's "
                              f"({self.config.crossfade_s} s)")
        self.clock = clock
        self.device = device
        self.extender = open_generator(model, extend_config or ExtendConfig(crossfade_s=self.config.crossfade_s),
                                       generator=generator, resynth=resynth)
        self.events: queue.Queue[EngineEvent] = queue.Queue()
        self._requested_rate = sample_rate
        self._stream = None
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
        self._unit_ramp = np.ones((1, 1), np.float32)
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
        self._sounded = []
        self._fade = np.ones((0, 1), np.float32)
        self._carry_on = threading.Event()
        self._anticipated_heard: tuple[int, Waveform] | None = None  # (heard until, the memory) analysed ahead
        # Counters and per-run state, set again by every play() and live().
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

    # --- controller ---------------------------------------------------------------------------------------
    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def play(self, song: Waveform, *, endless: bool = True, start_s: float = 0.0, paused: bool = False) -> None:
        """Start playing ``song`` at ``start_s``; with ``endless`` its continuation follows without a gap.

        Playback runs until :meth:`stop` (endless) or the song's end. A song that cannot be continued (silent,
        shorter than 0.5 s) still plays with ``endless=False``. With ``paused`` everything is ready and
        :meth:`resume` starts the sound. Returns once the lead is written, or after at most ``HOLD_WAIT_S``
        (the stream then plays silence until it is: ``status().buffering``).

        Raises
        ------
        EncoreError
            No usable output device, or, with ``endless``, a song the extender refuses.
        """
        self.stop()
        rate = self._stream_rate(song)
        song = Waveform(resample(song.samples, song.sample_rate, rate), rate) if song.sample_rate != rate else song
        self._song, self._endless, self.sample_rate = song, endless, rate
        with warnings.catch_warnings():
            if not endless:
                warnings.simplefilter("ignore")  # a short song is only looped if it is ever continued
            try:
                self.extender.start(song)  # refuses silence and crumbs here, before any sound
                self._cannot_extend = None
                self.extender.anticipate()  # the song is known to its end: analyse it while it plays
            except EncoreError as e:
                if endless:
                    raise
                self._cannot_extend = str(e)
        self._start(round(start_s * rate), paused=paused)

    def seek(self, seconds: float) -> None:
        """Continue playback from ``seconds`` on the timeline: in the song, or in its continuation.

        Seeking into the continuation regenerates it from the song's end (the generator is deterministic), which
        takes the generator's time for the chunks skipped (about 28 ms per 10 s with the shipped model on one
        core here: 10 s per hour of continuation); meanwhile the stream plays silence (``status().buffering``)
        and the caller is not blocked. Paused playback stays paused; a stopped or finished song starts playing.

        Raises
        ------
        ConfigError
            No song was ever played, or the engine is listening to live input.
        """
        if self._song is None or self._state in LIVE_STATES:
            raise ConfigError("seek needs a song that is playing; play one first")
        paused = self._paused
        self.stop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # play() has already warned about this song
            if self._cannot_extend is None:
                self.extender.start(self._song)
                self.extender.anticipate()  # a seek before the analysis was needed: it goes on, or starts
        self._start(round(max(0.0, seconds) * self.sample_rate), paused=paused)

    def pause(self) -> None:
        """Hold a song where it is: the output fades out over one block, then plays silence.

        :meth:`resume` fades in and goes on from there. Live input is not paused (it listens, or stops).
        """
        if self._state not in LIVE_STATES:
            self._paused = True

    def resume(self) -> None:
        """Go on after :meth:`pause`."""
        self._paused = False

    def set_endless(self, endless: bool) -> None:
        """Switch Endless on or off during playback.

        Off: the song ends at its end; during the continuation, what was already generated plays out (up to
        ``lead_s`` and one chunk) with a fade at its end, and playback finishes. On: the continuation follows the
        song's end, or goes on, until only ``2 * guard_s`` is left to play (until then Off can be undone).

        Raises
        ------
        EncoreError
            Endless asked for a song that is playing and cannot be continued (the reason is in the message).
        """
        if endless and self._cannot_extend is not None and self._state == EngineState.PLAYING:
            raise EncoreError(f"this song cannot be continued: {self._cannot_extend}")
        if endless and not self._song_written:
            self._ending = False  # an end_song() before the song's end meant this switch; it is undone with it
        self._endless = bool(endless)
        self._wake.set()

    def end_song(self) -> None:
        """End the endless song gracefully, on its own ending.

        During the continuation, the generator plays on from what is already written ahead (up to ``lead_s``
        and a chunk) to its next phrase line, then into the song's own ending (its last phrases), and playback
        finishes there (event ``finished``). The seed model knows no phrases: what is written ahead plays out
        and fades, as with Endless off. Before the song's end, the song simply ends at its end. A seek
        afterwards plays on endlessly again.
        """
        if self._state != EngineState.PLAYING or self._ending:
            return
        self._ending = True
        if not self._song_written or not self.extender.ends_on_phrases:
            self.set_endless(False)
        self._wake.set()

    def set_volume(self, gain: float) -> None:
        """Output gain, 0 (silent) to 1 (as generated); changes are ramped over one block, without a click.

        Raises
        ------
        ConfigError
            A gain outside 0 to 1.
        """
        if not 0.0 <= gain <= 1.0:
            raise ConfigError(f"volume must be 0 to 1, got {gain}")
        self._volume = float(gain)

    def seams(self) -> np.ndarray:
        """Timeline positions of the joins written so far, in seconds: the song's end, each chunk, each repeat.

        Returns
        -------
        numpy.ndarray
            [shape=(joins,), dtype=float64], ascending; the most recent 100000 joins.
        """
        rate = self.sample_rate or 1
        return np.array(self._seams, dtype=np.float64) / rate

    def continuation_since(self, position: int) -> tuple[int, np.ndarray]:
        """Generated audio written from timeline frame ``position`` on (for drawing it ahead of the playhead).

        Parameters
        ----------
        position : int
            Absolute frame; frames before the continuation's start and frames already played (behind the
            playhead) are skipped.

        Returns
        -------
        start : int
            Absolute frame of the first returned frame.
        samples : numpy.ndarray
            [shape=(frames, channels), dtype=float32] at :attr:`sample_rate`, a copy; empty when nothing new.
        """
        if self._ring is None:
            return position, np.zeros((0, 1), np.float32)
        with self._write_lock:  # the writers may not recycle what is being copied
            end = self._ring.end
            start = min(end, max(position, self._continuation_from, self._ring.start, self._playhead))
            samples = self._ring.read(start, end)
        return start, samples if samples.ndim == 2 else samples[:, None]

    def stop(self) -> None:
        """Stop playback and the threads; safe to call twice."""
        if self._stream is not None and not self.device_lost and not self._paused \
                and self._state in (EngineState.PLAYING, EngineState.CONTINUING):
            self._paused = True  # the callback fades out over one block; let it play that block
            time.sleep(2 * self.config.blocksize / self.sample_rate)
        self._stop.set()
        self._wake.set()
        if self._stream is not None:
            if self.device_lost:
                # PortAudio blocks forever stopping a stream whose server died: let a daemon thread wait for it.
                threading.Thread(target=self._stream.abort, name="encore-lost-stream", daemon=True).start()
            else:
                self._stream.stop()
                self._stream.close()
            self._stream = None
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        if self._state not in (EngineState.IDLE, EngineState.FINISHED, EngineState.ERROR):  # playing, or any live state
            self._state = EngineState.STOPPED

    def _start(self, position: int, *, paused: bool) -> None:
        """Start the threads (and the device stream) with the playhead at timeline frame ``position``."""
        song = self._song
        self._reset_counters()
        self._overlap = self.extender.overlap_frames if self._cannot_extend is None else 0
        self._song_frames = song.frames - self._overlap if self._endless else song.frames
        self._continuation_from = song.frames - self._overlap
        if self._continuation_from < position < song.frames:  # inside the join itself: start at the join
            position = self._continuation_from
        if not self._endless:
            position = min(position, song.frames)
        self._prepare_output(song.channels)
        self._ring.clear(position)
        self._playhead = self._start_position = position
        self._paused = paused
        if position > 0 or paused:
            self._ramp_gain = 0.0  # fade in: a seek lands mid-music
        self._state = EngineState.PLAYING
        # Without Endless the song's last crossfade stays held back until the song has nearly played out, so a
        # song shorter than the lead can only ever have this much written ahead.
        left = song.frames - position - (0 if self._endless else self._x)
        self._hold_for = self._lead_frames if self._endless else min(self._lead_frames, max(1, left))
        threads = {"encore-generator": self._generate}
        if self.clock == "device":  # the offline clock waits for the generator instead: it never runs late
            threads["encore-guard"] = self._guard
            self._holding = True  # the callback plays silence until the guard sees the lead written
        self._start_threads(threads)
        if self.clock == "device":
            # Wait a moment for the lead, so the first sound is the song's; a long regeneration after a seek into
            # the continuation goes on behind the open stream instead of blocking the caller (the GUI thread).
            self._wait_for_lead(self._hold_for, timeout=HOLD_WAIT_S)
            self._open_stream(song.channels)

    def status(self) -> EngineStatus:
        """Where playback is and how well generation keeps up (``buffering``: waiting for the lead to play)."""
        rate = self.sample_rate or 1
        ring_end = self._ring.end if self._ring is not None else 0
        stats = self.extender.stats
        state = EngineState.PAUSED if self._paused and self._state in (EngineState.PLAYING, EngineState.CONTINUING) \
            else self._state
        return EngineStatus(
            state=state, playhead_s=self._playhead / rate, ahead_s=max(0, ring_end - self._playhead) / rate,
            song_s=self._song_frames / rate, chunks=stats.chunks, late_chunks=self._late_chunks,
            underruns=self._underruns, starved_s=self._starved_frames / rate, model=self.extender.model.name,
            real_time_factor=stats.real_time_factor, recent_real_time_factor=stats.recent_real_time_factor,
            continuations=self.continuations, endless=self._endless,
            volume=self._volume, buffering=self._holding, generator=self.extender.generator,
            segmentation=self.extender.segmentation, echo_db=self._echo_db(),
            ending=self._ending, error=self._error if self._state == EngineState.ERROR else "",
        )

    def _echo_db(self) -> float:
        """:attr:`EngineStatus.echo_db` from the live echo gate."""
        gate = self._echo
        return gate.echo_db if gate is not None and self._state in LIVE_STATES else math.nan

    def live(self, live_config: LiveConfig | None = None, *, input_device=None) -> None:
        """Listen to the input; when the performer stops (or :meth:`carry_on` is called) continue what was heard.

        The last ``context_s`` of input are always in a ring buffer. When the performer plays again, Encore
        fades out and listens again. Through speakers the input hears Encore too: the first second of each
        continuation learns how loud (an ``echo`` event says it), the echo is not taken for the performer,
        and what Encore continues leaves out the stretches where it sounded (:mod:`engine.echo`). Runs until
        :meth:`stop`. Only the ``device`` clock can listen.

        Raises
        ------
        EncoreError
            No usable input or output device.
        """
        if self.clock != "device":
            raise RuntimeError("live input needs the device clock")
        self.stop()
        sd = _sounddevice()
        self._live = live_config or LiveConfig()
        inp = self._device_info(sd, input_device, "input")
        out = self._device_info(sd, self.device, "output")
        rate = self._requested_rate or int(out["default_samplerate"])
        self.sample_rate = rate
        self._in_channels = min(2, int(inp["max_input_channels"]))
        out_channels = min(2, int(out["max_output_channels"]))
        # The input ring is the live memory: what was heard so far, up to what the generator reads (5 min at most).
        memory_s = min(self.extender.memory_s + 4.0, 300.0)
        self._input = RingBuffer(round(memory_s * rate), self._in_channels)
        # What Encore itself sent out, frame for frame with the input (both are written by the same callback),
        # so the live thread can tell the performer from Encore heard back through speakers (engine.echo).
        self._played = RingBuffer(rate, 1)  # 1 s: the 0.35 s read stays clear of the callback's next writes
        self._played_silence = np.zeros(max(self.config.blocksize, 8192), np.float32)
        self._echo = EchoGate(rate, floor=10 ** (self._live.threshold_db / 20))
        self._sounded: list[list[int]] = []  # [begin, end) input frames where Encore sounded; end -1 while it does
        self._prepare_output(out_channels)
        fade = round(self._live.fade_s * rate)
        self._fade = np.cos(np.linspace(0, np.pi / 2, fade, dtype=np.float32))[:, None] ** 2
        self._song_frames = self._continuation_from = 0
        self._reset_counters()
        self._paused = False
        self._carry_on = threading.Event()
        self.continuations = 0
        self._anticipated_heard = None
        self._state = EngineState.LISTENING
        self._start_threads({"encore-live": self._listen, "encore-guard": self._guard})
        self._wait_for_analysis_warm_up()
        try:
            stream = sd.Stream(samplerate=rate, blocksize=self.config.blocksize, dtype="float32",
                               device=(input_device, self.device), channels=(self._in_channels, out_channels),
                               callback=self._duplex_callback)
            stream.start()
            self.device_lost = False
            self._stream = stream  # only a started stream: the guard takes an inactive one for a lost device
        except sd.PortAudioError as e:
            self.stop()
            raise EncoreError(f"cannot open the audio input and output: {e}") from e

    def carry_on(self) -> None:
        """Carry on from what was heard now, without waiting for the performer's silence (the Enter key)."""
        self._carry_on.set()

    def input_level_db(self) -> float:
        """Input level of the last 50 ms, in dBFS (for meters)."""
        window = round(LEVEL_WINDOW_S * self.sample_rate)
        if self._input is None or self._input.end < window:
            return -np.inf
        level = rms(self._input.latest(window))
        return 20 * np.log10(level) if level > 0 else -np.inf

    def render(self, seconds: float) -> np.ndarray:
        """Advance the offline clock by ``seconds`` and return what the callback delivered.

        The offline clock waits for the generator before each block (it never starves), so a render holds
        exactly what a listener with a fast enough machine would hear.

        Returns
        -------
        numpy.ndarray
            [shape=(frames, channels), dtype=float32] at :attr:`sample_rate`.
        """
        if self.clock != "offline":
            raise RuntimeError("render() drives the offline clock; this engine plays on a device")
        frames = round(seconds * self.sample_rate)
        out = np.zeros((frames, self._ring.channels), np.float32)
        block = self.config.blocksize
        for start in range(0, frames, block):
            n = min(block, frames - start)
            if not self._wait_for_lead(n, timeout=60.0):
                break
            self._callback(out[start:start + n], n, None, None)
        if self._written_all and self._playhead >= self._ring.end:
            deadline = time.monotonic() + 5.0  # the generator says ``finished`` within its 10 ms poll
            while self._state == EngineState.PLAYING and time.monotonic() < deadline:
                time.sleep(0.002)
        return out

    # --- the audio callback: copies only ------------------------------------------------------------------
    def _callback(self, outdata, frames, time_info, status) -> None:
        if status is not None and status.output_underflow:
            self._underruns += 1
        if self._holding or (self._paused and self._ramp_gain == 0.0):
            outdata.fill(0)  # buffering after a start or a seek, or paused (after the fade below)
            return
        self._copy_out(outdata, frames)
        # Pausing fades out over this block and resuming fades in over the next: no click either way.
        self._apply_volume(outdata, frames, 0.0 if self._paused else self._volume)

    def _copy_out(self, outdata, frames: int) -> None:
        """Copy the next ``frames`` of the ring into ``outdata`` and advance the playhead; silence if starved."""
        start = self._playhead
        n = min(frames, self._ring.end - start)
        if n > 0:
            offset = 0
            for view in self._ring.views(start, start + n):
                length = view.shape[0]
                if view.ndim == 1:
                    outdata[offset:offset + length, 0] = view
                else:
                    outdata[offset:offset + length] = view
                offset += length
        else:
            n = 0
        if n < frames:
            outdata[n:] = 0
            # else the silence is the end
            if self._state in (EngineState.PLAYING, EngineState.CONTINUING) and not self._written_all:
                self._starved_frames += frames - n
        self._playhead = start + n

    def _duplex_callback(self, indata, outdata, frames, time_info, status) -> None:
        """Live mode: keep the input in its ring, then play the continuation, the input (monitor) or silence."""
        if status.input_overflow or status.output_underflow:
            self._underruns += 1
        self._input.write(indata if self._in_channels > 1 else indata[:, 0])
        state = self._state
        if state in ("continuing", "fading"):
            if self._play_from is not None:
                self._playhead, self._play_from = self._play_from, None
            self._copy_out(outdata, frames)
            if state == "fading":
                pos = self._fade_pos
                n = min(frames, self._fade.shape[0] - pos)
                outdata[:n] *= self._fade[pos:pos + n]
                outdata[n:] = 0
                self._fade_pos = pos + n
                if self._fade_pos >= self._fade.shape[0]:
                    self._state = EngineState.LISTENING
        elif self._live.monitor:
            channels = min(indata.shape[1], outdata.shape[1])
            outdata[:, :channels] = indata[:, :channels]
            outdata[:, channels:] = 0
        else:
            outdata.fill(0)
        self._apply_volume(outdata, frames, self._volume)
        # Only Encore's own continuation counts as what the room may echo (the monitored input is the performer).
        if state in ("continuing", "fading"):
            self._played.write(outdata[:, 0])
        elif frames <= self._played_silence.shape[0]:
            self._played.write(self._played_silence[:frames])
        else:
            self._played.write(np.zeros(frames, np.float32))

    def _apply_volume(self, outdata, frames: int, target: float) -> None:
        """Scale by ``target`` in place, ramping linearly across the block when it changed (no zipper click)."""
        current = self._ramp_gain
        if target == current:
            if current != 1.0:
                outdata *= current
            return
        frames = min(frames, self._unit_ramp.shape[0])
        ramp = self._ramp_scratch[:frames]
        np.multiply(self._unit_ramp[:frames], target - current, out=ramp)
        ramp += current
        outdata[:frames] *= ramp
        outdata[frames:] *= target
        # A block shorter than the ramp ends part of the way; the next block goes on from there.
        self._ramp_gain = target if frames == self._unit_ramp.shape[0] else float(ramp[-1, 0])

    # --- the live thread: listens, decides, and generates while continuing ------------------------------------
    def _listen(self) -> None:
        rate, live = self.sample_rate, self._live
        window, threshold = round(LEVEL_WINDOW_S * rate), 10 ** (live.threshold_db / 20)
        heard_from = last_loud = None
        loud_since = None
        echo_reported = False
        try:
            while not self._stop.wait(0.02):
                end = self._input.end
                if end < window:
                    continue
                loud = self._performer_heard(end, window, threshold)
                if not echo_reported and self._echo.coupling is not None:
                    echo_reported = True
                    self._emit("echo", self._echo.describe())
                if self._state == EngineState.LISTENING:
                    self._close_sounded(end)
                    if loud:
                        last_loud = end
                        heard_from = end - window if heard_from is None else max(heard_from, self._input.start)
                    heard = (last_loud - heard_from) / rate if last_loud is not None else 0.0
                    quiet_s = (end - last_loud) / rate if last_loud is not None else 0.0
                    stopped = last_loud is not None and quiet_s >= live.silence_s
                    if not stopped and heard >= live.min_heard_s and quiet_s >= ANTICIPATE_AFTER * live.silence_s:
                        self._anticipate_heard(last_loud)
                    asked = self._carry_on.is_set()
                    if (asked and heard > 0) or (stopped and heard >= live.min_heard_s):
                        self._carry_on.clear()
                        self._begin_continuation(end if asked else last_loud)
                        heard_from = last_loud = loud_since = None
                    elif asked:
                        self._carry_on.clear()
                elif self._state == EngineState.CONTINUING:
                    loud_since = (loud_since or time.monotonic()) if loud else None
                    if loud_since is not None and time.monotonic() - loud_since >= live.resume_s:
                        self._fade_pos = 0
                        self._state = EngineState.FADING
                        self._emit("listening", "the performer plays again; fading out")
                        loud_since = None
                    elif self._ring.end - self._playhead < self._lead_frames and self._play_from is None:
                        self._write_generated(self._upmix(self.extender.next_block()))
        except Exception as e:  # noqa: BLE001 - whatever it is, playback stops cleanly and the controller hears
            self._fail("live input", e)

    def _performer_heard(self, end: int, window: int, threshold: float) -> bool:
        """Whether the input's last ``window`` frames (ending at input frame ``end``) are the performer playing:
        above the threshold, and louder than Encore's own output heard back through the room explains."""
        level = rms(self._input.latest(window))
        if level <= threshold and not self._echo.learning:
            return False
        # The played ring may be a callback block behind the input, which the envelope's maximum over 0.3 s of
        # delays absorbs. While learning, quiet input is a level pair too (headphones: the room returns nothing).
        played = self._played.latest(min(round(ENVELOPE_SPAN_S * self.sample_rate), len(self._played)))
        performer = self._echo.is_performer(end, level, output_envelope(played, self.sample_rate))
        return level > threshold and performer

    def _close_sounded(self, end: int) -> None:
        """Encore is silent again (listening): its last sounding stretch ends, with its echo, after input frame
        ``end``; stretches older than the input ring are forgotten."""
        if self._sounded and self._sounded[-1][1] < 0:
            self._sounded[-1][1] = end + round(MAX_ECHO_DELAY_S * self.sample_rate)
            self._sounded = [span for span in self._sounded if span[1] > self._input.start]

    def _heard(self, heard_until: int) -> Waveform:
        """What a continuation from ``heard_until`` (an absolute input frame) continues: the memory's worth of
        input before it (the same object for the same frame, so an analysis made ahead of it is found).

        Where the room returns Encore's output to the input (speakers: :class:`~engine.echo.EchoGate`), the
        stretches where Encore sounded are left out, so a continuation never re-synthesises Encore's own echo.
        """
        if self._anticipated_heard is not None and self._anticipated_heard[0] == heard_until:
            return self._anticipated_heard[1]
        frames = round(self.extender.memory_s * self.sample_rate)
        if self._echo.echo_db == math.inf:
            sounded = []  # headphones or a line input: Encore is never in the input
        else:
            sounded = [(begin, end if end >= 0 else heard_until) for begin, end in self._sounded]
        spans = performer_spans(self._input.start, heard_until, sounded, frames)
        if not spans:
            return Waveform(self._input.read(heard_until, heard_until), self.sample_rate)
        pieces = [self._input.read(begin, end) for begin, end in spans]
        return Waveform(splice(pieces, round(SPLICE_FADE_S * self.sample_rate)), self.sample_rate)

    def _anticipate_heard(self, heard_until: int) -> None:
        """The performer has gone quiet: analyse what a continuation would continue now, in the background,
        so that if they stay quiet the continuation starts without waiting for it (a 5-minute memory's first
        block: 0.64 s with the analysis in it, 0.21 s without). Once per quiet spell."""
        if not self.extender.anticipates or (self._anticipated_heard is not None
                                             and self._anticipated_heard[0] == heard_until):
            return
        heard = self._heard(heard_until)
        self._anticipated_heard = (heard_until, heard)
        self.extender.anticipate(heard)

    def _begin_continuation(self, heard_until: int) -> None:
        """Continue the input heard up to ``heard_until`` (an absolute input frame), starting now."""
        heard = self._heard(heard_until)
        frames = heard.frames
        self._anticipated_heard = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a short phrase is looped to fill the context: that is expected
                self.extender.start(heard)
        except EncoreError as e:
            self._emit("error", f"cannot continue what was heard: {e}")
            return
        first = self.extender.next_block()[self.extender.overlap_frames:]  # the heard tail is not replayed
        with self._write_lock:
            self._pending, self._after_filler = None, False
            self._play_from = self._ring.end
            self._seams.append(self._ring.end)
            self._append(self._upmix(first), join=False)
            self._state = EngineState.CONTINUING
            self._sounded.append([self._input.end, -1])
            self._echo.start_learning(self._input.end)
        self.continuations += 1
        self._emit("continuing", f"continuing {frames / self.sample_rate:.1f} s of what was heard")

    def _upmix(self, block: np.ndarray) -> np.ndarray:
        """Match a block's channels to the output's (the heard input may have fewer)."""
        channels = self._ring.channels
        if block.shape[1] == channels:
            return block
        return np.repeat(block[:, :1], channels, axis=1)

    # --- the generator thread ----------------------------------------------------------------------------
    def _generate(self) -> None:
        try:
            song, start = self._song, self._start_position
            written = min(start, song.frames)
            while written < song.frames and not self._stop.is_set():
                if self._room() < self.config.blocksize:
                    self._wake.wait(0.01)
                    self._wake.clear()
                    continue
                n = min(self._room(), song.frames - written, self.sample_rate)
                with self._write_lock:
                    self._append(song.samples[written:written + n], join=False)
                written += n
            # The song's last crossfade is held back (pending) until here: Endless decides what follows it, and
            # may still be switched on until the song's last guard_s are playing.
            if not self._wait_for_endless_or_end():
                return
            self._song_written = True
            self._emit("song_end", f"continuation follows at {self._continuation_from / self.sample_rate:.2f} s")
            self._seams.append(self._continuation_from)
            position, first = self._continuation_from, True  # timeline frame where the next block begins
            told_to_end = False
            while not self._stop.is_set():
                if not self._endless and not self._wait_for_endless_or_end():
                    return  # switched off, and played out; switched on again in time goes on below
                if self._ending and not told_to_end:  # the generator is this thread's alone: it is told here
                    self.extender.end()
                    told_to_end = True
                    self._emit("ending", f"the song's own ending follows what is written up to "
                                         f"{self._ring.end / self.sample_rate:.1f} s")
                if self._ring.end - self._playhead >= self._lead_frames:
                    self._wake.wait(0.01)
                    self._wake.clear()
                    continue
                block = self.extender.next_block()
                begins = position - self._continuation_from  # the block's first frame, in generator frames
                skip, position = max(0, start - position), position + block.shape[0]
                if skip < block.shape[0]:  # else regenerating up to a seek position inside the continuation
                    while self._room() < block.shape[0] - skip and not self._stop.is_set():
                        self._wake.wait(0.01)
                        self._wake.clear()
                    self._write_generated(block[skip:], after_song=first, begins=begins + skip)
                    first = False
                if self.extender.finished:
                    self._play_out()
                    return
        except Exception as e:  # noqa: BLE001 - whatever it is, playback stops cleanly and the controller hears
            self._fail("generator", e)

    def _wait_for_endless_or_end(self) -> bool:
        """With Endless off, at the song's end or during the continuation: True to go on generating (Endless
        is on again, and a chunk is due); False once what was written has played out (or playback stopped)."""
        # Play out while twice the guard is left: well before the guard would take the end for a late chunk.
        play_out_at = round(2 * self.config.guard_s * self.sample_rate)
        while not self._stop.is_set():
            ahead = self._ring.end - self._playhead
            if self._endless and self._cannot_extend is None and ahead < self._lead_frames:
                return True  # decided only when the continuation is due, so Endless can change until then
            if not self._endless and ahead <= play_out_at:
                self._play_out()
                return False
            self._wake.wait(0.01)
            self._wake.clear()
        return False

    def _play_out(self) -> None:
        """Write what is held back, wait until the callback has played everything, then say ``finished``."""
        with self._write_lock:
            if self._song_written and self._pending is not None:
                # The continuation stops mid-music: its held-back crossfade becomes a fade-out, not a cut.
                self._pending = self._pending * np.cos(np.linspace(0, np.pi / 2, self._pending.shape[0],
                                                                   dtype=np.float32))[:, None] ** 2
            self._flush_pending()
            self._written_all = True
        while self._playhead < self._ring.end and not self._stop.is_set():
            self._stop.wait(0.01)
        if not self._stop.is_set():
            self._state = EngineState.FINISHED
            self._emit("finished")

    def _write_generated(self, block: np.ndarray, *, after_song: bool = False, begins: int | None = None) -> None:
        """Append a generated chunk (crossfaded in if the guard wrote a repeat before it) and announce it.

        With ``after_song`` the block is the continuation's first: it begins with its own crossfade over the song's
        last frames, so the song's held-back tail is dropped instead of written. ``begins`` is where the block
        starts in the generator's own frames (0 at the continuation's first): the generator's joins inside it
        are marked as seams where they are written (a resynth chunk boundary is no join; its cuts are). Without
        it (live input), each chunk boundary is marked.
        """
        with self._write_lock:
            if self._state in (EngineState.PLAYING, EngineState.CONTINUING):  # not after a fade-out or a stop
                at = self._ring.end + (0 if self._pending is None else self._pending.shape[0])
                if after_song:
                    self._pending = None
                    at = self._ring.end
                if begins is None:
                    if not after_song:
                        self._seams.append(at)
                else:
                    self._mark_joins(at, begins, block.shape[0])
                self._append(block, join=self._after_filler)
                self._after_filler = False
        self._emit("chunk", f"{self.extender.stats.chunks}")

    def _mark_joins(self, at: int, begins: int, frames: int) -> None:
        """Seams at the generator's joins that fall in the block written at timeline frame ``at``, which holds
        its frames ``begins`` to ``begins + frames`` (the song's end is already marked)."""
        joins = self.extender.joins
        overlap = self._overlap  # a join is counted from the song's end; the first block starts this before it
        k = len(joins)
        while k > 0 and joins[k - 1] + overlap >= begins:
            k -= 1
        for join in joins[k:]:
            inside = join + overlap - begins
            if inside >= frames:
                break
            if join > 0:
                self._seams.append(at + inside)

    def _fail(self, what: str, error: Exception) -> None:
        """Stop generating and tell the controller: a user's error in its words, a bug with its type."""
        if isinstance(error, EncoreError):
            detail = str(error)
            log.warning("%s: %s", what, detail)
        else:
            detail = f"{what} failed: {type(error).__name__}: {error}"
            log.error("%s failed", what, exc_info=error)  # a bug: its traceback goes to the log
            from .logs import log_path

            detail += f" (a bug: its traceback is in {log_path()})"
        self._error = detail
        self._state = EngineState.ERROR
        self._stop.set()  # every thread ends; the controller's stop() closes the stream
        self._emit("error", detail)

    # --- the guard thread ---------------------------------------------------------------------------------
    def _guard(self) -> None:
        guard = round(self.config.guard_s * self.sample_rate)
        filler = round(self.config.filler_s * self.sample_rate)
        while not self._stop.wait(0.02):
            stream = self._stream
            if stream is not None and not stream.active and not self._stop.is_set():
                # PortAudio stopped calling back: the device went away (unplugged, or its server quit).
                global DEVICE_LOST_IN_PROCESS
                self.device_lost = DEVICE_LOST_IN_PROCESS = True
                self._fail("audio device", EncoreError("the audio device stopped: it was disconnected or its "
                                                       "server quit; choose another device"))
                return
            # Only a running stream can be late: before it opens (a seek regenerating the continuation up to its
            # position) the playhead stands still and nobody is waiting.
            if self._holding and (self._ring.end - self._playhead >= self._hold_for or self._written_all
                                  or self._state != EngineState.PLAYING):
                self._holding = False
            # A song that ends (Endless off) plays out: nothing is late then.
            playing = stream is not None and not self._holding and not self._written_all and (
                self._state == EngineState.CONTINUING or (self._state == EngineState.PLAYING and self._song_written))
            if not playing or self._ring.end - self._playhead >= guard or self._play_from is not None:
                continue
            with self._write_lock:
                if self._ring.end - self._playhead >= guard or len(self._ring) < filler + self._x \
                        or self._written_all:
                    continue
                # Repeat the last second, joined to what precedes it on both sides by crossfades.
                recent = self._ring.read(self._ring.end - filler, self._ring.end)
                recent = recent if recent.ndim == 2 else recent[:, None]
                self._seams.append(self._ring.end + (0 if self._pending is None else self._pending.shape[0]))
                self._append(recent, join=True)
                self._after_filler = True
                self._late_chunks += 1
            self._emit("late", f"generator behind; repeated the last {self.config.filler_s:g} s")

    # --- writing (generator and guard, under the lock where both may write) ----------------------------------
    def _room(self) -> int:
        """Frames that may be written without reaching what the callback has not played yet."""
        return self._ring.capacity - (self._ring.end - self._playhead) - 2 * self._x

    def _append(self, block: np.ndarray, *, join: bool) -> None:
        """Write ``block`` after what was written, holding its last crossfade back for the next join.

        With ``join`` the held-back tail and the block's head are crossfaded (the block does not continue the
        tail); otherwise the tail simply precedes the block.
        """
        block = block if block.ndim == 2 else block[:, None]
        x = self._x
        if self._pending is None:
            head, body = block[:0], block
        elif join and block.shape[0] > 2 * x:
            head, body = crossfade(self._pending, block[:x]), block[x:]
        else:
            head, body = self._pending, block
        out = np.concatenate([head, body[:-x]]) if body.shape[0] > x else head
        self._pending = body[-x:].copy() if body.shape[0] > x else body.copy()
        self._write(out)

    def _flush_pending(self) -> None:
        if self._pending is not None and self._pending.shape[0]:
            self._write(self._pending)
            self._pending = None

    def _write(self, frames: np.ndarray) -> None:
        if frames.shape[0]:
            self._ring.write(frames[:, 0] if self._ring.channels == 1 else frames)

    # --- helpers ------------------------------------------------------------------------------------------
    def _prepare_output(self, channels: int) -> None:
        """Size the output ring and the join for :attr:`sample_rate`: the lead, two chunks and a margin."""
        rate = self.sample_rate
        self._x = max(1, round(self.config.crossfade_s * rate))
        self._lead_frames = round(self.config.lead_s * rate)
        block = self.config.blocksize
        self._unit_ramp = (np.arange(1, block + 1, dtype=np.float32) / block)[:, None]
        self._ramp_scratch = np.empty_like(self._unit_ramp)
        self._ramp_gain = self._volume
        horizon_s = self.extender.model.contract.horizon_s
        self._ring = RingBuffer(round((self.config.lead_s + 2 * horizon_s + 2) * rate), channels)

    def _start_threads(self, targets: dict) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=target, name=name, daemon=True) for name, target in targets.items()]
        for thread in self._threads:
            thread.start()

    def _wait_for_lead(self, frames: int, timeout: float) -> bool:
        """Wait until ``frames`` are written ahead of the playhead, or generation has ended."""
        deadline = time.monotonic() + timeout
        while self._ring.end - self._playhead < frames:
            if self._state in (EngineState.FINISHED, EngineState.ERROR) or self._stop.is_set() or self._written_all:
                return self._ring.end > self._playhead
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.001)
        return True

    def _stream_rate(self, song: Waveform) -> int:
        if self.clock == "offline":
            return self._requested_rate or song.sample_rate
        info = self._device_info(_sounddevice(), self.device, "output")
        return self._requested_rate or int(info["default_samplerate"])

    @staticmethod
    def _device_info(sd, device, kind: str) -> dict:
        try:
            return sd.query_devices(device, kind)
        except (ValueError, sd.PortAudioError) as e:
            named = f" {device!r}" if device is not None else ""
            raise EncoreError(f"no audio {kind} device{named}: {e} (is an audio server running? see "
                              f"`encore devices`)") from e

    def _wait_for_analysis_warm_up(self) -> None:
        """A resynth engine opens its stream only once librosa is loaded (see ``wait_for_warm_up``): at most the
        few seconds after the engine was created, and never again."""
        if self.extender.generator != "seed":
            from .analysis import wait_for_warm_up

            wait_for_warm_up()

    def _open_stream(self, channels: int) -> None:
        self._wait_for_analysis_warm_up()
        sd = _sounddevice()
        try:
            stream = sd.OutputStream(samplerate=self.sample_rate, channels=channels, dtype="float32",
                                     blocksize=self.config.blocksize, device=self.device, callback=self._callback)
            stream.start()
            self.device_lost = False
            self._stream = stream  # only a started stream: the guard takes an inactive one for a lost device
        except sd.PortAudioError as e:
            self.stop()
            raise EncoreError(f"cannot open the audio output: {e}") from e

    def _emit(self, kind: str, detail: str = "") -> None:
        self.events.put(EngineEvent(kind, self._playhead / self.sample_rate, detail))

    def _reset_counters(self) -> None:
        self._playhead = 0
        self._underruns = 0
        self._late_chunks = 0
        self._starved_frames = 0
        self._pending = None
        self._after_filler = False
        self._song_written = False
        self._play_from = None
        self._fade_pos = 0
        self._written_all = False  # nothing more will be written: the song ended without Endless
        self._holding = False
        self._start_position = 0
        self._seams = deque(maxlen=100_000)
        self._ending = False  # end_song() was asked


LIVE_STATES = (EngineState.LISTENING, EngineState.CONTINUING, EngineState.FADING)
#: How long play() and seek() wait for the lead before the stream opens and the rest buffers behind it, in s.
HOLD_WAIT_S = 0.5

# Set once any engine in this process lost its device. PortAudio then blocks forever in its exit handler
# (Pa_Terminate on a dead JACK server), so a program that is done leaves through exit_if_device_lost.
DEVICE_LOST_IN_PROCESS = False


def exit_if_device_lost(code: int) -> None:
    """End a program that is done with ``os._exit(code)`` if an audio device died under it, else return.

    Everything the program had to say must be said and written before: no exit handlers run.
    """
    if DEVICE_LOST_IN_PROCESS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def audio_devices() -> list[AudioDevice]:
    """Every audio device PortAudio sees (none without a sound card or an audio server).

    Raises
    ------
    EncoreError
        PortAudio itself is missing.
    """
    sd = _sounddevice()
    apis = [api["name"] for api in sd.query_hostapis()]
    default_in, default_out = (int(d) if d is not None else -1 for d in sd.default.device)
    return [AudioDevice(index=i, name=d["name"], host_api=apis[d["hostapi"]], inputs=int(d["max_input_channels"]),
                        outputs=int(d["max_output_channels"]), default_samplerate=float(d["default_samplerate"]),
                        is_default_input=i == default_in, is_default_output=i == default_out)
            for i, d in enumerate(sd.query_devices())]


def list_devices() -> list[str]:
    """Lines describing every audio device, the defaults marked as ``python -m sounddevice`` does.

    Raises
    ------
    EncoreError
        PortAudio sees no device at all (no sound card and no audio server running).
    """
    sd = _sounddevice()
    devices = sd.query_devices()
    if len(devices) == 0:
        raise EncoreError("no audio devices: no sound card, and no audio server (JACK, PulseAudio) is running")
    return str(devices).splitlines() + ["('>' default input, '<' default output, '*' both)"]


def _sounddevice():
    """Import sounddevice on first use: it needs PortAudio, which a render or a test may not."""
    try:
        import sounddevice
    except OSError as e:  # PortAudio's shared library is missing
        raise EncoreError(f"audio playback needs PortAudio (Debian: libportaudio2): {e}") from e
    return sounddevice
