"""The seam: joining generated chunks so that nobody hears the join, and keeping the output safe.

Everything here is pure numpy/scipy and streaming-safe: the stateful stages (:class:`DCBlocker`,
:class:`Limiter`) carry their state across calls, so processing a stream block by block gives the same samples
as processing it whole, for any block sizes. Blocks are [shape=(frames,)] mono or [shape=(frames, channels)];
outputs are float32, internal arithmetic float64 where precision matters.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

#: A block whose RMS is below this (-120 dBFS) is silence: loudness matching leaves it alone.
SILENT_RMS = 1e-6

#: click_score's high-pass corner, in Hz (lowered to 0.8 x Nyquist where the rate cannot hold it).
CLICK_HF_CUTOFF_HZ = 5000.0


def equal_power_ramps(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Quarter-period sine/cosine fades with ``fade_in**2 + fade_out**2 == 1`` at every frame.

    The ramps are sampled at frame centres, ``t = (k + 0.5) / frames``, so they are mirror images
    (``fade_in == fade_out[::-1]``) and neither end is exactly 0 or 1; ``frames == 1`` gives one frame at -3 dB.

    Parameters
    ----------
    frames : int
        Length of the crossfade, >= 0.

    Returns
    -------
    fade_in, fade_out : numpy.ndarray
        [shape=(frames,), dtype=float32] rising and falling gains in [0, 1].

    Raises
    ------
    ValueError
        Negative ``frames``.
    """
    if int(frames) != frames or frames < 0:
        raise ValueError(f"crossfade length must be a whole number of frames >= 0, got {frames}")
    phase = (np.arange(int(frames)) + 0.5) * (0.5 * np.pi / max(int(frames), 1))
    return np.sin(phase).astype(np.float32), np.cos(phase).astype(np.float32)


def crossfade(outgoing: np.ndarray, incoming: np.ndarray, *, correlation: float | None = None) -> np.ndarray:
    """Equal-power crossfade of two equal-length blocks, compensated for their correlation.

    The textbook sin/cos crossfade keeps the power only when the two blocks are uncorrelated; two blocks that
    agree (a continuation that matches what it overlaps) would swell by up to +3 dB mid-fade. So the sin/cos
    ramps ``a, b`` are scaled by ``1 / sqrt(a**2 + b**2 + 2*rho*a*b)``, with ``rho`` the blocks' correlation
    clipped to [0, 1]: uncorrelated blocks get exactly the sin/cos crossfade, identical blocks come out
    unchanged (the gains sum to 1), and the expected power is kept in between.

    Parameters
    ----------
    outgoing, incoming : numpy.ndarray
        [shape=(frames,) or (frames, channels)], the same shape; ``outgoing`` fades out, ``incoming`` fades in.
    correlation : float, optional
        ``rho`` to use instead of measuring it (normalised cross-correlation at lag 0 over all channels);
        0 forces the plain sin/cos crossfade, 1 a crossfade whose gains sum to 1.

    Returns
    -------
    numpy.ndarray
        [same shape, dtype=float32]

    Raises
    ------
    ValueError
        Blocks of different shapes, or ``correlation`` outside [0, 1].
    """
    outgoing, incoming = np.asarray(outgoing), np.asarray(incoming)
    if outgoing.shape != incoming.shape or outgoing.ndim not in (1, 2):
        raise ValueError(f"crossfade needs two blocks of the same (frames,) or (frames, channels) shape, "
                          f"got {outgoing.shape} and {incoming.shape}")
    if correlation is None:
        rho = _correlation(outgoing, incoming)
    elif 0.0 <= correlation <= 1.0:
        rho = float(correlation)
    else:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    fade_in, fade_out = (ramp.astype(np.float64) for ramp in equal_power_ramps(outgoing.shape[0]))
    if rho > 0.0:
        norm = 1.0 / np.sqrt(fade_in**2 + fade_out**2 + 2.0 * rho * fade_in * fade_out)
        fade_in, fade_out = fade_in * norm, fade_out * norm
    if outgoing.ndim == 2:
        fade_in, fade_out = fade_in[:, None], fade_out[:, None]
    return (outgoing * fade_out + incoming * fade_in).astype(np.float32)


def rms(x: np.ndarray) -> float:
    """Root mean square over all samples (all channels), computed in float64; 0.0 for an empty block."""
    x = np.asarray(x)
    if x.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def match_loudness(block: np.ndarray, target_rms: float, *,
                   max_gain_db: float = 12.0) -> tuple[np.ndarray, float]:
    """Scale a block to a target RMS, with the gain clamped to +-``max_gain_db``.

    Parameters
    ----------
    block : numpy.ndarray
        [shape=(frames,) or (frames, channels)]
    target_rms : float
        Wanted RMS (linear, full scale 1.0), >= 0.
    max_gain_db : float
        Largest boost and largest cut, in dB, >= 0.

    Returns
    -------
    scaled : numpy.ndarray
        [same shape, dtype=float32]
    gain : float
        The linear gain applied; 1.0 for a silent block (RMS below :data:`SILENT_RMS`), which is never boosted.

    Raises
    ------
    ValueError
        Negative or non-finite ``target_rms`` or ``max_gain_db``.
    """
    if not (np.isfinite(target_rms) and target_rms >= 0):
        raise ValueError(f"target RMS must be finite and >= 0, got {target_rms}")
    if not (np.isfinite(max_gain_db) and max_gain_db >= 0):
        raise ValueError(f"max gain must be finite and >= 0 dB, got {max_gain_db}")
    block = np.asarray(block)
    level = rms(block)
    if level < SILENT_RMS:
        return block.astype(np.float32, copy=False), 1.0
    limit = 10.0 ** (max_gain_db / 20.0)
    gain = float(np.clip(target_rms / level, 1.0 / limit, limit))
    return (block * gain).astype(np.float32, copy=False), gain


def sanitize(block: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN and +-inf with 0.

    Returns
    -------
    block : numpy.ndarray
        The input itself when it is all finite (no copy), else a repaired copy; same shape and dtype.
    replaced : int
        Number of values replaced.
    """
    block = np.asarray(block)
    finite = np.isfinite(block)
    replaced = int(finite.size - np.count_nonzero(finite))
    if replaced:
        block = np.where(finite, block, 0).astype(block.dtype, copy=False)
    return block, replaced


class DCBlocker:
    """First-order DC-blocking high-pass, ``y[n] = x[n] - x[n-1] + R * y[n-1]``, streaming.

    ``R = exp(-2 pi cutoff_hz / sample_rate)``. The filter starts at rest and carries its state across calls
    (one state per channel), so block-wise output equals whole-signal output. Non-finite input samples are
    treated as 0, because one NaN would otherwise poison the state for good.

    Parameters
    ----------
    sample_rate : int
        In Hz.
    cutoff_hz : float
        The -3 dB corner, in Hz, in (0, sample_rate / 2).

    Raises
    ------
    ValueError
        A non-positive rate or a corner outside (0, Nyquist).
    """

    def __init__(self, sample_rate: int, cutoff_hz: float = 10.0):
        if not sample_rate > 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        if not 0 < cutoff_hz < sample_rate / 2:
            raise ValueError(f"DC blocker cutoff must be in (0, {sample_rate / 2:g}) Hz, got {cutoff_hz}")
        self.sample_rate = sample_rate
        self.cutoff_hz = float(cutoff_hz)
        self.pole = float(np.exp(-2.0 * np.pi * cutoff_hz / sample_rate))
        self._b = np.array([1.0, -1.0])
        self._a = np.array([1.0, -self.pole])
        self._zi: np.ndarray | None = None

    def process(self, block: np.ndarray) -> np.ndarray:
        """Filter the next block of the stream.

        Parameters
        ----------
        block : numpy.ndarray
            [shape=(frames,) or (frames, channels)]; the layout must stay the same until :meth:`reset`.

        Returns
        -------
        numpy.ndarray
            [same shape, dtype=float32]

        Raises
        ------
        ValueError
            A block whose channel layout differs from the stream's so far.
        """
        x = _finite(block, np.float64)
        if x.ndim not in (1, 2):
            raise ValueError(f"blocks must be (frames,) or (frames, channels), got {x.shape}")
        if self._zi is None:
            self._zi = np.zeros((1, *x.shape[1:]))
        elif self._zi.shape[1:] != x.shape[1:]:
            raise ValueError(f"the stream had blocks of shape (frames, {', '.join(map(str, self._zi.shape[1:]))}), "
                              f"got {x.shape}; call reset() to change the layout")
        if x.shape[0] == 0:
            return x.astype(np.float32)
        y, self._zi = sps.lfilter(self._b, self._a, x, axis=0, zi=self._zi)
        return y.astype(np.float32)

    def reset(self) -> None:
        """Back to rest: the next block starts a new stream (any layout)."""
        self._zi = None


class Limiter:
    """Peak limiter: no output sample exceeds ``ceiling_db``; instant attack, linear-in-dB release.

    The gain in dB follows ``g[n] = min(0, target[n], g[n-1] + r)``, where ``target[n]`` is the gain that brings
    frame ``n``'s peak (the largest over channels: the gain is linked, so the stereo image stays put) down to
    the ceiling and ``r = release_db_per_s / sample_rate``. The recursion is evaluated without a per-sample
    loop: ``g[n] = min(0, r*n + min_{k<=n}(target[k] - r*k))``, a cumulative minimum, with the state carried
    across calls so that block-wise output equals whole-signal output. There is no look-ahead (and so no
    latency): the gain drops on the very frame that needs it. A final clip at the ceiling catches rounding.
    Non-finite input samples are treated as 0.

    Parameters
    ----------
    sample_rate : int
        In Hz.
    ceiling_db : float
        Largest output peak, in dBFS, <= 0.
    release_db_per_s : float
        How fast the gain recovers after a peak, in dB per second, > 0.

    Raises
    ------
    ValueError
        A non-positive rate or release, or a ceiling above 0 dBFS.
    """

    def __init__(self, sample_rate: int, ceiling_db: float = -1.0, release_db_per_s: float = 60.0):
        if not sample_rate > 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        if not (np.isfinite(ceiling_db) and ceiling_db <= 0):
            raise ValueError(f"limiter ceiling must be finite and <= 0 dBFS, got {ceiling_db}")
        if not (np.isfinite(release_db_per_s) and release_db_per_s > 0):
            raise ValueError(f"limiter release must be finite and > 0 dB/s, got {release_db_per_s}")
        self.sample_rate = sample_rate
        self.ceiling_db = float(ceiling_db)
        self.release_db_per_s = float(release_db_per_s)
        self.ceiling = 10.0 ** (self.ceiling_db / 20.0)
        # The largest float32 not above the ceiling: the output is float32 and must stay at or under it.
        c32 = np.float32(self.ceiling)
        self._clip = float(np.nextafter(c32, np.float32(0)) if c32 > self.ceiling else c32)
        self._step_db = self.release_db_per_s / sample_rate
        self._gain_db = 0.0

    @property
    def gain_db(self) -> float:
        """The gain applied to the last frame processed, in dB (0 when not limiting)."""
        return self._gain_db

    def process(self, block: np.ndarray) -> np.ndarray:
        """Limit the next block of the stream.

        Parameters
        ----------
        block : numpy.ndarray
            [shape=(frames,) or (frames, channels)]

        Returns
        -------
        numpy.ndarray
            [same shape, dtype=float32], every ``|sample| <= 10**(ceiling_db / 20)``.
        """
        x = _finite(block, np.float32)
        if x.ndim not in (1, 2):
            raise ValueError(f"blocks must be (frames,) or (frames, channels), got {x.shape}")
        frames = x.shape[0]
        y = np.array(x, dtype=np.float32, copy=True)
        if frames == 0:
            return y
        peak = np.abs(x) if x.ndim == 1 else frame_peaks(x)
        over = np.flatnonzero(peak >= self.ceiling)
        if self._gain_db == 0.0 and over.size == 0:
            # Under the ceiling with no gain left to release: the recursion below gives 0 dB on every frame.
            return np.clip(y, -self._clip, self._clip, out=y)
        # Only frames over the ceiling want a gain under 0 dB (the others' target is 0 dB), and only frames
        # under 0 dB are scaled: the logarithm and the power are taken where needed, not on every frame.
        target = np.zeros(frames)
        target[over] = self.ceiling_db - 20.0 * np.log10(peak[over].astype(np.float64))
        # Frame indices relative to this block keep r*n small however long the stream runs; the carried
        # state is the previous block's last gain, released by one step, as the minimum's starting value.
        ramp = self._step_db * np.arange(frames)
        running = np.minimum.accumulate(target - ramp)
        np.minimum(running, self._gain_db + self._step_db, out=running)
        gain_db = np.minimum(ramp + running, 0.0)
        self._gain_db = float(gain_db[-1])
        limited = np.flatnonzero(gain_db < 0.0)
        gain = (10.0 ** (gain_db[limited] / 20.0)).astype(np.float32)
        y[limited] *= gain if y.ndim == 1 else gain[:, None]
        return np.clip(y, -self._clip, self._clip, out=y)

    def reset(self) -> None:
        """Back to unity gain: the next block starts a new stream."""
        self._gain_db = 0.0


def click_score(signal: np.ndarray, position: int, sample_rate: int, *, window_s: float = 0.005) -> dict:
    """How audible a join at ``position`` is, as two ratios that are about 1 (or less) when nothing is heard.

    ``jump``: the largest step ``|x[n] - x[n-1]|`` within +-``window_s`` of the join, divided by the median
    step of the surrounding 100 ms (+-50 ms, the join window left out): how much bigger the step at the join is
    than the music's own steps. A steady sine scores about 1.41 (its largest step over its median step);
    noise-like music scores higher anywhere (about 4-5), so compare with the same measure away from joins.

    ``hf_ratio``: the mean power above 5 kHz (4th-order Butterworth high-pass, zero-phase; 0.8 x Nyquist when
    the rate cannot hold 5 kHz) within +-``window_s`` of the join, divided by the mean power of the whole 5 ms
    windows that tile the surrounding 200 ms (+-100 ms, the join window left out). A click is broadband, so it
    stands out above the music's own high end.

    Silent neighbourhoods divide by a small floor (relative to the neighbourhood's level, with an absolute
    minimum), so silence scores 0 and a click in silence scores very high, never inf or NaN.

    Parameters
    ----------
    signal : numpy.ndarray
        [shape=(frames,)] mono; downmix first.
    position : int
        Frame where the join is (the first frame after it), 1 <= position < frames.
    sample_rate : int
        In Hz.
    window_s : float
        Half-width of the window around the join, in seconds.

    Returns
    -------
    dict
        ``{"jump": float, "hf_ratio": float}``

    Raises
    ------
    ValueError
        A signal that is not mono, a position outside it, or a non-positive rate or window.
    """
    # Only the 220 ms around the join are read, and only they are converted: the signal may be an hour long.
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"click_score takes a mono (frames,) signal, got shape {x.shape}")
    if not 1 <= position < x.shape[0]:
        raise ValueError(f"join position {position} is outside the signal's frames [1, {x.shape[0]})")
    if not sample_rate > 0 or not window_s > 0:
        raise ValueError(f"sample rate and window must be positive, got {sample_rate} Hz and {window_s} s")
    n = x.shape[0]
    half = max(1, round(window_s * sample_rate))
    join_lo, join_hi = max(0, position - half), min(n, position + half)

    # jump: step k is x[k] - x[k-1], defined for k in [1, n).
    span = round(0.05 * sample_rate)
    lo, hi = max(1, position - span), min(n, position + span)
    near = x[lo - 1:hi].astype(np.float64)
    steps = np.abs(np.diff(near))  # steps[i] is step k = lo + i
    in_join = slice(max(join_lo, lo) - lo, min(join_hi, hi) - lo)  # never empty: position is inside both
    around = np.concatenate([steps[:in_join.start], steps[in_join.stop:]])
    typical = float(np.median(around)) if around.size else 0.0
    floor = 1e-12 + 1e-6 * float(np.sqrt(np.mean(near ** 2)))
    jump = float(steps[in_join].max()) / max(typical, floor)

    # hf_ratio: filter a neighbourhood with a margin, so the filter's edges stay outside what is measured.
    span, margin, tile = round(0.1 * sample_rate), round(0.01 * sample_rate), max(1, round(0.005 * sample_rate))
    lo, hi = max(0, position - span), min(n, position + span)
    seg_lo, seg_hi = max(0, lo - margin), min(n, hi + margin)
    segment = x[seg_lo:seg_hi].astype(np.float64)
    cutoff = min(CLICK_HF_CUTOFF_HZ, 0.8 * sample_rate / 2)
    sos = sps.butter(4, cutoff, btype="highpass", fs=sample_rate, output="sos")
    if segment.shape[0] > 1:
        power = sps.sosfiltfilt(sos, segment, padlen=min(3 * (2 * sos.shape[0] + 1), segment.shape[0] - 1)) ** 2
    else:
        power = np.zeros_like(segment)
    join_power = float(power[join_lo - seg_lo:join_hi - seg_lo].mean())
    # Whole 5 ms tiles on each side, counted outward from the join window.
    left = power[lo - seg_lo:max(lo, join_lo) - seg_lo]
    right = power[min(hi, join_hi) - seg_lo:hi - seg_lo]
    left = left[left.shape[0] % tile:]
    right = right[:right.shape[0] - right.shape[0] % tile]
    tiles = np.concatenate([left, right]).reshape(-1, tile)
    reference = float(tiles.sum(axis=1).mean()) / tile if tiles.shape[0] else 0.0
    floor = 1e-24 + 1e-8 * float(np.mean(segment[lo - seg_lo:hi - seg_lo] ** 2))  # HF 80 dB under the music is nothing
    return {"jump": jump, "hf_ratio": join_power / max(reference, floor)}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation at lag 0 over all samples, clipped to [0, 1]; 0 when either is silent."""
    a64, b64 = a.astype(np.float64, copy=False).ravel(), b.astype(np.float64, copy=False).ravel()
    energy = float(np.dot(a64, a64)) * float(np.dot(b64, b64))
    if not np.isfinite(energy) or energy <= 0.0:
        return 0.0
    return float(np.clip(np.dot(a64, b64) / np.sqrt(energy), 0.0, 1.0))


def frame_peaks(x: np.ndarray) -> np.ndarray:
    """The largest magnitude over the channels of each frame.

    Column by column: a reduction along the short, contiguous channel axis is about 20 times slower.

    Parameters
    ----------
    x : numpy.ndarray
        [shape=(frames, channels)] audio.

    Returns
    -------
    numpy.ndarray
        [shape=(frames,), dtype=x.dtype] ``max |x[n, c]|`` over ``c``.
    """
    peak = np.abs(x[:, 0])
    for channel in range(1, x.shape[1]):
        np.maximum(peak, np.abs(x[:, channel]), out=peak)
    return peak


def _finite(block: np.ndarray, dtype) -> np.ndarray:
    """``block`` as ``dtype``, its non-finite samples 0."""
    x = np.asarray(block, dtype=dtype)
    if not np.isfinite(x).all():
        x = np.where(np.isfinite(x), x, x.dtype.type(0))
    return x
