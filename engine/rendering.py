"""What every generator is to the engine (:class:`Generator`), and what they share (:class:`Renderer`).

The seed model's :class:`~engine.extend.Extender` and the phrase generators' :class:`~engine.resynth.Resynthesizer`
(``jukebox`` and ``resynth``) implement the protocol side by side; neither is a kind of the other. A generator
streams: ``start(song)`` primes it, every ``next_block()`` returns the next piece of continuation at the song's
rate and channel count. :class:`Renderer` turns that stream into a finished song (``render``, ``extend``,
``write``), so the three do it the same way.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast, runtime_checkable

import numpy as np
import soundfile

from .audio import AudioWriter, Waveform, check_continuable
from .config import ExtendConfig
from .errors import AudioContentError, AudioFileError, ConfigError, RenderInterrupted

#: Shortest song Encore will try to continue; anything shorter is refused.
MIN_SONG_S = 0.5
#: Chunks the recent real-time factor looks back over: a minute of 10 s chunks.
RECENT_CHUNKS = 6
#: Where a generator knows no phrases (the seed model), an ending is a fade over the last this many seconds.
ENDING_FADE_S = 3.0
#: Fade at the end of a file whose render was cancelled or interrupted, in seconds: the file ends, not breaks off.
INTERRUPTED_FADE_S = 0.5


def check_song(song: Waveform) -> None:
    """Refuse a song no generator can continue: shorter than :data:`MIN_SONG_S`, silent, or holding values no song
    holds (:func:`~engine.audio.check_continuable`).

    Raises
    ------
    AudioContentError
    """
    if song.seconds < MIN_SONG_S:
        raise AudioContentError(f"the song is {song.seconds:.2f} s long; Encore needs at least {MIN_SONG_S} s")
    check_continuable(song.samples, "the song")


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


@runtime_checkable
class Generator(Protocol):
    """What the engine, the command line and the player call on a generator.

    Attributes
    ----------
    generator : str
        Its name in :data:`engine.generators.GENERATORS`.
    model
        What it runs, with ``.name`` and ``.contract`` (:class:`~engine.contract.ModelContract`).
    config : ExtendConfig
    stats : ExtendStats
        Chunks, seconds generated, compute time, notes.
    joins : list of int
        Frames of the continuation (at the song's rate, 0 = the song's end) where a join is centred.
    segmentation : str
        How the memory was segmented (beats, meter, bars, phrases), or "" for a generator that reads waveform.
    anticipates : bool
        Whether :meth:`anticipate` does work ahead.
    ends_on_phrases : bool
        Whether it can end on the song's own ending (then it has ``end()`` and ``end_at(seconds)``).
    finished : bool
        Its own ending has been returned to its last frame: :meth:`next_block` has no more.
    memory_s : float
        Seconds of a song or of live input it reads.
    overlap_frames : int
        Frames at the song's end, at its rate, that the first block crossfades over (0 before :meth:`start`).
    """

    generator: str
    config: ExtendConfig
    joins: list[int]
    anticipates: bool
    ends_on_phrases: bool

    @property
    def model(self): ...

    @property
    def stats(self): ...

    @property
    def segmentation(self) -> str: ...

    @property
    def finished(self) -> bool: ...

    @property
    def memory_s(self) -> float: ...

    @property
    def overlap_frames(self) -> int: ...

    def start(self, song: Waveform) -> None:
        """Prime with a song (or the live input heard so far); refuses silence and crumbs."""

    def next_block(self) -> np.ndarray:
        """The next piece of continuation, [shape=(frames, channels), dtype=float32] at the song's rate."""

    def reset(self) -> None:
        """Forget the song and every piece of streaming state."""

    def anticipate(self, song: Waveform | None = None) -> threading.Thread | None:
        """Begin the first block's song-dependent work on a background thread; None when there is none."""

    def render(self, song: Waveform, seconds: float, *, only_extension: bool = False,
               progress: Callable[[float, float], None] | None = None, ending: bool = False) -> Iterator[np.ndarray]:
        """The song and its continuation, block by block (:meth:`Renderer.render`)."""

    def write(self, song: Waveform, path, seconds: float, *, only_extension: bool = False,
              progress: Callable[[float, float], None] | None = None,
              cancelled: Callable[[], bool] | None = None, ending: bool = False) -> float:
        """Render into a file, renamed into place when complete (:meth:`Renderer.write`)."""


class EndsOnPhrases(Protocol):
    """What a generator with ``ends_on_phrases`` also does: end on the song's own ending."""

    def end(self) -> None:
        """Play on into the song's own ending from the next phrase line, then stop."""

    def end_at(self, seconds: float) -> None:
        """End on the song's own ending at the phrase line nearest ``seconds`` of continuation."""


class Renderer:
    """Render, extend and write, shared by every generator; a subclass provides the stream.

    A subclass sets ``config`` and ``_song`` (the started song, or None) and implements ``start``,
    ``next_block``, ``reset``, ``finished`` and ``ends_on_phrases`` (with ``end_at`` when it is True).
    """

    config: ExtendConfig
    _song: Waveform | None
    ends_on_phrases = False

    @property
    def finished(self) -> bool:
        """Its own ending has been returned to its last frame (a subclass that can end says when)."""
        return False

    # --- context manager: streaming state is explicit -------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def start(self, song: Waveform) -> None:
        raise NotImplementedError

    def next_block(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def overlap_frames(self) -> int:
        """Frames at the song's end (at its rate) that the first block crossfades over; 0 before :meth:`start`."""
        return 0 if self._song is None else self.config.crossfade_samples(self._song.sample_rate)

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
            cast(EndsOnPhrases, self).end_at(seconds)
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


