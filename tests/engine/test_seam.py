"""The seam's DSP: crossfades nobody hears, loudness, repair, a streaming DC blocker and limiter, and a click meter
that can fail."""

from __future__ import annotations

import numpy as np
import pytest

from engine.seam import (
    DCBlocker,
    Limiter,
    click_score,
    crossfade,
    equal_power_ramps,
    match_loudness,
    rms,
    sanitize,
)

RATE = 48000
CEILING = 10 ** (-1 / 20)
BLOCK_SIZES = (1, 65, 512, 8193)


def sine(seconds: float, frequency: float = 440.0, *, rate: int = RATE, phase: float = 0.0,
         amplitude: float = 0.5) -> np.ndarray:
    """[shape=(frames,), dtype=float32] a sine with 10 ms fades at both ends."""
    t = np.arange(round(seconds * rate)) / rate
    fade = np.clip(np.minimum(t, t[-1] - t) / 0.01, 0.0, 1.0)
    return (amplitude * fade * np.sin(2 * np.pi * frequency * t + phase)).astype(np.float32)


def chirp(seconds: float, *, rate: int = RATE) -> np.ndarray:
    """[shape=(frames,), dtype=float32] a 100 Hz to 3 kHz linear chirp at 0.4."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * (100 * t + (3000 - 100) / (2 * seconds) * t**2))).astype(np.float32)


def in_blocks(process, x: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([process(x[lo:lo + size]) for lo in range(0, x.shape[0], size)])


@pytest.fixture
def test_signal(rng) -> np.ndarray:
    """[shape=(20000, 2)] a DC offset, a chirp, noise, +12 dBFS peaks and a stretch of silence."""
    n = 20000
    mono = 0.2 + chirp(n / RATE) + 0.05 * rng.standard_normal(n)
    mono[6000:6400] *= 10.0
    mono[12000:14000] = 0.0
    mono[15000] = 4.0
    return np.stack([mono, -0.5 * mono + 0.1], axis=1).astype(np.float32)


# --- crossfades ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [0, 1, 2, 7, 2400])
def test_equal_power_ramps_keep_the_power(frames):
    fade_in, fade_out = equal_power_ramps(frames)
    assert fade_in.shape == fade_out.shape == (frames,) and fade_in.dtype == np.float32
    np.testing.assert_allclose(fade_in.astype(np.float64) ** 2 + fade_out.astype(np.float64) ** 2, 1.0, atol=1e-6)
    np.testing.assert_array_equal(fade_in, fade_out[::-1])
    assert np.all(np.diff(fade_in) > 0)


def test_equal_power_ramps_refuse_a_negative_length():
    with pytest.raises(ValueError):
        equal_power_ramps(-1)


def test_a_continuing_sine_crosses_the_join_unchanged():
    whole = sine(0.5)
    join, x = 12000, 2400
    # The outgoing chunk and the incoming one both hold the same stretch of the sine over the overlap.
    joined = np.concatenate([whole[:join], crossfade(whole[join:join + x], whole[join:join + x]), whole[join + x:]])
    np.testing.assert_allclose(joined, whole, atol=1e-6)
    for position in (join, join + x // 2, join + x):
        assert click_score(joined, position, RATE)["jump"] < 1.5


def test_a_hard_cut_between_phases_scores_high():
    a, b = sine(0.5), sine(0.5, phase=2.0)
    cut = np.concatenate([a[:12000], b[12000:]])
    score = click_score(cut, 12000, RATE)
    assert score["jump"] > 3 and score["hf_ratio"] > 3


def test_crossfading_the_phases_instead_is_smooth():
    a, b = sine(0.5), sine(0.5, phase=2.0)
    x = 2400
    joined = np.concatenate([a[:12000], crossfade(a[12000:12000 + x], b[12000:12000 + x]), b[12000 + x:]])
    score = click_score(joined, 12000 + x // 2, RATE)
    assert score["jump"] < 1.5 and score["hf_ratio"] < 3


def test_uncorrelated_blocks_get_the_sin_cos_crossfade_and_keep_their_power(rng):
    a, b = rng.standard_normal((2, 48000)).astype(np.float32)
    mixed = crossfade(a, b)
    np.testing.assert_allclose(mixed, crossfade(a, b, correlation=0.0), atol=0.02)
    fade_in, fade_out = equal_power_ramps(48000)
    np.testing.assert_allclose(crossfade(a, b, correlation=0.0), a * fade_out + b * fade_in, atol=1e-6)
    assert abs(rms(mixed) / rms(a) - 1) < 0.05


def test_the_plain_sin_cos_crossfade_swells_on_coherent_blocks():
    a = sine(0.05)[100:2100]
    fade_in, fade_out = equal_power_ramps(a.shape[0])
    np.testing.assert_allclose(crossfade(a, a, correlation=0.0), a * (fade_in + fade_out), atol=1e-6)


def test_crossfade_of_multichannel_blocks_and_bad_shapes(rng):
    a, b = rng.standard_normal((2, 500, 2)).astype(np.float32)
    mixed = crossfade(a, b, correlation=0.0)
    assert mixed.shape == (500, 2) and mixed.dtype == np.float32
    np.testing.assert_allclose(mixed[:, 1], crossfade(a[:, 1], b[:, 1], correlation=0.0), atol=1e-6)
    with pytest.raises(ValueError):
        crossfade(a, b[:-1])
    with pytest.raises(ValueError):
        crossfade(a, b, correlation=1.5)


# --- loudness and repair -------------------------------------------------------------------------------------

def test_rms():
    assert rms(sine(1.0, amplitude=1.0)[480:-480]) == pytest.approx(1 / np.sqrt(2), rel=1e-3)
    assert rms(np.zeros(0, np.float32)) == 0.0


def test_match_loudness_reaches_the_target_and_clamps():
    block = sine(0.2, amplitude=0.1)
    scaled, gain = match_loudness(block, 2 * rms(block))
    assert gain == pytest.approx(2.0) and rms(scaled) == pytest.approx(2 * rms(block), rel=1e-5)
    assert scaled.dtype == np.float32
    _, gain = match_loudness(block, 100 * rms(block))
    assert gain == pytest.approx(10 ** (12 / 20))
    _, gain = match_loudness(block, rms(block) / 100, max_gain_db=6.0)
    assert gain == pytest.approx(10 ** (-6 / 20))
    silent, gain = match_loudness(np.zeros(100, np.float32), 0.3)
    assert gain == 1.0 and not silent.any()
    with pytest.raises(ValueError):
        match_loudness(block, -0.1)
    with pytest.raises(ValueError):
        match_loudness(block, 0.1, max_gain_db=-3)


def test_sanitize_counts_and_copies_only_when_needed():
    clean = sine(0.01)
    same, replaced = sanitize(clean)
    assert same is clean and replaced == 0
    dirty = clean.copy()
    dirty[[3, 10, 11]] = [np.nan, np.inf, -np.inf]
    fixed, replaced = sanitize(dirty)
    assert replaced == 3 and fixed is not dirty and fixed.dtype == np.float32
    assert np.all(fixed[[3, 10, 11]] == 0) and np.isnan(dirty[3])  # the input is left alone
    np.testing.assert_array_equal(np.delete(fixed, [3, 10, 11]), np.delete(clean, [3, 10, 11]))


# --- DC blocker ----------------------------------------------------------------------------------------------

def test_dc_blocker_removes_the_offset_and_passes_the_music():
    tone = sine(2.0, 1000.0, amplitude=0.3)
    out = DCBlocker(RATE).process(tone + 0.25)
    settled = out[RATE:]
    assert abs(float(settled.mean())) < 1e-3
    assert rms(settled) == pytest.approx(rms(tone[RATE:]), rel=1e-3)


@pytest.mark.parametrize("size", BLOCK_SIZES)
def test_dc_blocker_streams_like_the_whole(test_signal, size):
    whole = DCBlocker(RATE).process(test_signal)
    blocker = DCBlocker(RATE)
    np.testing.assert_allclose(in_blocks(blocker.process, test_signal, size), whole, atol=1e-6)
    blocker.reset()
    np.testing.assert_allclose(in_blocks(blocker.process, test_signal[:, 0], size), whole[:, 0], atol=1e-6)


def test_dc_blocker_refuses_a_layout_change_and_bad_settings():
    blocker = DCBlocker(RATE)
    blocker.process(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="reset"):
        blocker.process(np.zeros(10, np.float32))
    with pytest.raises(ValueError):
        DCBlocker(RATE, cutoff_hz=0.0)
    with pytest.raises(ValueError):
        DCBlocker(8000, cutoff_hz=4000.0)


# --- limiter -------------------------------------------------------------------------------------------------

def test_limiter_holds_the_ceiling_on_peaks_of_plus_12_dbfs(test_signal):
    loud = test_signal * (4.0 / np.abs(test_signal).max())  # +12 dBFS peaks
    out = Limiter(RATE).process(loud)
    assert np.abs(out).max() <= CEILING
    assert out.dtype == np.float32 and out.shape == loud.shape
    # Linked: both channels get the same gain, so their ratio (away from silence) is kept.
    live = np.all(np.abs(loud) > 1e-2, axis=1)
    gains = out[live] / loud[live]
    assert gains.min() < 0.3  # it did limit
    np.testing.assert_allclose(gains[:, 0], gains[:, 1], rtol=1e-4)


def test_limiter_leaves_a_quiet_signal_untouched():
    quiet = np.stack([sine(0.5, amplitude=0.8), chirp(0.5)], axis=1)
    np.testing.assert_array_equal(Limiter(RATE).process(quiet), quiet)


def test_limiter_releases_at_its_rate():
    limiter = Limiter(RATE, release_db_per_s=60.0)
    limiter.process(np.array([4.0], np.float32))  # needs -13 dB on that frame
    assert limiter.gain_db == pytest.approx(-1 - 20 * np.log10(4.0))
    limiter.process(np.zeros(RATE // 10, np.float32))  # 0.1 s: 6 dB back
    assert limiter.gain_db == pytest.approx(-1 - 20 * np.log10(4.0) + 6.0, abs=1e-6)
    limiter.process(np.zeros(RATE, np.float32))
    assert limiter.gain_db == 0.0
    limiter.process(np.array([4.0], np.float32))
    limiter.reset()
    assert limiter.gain_db == 0.0


def test_limiter_keeps_releasing_through_a_quiet_block():
    # A block under the ceiling skips the gain computation only when no gain is left to release.
    limiter = Limiter(RATE, release_db_per_s=60.0)
    limiter.process(np.full((1, 2), 4.0, np.float32))  # -13 dB
    out = limiter.process(np.full((RATE // 10, 2), 0.1, np.float32))
    assert out[0, 0] == pytest.approx(0.1 * 10 ** ((-1 - 20 * np.log10(4.0) + 60.0 / RATE) / 20), rel=1e-4)
    assert out[-1, 1] == pytest.approx(0.1 * 10 ** ((-1 - 20 * np.log10(4.0) + 6.0) / 20), rel=1e-4)
    limiter.process(np.zeros((RATE, 2), np.float32))
    quiet = np.full((100, 2), 0.1, np.float32)
    np.testing.assert_array_equal(limiter.process(quiet), quiet)


@pytest.mark.parametrize("size", BLOCK_SIZES)
def test_limiter_streams_like_the_whole(test_signal, size):
    whole = Limiter(RATE).process(test_signal)
    limiter = Limiter(RATE)
    np.testing.assert_allclose(in_blocks(limiter.process, test_signal, size), whole, atol=1e-6)
    limiter.reset()
    mono = Limiter(RATE).process(test_signal[:, 0])
    np.testing.assert_allclose(in_blocks(limiter.process, test_signal[:, 0], size), mono, atol=1e-6)


def test_limiter_treats_nan_as_silence_and_refuses_bad_settings():
    out = Limiter(RATE).process(np.array([np.nan, 0.5, np.inf], np.float32))
    np.testing.assert_array_equal(out, [0.0, 0.5, 0.0])
    for settings in ({"ceiling_db": 1.0}, {"release_db_per_s": 0.0}, {"ceiling_db": np.nan}):
        with pytest.raises(ValueError):
            Limiter(RATE, **settings)


# --- click meter ---------------------------------------------------------------------------------------------

def test_click_score_hears_a_click_in_a_chirp():
    signal = chirp(0.5)
    calm = click_score(signal, 12000, RATE)
    assert calm["jump"] < 1.5 and calm["hf_ratio"] < 3
    signal[12000] += 0.3
    loud = click_score(signal, 12000, RATE)
    assert loud["jump"] > 3 and loud["hf_ratio"] > 3


def test_click_score_survives_silence_edges_and_low_rates():
    silence = np.zeros(RATE, np.float32)
    assert click_score(silence, RATE // 2, RATE) == {"jump": 0.0, "hf_ratio": 0.0}
    silence[RATE // 2] = 0.01
    score = click_score(silence, RATE // 2, RATE)
    assert np.isfinite(score["jump"]) and score["jump"] > 3 and score["hf_ratio"] > 3
    tone = sine(1.0)
    for position in (1, 100, tone.shape[0] - 1):
        assert all(np.isfinite(v) for v in click_score(tone, position, RATE).values())
    low = sine(1.0, 300.0, rate=8000)  # Nyquist 4 kHz: the high-pass moves down to 3.2 kHz
    assert click_score(low, 4000, 8000)["jump"] < 1.5
    cut = np.concatenate([low[:4007], -low[4007:]])  # not at a zero crossing
    assert click_score(cut, 4007, 8000)["jump"] > 3


def test_click_score_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="mono"):
        click_score(np.zeros((100, 2)), 50, RATE)
    with pytest.raises(ValueError):
        click_score(np.zeros(100), 0, RATE)
    with pytest.raises(ValueError):
        click_score(np.zeros(100), 100, RATE)
