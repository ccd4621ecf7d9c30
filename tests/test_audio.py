"""Decoding and writing at the edges: every format, rate and channel count users bring, and broken files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from engine.audio import Waveform, load_audio, resample, save_audio, to_model_input
from engine.errors import AudioContentError, AudioFileError
from tests.conftest import synthetic_song


@pytest.mark.parametrize(("suffix", "fmt", "subtype", "tolerance"), [
    (".wav", "WAV", "PCM_16", 1e-4),
    (".flac", "FLAC", "PCM_16", 1e-4),
    (".ogg", "OGG", "VORBIS", None),   # lossy: compared by level, not by sample
    (".mp3", "MP3", "MPEG_LAYER_III", None),
])
def test_decodes_every_format(tmp_path, suffix, fmt, subtype, tolerance):
    song = synthetic_song(3.0, 44100, channels=2)
    path = tmp_path / f"song{suffix}"
    soundfile.write(str(path), song.samples, 44100, format=fmt, subtype=subtype)
    decoded = load_audio(path)
    assert decoded.sample_rate == 44100 and decoded.channels == 2
    assert decoded.samples.dtype == np.float32
    assert abs(decoded.frames - song.frames) < 0.1 * song.frames  # mp3 pads its frames
    if tolerance is not None:
        np.testing.assert_allclose(decoded.samples, song.samples, atol=tolerance)
    else:
        level = np.sqrt(np.mean(decoded.samples ** 2)) / np.sqrt(np.mean(song.samples ** 2))
        assert 0.8 < level < 1.25


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (96000, 2), (48000, 6)])
def test_any_rate_and_channel_count(tmp_path, rate, channels):
    song = synthetic_song(2.0, rate, channels=channels)
    path = save_audio(tmp_path / "song.flac", song)
    decoded = load_audio(path)
    assert (decoded.sample_rate, decoded.channels, decoded.frames) == (rate, channels, song.frames)
    mono = to_model_input(decoded, 22050)
    assert mono.ndim == 1 and abs(mono.shape[0] - 2 * 22050) <= 1


def test_resample_keeps_a_tone_and_the_layout():
    t = np.arange(48000) / 48000
    tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    out = resample(tone, 48000, 22050)
    assert out.shape == (22050, 2)
    spectrum = np.abs(np.fft.rfft(out[:, 0]))
    assert abs(np.argmax(spectrum) - 440) <= 1


def test_missing_file(tmp_path):
    with pytest.raises(AudioFileError, match="no such file"):
        load_audio(tmp_path / "nope.mp3")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.flac"
    path.write_bytes(b"fLaC" + bytes(range(256)) * 8)
    with pytest.raises(AudioFileError, match="cannot decode"):
        load_audio(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioFileError, match="the file is empty"):
        load_audio(path)


def test_file_with_no_frames(tmp_path):
    path = tmp_path / "no-frames.wav"
    soundfile.write(str(path), np.zeros((0, 2), np.float32), 44100)
    with pytest.raises(AudioFileError, match="no audio frames"):
        load_audio(path)


def test_a_folder_is_not_a_song(tmp_path):
    with pytest.raises(AudioFileError, match="directory"):
        load_audio(tmp_path)


def test_nan_in_a_float_wav_is_repaired(tmp_path):
    samples = np.full((1000, 1), 0.25, np.float32)
    samples[10] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(str(path), samples, 8000, subtype="FLOAT")
    assert np.all(np.isfinite(load_audio(path).samples))


def test_cannot_write_to_a_missing_folder_or_format(tmp_path):
    song = synthetic_song(0.5, 8000)
    with pytest.raises(AudioFileError, match="does not exist"):
        save_audio(tmp_path / "missing" / "out.wav", song)
    with pytest.raises(AudioFileError, match="cannot write '.mp4'"):
        save_audio(tmp_path / "out.mp4", song)


def test_waveform_refuses_nonsense_shapes():
    with pytest.raises(AudioContentError):
        Waveform(np.zeros((2, 2, 2)), 8000)
