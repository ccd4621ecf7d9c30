"""Audio at the edges: decoding, resampling, channel layout and writing.

Inside Encore audio is float32, laid out ``(frames, channels)``; the sample rate always travels with the
samples in a :class:`Waveform`. Conversions (rate, channels, dtype) happen here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
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

#: Largest sample a generator takes (full scale): a 16-bit writer would clip anything above it.
FULL_SCALE = 1.0

#: Libsndfile decodes in blocks of this many frames when a file fails part-way, so what precedes the damage is kept.
SALVAGE_BLOCK_FRAMES = 65536


class AudioRepairWarning(UserWarning):
    """A file was read with a repair the user should know of: cut short, NaN or infinite samples, or samples
    beyond full scale (scaled down). The audio that comes back is usable; the message says what changed."""


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
        return peak_of(self.samples)


def peak_of(samples: np.ndarray) -> float:
    """Largest absolute value of ``samples`` (0.0 when empty; NaN or inf when they hold one).

    From their largest and smallest value, with no copy: ``abs`` would copy a memory of minutes, on the way to a
    live continuation's first block (4 ms for 120 s of 48 kHz stereo, where the copy's peak took 10 ms).
    """
    return max(float(np.max(samples)), -float(np.min(samples))) if samples.size else 0.0


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
    with quiet:
        samples, sample_rate, stopped = _decode(path)
    if samples.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio frames")
    seconds = samples.shape[0] / sample_rate
    cut_short = stopped or _cut_short(path, samples.shape[0], sample_rate)
    if cut_short:
        _warn_repair(f"{path}: {cut_short}; going on with the {seconds:.1f} s it holds")
    samples, repairs = repair_samples(samples)
    for repair in repairs:
        _warn_repair(f"{path}: {repair}")
    return Waveform(samples, int(sample_rate))


def is_audio_file(path: str | os.PathLike) -> bool:
    """True when libsndfile recognises ``path`` as audio it can decode (its header only; nothing is decoded)."""
    quiet = _native_stderr_silenced() if Path(path).suffix.lower() == ".mp3" else contextlib.nullcontext()
    try:
        with quiet:
            soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
        return False
    return True


def check_not_the_source(output: str | os.PathLike, source: str | os.PathLike | None) -> None:
    """Refuse an output file that is the song being read: writing it would destroy the song.

    Raises
    ------
    AudioFileError
        ``output`` and ``source`` name the same file (through any path, link or case).
    """
    if source is None:
        return
    output, source = Path(output), Path(source)
    try:
        same = output.exists() and source.exists() and os.path.samefile(output, source)
    except OSError:
        same = False
    if same:
        raise AudioFileError(f"{output}: that is the song itself; writing it would destroy the song, "
                             "so choose another output file")


def repair_samples(samples: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Make decoded samples safe to continue, and say what was done.

    NaN and infinite samples (float files can hold them) become silence; a file that peaks beyond full scale
    is scaled down as a whole to peak at full scale, so that nothing is clipped (its balance is kept).

    Parameters
    ----------
    samples : numpy.ndarray
        [shape=(frames, channels), dtype=float32]

    Returns
    -------
    samples : numpy.ndarray
        The same array when nothing needed repair, else a repaired copy.
    repairs : list of str
        One line per repair, empty when none was needed.
    """
    repairs = []
    peak = peak_of(samples)
    if not np.isfinite(peak):
        bad = ~np.isfinite(samples)
        count = int(bad.sum())
        repairs.append(f"{count} sample{' was' if count == 1 else 's were'} NaN or infinite; set to silence")
        samples = np.where(bad, np.float32(0.0), samples)
        peak = peak_of(samples)
    if peak > FULL_SCALE:
        gain_db = 20 * np.log10(peak / FULL_SCALE)
        repairs.append(f"it peaks at +{gain_db:.1f} dBFS, beyond full scale; it was scaled down by {gain_db:.1f} dB "
                       "so that nothing is clipped")
        samples = (samples * np.float32(FULL_SCALE / peak)).astype(np.float32)
    return samples, repairs


def _warn_repair(message: str) -> None:
    warnings.warn(message, AudioRepairWarning, stacklevel=3)


def _decode(path: Path) -> tuple[np.ndarray, int, str]:
    """Decode the whole file; a file that fails part-way keeps what decoded before the damage.

    Returns samples [shape=(frames, channels), dtype=float32], the rate in Hz, and why decoding stopped early
    ("" when it did not).
    """
    try:
        samples, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return samples, int(sample_rate), ""
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        error = e
    blocks, sample_rate, declared = [], 0, 0
    try:  # libsndfile opened the file, and its decoder gave up part-way (a flac cut short loses sync)
        with soundfile.SoundFile(str(path)) as f:
            sample_rate, declared = f.samplerate, f.frames
            while True:
                block = f.read(SALVAGE_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not block.shape[0]:
                    break
                blocks.append(block)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass
    if not blocks:
        reason = _first_line(error)
        if "not a regular file" in reason:  # libsndfile's words for any file it cannot open as audio
            reason = "not an audio format it reads, or damaged"
        raise AudioFileError(f"{path}: cannot decode audio ({reason})") from error
    samples = np.concatenate(blocks)
    stopped = f"decoding stopped at {samples.shape[0] / sample_rate:.1f} s"
    if declared > samples.shape[0]:
        stopped += f" of the {declared / sample_rate:.1f} s its header gives"
    return samples, sample_rate, f"{stopped}: the file is damaged or cut short"


def _cut_short(path: Path, frames: int, sample_rate: int) -> str:
    """Why a file that decoded cleanly looks cut short (a download or copy that stopped), or "" when it does not.

    libsndfile reads a truncated wav or ogg to where it stops without a word; their own framing tells: a wav's
    data chunk declares its length, and an ogg stream's last page carries an end-of-stream flag.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".wav":
            declared = _wav_declared_frames(path)
            if declared is not None and declared > frames:
                return (f"the file stops at {frames / sample_rate:.1f} s of the {declared / sample_rate:.1f} s "
                        "its header gives (cut short)")
        elif suffix in (".ogg", ".oga", ".opus") and not _ogg_ends_cleanly(path):
            return (f"the file stops at {frames / sample_rate:.1f} s with no end-of-stream mark "
                    "(cut short, or still being written)")
    except OSError:
        pass
    return ""


def _wav_declared_frames(path: Path) -> int | None:
    """Frames a RIFF wav's data chunk declares, or None when it does not say (streamed, or not plain RIFF)."""
    with open(path, "rb") as f:
        if f.read(12)[:4] != b"RIFF":
            return None
        block_align = 0
        while header := f.read(8):
            if len(header) < 8:
                return None
            chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk == b"fmt ":
                block_align = struct.unpack("<H", f.read(16)[12:14])[0]
                f.seek(size - 16 + (size & 1), os.SEEK_CUR)
            elif chunk == b"data":
                streamed = size in (0, 0xFFFFFFFF)
                return None if streamed or not block_align else size // block_align
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)
    return None


def _ogg_ends_cleanly(path: Path) -> bool:
    """True when the file's last Ogg page is whole and flags the end of its stream."""
    max_page = 27 + 255 + 255 * 255
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 2 * max_page))
        tail = f.read()
    start = tail.rfind(b"OggS")
    if start < 0 or len(tail) < start + 27:
        return False
    segments = tail[start + 26]
    table = tail[start + 27:start + 27 + segments]
    whole = len(table) == segments and len(tail) >= start + 27 + segments + sum(table)
    return whole and bool(tail[start + 5] & 0x04)


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
    shown_as : str or os.PathLike, optional
        The name errors give, when ``path`` is a temporary file that becomes it.

    Raises
    ------
    AudioFileError
        Unsupported extension or a destination that cannot be written.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, *,
                 shown_as: str | os.PathLike | None = None):
        self.path = Path(path)
        shown = Path(shown_as) if shown_as is not None else self.path  # a temporary file is named as its target
        self._shown = shown
        fmt = WRITABLE_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise AudioFileError(f"{shown}: cannot write '{self.path.suffix}'; use one of "
                                 f"{', '.join(WRITABLE_FORMATS)}")
        if not self.path.parent.is_dir():
            raise AudioFileError(f"{shown}: cannot write: folder {self.path.parent} does not exist")
        try:
            self._file = soundfile.SoundFile(str(self.path), "w", sample_rate, channels, fmt[1], format=fmt[0])
        except (soundfile.LibsndfileError, OSError, RuntimeError) as e:
            raise AudioFileError(f"{shown}: cannot write ({_first_line(e)})") from e

    def write(self, samples: np.ndarray) -> None:
        """Append [shape=(frames, channels)] samples, clipped to [-1, 1]."""
        try:
            self._file.write(np.clip(samples, -1.0, 1.0))
        except (soundfile.LibsndfileError, OSError, RuntimeError) as e:
            raise AudioFileError(f"{self._shown}: cannot write ({_first_line(e)})") from e

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


def check_continuable(samples: np.ndarray, what: str) -> None:
    """Raise :class:`AudioContentError` when ``samples`` hold nothing to continue, or values no song holds.

    One look at the samples' peak (:func:`peak_of`, no copy): a live continuation's first block waits for it.

    Parameters
    ----------
    samples : numpy.ndarray
        [shape=(frames, channels)] the memory a generator is to continue.
    what : str
        How the message names them ("the song").
    """
    peak = peak_of(samples)
    if not np.isfinite(peak):
        raise AudioContentError(f"{what} holds NaN or infinite samples; repair them first "
                                "(engine.repair_samples, which engine.load_audio applies, sets them to silence)")
    if peak > FULL_SCALE:
        raise AudioContentError(f"{what} peaks at +{20 * np.log10(peak / FULL_SCALE):.1f} dBFS, beyond full scale, "
                                "and would be clipped; scale it into [-1, 1] first (engine.repair_samples does)")
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
