"""The transport: :class:`Engine`, its controller methods and its states (:class:`~engine.playback.EngineState`).

The engine is one object whose roles live in files of their own: the audio callback (:mod:`.callback`), the
generation worker and guard (:mod:`.worker`), live input (:mod:`.live`). This file holds what the controller
calls (play, seek, pause, stop, status, render) and the set-up they share.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from ..audio import Waveform, resample
from ..config import ExtendConfig
from ..errors import ConfigError, EncoreError
from ..generators import open_generator
from ..process import GeneratorProcess
from ..ring import RingBuffer
from .callback import AudioCallback
from .devices import _sounddevice
from .live import LiveInput
from .types import LIVE_STATES, EngineConfig, EngineEvent, EngineState, EngineStatus
from .worker import GenerationWorker

if TYPE_CHECKING:
    from ..rendering import Generator

#: How long play() and seek() wait for the lead before the stream opens and the rest buffers behind it, in s.
HOLD_WAIT_S = 0.5


class Engine(AudioCallback, LiveInput, GenerationWorker):
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
        config = config or EngineConfig()
        if extend_config is not None and extend_config.crossfade_s != config.crossfade_s:
            # The song's held-back tail is exactly the continuation's first crossfade; they must agree.
            raise ConfigError(f"the extender's crossfade ({extend_config.crossfade_s} s) must equal the engine's "
                              f"({config.crossfade_s} s)")
        extend_config = extend_config or ExtendConfig(crossfade_s=config.crossfade_s)
        extender: Generator
        if clock == "device" and config.generator_process and (model is None or isinstance(model, str | os.PathLike)):
            # Told to stop waiting when the engine stops, and to say when its process was restarted.
            extender = GeneratorProcess(model, extend_config, generator=generator, resynth=resynth,
                                        interrupted=lambda: self._stop.is_set(),
                                        notify=lambda line: self._emit("restarted", line))
        else:
            extender = open_generator(model, extend_config, generator=generator, resynth=resynth)
        super().__init__(config, extender, clock=clock, device=device, sample_rate=sample_rate)

    # --- controller ---------------------------------------------------------------------------------------
    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop, and end the generator's process (when it has one; else free the generator's native state now,
        not at interpreter exit); the engine cannot play after this."""
        self.stop()
        if isinstance(self.extender, GeneratorProcess):
            self.extender.close()
        else:
            self.extender.reset()

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
        if endless and (not self._song_written or not self.extender.ends_on_phrases):
            # An end_song() before the song's end, or of the seed model (it knows no phrases), meant this switch;
            # it is undone with it.
            self._ending = False
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
        song = self._playing_song()
        self._reset_counters()
        self._overlap = self.extender.overlap_frames if self._cannot_extend is None else 0
        self._song_frames = song.frames - self._overlap if self._endless else song.frames
        self._continuation_from = song.frames - self._overlap
        if self._continuation_from < position < song.frames:  # inside the join itself: start at the join
            position = self._continuation_from
        if not self._endless:
            position = min(position, song.frames)
        self._prepare_output(song.channels)
        self._output_ring().clear(position)
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
        canceller, reduction_db = self._echo_canceller()
        return EngineStatus(
            state=state, playhead_s=self._playhead / rate, ahead_s=max(0, ring_end - self._playhead) / rate,
            song_s=self._song_frames / rate, chunks=stats.chunks, late_chunks=self._late_chunks,
            underruns=self._underruns, starved_s=self._starved_frames / rate, model=self.extender.model.name,
            real_time_factor=stats.real_time_factor, recent_real_time_factor=stats.recent_real_time_factor,
            continuations=self.continuations, endless=self._endless,
            volume=self._volume, buffering=self._holding, generator=self.extender.generator,
            segmentation=self.extender.segmentation, echo_db=self._echo_db(), echo_canceller=canceller,
            echo_reduction_db=reduction_db,
            ending=self._ending, error=self._error if self._state == EngineState.ERROR else "",
            generator_runs="own process" if isinstance(self.extender, GeneratorProcess) else "engine's process",
            generator_restarts=getattr(self.extender, "restarts", 0),
        )

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
        ring = self._output_ring()
        out = np.zeros((frames, ring.channels), np.float32)
        block = self.config.blocksize
        for start in range(0, frames, block):
            n = min(block, frames - start)
            if not self._wait_for_lead(n, timeout=60.0):
                break
            self._callback(out[start:start + n], n, None, None)
        if self._written_all and self._playhead >= ring.end:
            deadline = time.monotonic() + 5.0  # the generator says ``finished`` within its 10 ms poll
            while self._state == EngineState.PLAYING and time.monotonic() < deadline:
                time.sleep(0.002)
        return out

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
        ring = self._output_ring()
        while ring.end - self._playhead < frames:
            if self._state in (EngineState.FINISHED, EngineState.ERROR) or self._stop.is_set() or self._written_all:
                return ring.end > self._playhead
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
        # A generator in its own process warms up there: nothing in this process holds the lock for it.
        if self.extender.generator != "seed" and not isinstance(self.extender, GeneratorProcess):
            from ..analysis import wait_for_warm_up

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
