"""Audio at the edges: decoding, resampling, channel layout and writing.

Inside Encore audio is float32, laid out ``(frames, channels)``; the sample rate always travels with the
samples in a :class:`Waveform`. Conversions (rate, channels, dtype) happen here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .errors import AudioContentError, AudioFileError

#: Extensions :func:`save_audio` writes, mapped to libsndfile formats and subtypes.
WRITABLE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}

#: Anything quieter than this peak (about -100 dBFS) is treated as silence.
SILENCE_PEAK = 1e-5


@dataclass(frozen=True)
class Waveform:
    """Audio samples with their sample rate.

    Parameters
    ----------
    samples : numpy.ndarray
        [shape=(frames, channels), dtype=float32] nominally in [-1, 1].
    sample_rate : int
        Frames per second, in Hz.
    """

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim != 2:
            raise AudioContentError(f"audio must be (frames,) or (frames, channels), got shape {samples.shape}")
        if self.sample_rate <= 0:
            raise AudioContentError(f"sample rate must be positive, got {self.sample_rate}")
        object.__setattr__(self, "samples", samples)

    @property
    def frames(self) -> int:
        """Number of frames."""
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[1])

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate

    def mono(self) -> np.ndarray:
        """The channel average, [shape=(frames,), dtype=float32]."""
        return self.samples.mean(axis=1, dtype=np.float32)

    def peak(self) -> float:
        """Largest absolute sample value."""
        return float(np.max(np.abs(self.samples))) if self.frames else 0.0


def load_audio(path: str | os.PathLike) -> Waveform:
    """Decode an audio file (wav, flac, ogg, mp3, ...) at its own rate and channel count.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    Waveform
        [shape=(frames, channels), dtype=float32] at the file's sample rate.

    Raises
    ------
    AudioFileError
        The file is missing, not audio, corrupt or empty.
    """
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:  # libsndfile would blame a pipe
        raise AudioFileError(f"{path}: the file is empty")
    quiet = _native_stderr_silenced() if path.suffix.lower() == ".mp3" else contextlib.nullcontext()
    try:
        with quiet:
            samples, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = _first_line(e)
        if "not a regular file" in reason:  # libsndfile's words for any file it cannot open as audio
            reason = "not an audio format it reads, or damaged"
        raise AudioFileError(f"{path}: cannot decode audio ({reason})") from e
    if samples.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio frames")
    if not np.all(np.isfinite(samples)):
        # Float wav files can carry NaN/inf; they would poison every later computation.
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return Waveform(samples, int(sample_rate))


def save_audio(path: str | os.PathLike, waveform: Waveform) -> Path:
    """Write a waveform as 16-bit wav or flac, chosen by the file's extension.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.wav`` or ``.flac``.
    waveform : Waveform
        The audio to write; samples are clipped to [-1, 1].

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    AudioFileError
        Unsupported extension or a destination that cannot be written.
    """
    with AudioWriter(path, waveform.sample_rate, waveform.channels) as writer:
        writer.write(waveform.samples)
    return writer.path


class AudioWriter:
    """Writes 16-bit wav or flac block by block, so an hour of audio never sits in memory.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.wav`` or ``.flac``.
    sample_rate : int
        In Hz.
    channels : int

    Raises
    ------
    AudioFileError
        Unsupported extension or a destination that cannot be written.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int):
        self.path = Path(path)
        fmt = WRITABLE_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise AudioFileError(f"{self.path}: cannot write '{self.path.suffix}'; use one of "
                                 f"{', '.join(WRITABLE_FORMATS)}")
        if not self.path.parent.is_dir():
            raise AudioFileError(f"{self.path}: cannot write: folder {self.path.parent} does not exist")
        try:
            self._file = soundfile.SoundFile(str(self.path), "w", sample_rate, channels, fmt[1], format=fmt[0])
        except (soundfile.LibsndfileError, OSError, RuntimeError) as e:
            raise AudioFileError(f"{self.path}: cannot write ({_first_line(e)})") from e

    def write(self, samples: np.ndarray) -> None:
        """Append [shape=(frames, channels)] samples, clipped to [-1, 1]."""
        try:
            self._file.write(np.clip(samples, -1.0, 1.0))
        except (soundfile.LibsndfileError, OSError, RuntimeError) as e:
            raise AudioFileError(f"{self.path}: cannot write ({_first_line(e)})") from e

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample with soxr (high quality), keeping the layout.

    Parameters
    ----------
    samples : numpy.ndarray
        [shape=(frames,) or (frames, channels), dtype=float32]
    from_rate, to_rate : int
        Sample rates in Hz.

    Returns
    -------
    numpy.ndarray
        [shape=(round(frames * to_rate / from_rate), ...), dtype=float32]
    """
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    out = soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def to_model_input(waveform: Waveform, model_rate: int) -> np.ndarray:
    """Downmix to mono and resample to a model's rate.

    Returns
    -------
    numpy.ndarray
        [shape=(frames_at_model_rate,), dtype=float32]
    """
    return resample(waveform.mono(), waveform.sample_rate, model_rate)


def check_not_silent(samples: np.ndarray, what: str) -> None:
    """Raise :class:`AudioContentError` when ``samples`` hold nothing to continue."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak < SILENCE_PEAK:
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
        raise AudioContentError(f"{what} is silent (peak {level} dBFS): there is nothing to continue")


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send what native code writes to file descriptor 2 to /dev/null meanwhile: libmpg123, under libsndfile,
    prints "Note: Trying to resync..." for a damaged mp3, which is not the one line a user should get. Process-wide
    while it lasts (one file's decoding); Python's own ``sys.stderr`` is untouched where it is not fd 2."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
