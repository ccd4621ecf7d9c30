"""Extending a song: generate chunk after chunk from the last ``context_s`` and join them without a seam.

The generator owns the seam. Every model call predicts ``horizon_s`` from a context that ends at the last
emitted sample; the first ``crossfade_s`` of the prediction overlap the tail that the previous chunk predicted
for the same moment (or the song's own last ``crossfade_s``), and the two are joined with an equal-power
crossfade. So each call emits ``horizon_s - crossfade_s`` and keeps a new tail back. The emitted audio goes into
the ring buffer, so the next context holds what was generated before: it goes on endlessly.

Every chunk passes through the same stage before it is heard: NaN/inf replaced (and counted), DC removed,
loudness matched to the song's last seconds with a clamped gain, then a DC blocker that runs continuously over
the joined stream. That happens at the model's rate in mono. At the edge the stream is converted to the user's
rate (soxr, streaming) and channels (each channel scaled to its share of the song's level), and a peak limiter,
linked across channels, runs last, so nothing above its ceiling is ever heard.
"""

from __future__ import annotations

import math
import threading
import time
import warnings

import numpy as np
import soxr

from .audio import Waveform, to_model_input
from .config import ExtendConfig
from .continuator import Continuator
from .errors import ConfigError
from .rendering import ExtendStats, Renderer, check_song
from .ring import RingBuffer
from .seam import DCBlocker, Limiter, crossfade, match_loudness, rms, sanitize


class ShortSongWarning(UserWarning):
    """The song is shorter than the model's context and was loop-padded to fill it."""


def short_song_note(song_s: float, context_s: float) -> str:
    """What :class:`ShortSongWarning` says of a song of ``song_s`` seconds and a model context of ``context_s``."""
    return (f"the song is {song_s:.1f} s, shorter than the model's {context_s:g} s context: "
            "it was looped to fill the context")


class Extender(Renderer):
    """Continues a song chunk after chunk, seamlessly, with a generator model.

    This is the object behind :func:`extend`; use it directly to stream: ``start(song)`` primes it with a song,
    then every ``next_block()`` returns the next piece of continuation at the song's rate and channel count.
    The continuation replaces the song's last :attr:`overlap_frames` frames (they are crossfaded into it), so
    the joined audio is ``song[:-overlap_frames]`` followed by the blocks.

    Parameters
    ----------
    model : Continuator or path, optional
        The generator; the shipped default when None.
    config : ExtendConfig, optional
    threads : int
        ONNX Runtime threads when ``model`` is a path.

    Examples
    --------
    >>> with Extender() as extender:                       # doctest: +SKIP
    ...     extender.start(engine.load_audio("song.ogg"))
    ...     block = extender.next_block()                  # (frames, channels) at the song's rate
    """

    def __init__(self, model: Continuator | str | None = None, config: ExtendConfig | None = None, *,
                 threads: int = 1):
        self.model = model if isinstance(model, Continuator) else Continuator(model, threads=threads)
        self.config = config or ExtendConfig()
        contract = self.model.contract
        self.model_rate = contract.sample_rate
        self.crossfade_frames = self.config.crossfade_samples(self.model_rate)
        if self.crossfade_frames * 2 >= contract.horizon_samples:
            raise ConfigError(f"crossfade {self.config.crossfade_s} s is too long for the model's "
                              f"{contract.horizon_s} s horizon")
        self.ring = RingBuffer(contract.context_samples)
        self.stats = ExtendStats()
        self.joins: list[int] = []
        self._song: Waveform | None = None
        # What start(song) sets up: the context's last crossfade, the levels, the DC blocker, the limiter and
        # the resampler; placeholders until then.
        self._tail = np.zeros(0, np.float32)
        self._target_rms = 0.0
        self._channel_gains = np.ones(1, np.float32)
        self._song_tail = np.zeros((0, 1), np.float32)
        self._first = True
        self._gain_clamp_noted = False
        self._dc: DCBlocker | None = None
        self._limiter: Limiter | None = None
        self._resampler: soxr.ResampleStream | None = None
        self._pending = np.zeros((0, 1), np.float32)
        self._emitted_model_frames = 0

    #: Which generator this is (``engine.generators.GENERATORS``).
    generator = "seed"
    #: How the memory was segmented; the seed model reads raw waveform, so there is nothing to say.
    segmentation = ""
    #: Whether :meth:`anticipate` does anything (the seed model's first block has nothing to do ahead).
    anticipates = False
    #: Whether it can end on the song's own ending (resynth can; the seed model knows no phrases, so an
    #: ending asked of it is a fade over :data:`ENDING_FADE_S` at exactly the length asked).
    ends_on_phrases = False
    #: The seed model never reaches an ending of its own: :meth:`next_block` always has more.
    finished = False

    @property
    def memory_s(self) -> float:
        """Seconds of a song or of live input the generator reads (the seed model: its context)."""
        return self.model.contract.context_s + 1.0

    def reset(self) -> None:
        """Forget the song and every piece of seam state (the resampler too: it holds native memory)."""
        self.ring.clear()
        self._song = None
        self._resampler = None
        self.stats = ExtendStats()
        self.joins = []
        self._emitted_model_frames = 0

    def anticipate(self, song: Waveform | None = None) -> threading.Thread | None:
        """Begin, on a background thread, the work of the first block that does not depend on when it is asked
        for (a song that is playing is known to its end long before its continuation is due).

        Parameters
        ----------
        song : Waveform, optional
            The memory a later :meth:`start` will be given (this very object); the started song when None.

        Returns
        -------
        threading.Thread or None
            The thread (join it to wait), or None when there is nothing to do: the seed model has nothing,
            its first block reads only the context that :meth:`start` already holds.
        """
        return None

    def start(self, song: Waveform) -> None:
        """Prime with a song: its last ``context_s`` become the first context.

        Raises
        ------
        AudioContentError
            The song is shorter than 0.5 s or silent.
        """
        self.reset()
        check_song(song)
        contract, x = self.model.contract, self.crossfade_frames
        mono = to_model_input(song, self.model_rate)
        needed = contract.context_samples + x
        if mono.shape[0] < needed:
            # Loop the song backwards in time so the context still ends where the song ends.
            note = short_song_note(song.seconds, contract.context_s)
            warnings.warn(note, ShortSongWarning, stacklevel=2)
            self.stats.notes.append(note)
            mono = np.tile(mono, -(-needed // mono.shape[0]))[-needed:]
        self.ring.write(mono[-needed:-x])
        self._tail = mono[-x:].copy()

        reference = mono[-round(self.config.loudness_reference_s * self.model_rate):]
        self._target_rms = rms(reference)
        user_reference = song.samples[-round(self.config.loudness_reference_s * song.sample_rate):]
        mono_rms = max(rms(user_reference.mean(axis=1)), 1e-9)
        # Each channel keeps its share of the song's level, so a stereo image keeps its balance.
        self._channel_gains = np.clip([rms(user_reference[:, c]) / mono_rms for c in range(song.channels)],
                                      0.0, 4.0).astype(np.float32)
        self._song_tail = song.samples[-self.config.crossfade_samples(song.sample_rate):].copy()
        self._first = True
        self._gain_clamp_noted = False
        self._dc = DCBlocker(sample_rate=self.model_rate, cutoff_hz=self.config.dc_cutoff_hz)
        # The limiter runs last, at the song's rate and on every channel: resampling and the channel gains
        # can both raise peaks, so limiting earlier would not bound what is heard.
        self._limiter = Limiter(sample_rate=song.sample_rate, ceiling_db=self.config.limiter_ceiling_db)
        self._resampler = (soxr.ResampleStream(self.model_rate, song.sample_rate, 1, dtype="float32", quality="HQ")
                           if song.sample_rate != self.model_rate else None)
        self._pending = np.zeros((0, song.channels), np.float32)
        self._song = song

    def next_model_block(self) -> np.ndarray:
        """Generate one chunk and return the newly emitted audio at the model's rate.

        Returns
        -------
        numpy.ndarray
            [shape=(horizon_samples - crossfade_samples,), dtype=float32] mono at the model's rate, before the
            limiter (it is what the next context reads).
        """
        song, dc = self._song, self._dc  # both set by start(), together
        if song is None or dc is None:
            raise RuntimeError("call start(song) first")
        contract, x = self.model.contract, self.crossfade_frames
        started = time.perf_counter()
        raw = self.model.predict(self.ring.latest(contract.context_samples))
        raw, replaced = sanitize(raw)
        if replaced:
            if not self.stats.replaced_values:  # noted once: an endless run must not grow its notes
                self.stats.notes.append(f"chunk {self.stats.chunks + 1}: the model returned NaN/inf; replaced "
                                        "with silence (ExtendStats.replaced_values counts every value)")
            self.stats.replaced_values += replaced
        raw = raw - raw.mean(dtype=np.float64).astype(np.float32)
        raw_rms = rms(raw)
        raw, gain = match_loudness(raw, self._target_rms, max_gain_db=self.config.max_gain_db)
        gain_db = 20 * math.log10(gain)
        self.stats.loudness_gains_db.append(gain_db)
        if raw_rms > 0 and abs(gain_db) >= self.config.max_gain_db - 1e-3 and not self._gain_clamp_noted:
            # A quiet prediction may be a real decrescendo, and raising a noise floor by 30 dB is never
            # music: the gain stops at the clamp, and the user is told once.
            shortfall = 20 * math.log10(self._target_rms / raw_rms)
            direction = "quieter" if shortfall > 0 else "louder"
            self.stats.notes.append(f"the model's output is {abs(shortfall):.0f} dB {direction} than the song; "
                                    f"loudness matching stops at {self.config.max_gain_db:g} dB")
            self._gain_clamp_noted = True
        block = np.concatenate([crossfade(self._tail, raw[:x]), raw[x:-x]])
        self._tail = raw[-x:].copy()
        # Joins are counted in frames of the continuation at the song's rate, 0 at the song's end.
        scale = song.sample_rate / self.model_rate
        self.joins.append(round((self._emitted_model_frames + x / 2) * scale) - self.overlap_frames // 2)
        self._emitted_model_frames += block.shape[0]
        block = dc.process(block)
        self.ring.write(block)

        finished = time.perf_counter()
        self.stats.chunks += 1
        self.stats.compute_seconds += finished - started
        self.stats.chunk_seconds.append(finished - started)
        self.stats.seconds_generated += block.shape[0] / self.model_rate
        if self.stats.chunks == 1:
            self.stats.first_chunk_seconds = finished - started
        return block

    def next_block(self) -> np.ndarray:
        """Generate one chunk and return it at the song's rate and channel count.

        Returns
        -------
        numpy.ndarray
            [shape=(frames, channels), dtype=float32]; the first block begins with the crossfade over the
            song's last :attr:`overlap_frames` frames.
        """
        block = self.next_model_block()
        limiter = self._limiter
        if limiter is None:  # next_model_block() has refused before start(), which sets it
            raise RuntimeError("call start(song) first")
        started = time.perf_counter()
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        out = block[:, None] * self._channel_gains[None, :]
        if self._first:
            n = min(self._song_tail.shape[0], out.shape[0])
            out[:n] = crossfade(self._song_tail[:n], out[:n])
            self._first = False
        out = limiter.process(out)
        spent = time.perf_counter() - started
        # This block's resampling and limiting belong to its chunk, in the per-chunk figures too.
        self.stats.compute_seconds += spent
        self.stats.chunk_seconds[-1] += spent
        if self.stats.chunks == 1:
            self.stats.first_chunk_seconds += spent
        return out
