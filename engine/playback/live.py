"""Live input: listen, carry on when the performer stops, fade out when they play again.

The live thread runs in place of the generation worker: it watches the input level (and, through speakers,
cancels Encore's own echo from it, :mod:`engine.aec`, and tells the performer from what is left of it,
:mod:`engine.echo`), carries on from what was heard when the performer stops, generates while continuing, and
asks the callback to fade out when the performer plays again.
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np

from ..aec import ESTIMATE_AFTER_S, TAIL_S, LiveCanceller, why_unavailable
from ..audio import Waveform
from ..echo import (
    ENVELOPE_SPAN_S,
    LEVEL_WINDOW_S,
    MAX_ECHO_DELAY_S,
    EchoGate,
    input_hears_encore,
    output_envelope,
    performer_spans,
    splice,
)
from ..errors import EncoreError
from ..process import GenerationInterrupted
from ..ring import RingBuffer
from ..seam import rms
from .devices import _sounddevice
from .state import PlaybackState
from .types import LIVE_STATES, EngineState, LiveConfig

#: In live mode, once the performer has been quiet for this share of ``LiveConfig.silence_s``, what a
#: continuation would continue is analysed in the background (playing again before the rest of the silence
#: only wastes that analysis).
ANTICIPATE_AFTER = 0.3
#: Crossfade where the live memory skips a stretch in which Encore sounded (engine.echo), in seconds.
SPLICE_FADE_S = 0.01
#: What Encore played, frame for frame with the input: the echo gate reads its last 0.35 s, the delay estimate
#: its last 1.5 s (engine.aec), in seconds.
PLAYED_S = 4.0
#: After a new echo delay, the echo gate learns again what is left of the echo once the canceller has taken it
#: this far down (dB), or this long after (s): learnt at once, it learnt the filter still adapting (measured in a
#: JACK room: the echo's remains learnt 7 dB under Encore, where 25 dB under was to come, and a performer 6 dB
#: under the echo went unheard).
RELEARN_AT_DB = 15.0
RELEARN_AFTER_S = 5.0
#: Where the performer's last sound ended is found to this resolution inside the level window, in seconds: the
#: silence before Encore carries on is counted from there, not from the end of the last window that still held
#: a little of the sound (up to a window, 50 ms, later).
SOUND_END_STEP_S = 0.01


def quiet_tail(samples: np.ndarray, threshold: float, step: int) -> int:
    """How many frames at the end of ``samples`` come after its last loud stretch.

    Parameters
    ----------
    samples : numpy.ndarray
        [shape=(frames,) or (frames, channels)] the newest input, newest last.
    threshold : float
        RMS level (linear, over all channels) above which a stretch is loud.
    step : int
        Stretch length in frames; the stretches are counted back from the newest frame.

    Returns
    -------
    int
        Frames after the end of the newest loud stretch: 0 when the newest stretch is loud, ``len(samples)``
        when none is (a stretch shorter than ``step`` at the oldest end is not looked at).
    """
    frames, oldest, loud = _loud_stretches(samples, threshold, step)
    return frames if loud.size == 0 else frames - oldest - (int(loud[-1]) + 1) * step


def _loud_stretches(samples: np.ndarray, threshold: float, step: int) -> tuple[int, int, np.ndarray]:
    """``samples`` cut into stretches of ``step`` frames counted back from the newest (a shorter remainder at the
    oldest end is not looked at): its length, where the first stretch starts, and the indices (oldest first) of
    the stretches whose RMS over all channels is over ``threshold``."""
    x = np.asarray(samples, dtype=np.float64)
    frames = x.shape[0]
    stretches = frames // step if step > 0 else 0
    if stretches == 0:
        return frames, frames, np.zeros(0, np.int64)
    oldest = frames - stretches * step
    rows = x[oldest:].reshape(stretches, -1)  # one row a stretch, oldest first
    return frames, oldest, np.flatnonzero(np.mean(rows * rows, axis=1) > threshold * threshold)


def loud_head(samples: np.ndarray, threshold: float, step: int) -> int:
    """How many frames at the start of ``samples`` come before its first loud stretch (:func:`quiet_tail`'s
    stretches, counted back from the newest frame): ``len(samples)`` when none is loud."""
    frames, oldest, loud = _loud_stretches(samples, threshold, step)
    return frames if loud.size == 0 else oldest + int(loud[0]) * step


class LiveInput(PlaybackState):
    """The :class:`~engine.playback.Engine`'s live role (its state is :class:`~engine.playback.state.PlaybackState`)."""

    def live(self, live_config: LiveConfig | None = None, *, input_device=None) -> None:
        """Listen to the input; when the performer stops (or :meth:`carry_on` is called) continue what was heard.

        The last ``context_s`` of input are always in a ring buffer. When the performer plays again, Encore
        fades out and listens again; when they stop, it carries on again, after a fill however short. Through
        speakers the input hears Encore too: the first second of each continuation learns how loud (an ``echo``
        event says it), the echo is not taken for the performer, and what Encore continues leaves out the
        stretches where it sounded (:mod:`engine.echo`). Where libspeexdsp is installed (and
        ``LiveConfig.cancel_echo``), the echo's delay is measured 1.5 s into the first continuation (another
        ``echo`` event) and the echo cancelled before the performer is listened for (:mod:`engine.aec`;
        :meth:`echo_handling` says which runs). Runs until :meth:`stop`. Only the ``device`` clock can listen.

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
        # Encore's echo cancelled from what the live thread listens to (engine.aec), where libspeexdsp is there.
        self._canceller_note = why_unavailable() if self._live.cancel_echo else "switched off"
        self._canceller = None if self._canceller_note else LiveCanceller(rate, self._in_channels)
        self._delay_estimated_for, self._relearn_from = -1, None
        self._output_level = 0.0
        # What Encore itself sent out, frame for frame with the input (both are written by the same callback),
        # so the live thread can tell the performer from Encore heard back through speakers (engine.echo) and
        # cancel the echo (engine.aec). Its reads stay seconds clear of the callback's next writes.
        self._played = RingBuffer(round(PLAYED_S * rate), 1)
        self._played_silence = np.zeros(max(self.config.blocksize, 8192), np.float32)
        self._echo = EchoGate(rate, floor=10 ** (self._live.threshold_db / 20))
        self._sounded = []  # [begin, end) input frames where Encore sounded; end -1 while it does
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

    def _echo_db(self) -> float:
        """:attr:`EngineStatus.echo_db`: from the canceller once it has measured Encore's echo (the echo gate
        then learns what is left of it after cancelling), else from the echo gate."""
        gate, canceller = self._echo, self._canceller
        if gate is None or self._state not in LIVE_STATES:
            return math.nan
        if canceller is not None and canceller.hears_encore and not math.isnan(canceller.echo_db):
            return canceller.echo_db
        return gate.echo_db

    def echo_handling(self) -> str:
        """One line on what keeps Encore's echo out of the live input: the canceller, or the level gate and why."""
        if self._canceller is not None:
            return f"Encore's echo is cancelled ({self._canceller.name}: SpeexDSP's echo canceller)"
        return f"Encore's echo is ignored by a level gate (no echo canceller: {self._canceller_note})"

    def _echo_canceller(self) -> tuple[str, float]:
        """:attr:`EngineStatus.echo_canceller` and :attr:`EngineStatus.echo_reduction_db`."""
        if self._state not in LIVE_STATES:
            return "", math.nan
        if self._canceller is None:
            return "level gate", math.nan
        return self._canceller.name, self._canceller.echo_reduction_db

    def _listen(self) -> None:
        rate, live = self.sample_rate, self._live
        window, threshold = round(LEVEL_WINDOW_S * rate), 10 ** (live.threshold_db / 20)
        # Input frames where what was heard began and where it was last loud: both None until the performer is
        # first heard, and again after each continuation begins.
        heard_from: int | None = None
        last_loud: int | None = None
        # Since the last fade: what made Encore fade counts as played, however short, so that a stop after it
        # carries on again (a fill of a second, or Encore's own echo taken for the performer, would otherwise leave
        # the stage silent until someone plays for min_heard_s).
        after_fade = False
        analysed_until = 0  # input frame up to which what was heard was last analysed while the performer played
        loud_since = None
        echo_reported = False
        try:
            heard_ring, ring, gate = self._input_ring(), self._output_ring(), self._echo_gate()
            while not self._stop.wait(0.02):
                end = heard_ring.end
                if self._canceller is not None:
                    self._canceller.advance(heard_ring, self._played_ring())
                if end < window:
                    continue
                loud = self._performer_heard(end, window, threshold)
                if self._canceller is not None:  # Encore's echo alone is what its reduction is read on
                    self._canceller.measuring = self._state == EngineState.CONTINUING and not loud
                if not echo_reported and gate.coupling is not None:
                    echo_reported = True
                    self._emit("echo", gate.describe())
                if self._state == EngineState.LISTENING:
                    self._close_sounded(end)
                    if loud:
                        sound_end = end - self._quiet_tail(window, threshold)
                        last_loud = sound_end if last_loud is None else max(last_loud, sound_end)
                        heard_from = end - window if heard_from is None else max(heard_from, heard_ring.start)
                        if (self.extender.anticipates
                                and end - max(heard_from, analysed_until) >= live.analyse_every_s * rate):
                            self.extender.anticipate(self._heard(end))  # a stop's memory will begin with it
                            analysed_until = end
                    if heard_from is None or last_loud is None:  # nothing heard yet: Enter has nothing to carry on
                        if self._carry_on.is_set():
                            self._carry_on.clear()
                        continue
                    heard = (last_loud - heard_from) / rate
                    quiet_s = (end - last_loud) / rate
                    stopped = quiet_s >= live.silence_s
                    enough = heard >= live.min_heard_s or after_fade
                    if not stopped and enough and quiet_s >= ANTICIPATE_AFTER * live.silence_s:
                        self._anticipate_heard(last_loud)
                    asked = self._carry_on.is_set()
                    if (asked and heard > 0) or (stopped and enough):
                        self._carry_on.clear()
                        self._begin_continuation(end if asked else last_loud)
                        heard_from = last_loud = loud_since = None
                        after_fade = False
                    elif asked:
                        self._carry_on.clear()
                elif self._state == EngineState.CONTINUING:
                    self._estimate_echo_delay(end)
                    self._relearn_after_converging(end)
                    if not loud:
                        loud_since = None
                    elif loud_since is None:
                        loud_since = self._sound_began(end, window, threshold)
                    if loud_since is not None and end - loud_since >= live.resume_s * rate:
                        self._fade_pos = 0
                        self._state = EngineState.FADING
                        self._emit("listening", "the performer plays again; fading out")
                        loud_since = None
                        heard_from, last_loud, after_fade = end - round(live.resume_s * rate), end, True
                    elif ring.end - self._playhead < self._lead_frames and self._play_from is None:
                        self._write_generated(self._upmix(self.extender.next_block()))
        except GenerationInterrupted:
            return  # the engine stopped while the generator's process was working: nothing failed
        except Exception as e:  # noqa: BLE001 - whatever it is, playback stops cleanly and the controller hears
            self._fail("live input", e)

    def _estimate_echo_delay(self, end: int) -> None:
        """Once per continuation, after Encore has sounded :data:`~engine.aec.ESTIMATE_AFTER_S`: find how late
        its echo comes back, so the canceller can take it out; a new delay makes the echo gate learn again what
        is left of the echo after cancelling."""
        canceller = self._canceller
        if (canceller is None or self._delay_estimated_for == self.continuations or not self._sounded
                or end - self._sounded[-1][0] < ESTIMATE_AFTER_S * self.sample_rate):
            return
        self._delay_estimated_for = self.continuations
        heard, played = self._input_ring(), self._played_ring()
        before = canceller.delay_s
        delay = canceller.estimate(heard, played, min(heard.end, played.end))
        if delay is not None and delay != before:
            self._relearn_from = end
            self._emit("echo", f"Encore's echo comes back {1000 * delay:.0f} ms late; cancelling it "
                               f"({canceller.name})")

    def _relearn_after_converging(self, end: int) -> None:
        """Once the canceller has converged on a new delay (:data:`RELEARN_AT_DB`, or :data:`RELEARN_AFTER_S`),
        the echo gate learns what is left of the echo."""
        canceller, since = self._canceller, self._relearn_from
        if canceller is None or since is None:
            return
        converged = canceller.echo_reduction_db >= RELEARN_AT_DB  # False while it is nan
        if converged or end - since >= RELEARN_AFTER_S * self.sample_rate:
            self._echo_gate().start_learning(end)
            self._relearn_from = None

    def _performer_heard(self, end: int, window: int, threshold: float) -> bool:
        """Whether the input's last ``window`` frames (ending at input frame ``end``) are the performer playing:
        above the threshold, and louder than Encore's own output heard back through the room explains (with a
        canceller: what is left of it after cancelling and suppressing, :mod:`engine.aec`)."""
        gate, played_ring = self._echo_gate(), self._played_ring()
        heard = self._level_input()
        level = rms(heard.latest(window))
        # The envelope's maximum over 0.3 s of delays absorbs the echo's delay, and that the played ring may be a
        # callback block behind the input; with the delay known, it is read where the echo came from. Quiet input
        # is a level pair too: for learning (headphones: the room returns nothing), and for following a
        # cancelled echo's remains down (EchoGate.hears_performer).
        span = min(round(ENVELOPE_SPAN_S * self.sample_rate), len(played_ring))
        delay = self._canceller.delay_s if self._canceller is not None else None
        source_end = min(played_ring.end, end - round(delay * self.sample_rate)) if delay is not None else None
        if source_end is not None and source_end - span >= played_ring.start:
            played = played_ring.read(source_end - span, source_end)
        else:
            played = played_ring.latest(span)
        self._output_level = output_envelope(played, self.sample_rate)
        return gate.hears_performer(end, level, self._output_level, threshold)

    def _level_input(self) -> RingBuffer:
        """The ring the performer's level is read from: the input with Encore's echo cancelled where a canceller
        runs (:attr:`~engine.aec.LiveCanceller.suppressed`), else the input itself."""
        return self._canceller.suppressed if self._canceller is not None else self._input_ring()

    def _sound_began(self, end: int, window: int, threshold: float) -> int:
        """The input frame where the sound that made the level window ending at ``end`` loud began: its first
        stretch over both the threshold and the echo the gate allows for (:meth:`~engine.echo.EchoGate.
        performer_level`). A comeback's :attr:`~engine.config.LiveConfig.resume_s` is counted from there: counted
        from the first loud window, the window's filling (up to 50 ms, longer for a quiet comeback) came on top,
        and two quiet comebacks of a 10-minute soak faded Encore 0.31 s after they began. (With a canceller, the
        level's ring is up to a canceller frame behind the input's, so the start found is that much late: never
        early.)"""
        bar = max(threshold, self._echo_gate().performer_level(self._output_level))
        heard = self._level_input().latest(window)
        return end - heard.shape[0] + loud_head(heard, bar, round(SOUND_END_STEP_S * self.sample_rate))

    def _quiet_tail(self, window: int, threshold: float) -> int:
        """Frames at the end of the level window that follow the performer's last sound (:func:`quiet_tail`
        on what the level is read from)."""
        heard = self._level_input()
        return quiet_tail(heard.latest(window), threshold, round(SOUND_END_STEP_S * self.sample_rate))

    def _close_sounded(self, end: int) -> None:
        """Encore is silent again (listening): its last sounding stretch ends, with its echo, after input frame
        ``end``; stretches older than the input ring are forgotten. The echo's allowance is the delay the
        canceller measured and the room's tail, or :data:`~engine.echo.MAX_ECHO_DELAY_S` without one. (What the
        performer plays over Encore is not kept even with a canceller: where both sound, the canceller's output
        held the performer at 4 dB of signal to noise on a test song, :mod:`engine.aec`.)"""
        if self._sounded and self._sounded[-1][1] < 0:
            delay = self._canceller.delay_s if self._canceller is not None else None
            allowance = MAX_ECHO_DELAY_S if delay is None else delay + TAIL_S
            self._sounded[-1][1] = end + round(allowance * self.sample_rate)
            oldest = self._input_ring().start
            self._sounded = [span for span in self._sounded if span[1] > oldest]

    def _heard(self, heard_until: int) -> Waveform:
        """What a continuation from ``heard_until`` (an absolute input frame) continues: the memory's worth of
        input before it (the same object for the same frame, so an analysis made ahead of it is found).

        Unless the input is known not to hear Encore (headphones, a line input: :func:`~engine.echo.
        input_hears_encore`), the stretches where Encore sounded are left out, so a continuation never
        re-synthesises Encore's own echo.
        """
        if self._anticipated_heard is not None and self._anticipated_heard[0] == heard_until:
            return self._anticipated_heard[1]
        frames = round(self.extender.memory_s * self.sample_rate)
        heard_ring = self._input_ring()
        sounded: list[tuple[int, int]] = []  # headphones or a line input: Encore is never in the input
        canceller = self._canceller
        if input_hears_encore(cancelling=canceller is not None, gate_echo_db=self._echo_gate().echo_db,
                              canceller_hears=canceller.hears_encore if canceller is not None else None):
            sounded = [(begin, end if end >= 0 else heard_until) for begin, end in self._sounded]
        spans = performer_spans(heard_ring.start, heard_until, sounded, frames)
        if not spans:
            return Waveform(heard_ring.read(heard_until, heard_until), self.sample_rate)
        pieces = [heard_ring.read(begin, end) for begin, end in spans]
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
        ring, heard_ring = self._output_ring(), self._input_ring()
        with self._write_lock:
            self._pending, self._after_filler = None, False
            self._play_from = ring.end
            self._seams.append(ring.end)
            self._append(self._upmix(first), join=False)
            self._state = EngineState.CONTINUING
            self._sounded.append([heard_ring.end, -1])
            self._echo_gate().start_learning(heard_ring.end)
        self.continuations += 1
        self._emit("continuing", f"continuing {frames / self.sample_rate:.1f} s of what was heard")

    def _upmix(self, block: np.ndarray) -> np.ndarray:
        """Match a block's channels to the output's (the heard input may have fewer)."""
        channels = self._output_ring().channels
        if block.shape[1] == channels:
            return block
        return np.repeat(block[:, :1], channels, axis=1)
