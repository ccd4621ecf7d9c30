"""Decoding and writing at the edges: every format, rate and channel count users bring, and broken files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile

from engine.audio import (
    AudioRepairWarning,
    Waveform,
    check_continuable,
    load_audio,
    repair_samples,
    resample,
    save_audio,
    to_model_input,
)
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
    with pytest.warns(AudioRepairWarning, match="1 sample was NaN or infinite; set to silence"):
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


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_a_file_cut_short_is_read_to_where_it_stops_with_a_warning(tmp_path, suffix):
    whole = tmp_path / f"whole{suffix}"
    song = synthetic_song(30.0, 8000)
    soundfile.write(str(whole), song.samples, 8000)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 3])
    with pytest.warns(AudioRepairWarning, match=r"of the 30\.0 s its header gives.*going on with the") as caught:
        read = load_audio(cut)
    assert len(caught) == 1 and 5.0 < read.seconds < 15.0
    np.testing.assert_allclose(read.samples, song.samples[:read.frames], atol=1e-4)  # what it holds, as it was
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_audio(whole).seconds == 30.0  # a whole file: not a word


def test_a_generator_refuses_nan_or_samples_beyond_full_scale_in_one_line():
    song = synthetic_song(21.0, 8000)
    last = np.arange(song.frames)[:, None] == song.frames - 1
    below = song.samples.copy()
    below[100] = -1.5  # beyond full scale on the negative side only
    for bad, words in ((np.where(np.arange(song.frames)[:, None] == 5, np.nan, song.samples), "NaN or infinite"),
                       (np.where(last, -np.inf, song.samples), "NaN or infinite"),
                       (np.where(last, np.nan, song.samples), "NaN or infinite"),
                       (song.samples * 3.0, "beyond full scale"), (below, "beyond full scale")):
        with pytest.raises(AudioContentError, match=words):
            check_continuable(bad, "the song")
        repaired, repairs = repair_samples(bad.astype(np.float32))
        assert len(repairs) == 1 and np.isfinite(repaired).all() and np.abs(repaired).max() <= 1.0
        check_continuable(repaired, "the song")
