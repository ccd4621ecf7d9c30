"""Real-time playback: a song, then its continuation, generated ahead of the playhead, endlessly.

Three activities share one output ring buffer (``RingBuffer``, absolute frame positions):

- **the audio callback** (PortAudio's thread, or the offline clock's) only copies: frames
  ``[playhead, playhead + n)`` out of the ring into ``outdata[:]``, then advances ``playhead``. No allocation
  of audio buffers, no inference, no logging, no lock. It counts true underruns from PortAudio's status
  flags, and frames it had to fill with silence because nothing was written yet (starved frames).
- **the generator thread** writes ahead of the playhead: the song first, then chunk after chunk from the
  :class:`~engine.extend.Extender`, keeping ``lead_s`` seconds written ahead (at least one whole chunk).
- **the guard thread** watches the lead. When the generator falls behind (lead below ``guard_s``) it writes a
  crossfaded repeat of the last seconds, so the listener hears music, not a click or silence, and counts a
  late chunk. The generator's next chunk is crossfaded in after it.
- **the live thread** (live input only, in place of the generator): the callback also copies ``indata`` into
  an input ring; this thread watches the input level, carries on from what was heard when the performer stops,
  generates while continuing, and asks the callback to fade out when the performer plays again.
- **the controller** (:class:`Engine`'s public methods, the CLI, later the GUI) starts, stops and observes.

Why sharing is safe: the two writers (generator or live thread, and guard) take ``_write_lock`` around each
append, and hold it only to copy; the callback never takes it. The callback reads only frames below ``ring.end``
and at or above ``playhead``; the writers never write past ``playhead + capacity``, so what the callback reads
is never being overwritten. ``playhead`` is written by the callback alone; an int assignment is atomic under the
GIL.
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .audio import Waveform, resample
from .errors import ConfigError, EncoreError
from .extend import ExtendConfig, Extender
from .ring import RingBuffer
from .seam import crossfade, rms


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


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot for observers (CLI, GUI); times in seconds."""

    state: str
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


@dataclass(frozen=True)
class EngineEvent:
    """Something observers may react to: ``chunk``, ``song_end``, ``late``, ``finished``, ``error``, and in live
    mode ``continuing`` (the performer stopped; Encore carries on) and ``listening`` (the performer is back)."""

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
    model : str or Continuator, optional
        The generator; the shipped default when None.
    extend_config : ExtendConfig, optional
    clock : {"device", "offline"}
        ``device`` plays through sounddevice; ``offline`` is driven by :meth:`render`, as fast as the CPU
        allows, with the same callback (for renders and soak tests).
    device : int or str, optional
        Output device for the ``device`` clock (sounddevice's notation).
    sample_rate : int, optional
        Stream rate in Hz; the device's default rate (``device`` clock) or the song's (``offline``) when None.
    """

    def __init__(self, config: EngineConfig | None = None, *, model=None, extend_config: ExtendConfig | None = None,
                 clock: str = "device", device=None, sample_rate: int | None = None):
        if clock not in ("device", "offline"):
            raise ConfigError(f"clock must be 'device' or 'offline', got {clock!r}")
        self.config = config or EngineConfig()
        self.clock = clock
        self.device = device
        self.extender = Extender(model, extend_config or ExtendConfig(crossfade_s=self.config.crossfade_s))
        self.events: queue.Queue[EngineEvent] = queue.Queue()
        self._requested_rate = sample_rate
        self._stream = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._write_lock = threading.Lock()
        self._state = "idle"
        self.continuations = 0
        self._reset_counters()

    # --- controller ---------------------------------------------------------------------------------------
    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def play(self, song: Waveform, *, endless: bool = True) -> None:
        """Start playing ``song``; with ``endless`` its continuation follows without a gap until :meth:`stop`.

        Raises
        ------
        EncoreError
            No usable output device, or a song the extender refuses.
        """
        self.stop()
        rate = self._stream_rate(song)
        song = Waveform(resample(song.samples, song.sample_rate, rate), rate) if song.sample_rate != rate else song
        self._song, self._endless, self.sample_rate = song, endless, rate
        self._reset_counters()
        if endless:
            self.extender.start(song)  # refuses silence and crumbs here, before any sound
            self._song_frames = song.frames - self.extender.overlap_frames
        else:
            self._song_frames = song.frames
        self._prepare_output(song.channels)
        self._state = "playing"
        threads = {"encore-generator": self._generate}
        if self.clock == "device":  # the offline clock waits for the generator instead: it never runs late
            threads["encore-guard"] = self._guard
        self._start_threads(threads)
        if self.clock == "device":
            self._wait_for_lead(min(self._lead_frames, self._song_frames + 1), timeout=30.0)
            self._open_stream(song.channels)

    def stop(self) -> None:
        """Stop playback and the threads; safe to call twice."""
        self._stop.set()
        self._wake.set()
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        if self._state not in ("idle", "finished", "error"):  # playing, or any live state
            self._state = "stopped"

    def status(self) -> EngineStatus:
        """Where playback is and how well generation keeps up."""
        rate = getattr(self, "sample_rate", 1) or 1
        ring_end = self._ring.end if hasattr(self, "_ring") else 0
        stats = self.extender.stats
        return EngineStatus(
            state=self._state, playhead_s=self._playhead / rate, ahead_s=max(0, ring_end - self._playhead) / rate,
            song_s=getattr(self, "_song_frames", 0) / rate, chunks=stats.chunks, late_chunks=self._late_chunks,
            underruns=self._underruns, starved_s=self._starved_frames / rate, model=self.extender.model.name,
            real_time_factor=stats.real_time_factor, continuations=self.continuations,
        )

    def live(self, live_config: LiveConfig | None = None, *, input_device=None) -> None:
        """Listen to the input; when the performer stops (or :meth:`carry_on` is called) continue what was heard.

        The last ``context_s`` of input are always in a ring buffer. When the performer plays again, Encore
        fades out and listens again. Runs until :meth:`stop`. Only the ``device`` clock can listen.

        Raises
        ------
        EncoreError
            No usable input or output device.
        """
        if self.clock != "device":
            raise ConfigError("live input needs the device clock")
        self.stop()
        sd = _sounddevice()
        self._live = live_config or LiveConfig()
        inp = self._device_info(sd, input_device, "input")
        out = self._device_info(sd, self.device, "output")
        rate = self._requested_rate or int(out["default_samplerate"])
        self.sample_rate = rate
        self._in_channels = min(2, int(inp["max_input_channels"]))
        out_channels = min(2, int(out["max_output_channels"]))
        self._input = RingBuffer(round((self.extender.model.contract.context_s + 5) * rate), self._in_channels)
        self._prepare_output(out_channels)
        fade = round(self._live.fade_s * rate)
        self._fade = np.cos(np.linspace(0, np.pi / 2, fade, dtype=np.float32))[:, None] ** 2
        self._song_frames = 0
        self._reset_counters()
        self._carry_on = threading.Event()
        self.continuations = 0
        self._state = "listening"
        self._start_threads({"encore-live": self._listen, "encore-guard": self._guard})
        try:
            self._stream = sd.Stream(samplerate=rate, blocksize=self.config.blocksize, dtype="float32",
                                     device=(input_device, self.device), channels=(self._in_channels, out_channels),
                                     callback=self._duplex_callback)
            self._stream.start()
        except sd.PortAudioError as e:
            self.stop()
            raise EncoreError(f"cannot open the audio input and output: {e}") from e

    def carry_on(self) -> None:
        """Carry on from what was heard now, without waiting for the performer's silence (the Enter key)."""
        self._carry_on.set()

    def input_level_db(self) -> float:
        """Input level of the last 50 ms, in dBFS (for meters)."""
        window = round(0.05 * self.sample_rate)
        if not hasattr(self, "_input") or self._input.end < window:
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
            raise ConfigError("render() drives the offline clock; this engine plays on a device")
        frames = round(seconds * self.sample_rate)
        out = np.zeros((frames, self._ring.channels), np.float32)
        block = self.config.blocksize
        for start in range(0, frames, block):
            n = min(block, frames - start)
            if not self._wait_for_lead(n, timeout=60.0):
                break
            self._callback(out[start:start + n], n, None, None)
        return out

    # --- the audio callback: copies only ------------------------------------------------------------------
    def _callback(self, outdata, frames, time_info, status) -> None:
        if status is not None and status.output_underflow:
            self._underruns += 1
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
            if self._state in ("playing", "continuing"):  # after a finished song, silence is its end
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
            self._callback(outdata, frames, time_info, None)
            if state == "fading":
                pos = self._fade_pos
                n = min(frames, self._fade.shape[0] - pos)
                outdata[:n] *= self._fade[pos:pos + n]
                outdata[n:] = 0
                self._fade_pos = pos + n
                if self._fade_pos >= self._fade.shape[0]:
                    self._state = "listening"
        elif self._live.monitor:
            channels = min(indata.shape[1], outdata.shape[1])
            outdata[:, :channels] = indata[:, :channels]
            outdata[:, channels:] = 0
        else:
            outdata.fill(0)

    # --- the live thread: listens, decides, and generates while continuing ------------------------------------
    def _listen(self) -> None:
        rate, live = self.sample_rate, self._live
        window, threshold = round(0.05 * rate), 10 ** (live.threshold_db / 20)
        heard_from = last_loud = None
        loud_since = None
        try:
            while not self._stop.wait(0.02):
                end = self._input.end
                if end < window:
                    continue
                loud = rms(self._input.latest(window)) > threshold
                if self._state == "listening":
                    if loud:
                        last_loud = end
                        heard_from = end - window if heard_from is None else max(heard_from, self._input.start)
                    heard = (last_loud - heard_from) / rate if last_loud is not None else 0.0
                    stopped = last_loud is not None and (end - last_loud) / rate >= live.silence_s
                    asked = self._carry_on.is_set()
                    if (asked and heard > 0) or (stopped and heard >= live.min_heard_s):
                        self._carry_on.clear()
                        self._begin_continuation(end if asked else last_loud)
                        heard_from = last_loud = loud_since = None
                    elif asked:
                        self._carry_on.clear()
                elif self._state == "continuing":
                    loud_since = (loud_since or time.monotonic()) if loud else None
                    if loud_since is not None and time.monotonic() - loud_since >= live.resume_s:
                        self._fade_pos = 0
                        self._state = "fading"
                        self._emit("listening", "the performer plays again; fading out")
                        loud_since = None
                    elif self._ring.end - self._playhead < self._lead_frames and self._play_from is None:
                        self._write_generated(self._upmix(self.extender.next_block()))
        except Exception as e:  # noqa: BLE001 - whatever it is, playback stops cleanly and the controller hears
            self._fail("live input", e)

    def _begin_continuation(self, heard_until: int) -> None:
        """Continue the input heard up to ``heard_until`` (an absolute input frame), starting now."""
        contract = self.extender.model.contract
        frames = min(heard_until - self._input.start, round((contract.context_s + 1) * self.sample_rate))
        heard = Waveform(self._input.read(heard_until - frames, heard_until), self.sample_rate)
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
            self._append(self._upmix(first), join=False)
            self._state = "continuing"
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
            song, written = self._song, 0
            while written < self._song_frames and not self._stop.is_set():
                if self._room() < self.config.blocksize:
                    self._wake.wait(0.01)
                    self._wake.clear()
                    continue
                n = min(self._room(), self._song_frames - written, self.sample_rate)
                self._append(song.samples[written:written + n], join=False)
                written += n
            if not self._endless:
                self._flush_pending()
                self._state = "finished"
                self._emit("finished")
                return
            self._song_written = True
            self._emit("song_end", f"continuation follows at {self._song_frames / self.sample_rate:.2f} s")
            while not self._stop.is_set():
                if self._ring.end - self._playhead >= self._lead_frames:
                    self._wake.wait(0.01)
                    self._wake.clear()
                    continue
                block = self.extender.next_block()
                while self._room() < block.shape[0] and not self._stop.is_set():
                    self._wake.wait(0.01)
                    self._wake.clear()
                self._write_generated(block)
        except Exception as e:  # noqa: BLE001 - whatever it is, playback stops cleanly and the controller hears
            self._fail("generator", e)

    def _write_generated(self, block: np.ndarray) -> None:
        """Append a generated chunk (crossfaded in if the guard wrote a repeat before it) and announce it."""
        with self._write_lock:
            if self._state in ("playing", "continuing"):  # not after a fade-out or a stop
                self._append(block, join=self._after_filler)
                self._after_filler = False
        self._emit("chunk", f"{self.extender.stats.chunks}")

    def _fail(self, what: str, error: Exception) -> None:
        """Stop generating and tell the controller: a user's error in its words, a bug with its type."""
        self._state = "error"
        detail = str(error) if isinstance(error, EncoreError) else f"{what} failed: {type(error).__name__}: {error}"
        self._emit("error", detail)

    # --- the guard thread ---------------------------------------------------------------------------------
    def _guard(self) -> None:
        guard = round(self.config.guard_s * self.sample_rate)
        filler = round(self.config.filler_s * self.sample_rate)
        while not self._stop.wait(0.02):
            playing = self._state == "continuing" or (self._state == "playing" and self._song_written)
            if not playing or self._ring.end - self._playhead >= guard or self._play_from is not None:
                continue
            with self._write_lock:
                if self._ring.end - self._playhead >= guard or self._ring.end < filler + self._x:
                    continue
                # Repeat the last second, joined to what precedes it on both sides by crossfades.
                recent = self._ring.read(self._ring.end - filler, self._ring.end)
                recent = recent if recent.ndim == 2 else recent[:, None]
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
            if self._state in ("finished", "error") or self._stop.is_set():
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
                              f"`engine devices`)") from e

    def _open_stream(self, channels: int) -> None:
        sd = _sounddevice()
        try:
            self._stream = sd.OutputStream(samplerate=self.sample_rate, channels=channels, dtype="float32",
                                           blocksize=self.config.blocksize, device=self.device,
                                           callback=self._callback)
            self._stream.start()
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
        self._pending: np.ndarray | None = None
        self._after_filler = False
        self._song_written = False
        self._play_from: int | None = None
        self._fade_pos = 0


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
