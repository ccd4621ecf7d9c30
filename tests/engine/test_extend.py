"""Extending a song: seamless joins, level, layout, and every way a model or a song can misbehave.

Most tests use the hand-built ``repeat`` model (it continues with the context's own last 10 s): on a tone whose
period divides 10 s its perfect continuation is the tone itself, so anything audible at a join is Encore's fault.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile

import engine
from engine.audio import Waveform
from engine.config import ExtendConfig
from engine.errors import AudioContentError, ConfigError, RenderInterrupted
from engine.extend import Extender, ExtendStats, ShortSongWarning
from engine.rendering import INTERRUPTED_FADE_S
from engine.seam import click_score
from tests.conftest import synthetic_song
from tests.onnx_models import make_model

CEILING = 10 ** (-1 / 20)  # the limiter's default -1 dBFS


def tone(seconds: float, sample_rate: int, channels: int = 2, frequency: float = 220.0) -> Waveform:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    mono = 0.5 * np.sin(2 * np.pi * frequency * t)
    return Waveform(np.repeat(mono[:, None], channels, axis=1).astype(np.float32), sample_rate)


def seam_positions(extender: Extender, song: Waveform, total_frames: int) -> list[int]:
    """Frames (at the song's rate) where the output switches from one source to the next."""
    contract = extender.model.contract
    hop_s = (contract.horizon_samples - extender.crossfade_frames) / contract.sample_rate
    first = song.frames - extender.overlap_frames
    positions = [first + extender.overlap_frames // 2]
    k = 1
    while (pos := first + round(k * hop_s * song.sample_rate)) < total_frames - 100:
        positions.append(pos)
        k += 1
    return positions


def test_joins_are_inaudible_on_a_continuing_tone(repeat_model):
    song = tone(24.0, 44100)
    extender = Extender(repeat_model)
    out = extender.extend(song, 35.0)
    assert out.frames == song.frames + 35 * 44100
    seams = seam_positions(extender, song, out.frames)
    assert len(seams) == 4
    for position in seams:
        score = click_score(out.samples[:, 0], position, 44100)
        assert score["jump"] < 1.5, (position, score)
        assert score["hf_ratio"] < 3.0, (position, score)
    # A hard cut at the same place would be heard: the measure can fail.
    spliced = np.concatenate([song.samples[:, 0], song.samples[50: 44100 // 3, 0]])  # lands a quarter period on
    assert click_score(spliced, song.frames, 44100)["jump"] > 3


def test_level_and_stereo_balance_are_kept(repeat_model):
    song = synthetic_song(30.0, 48000, channels=2)
    extender = Extender(repeat_model)
    out = extender.extend(song, 25.0, only_extension=True)
    assert out.frames == 25 * 48000 and out.channels == 2 and out.sample_rate == 48000
    song_rms = np.sqrt(np.mean(song.samples[-10 * 48000:] ** 2, axis=0))
    out_rms = np.sqrt(np.mean(out.samples ** 2, axis=0))
    level_db = 20 * np.log10(out_rms / song_rms)
    assert np.all(np.abs(level_db) < 1.0), level_db
    assert not any("loudness" in note for note in extender.stats.notes)
    assert abs(out_rms[0] / out_rms[1] - song_rms[0] / song_rms[1]) < 0.02


def test_streaming_blocks_equal_the_whole(repeat_model):
    song = synthetic_song(22.0, 44100)
    whole = Extender(repeat_model).extend(song, 20.0)
    with Extender(repeat_model) as extender:
        extender.start(song)
        blocks = [extender.next_block() for _ in range(3)]
        overlap = extender.overlap_frames
    streamed = np.concatenate([song.samples[:-overlap], *blocks])[: whole.frames]
    np.testing.assert_array_equal(streamed, whole.samples)


@pytest.mark.parametrize("only_extension", [False, True])
def test_rendering_block_by_block_equals_the_whole(repeat_model, only_extension):
    song = synthetic_song(21.0, 22050)
    whole = Extender(repeat_model).extend(song, 23.0, only_extension=only_extension)
    blocks = list(Extender(repeat_model).render(song, 23.0, only_extension=only_extension))
    assert len(blocks) == 3 + (not only_extension)
    np.testing.assert_array_equal(np.concatenate(blocks), whole.samples)


def test_nan_from_a_model_never_reaches_the_output(tmp_path):
    model = make_model(tmp_path / "nan.onnx", "nan")
    song = synthetic_song(25.0, 22050)
    extender = Extender(model)
    out = extender.extend(song, 20.0)
    assert np.all(np.isfinite(out.samples))
    assert extender.stats.replaced_values > 0
    assert any("NaN/inf" in note for note in extender.stats.notes)


def test_a_far_too_loud_model_is_limited(tmp_path):
    model = make_model(tmp_path / "loud.onnx", "loud")
    song = synthetic_song(25.0, 44100)
    out = Extender(model).extend(song, 20.0, only_extension=True)
    assert np.max(np.abs(out.samples)) <= CEILING + 1e-3


def test_a_too_quiet_model_is_raised_by_at_most_the_clamp_and_the_user_is_told(tmp_path):
    model = make_model(tmp_path / "quiet.onnx", "loud", gain=0.01)  # 40 dB below the context
    song = synthetic_song(25.0, 22050)
    extender = Extender(model)
    out = extender.extend(song, 20.0, only_extension=True)
    # The first chunk continues the song itself (later ones repeat what was already quiet, and compound).
    first_chunk = out.samples[: 9 * 22050]
    level_db = 20 * np.log10(np.sqrt(np.mean(first_chunk ** 2)) / np.sqrt(np.mean(song.samples[-220500:] ** 2)))
    assert level_db == pytest.approx(-40 + 12, abs=1.0)
    assert list(extender.stats.loudness_gains_db) == pytest.approx([12.0, 12.0, 12.0])
    assert sum("40 dB quieter" in note for note in extender.stats.notes) == 1


def test_a_silent_model_gives_silence_not_noise(tmp_path):
    model = make_model(tmp_path / "silent.onnx", "silent")
    out = Extender(model).extend(synthetic_song(25.0, 22050), 12.0, only_extension=True)
    assert np.all(np.isfinite(out.samples))
    assert np.max(np.abs(out.samples[22050:])) < 1e-3


def test_a_short_song_is_looped_with_a_warning(repeat_model):
    song = synthetic_song(3.0, 44100)
    extender = Extender(repeat_model)
    with pytest.warns(ShortSongWarning, match="looped"):
        out = extender.extend(song, 15.0)
    assert out.frames == song.frames + 15 * 44100
    assert np.all(np.isfinite(out.samples)) and np.max(np.abs(out.samples)) > 0.1


def test_high_rates_and_many_channels(repeat_model):
    song = synthetic_song(21.0, 96000, channels=6)
    out = Extender(repeat_model).extend(song, 11.0, only_extension=True)
    assert out.samples.shape == (11 * 96000, 6) and out.sample_rate == 96000
    assert np.all(np.isfinite(out.samples))


def test_silence_and_crumbs_are_refused(repeat_model):
    extender = Extender(repeat_model)
    with pytest.raises(AudioContentError, match="silent"):
        extender.extend(Waveform(np.zeros((44100 * 25, 2)), 44100), 10.0)
    with pytest.raises(AudioContentError, match="at least 0.5 s"):
        extender.extend(synthetic_song(0.3, 44100), 10.0)
    with pytest.raises(ConfigError, match="longer than 0 s"):
        extender.extend(synthetic_song(25.0, 44100), 0.0)


def test_crossfade_setting_is_checked(repeat_model):
    with pytest.raises(ConfigError, match="crossfade"):
        ExtendConfig(crossfade_s=2.0)


def test_one_liner_keeps_a_mono_layout(repeat_model):
    song = synthetic_song(21.0, 16000, channels=1).samples[:, 0]
    out = engine.extend(song, sample_rate=16000, seconds=12, model=str(repeat_model))
    assert out.ndim == 1 and out.shape[0] == song.shape[0] + 12 * 16000
    only = engine.extend(song, sample_rate=16000, minutes=0.2, model=str(repeat_model), only_extension=True)
    assert only.shape == (12 * 16000,)
    with pytest.raises(ConfigError, match="exactly one"):
        engine.extend(song, sample_rate=16000, seconds=1, minutes=1, model=str(repeat_model))


def test_statistics_are_kept(repeat_model):
    extender = Extender(repeat_model)
    extender.extend(synthetic_song(25.0, 22050), 30.0)
    stats = extender.stats
    assert stats.chunks == 4
    assert stats.seconds_generated == pytest.approx(4 * (10.0 - 0.05))
    assert 0 < stats.real_time_factor < 1
    # Each chunk's figure holds all its work, its resampling to the song's rate included.
    assert len(stats.chunk_seconds) == 4
    assert sum(stats.chunk_seconds) == pytest.approx(stats.compute_seconds, rel=1e-9)
    assert stats.first_chunk_seconds == stats.chunk_seconds[0]


def test_the_recent_real_time_factor_is_the_last_minutes_median_chunk():
    stats = ExtendStats()
    assert np.isnan(stats.recent_real_time_factor)
    # A slow first chunk (the analysis) and, an hour later, a minute that runs slow.
    times = [2.0] + [0.05] * 360 + [0.5, 0.4, 0.6, 0.05, 0.5, 0.45]
    for seconds in times:
        stats.chunks += 1
        stats.seconds_generated += 10.0
        stats.compute_seconds += seconds
        stats.chunk_seconds.append(seconds)
    assert stats.recent_real_time_factor == pytest.approx(0.0475)  # median of the last 6 chunks over 10 s
    assert stats.real_time_factor == pytest.approx(sum(times) / (10.0 * len(times)))  # 0.0065: hides it


def _stop_before_block(n: int, *, interrupt: bool = False):
    """A ``cancelled`` callback that stops the render before its n-th block, as Cancel or as Ctrl-C does."""
    calls = []

    def stop() -> bool:
        calls.append(1)
        if len(calls) >= n and interrupt:
            raise KeyboardInterrupt
        return len(calls) >= n
    return stop


def test_a_cancelled_or_interrupted_render_keeps_what_was_rendered_faded_out(repeat_model, tmp_path):
    song = synthetic_song(21.0, 8000)
    first_two = list(itertools.islice(Extender(repeat_model).render(song, 120.0), 2))
    rendered = np.concatenate(first_two)

    for interrupt in (False, True):
        path = tmp_path / f"stopped-{interrupt}.flac"
        soundfile.write(str(path), np.full((800, 1), 0.25, np.float32), 8000)  # a file that was there before
        if interrupt:
            with pytest.raises(RenderInterrupted) as caught:
                Extender(repeat_model).write(song, path, 120.0, cancelled=_stop_before_block(3, interrupt=True))
            written = caught.value.seconds
            assert str(path) in str(caught.value) and "faded out" in str(caught.value)
        else:
            written = Extender(repeat_model).write(song, path, 120.0, cancelled=_stop_before_block(3))
        kept, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        assert written == pytest.approx(rendered.shape[0] / 8000) and kept.shape == rendered.shape
        fade = round(INTERRUPTED_FADE_S * rate)
        np.testing.assert_allclose(kept[:-fade], rendered[:-fade], atol=2e-4)  # 16-bit: the same audio
        assert np.abs(kept[-40:]).max() < 0.01 < np.abs(rendered[-fade:]).max()  # it ends, it does not break off
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial file left


def test_a_render_stopped_before_its_first_block_or_failing_leaves_the_previous_file(repeat_model, tmp_path):
    song = synthetic_song(21.0, 8000)
    path = tmp_path / "previous.wav"
    before = np.full((800, 1), 0.25, np.float32)
    soundfile.write(str(path), before, 8000)

    assert Extender(repeat_model).write(song, path, 120.0, cancelled=_stop_before_block(1)) == 0.0
    with pytest.raises(RenderInterrupted) as caught:
        Extender(repeat_model).write(song, path, 120.0, cancelled=_stop_before_block(1, interrupt=True))
    assert caught.value.seconds == 0.0 and "not written" in str(caught.value)
    with pytest.raises(AudioContentError):  # a refused song, found only when the render starts
        Extender(repeat_model).write(Waveform(np.zeros((21 * 8000, 2), np.float32), 8000), path, 120.0)
    np.testing.assert_allclose(soundfile.read(str(path), dtype="float32", always_2d=True)[0], before, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["previous.wav"]

    done = Extender(repeat_model).write(song, path, 12.0)  # a finished render replaces it
    assert done == pytest.approx(21.0 + 12.0, abs=1 / 8000)
    assert soundfile.info(str(path)).frames == round(33.0 * 8000)


def test_every_generator_is_a_generator_and_none_is_a_kind_of_another(repeat_model):
    from engine.generators import GENERATORS, open_generator
    from engine.rendering import Generator, Renderer
    from engine.resynth import Resynthesizer

    kinds = {}
    for name in GENERATORS:
        generator = open_generator(repeat_model if name == "seed" else None, generator=name)
        assert isinstance(generator, Generator) and generator.generator == name
        kinds[name] = type(generator)
    assert kinds == {"seed": Extender, "resynth": Resynthesizer, "jukebox": Resynthesizer}
    # side by side: both share only the renderer, and each sets up its own state in __init__
    assert not issubclass(Resynthesizer, Extender) and not issubclass(Extender, Resynthesizer)
    assert Resynthesizer.__mro__[1] is Renderer and Extender.__mro__[1] is Renderer
