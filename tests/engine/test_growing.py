"""A memory that grows at its end (live input heard so far): only what it does not share with the memory before
is downmixed, resampled and transformed again, and the analysis is the whole memory's."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Waveform
from engine.analysis import ANALYSIS_RATE, HOP, N_FFT, Spectra, analyse, spectra
from engine.growing import GrowingMemory, _common_prefix, _grid
from engine.resynth import Resynthesizer
from tests.conftest import bar_song


def close_spectra(a: Spectra, b: Spectra) -> None:
    assert a.frames == b.frames
    for x, y in ((a.mel_power, b.mel_power), (a.chroma, b.chroma), (a.frame_power, b.frame_power)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6 * float(np.max(y)))


def test_spectra_keep_the_frames_of_the_common_beginning_and_compute_the_rest(rng):
    y = (0.1 * rng.standard_normal(5 * ANALYSIS_RATE)).astype(np.float32)
    same = 3 * ANALYSIS_RATE + 123
    earlier = spectra(y[:same])
    # Marked, so that a kept frame is told from a recomputed one.
    marked = Spectra(earlier.mel_power * 2, earlier.chroma, earlier.frame_power * 2)
    grown = spectra(y, reuse=marked, same=same)
    whole = spectra(y)
    kept = (same - N_FFT // 2) // HOP + 1  # frames whose window ends within the common samples
    np.testing.assert_array_equal(grown.frame_power[:kept], 2 * whole.frame_power[:kept])
    np.testing.assert_allclose(grown.frame_power[kept:], whole.frame_power[kept:], rtol=1e-5)
    close_spectra(spectra(y, reuse=earlier, same=same), whole)
    # Nothing in common: every frame computed.
    close_spectra(spectra(y, reuse=marked, same=0), whole)


def test_a_grown_stereo_memory_at_48_khz_is_prepared_as_the_whole_memory_would_be(rng):
    song = bar_song(40.0, 48000, channels=2).samples
    growing = GrowingMemory()
    growing.prepare(song[:30 * 48000], 48000)
    grown = growing.prepare(song, 48000)
    whole = GrowingMemory().prepare(song, 48000)
    assert grown.reused_frames == 30 * 48000 and whole.reused_frames == 0
    assert grown.mono.shape == whole.mono.shape
    np.testing.assert_allclose(grown.mono, whole.mono, atol=1e-6)
    np.testing.assert_array_equal(grown.mono_material, whole.mono_material)
    close_spectra(grown.spectra, whole.spectra)
    a, b = analyse(grown.mono, spectra_of=grown.spectra), analyse(whole.mono, spectra_of=whole.spectra)
    assert (a.mode, a.meter) == (b.mode, b.meter) == ("beats", 4)
    np.testing.assert_array_equal(a.bounds, b.bounds)
    np.testing.assert_allclose(a.features, b.features, atol=1e-4)


@pytest.mark.parametrize("rate", [ANALYSIS_RATE, 44100, 8000])
def test_a_memory_changed_in_its_middle_reuses_only_what_comes_before_the_change(rate, rng):
    first = (0.1 * rng.standard_normal((12 * rate, 1))).astype(np.float32)
    second = np.concatenate([first, (0.1 * rng.standard_normal((3 * rate, 1))).astype(np.float32)])
    change = 7 * rate + 5
    second[change:change + rate // 2] *= 0.5  # a splice's crossfade, say
    growing = GrowingMemory()
    growing.prepare(first, rate)
    grown = growing.prepare(second, rate)
    whole = GrowingMemory().prepare(second, rate)
    assert grown.reused_frames == change
    np.testing.assert_allclose(grown.mono, whole.mono, atol=1e-6)
    close_spectra(grown.spectra, whole.spectra)


def test_an_unrelated_memory_another_rate_or_layout_reuses_nothing(rng):
    growing = GrowingMemory()
    base = (0.1 * rng.standard_normal((5 * 44100, 2))).astype(np.float32)
    for material, rate in (((0.1 * rng.standard_normal((6 * 44100, 2))).astype(np.float32), 44100),
                           (np.concatenate([base, base]), 48000),  # the same samples at another rate
                           (np.concatenate([base, base])[:, :1].copy(), 44100)):  # one of its channels
        growing.prepare(base, 44100)
        prepared = growing.prepare(material, rate)
        assert prepared.reused_frames == 0
        np.testing.assert_array_equal(prepared.mono, GrowingMemory().prepare(material, rate).mono)


def test_the_common_beginning_is_found_past_the_first_block_compared():
    a = np.zeros((3 << 20, 2), np.float32)  # three blocks of comparison
    b = a.copy()
    b[2_500_000, 1] = 1.0
    assert _common_prefix(a, b) == 2_500_000
    assert _common_prefix(a, a[:1000]) == 1000
    assert _common_prefix(a[:10], a[:10] + 1) == 0


def test_a_continuation_of_a_grown_memory_is_the_continuation_of_that_memory_analysed_whole():
    """Live mode's case: the memory at the performer's next stop begins with the one at their last stop."""
    song = bar_song(60.0, 48000, channels=2)
    earlier = Waveform(song.samples[:40 * 48000], 48000)
    generator = Resynthesizer("jukebox")
    generator.start(earlier)
    generator.next_block()
    generator.start(song)
    grown = [generator.next_block() for _ in range(3)]
    kept = generator._growing._kept
    assert kept is not None and kept.prepared.reused_frames == earlier.frames  # the earlier memory's work stood
    fresh = Resynthesizer("jukebox")
    fresh.start(song)
    whole = [fresh.next_block() for _ in range(3)]
    assert generator.analysis is not None and fresh.analysis is not None
    np.testing.assert_array_equal(generator.analysis.bounds, fresh.analysis.bounds)
    for a, b in zip(grown, whole, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("rate", [48000, 44100, ANALYSIS_RATE])
def test_a_memory_that_lost_its_oldest_frames_begins_on_the_earlier_memorys_grid_and_keeps_its_work(rate):
    """Past the input ring's length, the memory at the next stop begins later than the one before."""
    song = bar_song(50.0, rate, channels=2).samples
    earlier, later = song[:40 * rate], song[7 * rate + 123:]  # lost 7 s and a bit; 10 s more at its end
    growing = GrowingMemory()
    growing.prepare(earlier, rate)
    prepared = growing.prepare(later, rate)
    grid = _grid(rate)
    assert 0 < prepared.trimmed <= grid + round(0.25 * rate)  # at most one grid step and the probe's offset
    assert (7 * rate + 123 + prepared.trimmed) % grid == 0  # on the earlier memory's grid
    assert prepared.reused_frames >= 40 * rate - (7 * rate + 123 + prepared.trimmed) - 10
    whole = GrowingMemory().prepare(later[prepared.trimmed:], rate)
    np.testing.assert_array_equal(prepared.mono_material, whole.mono_material)
    edge = round(0.01 * ANALYSIS_RATE)  # the resampler's reach at the start: the earlier memory's samples there
    np.testing.assert_allclose(prepared.mono[edge:], whole.mono[edge:], atol=1e-6)
    head = spectra(prepared.mono[:N_FFT])  # the first frames as a whole-memory STFT of this very memory
    np.testing.assert_array_equal(prepared.spectra.frame_power[:2], head.frame_power[:2])
    later_frames = slice(N_FFT // HOP, None)
    close_spectra(Spectra(prepared.spectra.mel_power[:, later_frames], prepared.spectra.chroma[:, later_frames],
                          prepared.spectra.frame_power[later_frames]),
                  Spectra(whole.spectra.mel_power[:, later_frames], whole.spectra.chroma[:, later_frames],
                          whole.spectra.frame_power[later_frames]))
    # Not allowed to trim (a seek, which keeps its analysis): all of it, none reused.
    untrimmed = GrowingMemory()
    untrimmed.prepare(earlier, rate)
    assert untrimmed.prepare(later, rate, trim=False).reused_frames == 0


def test_silence_or_a_memory_not_in_the_earlier_one_is_not_trimmed(rng):
    growing = GrowingMemory()
    noise = (0.1 * rng.standard_normal((20 * 44100, 1))).astype(np.float32)
    growing.prepare(noise, 44100)
    assert growing.prepare(np.zeros((20 * 44100, 1), np.float32), 44100).trimmed == 0
    growing.prepare(noise, 44100)
    other = (0.1 * rng.standard_normal((20 * 44100, 1))).astype(np.float32)
    assert growing.prepare(other, 44100).trimmed == 0


def continued_after_losing_its_start() -> tuple[Resynthesizer, Waveform, list[np.ndarray]]:
    """A generator that continued a 50 s memory, then the memory 9 s later (lost 9 s, 20 s more): the generator,
    the later memory and its first three blocks."""
    song = bar_song(70.0, 48000, channels=2)
    generator = Resynthesizer("jukebox")
    generator.start(Waveform(song.samples[:50 * 48000], 48000))
    generator.next_block()
    later = Waveform(song.samples[9 * 48000:], 48000)
    generator.start(later)
    return generator, later, [generator.next_block() for _ in range(3)]


def test_a_live_memory_that_begins_later_is_continued_from_what_is_kept():
    """The generator renders from the frames it analysed: a trimmed memory's bars are where its analysis says."""
    generator, later, grown = continued_after_losing_its_start()
    kept = generator._growing._kept
    assert kept is not None and kept.prepared.trimmed > 0
    trimmed = Waveform(later.samples[kept.prepared.trimmed:], 48000)
    fresh = Resynthesizer("jukebox")
    fresh.start(trimmed)
    whole = [fresh.next_block() for _ in range(3)]
    assert generator.analysis is not None and fresh.analysis is not None
    np.testing.assert_array_equal(generator.analysis.bounds, fresh.analysis.bounds)
    for a, b in zip(grown, whole, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_a_seek_after_a_trimmed_memory_plays_what_it_played_before():
    """A seek restarts the same memory with its analysis kept: the trimmed memory's, so the same blocks."""
    generator, later, first = continued_after_losing_its_start()
    assert generator._trimmed > 0
    generator.start(later)  # the seek
    again = [generator.next_block() for _ in range(3)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_quiet_16_bit_input_is_still_found_in_the_earlier_memory(rng):
    """A quiet sample value repeats thousands of times in 16-bit input: the probe is narrowed frame by frame."""
    quiet = np.round(0.01 * rng.standard_normal((60 * 48000, 1)) * 32767) / 32767
    quiet = quiet.astype(np.float32)
    growing = GrowingMemory()
    growing.prepare(quiet[:40 * 48000], 48000)
    prepared = growing.prepare(quiet[20 * 48000:], 48000)  # lost 20 s, 20 s more
    assert 0 < prepared.trimmed <= _grid(48000) + round(0.25 * 48000)
    assert prepared.reused_frames > 15 * 48000


def test_a_memory_that_begins_in_a_splice_is_found_past_its_crossfade(rng):
    """Its first 10 ms were crossfaded with what came before it in the earlier memory (live.SPLICE_FADE_S)."""
    rate = 44100
    earlier = (0.1 * rng.standard_normal((30 * rate, 2))).astype(np.float32)
    shift = 216 * _grid(rate) - 100  # so that the grid's next line lies in the crossfade
    later = np.concatenate([earlier[shift:], (0.1 * rng.standard_normal((5 * rate, 2))).astype(np.float32)])
    later[:round(0.01 * rate)] *= np.linspace(0.0, 1.0, round(0.01 * rate), dtype=np.float32)[:, None]
    growing = GrowingMemory()
    growing.prepare(earlier, rate)
    prepared = growing.prepare(later, rate)
    assert round(0.01 * rate) <= prepared.trimmed <= round(0.01 * rate) + _grid(rate)
    assert (shift + prepared.trimmed) % _grid(rate) == 0
    assert prepared.reused_frames == earlier.shape[0] - shift - prepared.trimmed
    whole = GrowingMemory().prepare(later[prepared.trimmed:], rate)
    np.testing.assert_allclose(prepared.mono[round(0.01 * ANALYSIS_RATE):], whole.mono[round(0.01 * ANALYSIS_RATE):],
                               atol=1e-6)


def test_at_8_khz_a_memory_is_not_trimmed_by_more_than_a_few_seconds(rng):
    """The grid is 10.24 s at 8 kHz: a memory that lost 1 s would lose 9 s more; it is analysed whole."""
    noise = (0.1 * rng.standard_normal((30 * 8000, 1))).astype(np.float32)
    growing = GrowingMemory()
    growing.prepare(noise[:20 * 8000], 8000)
    prepared = growing.prepare(noise[8000:], 8000)
    assert prepared.trimmed == 0 and prepared.reused_frames == 0
    assert prepared.mono.shape[0] == 29 * ANALYSIS_RATE
