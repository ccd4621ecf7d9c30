"""Acoustic echo cancellation: taking Encore's own output back out of what the microphone hears.

Through speakers, the live input hears Encore's continuation as well as the performer. :mod:`engine.echo` keeps
that echo out with a level gate; this module cancels it, so that a performer quieter than the echo is still
heard:

- :func:`estimate_delay` finds how late Encore's output comes back at the input (device latencies, the room's
  path, a Bluetooth speaker's buffer): GCC-PHAT between what was played and what was heard, up to
  :data:`MAX_DELAY_S`.
- :class:`SpeexEchoCanceller` is SpeexDSP's echo canceller on Debian's ``libspeexdsp``, called through ctypes.
  Its adaptive filter (a multidelay block frequency-domain filter) gives the *cancelled* input; its preprocessor's
  residual echo suppressor (which SpeexDSP applies only with its noise suppressor on) then gives the
  *suppressed* input, several dB further down on Encore's echo (on the demo song: 28.5 dB after the filter,
  37 dB after the suppressor, above 200 Hz). Both change the performer's own sound (a DC notch, the noise
  suppressor), so they are only measured: the performer is told from the echo by the suppressed input's level,
  and what is remembered is the input itself. The binding on the package index wraps the filter alone and needs
  SWIG to build, hence ctypes.
- :func:`echo_return_loss_enhancement` measures either: how much quieter the echo is after.
- :class:`LiveCanceller` runs it on live mode's rings, frame by frame as the input arrives.

The filter only needs the room's own tail (:data:`TAIL_S`): the reference it is given is what was played
:func:`estimate_delay` earlier.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections import deque

import numpy as np

from .ring import RingBuffer

#: Longest echo delay looked for, in seconds (device buffers, the room, a Bluetooth speaker).
MAX_DELAY_S = 0.5
#: The adaptive filter's length after the delay is taken out, in seconds: a room's reverberant tail that still
#: matters at -20 dB. A longer filter adapts more slowly.
TAIL_S = 0.25
#: The reference is sent this much earlier than the estimated delay, so that an estimate a little late (by up to
#: this, in seconds) still leaves the echo's start inside the filter.
DELAY_MARGIN_S = 0.02
#: Frames of about this length, in seconds (rounded to a power of two in samples, for SpeexDSP's FFT).
FRAME_S = 0.01
#: GCC-PHAT runs at this rate, in Hz: the delay is wanted to a frame, and the band below 4 kHz carries it.
DELAY_RATE = 8000
#: A delay is trusted when its correlation peak stands this many times above the median of the others.
MIN_DELAY_PEAK_RATIO = 6.0
#: Below this RMS (-80 dBFS) a signal is silence: there is no echo to time in it.
MIN_DELAY_LEVEL = 1e-4
#: Encore must have sounded this long in a continuation before its echo's delay is estimated from it, in s.
ESTIMATE_AFTER_S = 1.5
#: The echo reduction reported is a running mean of the powers before and after over about this long, in s.
REDUCTION_MEMORY_S = 2.0
#: Frames whose reference is quieter than this (RMS) carry no echo to measure the reduction on.
REDUCTION_FLOOR = 1e-3
#: A frame counts towards the reduction only once the live thread has had this long, in seconds, to hear a
#: performer in it: the start of a comeback, before it is recognised, is not Encore's echo.
REDUCTION_LAG_S = 0.3
#: The suppressed input the live thread reads its levels from holds this much, in seconds.
SUPPRESSED_S = 2.0

# SpeexDSP's request codes (speex/speex_echo.h, speex/speex_preprocess.h).
_SPEEX_ECHO_SET_SAMPLING_RATE = 24
_SPEEX_PREPROCESS_SET_AGC = 2
_SPEEX_PREPROCESS_SET_DEREVERB = 8
_SPEEX_PREPROCESS_SET_ECHO_STATE = 24

_library: ctypes.CDLL | None = None
_library_error = ""


def _speexdsp() -> ctypes.CDLL | None:
    """Debian's libspeexdsp with the argument types of the calls used here, or None when it is not installed."""
    global _library, _library_error
    if _library is not None or _library_error:
        return _library
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        _library_error = "libspeexdsp is not installed (Debian: apt-get install libspeexdsp1)"
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    lib.speex_echo_state_init.restype = pointer
    lib.speex_echo_state_init.argtypes = [integer, integer]
    lib.speex_echo_state_destroy.argtypes = [pointer]
    lib.speex_echo_state_reset.argtypes = [pointer]
    lib.speex_echo_ctl.argtypes = [pointer, integer, pointer]
    lib.speex_echo_cancellation.argtypes = [pointer, pointer, pointer, pointer]
    lib.speex_preprocess_state_init.restype = pointer
    lib.speex_preprocess_state_init.argtypes = [integer, integer]
    lib.speex_preprocess_state_destroy.argtypes = [pointer]
    lib.speex_preprocess_ctl.argtypes = [pointer, integer, pointer]
    lib.speex_preprocess_run.argtypes = [pointer, pointer]
    _library = lib
    return lib


def why_unavailable() -> str:
    """One line on why no echo canceller can run here ("" when SpeexDSP's can)."""
    _speexdsp()
    return _library_error


def frame_length(sample_rate: int) -> int:
    """The canceller's frame at ``sample_rate``: the power of two nearest :data:`FRAME_S`, in samples."""
    return 1 << max(6, round(math.log2(FRAME_S * sample_rate)))


class SpeexEchoCanceller:
    """SpeexDSP's acoustic echo canceller and residual echo suppressor, one input channel.

    Parameters
    ----------
    sample_rate : int
        Of the input and of the reference, in Hz.
    tail_s : float
        Length of the adaptive filter, in seconds: the echo path after the delay the caller takes out.

    Attributes
    ----------
    frame : int
        Samples per call of :meth:`process`.
    latency : int
        How many samples the suppressed output lags the input (the suppressor's overlap: one frame).

    Raises
    ------
    RuntimeError
        libspeexdsp is not installed (:func:`why_unavailable` says so first).
    """

    name = "speexdsp"

    def __init__(self, sample_rate: int, *, tail_s: float = TAIL_S):
        lib = _speexdsp()
        if lib is None:
            raise RuntimeError(_library_error)
        self._lib = lib
        self.sample_rate = int(sample_rate)
        self.frame = self.latency = frame_length(self.sample_rate)
        taps = max(self.frame, round(tail_s * self.sample_rate / self.frame) * self.frame)
        self._echo = lib.speex_echo_state_init(self.frame, taps)
        self._pre = lib.speex_preprocess_state_init(self.frame, self.sample_rate)
        rate = ctypes.c_int(self.sample_rate)
        lib.speex_echo_ctl(self._echo, _SPEEX_ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
        off = ctypes.c_int(0)
        # SpeexDSP applies the residual echo suppressor's gains only with its noise suppressor on, so that stays
        # (its output is only ever measured, never heard or kept); gain control would hide levels.
        for request in (_SPEEX_PREPROCESS_SET_AGC, _SPEEX_PREPROCESS_SET_DEREVERB):
            lib.speex_preprocess_ctl(self._pre, request, ctypes.byref(off))
        lib.speex_preprocess_ctl(self._pre, _SPEEX_PREPROCESS_SET_ECHO_STATE, ctypes.c_void_p(self._echo))
        self._near = np.zeros(self.frame, np.int16)
        self._far = np.zeros(self.frame, np.int16)
        self._out = np.zeros(self.frame, np.int16)

    def process(self, captured: np.ndarray, played: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cancel one frame.

        Parameters
        ----------
        captured : numpy.ndarray
            [shape=(frame,), dtype=float32] what the input heard, in [-1, 1].
        played : numpy.ndarray
            [shape=(frame,), dtype=float32] what Encore played, as far before as the echo's delay.

        Returns
        -------
        cancelled : numpy.ndarray
            [shape=(frame,), dtype=float32] the input less the adaptive filter's estimate of the echo, the same
            frame; the input itself where the reference is silent.
        suppressed : numpy.ndarray
            [shape=(frame,), dtype=float32] that, with the residual echo suppressed, :attr:`latency` late.
        """
        # 16-bit, as SpeexDSP's fixed-point API takes it; levels are in [-1, 1].
        np.copyto(self._near, np.clip(np.rint(captured * 32767.0), -32768, 32767), casting="unsafe")
        np.copyto(self._far, np.clip(np.rint(played * 32767.0), -32768, 32767), casting="unsafe")
        self._lib.speex_echo_cancellation(self._echo, self._near.ctypes.data, self._far.ctypes.data,
                                          self._out.ctypes.data)
        cancelled = self._out.astype(np.float32) / 32767.0
        self._lib.speex_preprocess_run(self._pre, self._out.ctypes.data)
        return cancelled, self._out.astype(np.float32) / 32767.0

    def reset(self) -> None:
        """Forget the echo path learned (a new room, a new device)."""
        self._lib.speex_echo_state_reset(self._echo)

    def close(self) -> None:
        """Free SpeexDSP's state (also done when the object is collected)."""
        if self._echo:
            self._lib.speex_echo_state_destroy(self._echo)
            self._lib.speex_preprocess_state_destroy(self._pre)
            self._echo = self._pre = None

    def __del__(self) -> None:
        if getattr(self, "_echo", None):
            self.close()


def estimate_delay(played: np.ndarray, captured: np.ndarray, sample_rate: int, *,
                   max_delay_s: float = MAX_DELAY_S) -> float | None:
    """How late Encore's output comes back at the input, by GCC-PHAT (the phase of the cross-spectrum alone,
    so a room's colouring does not move the peak).

    Parameters
    ----------
    played, captured : numpy.ndarray
        [shape=(frames,), dtype=float32] mono, the same frames of time (frame ``i`` of each at the same moment);
        at least ``max_delay_s + 0.5`` s in which Encore sounded.
    sample_rate : int
        In Hz.
    max_delay_s : float
        Longest delay looked for, in seconds.

    Returns
    -------
    float or None
        The delay in seconds (0 to ``max_delay_s``), or None when no delay stands out (the input does not hear
        Encore: headphones, a line input; or either side was silent, or too short).
    """
    from .audio import resample

    n = min(played.shape[0], captured.shape[0])
    if n < sample_rate * (max_delay_s + 0.5):
        return None
    x = resample(np.asarray(played[-n:], np.float32), sample_rate, DELAY_RATE)
    y = resample(np.asarray(captured[-n:], np.float32), sample_rate, DELAY_RATE)
    if min(_rms(x), _rms(y)) < MIN_DELAY_LEVEL:
        return None  # nothing played, or nothing heard: no echo to time
    size = 1 << int(math.ceil(math.log2(x.shape[0] + y.shape[0])))
    cross = np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size))
    cross /= np.maximum(np.abs(cross), 1e-12)
    correlation = np.fft.irfft(cross, size)[: round(max_delay_s * DELAY_RATE) + 1]
    peak = int(np.argmax(correlation))
    others = np.ones(correlation.shape[0], bool)
    others[max(0, peak - 4):peak + 5] = False  # the peak's own main lobe
    floor = float(np.median(np.abs(correlation[others]))) if others.any() else math.inf
    if not correlation[peak] > MIN_DELAY_PEAK_RATIO * floor:
        return None
    return peak / DELAY_RATE


def cancel_echo(captured: np.ndarray, played: np.ndarray, sample_rate: int, delay_s: float, *,
                canceller: SpeexEchoCanceller | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cancel Encore's echo from a whole recording (what :class:`LiveCanceller` does as the input arrives).

    Parameters
    ----------
    captured, played : numpy.ndarray
        [shape=(frames,), dtype=float32] mono, frame for frame the same moments.
    sample_rate : int
        In Hz.
    delay_s : float
        The echo's delay (:func:`estimate_delay`).
    canceller : SpeexEchoCanceller, optional
        One to continue with; a new one when None.

    Returns
    -------
    cancelled, suppressed : numpy.ndarray
        [shape=(frames,), dtype=float32] each (:meth:`SpeexEchoCanceller.process`), the suppressed one moved
        back by its latency so both line up with ``captured``; frames past the last whole frame are passed
        through as they are.
    """
    canceller = canceller or SpeexEchoCanceller(sample_rate)
    shift = max(0, round((delay_s - DELAY_MARGIN_S) * sample_rate))
    reference = np.concatenate([np.zeros(shift, np.float32), np.asarray(played, np.float32)])[: captured.shape[0]]
    cancelled = np.array(captured, np.float32, copy=True)
    suppressed = np.array(captured, np.float32, copy=True)
    frame, latency = canceller.frame, canceller.latency
    for start in range(0, captured.shape[0] - frame + 1, frame):
        cancelled[start:start + frame], late = canceller.process(captured[start:start + frame],
                                                                 reference[start:start + frame])
        if start >= latency:
            suppressed[start - latency:start - latency + frame] = late
    return cancelled, suppressed


def echo_return_loss_enhancement(before: np.ndarray, after: np.ndarray) -> float:
    """How much quieter the echo is after cancelling, in dB (10 log10 of the power ratio).

    Parameters
    ----------
    before, after : numpy.ndarray
        [shape=(frames,)] the input and the cancelled input over the same stretch, with only Encore's echo in
        it (no performer).

    Returns
    -------
    float
        In dB; inf when nothing is left, nan when there was no echo to cancel.
    """
    power_before, power_after = _power(before), _power(after)
    if power_before <= 0:
        return math.nan
    return math.inf if power_after <= 0 else 10.0 * math.log10(power_before / power_after)


class LiveCanceller:
    """Live mode's echo canceller: the input with Encore's echo cancelled and suppressed, frame by frame.

    The live thread calls :meth:`advance` at every poll: it cancels every whole frame the input ring has gained
    since, against what the callback played :attr:`delay_s` earlier, and appends the suppressed result
    (:meth:`SpeexEchoCanceller.process`) to :attr:`suppressed`, from which the performer is told from the echo by
    level. Until the delay is known (and where the input does not hear Encore) the input passes through. The
    live memory stays the input itself: the filter's own output has SpeexDSP's DC notch in it (measured: -7 dB
    at 60 Hz, -2 dB at 100 Hz), which would take the bass out of what is remembered.

    Parameters
    ----------
    sample_rate : int
        The stream's, in Hz.
    channels : int
        The input's; each is cancelled on its own against the mono output.

    Attributes
    ----------
    delay_s : float or None
        The echo's delay last estimated; None before an estimate found one.
    hears_encore : bool or None
        Whether the last estimate found Encore's echo in the input; None before the first.
    suppressed : RingBuffer
        The last :data:`SUPPRESSED_S` of the suppressed input; its newest frame is at most a canceller frame
        (:attr:`SpeexEchoCanceller.latency`) behind the input's.
    """

    name = SpeexEchoCanceller.name

    def __init__(self, sample_rate: int, channels: int):
        self.sample_rate = sample_rate
        self.channels = channels
        self._cancellers = [SpeexEchoCanceller(sample_rate) for _ in range(channels)]
        self.frame = self._cancellers[0].frame
        self.suppressed = RingBuffer(round(SUPPRESSED_S * sample_rate), channels)
        self.delay_s: float | None = None
        self.hears_encore: bool | None = None
        self._cursor: int | None = None  # the next input frame to cancel
        self._shift = 0
        self._reference = np.zeros(self.frame, np.float32)
        self._measuring = False
        self._power_reference = self._power_before = self._power_after = 0.0
        self._keep = math.exp(-self.frame / (REDUCTION_MEMORY_S * sample_rate))
        self._uncounted: deque[tuple[float, float, float]] = deque()  # (reference, before, after) powers
        self._lag = max(1, round(REDUCTION_LAG_S * sample_rate / self.frame))
        self._previous = (0.0, 0.0)  # the last frame's reference and input powers, for the late output

    @property
    def measuring(self) -> bool:
        """Whether the frames cancelled now hold Encore's echo alone (the live thread says: Encore carries on,
        no performer heard), so that :attr:`echo_db` and :attr:`echo_reduction_db` are read on them; set to
        False, it also drops the frames of the last :data:`REDUCTION_LAG_S` not yet counted."""
        return self._measuring

    @measuring.setter
    def measuring(self, value: bool) -> None:
        self._measuring = value
        if not value:
            self._uncounted.clear()

    @property
    def echo_db(self) -> float:
        """How far below Encore's output the input hears it before cancelling, in dB, over the same seconds as
        :attr:`echo_reduction_db`; nan before any."""
        if self._power_before <= 0:
            return math.nan
        return 10.0 * math.log10(self._power_reference / self._power_before)

    @property
    def echo_reduction_db(self) -> float:
        """How much quieter Encore's echo is in :attr:`suppressed` than in the input, in dB, over the last seconds
        it sounded alone (:func:`echo_return_loss_enhancement` as a running mean); nan before any."""
        if self._power_before <= 0:
            return math.nan
        return math.inf if self._power_after <= 0 else 10.0 * math.log10(self._power_before / self._power_after)

    def advance(self, heard: RingBuffer, played: RingBuffer) -> None:
        """Cancel the whole frames the input ring ``heard`` has gained, against the ring ``played`` (the same
        absolute frames), into :attr:`suppressed`."""
        frame = self.frame
        if self._cursor is None or not heard.start <= self._cursor <= heard.end:  # first, or a whole ring behind
            self._cursor = heard.start
        stop = self._cursor + (heard.end - self._cursor) // frame * frame
        for at in range(self._cursor, stop, frame):
            captured = heard.read(at, at + frame)
            if self.delay_s is None:
                self.suppressed.write(captured)
                continue
            self._reference_at(played, at - self._shift)
            if captured.ndim == 1:
                late = self._cancellers[0].process(captured, self._reference)[1]
            else:
                late = np.stack([c.process(captured[:, k], self._reference)[1]
                                 for k, c in enumerate(self._cancellers)], axis=1)
            self.suppressed.write(late)
            reference_power, before = self._previous  # ``late`` is the previous frame's
            self._previous = _power(self._reference), _power(captured)
            if self._measuring and reference_power > REDUCTION_FLOOR ** 2:
                self._count(reference_power, before, _power(late))
        self._cursor = stop

    def _reference_at(self, played: RingBuffer, source: int) -> None:
        """What was played at ``[source, source + frame)``, into the reference frame; silence where the ring has
        none (before Encore began, or a moment the callback has not played yet)."""
        out = self._reference
        out.fill(0.0)
        lo, hi = max(source, played.start), min(source + self.frame, played.end)
        if lo < hi:
            out[lo - source:hi - source] = played.read(lo, hi)

    def _count(self, reference: float, before: float, after: float) -> None:
        """One frame's powers towards the running means, :data:`REDUCTION_LAG_S` late."""
        self._uncounted.append((reference, before, after))
        if len(self._uncounted) <= self._lag:
            return
        reference, before, after = self._uncounted.popleft()
        keep = self._keep
        self._power_reference = keep * self._power_reference + (1 - keep) * reference
        self._power_before = keep * self._power_before + (1 - keep) * before
        self._power_after = keep * self._power_after + (1 - keep) * after

    def estimate(self, heard: RingBuffer, played: RingBuffer, end: int) -> float | None:
        """Estimate the echo's delay from the last :data:`ESTIMATE_AFTER_S` before input frame ``end`` (Encore
        sounding all along); sets and returns :attr:`delay_s` (None: the input does not hear Encore)."""
        frames = round(ESTIMATE_AFTER_S * self.sample_rate)
        begin = max(end - frames, heard.start, played.start)
        captured = heard.read(begin, end)
        mono = captured if captured.ndim == 1 else captured.mean(axis=1)
        delay = estimate_delay(played.read(begin, end), mono, self.sample_rate)
        if delay is None:
            self.hears_encore = False
            return self.delay_s
        if self.delay_s is None or abs(delay - self.delay_s) > 2 * self.frame / self.sample_rate:
            self.use_delay(delay)
        self.hears_encore = True
        return self.delay_s

    def use_delay(self, delay_s: float) -> None:
        """Cancel an echo ``delay_s`` late from now on: a new echo path, so what the filter learned and what was
        measured are forgotten."""
        for canceller in self._cancellers:
            canceller.reset()
        self.delay_s = delay_s
        self._shift = max(0, round((delay_s - DELAY_MARGIN_S) * self.sample_rate))
        self._power_reference = self._power_before = self._power_after = 0.0
        self._uncounted.clear()


def simulated_room(played: np.ndarray, sample_rate: int, *, delay_s: float, gain_db: float = 0.0,
                   noise_db: float = -60.0, seed: int = 0) -> np.ndarray:
    """What a microphone in a room hears of ``played``: for measuring a canceller (``engine bench --echo``, the
    tests) without speakers.

    Parameters
    ----------
    played : numpy.ndarray
        [shape=(frames,), dtype=float32] Encore's output, mono.
    sample_rate : int
        In Hz.
    delay_s : float
        How late it comes back, in seconds.
    gain_db : float
        Its level against the output's own, in dB (0: as loud as it was played).
    noise_db : float
        A white noise floor, in dBFS.
    seed : int
        Of the room's reverberation and the noise.

    Returns
    -------
    numpy.ndarray
        [shape=(frames,), dtype=float32]: ``played`` through 120 ms of decaying reverberation (25 ms time
        constant, 12 dB under the direct sound) and a 5 kHz low-pass, ``delay_s`` late, plus the noise.
    """
    import scipy.signal

    rng = np.random.default_rng(seed)
    response = np.zeros(round(0.12 * sample_rate))
    response[0] = 1.0
    response += rng.standard_normal(response.size) * np.exp(-np.arange(response.size) / (0.025 * sample_rate)) * 0.25
    response = scipy.signal.lfilter(*scipy.signal.butter(2, 5000, fs=sample_rate), response)
    echo = scipy.signal.fftconvolve(played, response)[: played.shape[0]]
    echo = np.concatenate([np.zeros(round(delay_s * sample_rate)), echo])[: played.shape[0]]
    echo *= 10 ** (gain_db / 20) * np.sqrt(np.mean(np.square(played, dtype=np.float64)) / np.mean(echo ** 2))
    return (echo + rng.standard_normal(played.shape[0]) * 10 ** (noise_db / 20)).astype(np.float32)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def _rms(x: np.ndarray) -> float:
    return math.sqrt(_power(x))
