"""A memory that grows at its end: live input heard so far is the same samples each time, and more.

Live mode analyses what it would continue each time the performer goes quiet (:meth:`engine.resynth.
Resynthesizer.anticipate`), and the memory is everything heard so far (five minutes at most). Analysed whole each
time, that grows with the performance: 0.38 s from the start of a 4-minute memory to its first block on a free
core, more than twice that under load, on top of the silence that tells Encore the performer has stopped. Most
of it is frame-local work, the downmix, the resampling to :data:`~engine.analysis.ANALYSIS_RATE` and the
spectra, which the samples a memory shares with the one before need not have done again.

:class:`GrowingMemory` keeps the last memory's mono copies and spectra and, for the next, finds how many leading
frames the two share (compared exactly), keeps what those determined, and computes the rest. The result is the
whole-memory computation's to within float rounding (resampling in pieces: under 3e-7).

Past the input ring's length the memory also loses its oldest frames each time, so it begins later in the one
before. Then it is trimmed to begin on a frame of the earlier memory where the two rates' sample grids and the
STFT's frames line up again (every 3.4 s at 48 kHz, 23 ms at 44.1 kHz, 10.24 s at 8, 16 and 32 kHz): at most
that much of its oldest material is left out (:data:`MAX_TRIM_S`; further, it is analysed whole), and all of
the rest is kept. (The first few milliseconds of the resampled memory then
follow the earlier memory's samples before them where a whole-memory resampling sees zeros.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from math import gcd

import numpy as np

from .analysis import ANALYSIS_RATE, HOP, N_FFT, Spectra, spectra
from .audio import resample

#: Seconds of input before a resampled piece that the resampler reads to settle, and at the end of the earlier
#: memory whose resampling saw its end (soxr's high-quality filter reaches 3.4 ms at 48 kHz).
RESAMPLE_MARGIN_S = 0.05
#: Where a memory that lost its oldest frames is looked for in the one before: this far into it (past a splice's
#: crossfade at its start, which the earlier memory held crossfaded with what came before), this many frames long.
PROBE_AT_S = 0.25
PROBE_FRAMES = 64
#: Most places in the earlier memory checked for the probe (music that repeats exactly: a loop, silence).
MAX_PROBE_MATCHES = 8
#: Most of a memory's oldest seconds left out to begin on the earlier memory's grid (at 8, 16 and 32 kHz the grid
#: is 10.24 s: there, a memory whose start falls further from it is analysed whole instead).
MAX_TRIM_S = 4.0


@dataclass(frozen=True)
class PreparedMemory:
    """A memory ready for :func:`engine.analysis.analyse`.

    Attributes
    ----------
    mono_material : numpy.ndarray
        [shape=(frames,), dtype=float32] the memory in mono at its own rate.
    mono : numpy.ndarray
        [shape=(round(frames * ANALYSIS_RATE / rate),), dtype=float32] in mono at :data:`ANALYSIS_RATE`.
    spectra : Spectra
        ``mono``'s.
    reused_frames : int
        Frames at the memory's rate whose work the earlier memory had done (0 for a memory unlike it).
    trimmed : int
        Frames left out at the material's beginning, so that it begins where the earlier memory's grids do (0
        unless it began later than the earlier memory and trimming was allowed).
    """

    mono_material: np.ndarray
    mono: np.ndarray
    spectra: Spectra
    reused_frames: int
    trimmed: int = 0


@dataclass(frozen=True)
class _Kept:
    material: np.ndarray
    rate: int
    prepared: PreparedMemory


class GrowingMemory:
    """Prepares memories for the analysis, each from what the previous one shares with it.

    Thread-safe: analyses done ahead run on threads of their own, and the last one to finish is kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: _Kept | None = None

    def prepare(self, material: np.ndarray, rate: int, *, trim: bool = True) -> PreparedMemory:
        """Downmix, resample and take the spectra of a memory.

        Parameters
        ----------
        material : numpy.ndarray
            [shape=(frames, channels), dtype=float32] the memory at ``rate``; not changed afterwards (it is
            kept, not copied).
        rate : int
            Its sample rate in Hz.
        trim : bool
            Whether its oldest frames may be left out (:attr:`PreparedMemory.trimmed`), where it begins later in
            the earlier memory.

        Returns
        -------
        PreparedMemory
        """
        with self._lock:
            kept = self._kept
        origin, trimmed, same = 0, 0, 0  # the earlier memory's frame where this one's first kept frame lies
        if kept is not None and kept.rate == rate and kept.material.shape[1:] == material.shape[1:]:
            same = _common_prefix(kept.material, material)
            if same == 0 and trim:
                origin, trimmed = _aligned_shift(kept.material, material, _grid(rate), round(PROBE_AT_S * rate),
                                                 round(MAX_TRIM_S * rate))
                if origin:
                    same = _common_prefix(kept.material[origin:], material[trimmed:])
        material = material[trimmed:]
        mono_material = self._downmix(material, kept, origin, same)
        mono, valid, origin_out = self._resample(mono_material, rate, kept, origin, same)
        reuse = None
        if kept is not None and valid > 0:
            earlier = kept.prepared.spectra
            first = origin_out // HOP
            reuse = Spectra(earlier.mel_power[:, first:], earlier.chroma[:, first:], earlier.frame_power[first:])
        computed = spectra(mono, reuse=reuse, same=valid)
        if origin_out and computed.frames > N_FFT // (2 * HOP):
            computed = _with_fresh_start(computed, mono)
        prepared = PreparedMemory(mono_material, mono, computed, same, trimmed)
        with self._lock:
            self._kept = _Kept(material, rate, prepared)
        return prepared

    @staticmethod
    def _downmix(material: np.ndarray, kept: _Kept | None, origin: int, same: int) -> np.ndarray:
        # A matrix-vector product: ndarray.mean(axis=1) over (frames, 2) is strided and ten times slower.
        weights = np.full(material.shape[1], 1.0 / material.shape[1], np.float32)
        if kept is None or same == 0:
            return material @ weights
        return np.concatenate([kept.prepared.mono_material[origin:origin + same], material[same:] @ weights])

    @staticmethod
    def _resample(mono_material: np.ndarray, rate: int, kept: _Kept | None, origin: int,
                  same: int) -> tuple[np.ndarray, int, int]:
        """The memory at :data:`ANALYSIS_RATE`, how many of its leading samples are the kept memory's, and where
        they begin in the kept memory's (at the analysis rate)."""
        if rate == ANALYSIS_RATE:
            if kept is None or same == 0:
                return np.asarray(mono_material, np.float32), 0, 0
            return np.asarray(mono_material, np.float32), same, origin
        # Resample in whole periods of the two rates (``step_in`` frames in, ``step_out`` out), so that the piece
        # resampled now lands on the same output samples as the kept memory's.
        step_in, step_out = _steps(rate)
        margin = -(-round(RESAMPLE_MARGIN_S * rate) // step_in) * step_in
        keep_in = max(0, same - margin) // step_in * step_in if kept is not None else 0
        if keep_in == 0 or kept is None:
            return resample(mono_material, rate, ANALYSIS_RATE), 0, 0
        context = min(margin, keep_in)
        piece = resample(mono_material[keep_in - context:], rate, ANALYSIS_RATE)[context // step_in * step_out:]
        keep_out, origin_out = keep_in // step_in * step_out, origin // step_in * step_out
        return np.concatenate([kept.prepared.mono[origin_out:origin_out + keep_out], piece]), keep_out, origin_out


def _steps(rate: int) -> tuple[int, int]:
    """Frames in and samples out of one whole period of ``rate`` and :data:`ANALYSIS_RATE`."""
    divisor = gcd(rate, ANALYSIS_RATE)
    return rate // divisor, ANALYSIS_RATE // divisor


def _grid(rate: int) -> int:
    """Frames at ``rate`` between the places where a period of the two rates and an STFT hop both begin."""
    step_in, step_out = _steps(rate)
    return step_in * (HOP // gcd(step_out, HOP))


def _with_fresh_start(computed: Spectra, mono: np.ndarray) -> Spectra:
    """``computed`` with its first frames, whose windows reach before the memory's start, as a whole-memory STFT
    gives them (zeros before it), not as the earlier memory's (its samples before it)."""
    head = spectra(mono[:N_FFT])
    count = N_FFT // (2 * HOP)
    parts = ((computed.mel_power, head.mel_power), (computed.chroma, head.chroma),
             (computed.frame_power, head.frame_power))
    return Spectra(*(np.concatenate([fresh[..., :count], whole[..., count:]], axis=-1) for whole, fresh in parts))


def _aligned_shift(earlier: np.ndarray, later: np.ndarray, grid: int, probe_at: int,
                   max_trim: int) -> tuple[int, int]:
    """Where ``later`` goes on from a point of ``earlier`` (a memory that lost its oldest frames): the first frame
    of ``earlier``, a multiple of ``grid``, from which the two agree, and how many of ``later``'s frames come
    before it (``max_trim`` at most); (0, 0) when ``later`` is not found in ``earlier``. ``later``'s frames from
    ``probe_at`` on are looked for."""
    probe_at = min(probe_at, max(0, later.shape[0] - PROBE_FRAMES))
    probe = later[probe_at:probe_at + PROBE_FRAMES]
    if probe.shape[0] < PROBE_FRAMES or not np.any(probe != probe[:1]):
        return 0, 0  # too short, or silence: found anywhere, so nowhere for sure
    first_channel = probe.reshape(PROBE_FRAMES, -1)[:, 0]
    column = earlier.reshape(earlier.shape[0], -1)[:, 0]
    starts = np.flatnonzero(column[:max(0, earlier.shape[0] - PROBE_FRAMES + 1)] == first_channel[0])
    for offset in range(1, PROBE_FRAMES):  # narrowed frame by frame: a quiet 16-bit sample value repeats often
        if starts.size <= MAX_PROBE_MATCHES:
            break
        starts = starts[column[starts + offset] == first_channel[offset]]
    best = (0, 0, 0)  # (frames agreeing, origin, trimmed)
    for at in starts[:MAX_PROBE_MATCHES]:
        shift = int(at) - probe_at  # earlier's frame where later's first frame lies
        if shift <= 0 or not np.array_equal(earlier[at:at + PROBE_FRAMES], probe):
            continue  # later does not begin later in earlier, or the probe is not there
        # From later's first frame on, or, where that lies in a splice's crossfade (later's first frames were
        # crossfaded with what came before in earlier), from the frame after the last one before the probe that
        # differs.
        before = (earlier[shift:at] != later[:probe_at]).reshape(probe_at, -1).any(axis=1)
        differing = np.flatnonzero(before)
        for agree_from in dict.fromkeys((shift, shift + (int(differing[-1]) + 1 if differing.size else 0))):
            origin = -(-agree_from // grid) * grid
            trimmed = origin - shift
            if origin >= earlier.shape[0] or trimmed >= later.shape[0] or trimmed > max_trim:
                continue
            agreeing = _common_prefix(earlier[origin:], later[trimmed:])
            if agreeing > best[0]:
                best = (agreeing, origin, trimmed)
            if agreeing:
                break
    return best[1], best[2]


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading frames ``a`` and ``b`` have exactly in common."""
    n = min(a.shape[0], b.shape[0])
    if n == 0 or not np.array_equal(a[:1], b[:1]):
        return 0
    # Flat, in blocks: a boolean any() along the channels is ten times slower than the comparison itself.
    channels = int(np.prod(a.shape[1:], dtype=np.int64))
    flat_a, flat_b = np.ascontiguousarray(a[:n]).reshape(-1), np.ascontiguousarray(b[:n]).reshape(-1)
    block = 1 << 20
    for begin in range(0, flat_a.shape[0], block):
        differs = flat_a[begin:begin + block] != flat_b[begin:begin + block]
        first = int(differs.argmax())
        if differs[first]:
            return (begin + first) // channels
    return n
