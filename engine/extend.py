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

import itertools
import math
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .audio import AudioWriter, Waveform, check_continuable, to_model_input
from .config import ExtendConfig
from .continuator import Continuator
from .errors import AudioContentError, AudioFileError, ConfigError, RenderInterrupted
from .ring import RingBuffer
from .seam import DCBlocker, Limiter, crossfade, match_loudness, rms, sanitize

#: Shortest song Encore will try to continue; anything shorter is refused.
MIN_SONG_S = 0.5
#: Chunks the recent real-time factor looks back over: a minute of 10 s chunks.
RECENT_CHUNKS = 6
#: Where a generator knows no phrases (the seed model), an ending is a fade over the last this many seconds.
ENDING_FADE_S = 3.0
#: Fade at the end of a file whose render was cancelled or interrupted, in seconds: the file ends, not breaks off.
INTERRUPTED_FADE_S = 0.5


class ShortSongWarning(UserWarning):
    """The song is shorter than the model's context and was loop-padded to fill it."""


@dataclass
class ExtendStats:
    """What an extension cost and what it had to repair."""

    chunks: int = 0
    seconds_generated: float = 0.0
    compute_seconds: float = 0.0
    replaced_values: int = 0
    loudness_gains_db: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    #: Compute time of each recent chunk, in seconds (the newest 4096: an endless run must not grow).
    chunk_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    first_chunk_seconds: float = math.nan
    #: Time the first block waited for librosa's one-time load in this process (seconds): set-up, not compute,
    #: so it is in neither ``compute_seconds`` nor ``first_chunk_seconds``.
    load_wait_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        """Compute time per second of audio generated (below 1 is faster than real time), over the whole run."""
        return self.compute_seconds / self.seconds_generated if self.seconds_generated else math.nan

    @property
    def recent_real_time_factor(self) -> float:
        """The median chunk's compute time per second of its audio, over the last :data:`RECENT_CHUNKS` chunks.

        What a status display shows: over an hour the whole run's :attr:`real_time_factor` hides a slowdown
        that began a minute ago, and carries the first chunk's analysis for ever. NaN before the first chunk.
        """
        if not self.chunks or not self.seconds_generated:
            return math.nan
        recent = list(itertools.islice(reversed(self.chunk_seconds), RECENT_CHUNKS))
        return float(np.median(recent)) / (self.seconds_generated / self.chunks)


class Extender:
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

    # --- context manager: streaming state is explicit -------------------------------------------------
    def __enter__(self) -> Extender:
        return self

    def __exit__(self, *exc) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the song and every piece of seam state (the resampler too: it holds native memory)."""
        self.ring.clear()
        self._song = None
        self._resampler = None
        self.stats = ExtendStats()
        self.joins = []
        self._emitted_model_frames = 0

    @property
    def overlap_frames(self) -> int:
        """Frames at the song's end (at its rate) that the first block crossfades over."""
        if self._song is None:
            raise RuntimeError("call start(song) first")
        return self.config.crossfade_samples(self._song.sample_rate)

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
        if song.seconds < MIN_SONG_S:
            raise AudioContentError(f"the song is {song.seconds:.2f} s long; Encore needs at least {MIN_SONG_S} s")
        check_continuable(song.samples, "the song")
        contract, x = self.model.contract, self.crossfade_frames
        mono = to_model_input(song, self.model_rate)
        needed = contract.context_samples + x
        if mono.shape[0] < needed:
            # Loop the song backwards in time so the context still ends where the song ends.
            note = (f"the song is {song.seconds:.1f} s, shorter than the model's {contract.context_s:g} s context: "
                    "it was looped to fill the context")
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
        if self._song is None:
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
        scale = self._song.sample_rate / self.model_rate
        self.joins.append(round((self._emitted_model_frames + x / 2) * scale) - self.overlap_frames // 2)
        self._emitted_model_frames += block.shape[0]
        block = self._dc.process(block)
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
        started = time.perf_counter()
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        out = block[:, None] * self._channel_gains[None, :]
        if self._first:
            n = min(self._song_tail.shape[0], out.shape[0])
            out[:n] = crossfade(self._song_tail[:n], out[:n])
            self._first = False
        out = self._limiter.process(out)
        spent = time.perf_counter() - started
        # This block's resampling and limiting belong to its chunk, in the per-chunk figures too.
        self.stats.compute_seconds += spent
        self.stats.chunk_seconds[-1] += spent
        if self.stats.chunks == 1:
            self.stats.first_chunk_seconds += spent
        return out

    def render(self, song: Waveform, seconds: float, *, only_extension: bool = False,
               progress: Callable[[float, float], None] | None = None, ending: bool = False) -> Iterator[np.ndarray]:
        """Yield the song and ``seconds`` of continuation block by block, so hours fit in little memory.

        Parameters are those of :meth:`extend`.

        Yields
        ------
        numpy.ndarray
            [shape=(frames, channels), dtype=float32] at the song's rate: first the song up to the crossfade
            (unless ``only_extension``), then the continuation, trimmed to exactly ``seconds`` (or, with
            ``ending``, to the end of the song's own ending).
        """
        if not seconds > 0:
            raise ConfigError(f"the continuation must be longer than 0 s, got {seconds}")
        self.start(song)
        phrases = ending and self.ends_on_phrases
        if phrases:
            self.end_at(seconds)
        rate, overlap = song.sample_rate, self.overlap_frames
        owed = round(seconds * rate) + overlap  # frames of continuation asked for, the crossfade included
        # An ending lands on the phrase line nearest ``seconds``; this far past it is a bug, not music.
        remaining = owed + round(max(120.0, seconds) * rate) if phrases else owed
        fade = round(ENDING_FADE_S * rate) if ending and not phrases else 0
        skip = overlap if only_extension else 0      # the crossfade belongs to the song's end
        done = -overlap  # frames of continuation rendered, after the song's end
        if not only_extension:
            yield song.samples[:-overlap]
        while remaining > 0 and not self.finished:
            block = self.next_block()[:remaining]
            remaining -= block.shape[0]
            done += block.shape[0]
            if fade and remaining < fade:  # the seed model's ending: a raised-cosine fade to silence
                to_end = remaining + block.shape[0] - np.arange(block.shape[0])
                gain = 0.5 * (1.0 - np.cos(np.pi * np.clip(to_end / fade, 0.0, 1.0)))
                block = block * gain.astype(np.float32)[:, None]
            if skip:
                block, skip = block[skip:], max(0, skip - block.shape[0])
            if progress is not None:
                progress(min(seconds, max(0.0, done / rate)), seconds)
            if block.shape[0]:
                yield block

    def extend(self, song: Waveform, seconds: float, *, only_extension: bool = False,
               progress: Callable[[float, float], None] | None = None, ending: bool = False) -> Waveform:
        """The song followed by ``seconds`` of continuation (or the continuation alone).

        Parameters
        ----------
        song : Waveform
            Any rate, any channel count.
        seconds : float
            Length of the continuation in seconds.
        only_extension : bool
            Return only what follows the song's end.
        progress : callable, optional
            Called as ``progress(seconds_done, seconds_total)`` after every chunk.
        ending : bool
            End on the song's own ending (resynth and jukebox: its last phrases, from the phrase line that
            brings the end nearest ``seconds``, so the continuation may be up to half a phrase longer or
            shorter); the seed model fades out over the last :data:`ENDING_FADE_S` instead. Without it the
            continuation stops at exactly ``seconds``, mid-music.

        Returns
        -------
        Waveform
            At the song's rate and channel count; never NaN, never above the limiter's ceiling in the
            continuation. For long renders, :meth:`render` yields the same audio block by block.
        """
        blocks = list(self.render(song, seconds, only_extension=only_extension, progress=progress, ending=ending))
        return Waveform(np.concatenate(blocks), song.sample_rate)

    def write(self, song: Waveform, path, seconds: float, *, only_extension: bool = False,
              progress: Callable[[float, float], None] | None = None,
              cancelled: Callable[[], bool] | None = None, ending: bool = False) -> float:
        """Render the song and ``seconds`` of continuation into a wav or flac file, block by block.

        The audio goes to a temporary file beside ``path`` that is renamed onto it once finished, so ``path``
        always holds a complete, playable file: the one that was there before, untouched, or the new one. A
        render that is cancelled, or interrupted with Ctrl-C, is finished with what was rendered until then,
        faded out over :data:`INTERRUPTED_FADE_S`; one that fails, or stops before its first block, writes
        nothing.

        Parameters
        ----------
        song : Waveform
        path : str or os.PathLike
            Ending in ``.wav`` or ``.flac``; written at the song's rate and channel count, 16 bit.
        seconds : float
            Length of the continuation in seconds.
        only_extension, progress, ending
            As in :meth:`extend`.
        cancelled : callable, optional
            Asked before every block; returning True stops the render there.

        Returns
        -------
        float
            Seconds the file holds (fewer than asked when cancelled; 0.0 when cancelled before anything was
            rendered, and then nothing was written).

        Raises
        ------
        AudioFileError
            The destination cannot be written.
        RenderInterrupted
            Ctrl-C (a ``KeyboardInterrupt``) arrived; it says what the file holds.
        """
        path = Path(path)
        if path.is_dir():
            raise AudioFileError(f"{path}: is a folder; give the output file's name")
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")
        interrupted = stopped = False
        fade = round(INTERRUPTED_FADE_S * song.sample_rate)
        try:
            blocks = self.render(song, seconds, only_extension=only_extension, progress=progress, ending=ending)
            held = None  # the latest block: written once the next exists, so an interrupted file can fade out
            with AudioWriter(partial, song.sample_rate, song.channels, shown_as=path) as writer:
                try:
                    for block in blocks:
                        if cancelled is not None and cancelled():
                            stopped = True
                            break
                        if held is not None:
                            writer.write(held)
                        held = block
                except KeyboardInterrupt:
                    interrupted = stopped = True
                if held is not None:
                    writer.write(fade_out(held, fade) if stopped else held)
            frames = soundfile.info(str(partial)).frames
        except KeyboardInterrupt:  # a second Ctrl-C while the file was being finished: keep nothing of it
            partial.unlink(missing_ok=True)
            raise RenderInterrupted(path, 0.0) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if frames:
            os.replace(partial, path)
        else:
            partial.unlink(missing_ok=True)
        if interrupted:
            raise RenderInterrupted(path, frames / song.sample_rate)
        return frames / song.sample_rate


def fade_out(block: np.ndarray, frames: int) -> np.ndarray:
    """The block with a raised-cosine fade to silence over its last ``frames``.

    Parameters
    ----------
    block : numpy.ndarray
        [shape=(n, channels), dtype=float32]
    frames : int
        Length of the fade; the whole block when it is shorter.

    Returns
    -------
    numpy.ndarray
        A faded copy, same shape.
    """
    frames = min(frames, block.shape[0])
    out = block.copy()
    if frames > 0:
        gain = 0.5 * (1.0 + np.cos(np.pi * (np.arange(1, frames + 1) / frames)))
        out[-frames:] *= gain.astype(np.float32)[:, None]
    return out


