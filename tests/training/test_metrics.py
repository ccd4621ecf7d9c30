"""The evaluation metrics say what they should on synthetic signals whose answer is known."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.signal

from engine.errors import ConfigError
from engine.seam import equal_power_ramps
from tests.conftest import bar_song
from training.evaluation.metrics import harmony, repetition, rhythm, seams, spectra, speed

RATE = 22050
C_MAJOR = (261.63, 329.63, 392.00)
F_SHARP_MAJOR = tuple(f * 2 ** (6 / 12) for f in C_MAJOR)


def beat_chord(seconds: float, *, bpm: float = 120.0, chord=C_MAJOR, seed: int = 0, offset_s: float = 0.0,
               rate: int = RATE) -> np.ndarray:
    """A held chord over a beat of decaying noise bursts: [shape=(frames,), dtype=float32], peak about 0.6."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in chord) / len(chord)
    since_beat = ((t - offset_s) * bpm / 60.0) % 1.0 * 60.0 / bpm  # seconds since the last beat
    clicks = np.exp(-since_beat * 40.0) * rng.standard_normal(t.size)
    return (0.25 * tones + 0.3 * clicks).astype(np.float32)


@pytest.fixture(scope="module")
def context() -> np.ndarray:
    return beat_chord(20.0, seed=1)


@pytest.fixture(scope="module")
def continuation() -> np.ndarray:
    return beat_chord(10.0, seed=2, offset_s=20.0 % 0.5)


# ---------------------------------------------------------------------------------------- spectra


def test_logmel_distance_is_zero_for_the_same_audio_and_large_against_silence(continuation, rng):
    assert spectra.logmel_distance(continuation, continuation, sample_rate=RATE) == 0.0
    same_style = spectra.logmel_distance(beat_chord(10.0, seed=3), continuation, sample_rate=RATE)
    silent = spectra.logmel_distance(np.zeros_like(continuation), continuation, sample_rate=RATE)
    noise = spectra.logmel_distance(0.3 * rng.standard_normal(continuation.size).astype(np.float32), continuation,
                                    sample_rate=RATE)
    assert same_style < 3.0 < 15.0 < min(noise, silent)


def test_harmony_distance_tells_a_transposition(continuation):
    assert harmony.harmony_distance(continuation, continuation, sample_rate=RATE) == 0.0
    assert harmony.harmony_distance(beat_chord(10.0, seed=3), continuation, sample_rate=RATE) < 0.05
    # C major against F# major share no pitch class: each one's strong classes are the other's weak ones.
    assert harmony.harmony_distance(beat_chord(10.0, chord=F_SHARP_MAJOR), continuation, sample_rate=RATE) > 1.2
    # A fifth away (G major) shares G: nearer than the tritone, still far from the same key.
    g_major = tuple(f * 2 ** (7 / 12) for f in C_MAJOR)
    assert 0.5 < harmony.harmony_distance(beat_chord(10.0, chord=g_major), continuation, sample_rate=RATE) < 1.2
    assert harmony.harmony_distance(np.zeros_like(continuation), continuation, sample_rate=RATE) == 1.0
    # Read at one rate whatever the file's: the same chord at 44.1 and at 8 kHz reads as at 22.05 kHz.
    for rate in (44100, 8000):
        assert harmony.harmony_distance(beat_chord(10.0, seed=3, rate=rate), beat_chord(10.0, seed=2, rate=rate),
                                        sample_rate=rate) < 0.05


@pytest.mark.parametrize("rate", [22050, 44100])
def test_harmony_ranks_silence_noise_and_a_faint_hiss_below_a_loop_of_the_song(rate, rng):
    """The criterion's reason to exist: degenerate output must not pass for harmony. The cosine of mean chroma it
    replaced ranked the seed model's faint hiss best of all generators, since a flat profile is near anything."""
    song = bar_song(40.0, rate, channels=1).samples[:, 0]  # C, A minor, F, G, a bar of 2 s each
    true, loop = song[30 * rate:], song[20 * rate:30 * rate]
    level = float(np.sqrt(np.mean(true ** 2)))
    noise = rng.standard_normal(true.size)
    low = scipy.signal.butter(4, 2000.0, fs=rate, output="sos")
    hiss = scipy.signal.sosfilt(low, noise)
    degenerate = {
        "silence": np.zeros_like(true),
        "white noise": level * noise,
        "a hiss 30 dB down": level * 10 ** (-30 / 20) * hiss / np.sqrt(np.mean(hiss ** 2)),
        "noise faintly under nothing": 1e-4 * rng.standard_normal(true.size),
    }
    assert harmony.harmony_distance(true, true, sample_rate=rate) == 0.0
    looped = harmony.harmony_distance(loop, true, sample_rate=rate)
    assert looped < 0.3  # the same four chords, one bar out of step
    for name, audio in degenerate.items():
        distance = harmony.harmony_distance(audio.astype(np.float32), true, sample_rate=rate)
        assert looped < 0.8 < distance < 1.2, f"{name}: {distance:.3f} against the loop's {looped:.3f}"
    assert harmony.harmony_distance(np.full_like(true, np.nan), true, sample_rate=rate) == 1.0  # read as silence


def test_spectral_flatness_ratio(continuation, rng):
    assert spectra.spectral_flatness_ratio(continuation, continuation, sample_rate=RATE) == 1.0
    noise = rng.standard_normal(continuation.size).astype(np.float32)
    assert spectra.spectral_flatness_ratio(noise, continuation, sample_rate=RATE) > 2.0


def test_spectral_flatness_does_not_hear_the_cut_at_the_ends():
    # 10 s and 20 s of the same steady chord, each cut mid-cycle: equally flat. Centred frames read the cut
    # against their zero padding as a click and made the 10 s piece 2.2 times flatter.
    t = np.arange(30 * RATE) / RATE
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 660 * t + 1.0)
    tone = (tone + 1e-4 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    ratio = spectra.spectral_flatness_ratio(tone[12345:12345 + 10 * RATE], tone[200_000:200_000 + 20 * RATE],
                                            sample_rate=RATE)
    assert ratio == pytest.approx(1.0, abs=0.02)


def test_metrics_refuse_stereo():
    with pytest.raises(ConfigError, match="mono"):
        spectra.logmel_distance(np.zeros((100, 2)), np.zeros(100), sample_rate=RATE)


# ------------------------------------------------------------------------------------------- seams


def test_a_step_scores_far_above_a_smooth_join_and_the_music_own_range(context):
    t = np.arange(RATE * 2) / RATE
    sine = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stepped = sine.copy()
    stepped[RATE:] += 0.8
    [smooth], [step] = (seams.seam_scores(x, [RATE], sample_rate=RATE) for x in (sine, stepped))
    assert smooth["position"] == RATE and smooth["jump"] < 2.0 < 10.0 < step["jump"]
    assert seams.seam_scores(sine, [0, 10 * RATE], sample_rate=RATE) == []  # outside the signal: left out

    reference = seams.reference_seam_scores(context, sample_rate=RATE, count=12, seed=3)
    assert len(reference) == 12 and reference == seams.reference_seam_scores(context, sample_rate=RATE,
                                                                              count=12, seed=3)
    summary = seams.seam_summary(reference)
    assert summary["count"] == 12 and summary["jump_median"] <= summary["jump_p95"]
    # A beatless signal falls back to random positions.
    assert len(seams.reference_seam_scores(sine, sample_rate=RATE, count=5)) == 5


def test_loudness_step(context, continuation):
    joined = np.concatenate([context, continuation])
    assert abs(seams.loudness_step_lu(joined, context.size, sample_rate=RATE)) < 0.5
    quieter = np.concatenate([context, continuation * 10 ** (-6 / 20)])
    assert seams.loudness_step_lu(quieter, context.size, sample_rate=RATE) == pytest.approx(-6.0, abs=0.5)
    silent_after = np.concatenate([context, np.zeros_like(continuation)])
    step = seams.loudness_step_lu(silent_after, context.size, sample_rate=RATE)
    assert np.isfinite(step) and step < -40
    with pytest.raises(ConfigError, match="0.4 s"):
        seams.loudness_step_lu(joined, 100, sample_rate=RATE)


# --------------------------------------------------------------------------------- tempo, key, beats


def test_tempo_is_found_and_held_only_at_the_same_pulse(context, continuation):
    assert rhythm.tempo_bpm(context, sample_rate=RATE) == pytest.approx(120.0, rel=0.01)
    held = rhythm.tempo_held(context, continuation, sample_rate=RATE)
    assert held["held"] and held["ratio"] == pytest.approx(1.0, abs=0.01)
    faster = rhythm.tempo_held(context, beat_chord(10.0, bpm=140.0, seed=4), sample_rate=RATE)
    assert not faster["held"] and faster["generated_bpm"] == pytest.approx(140.0, rel=0.02)
    silent = rhythm.tempo_held(context, np.zeros_like(continuation), sample_rate=RATE)
    assert not silent["held"] and np.isnan(silent["ratio"])


def test_key_is_held_in_the_same_chord_and_lost_a_tritone_away(context, continuation):
    same = harmony.key_held(context, continuation, sample_rate=RATE)
    assert same["held"] and same["context_key"] == same["generated_key"] and same["correlation"] > 0.95
    moved = harmony.key_held(context, beat_chord(10.0, chord=F_SHARP_MAJOR), sample_rate=RATE)
    assert not moved["held"] and moved["correlation"] < 0.8
    assert moved["generated_key"] != moved["context_key"]
    name, r = harmony.key_estimate(context, sample_rate=RATE)
    assert name.split()[0] in ("C", "E", "A") and r > 0.5  # a C major triad: C major or a close relative
    assert harmony.key_estimate(np.zeros(RATE), sample_rate=RATE) == (None, pytest.approx(np.nan, nan_ok=True))


def test_beat_continuity(context, continuation):
    on_grid = rhythm.beat_continuity_f(context, continuation, sample_rate=RATE)
    assert on_grid["f"] > 0.9 and on_grid["reason"] is None
    assert on_grid["grid_bpm"] == pytest.approx(120.0, rel=0.01) and on_grid["reference_beats"] == 20
    # The same beat a quarter beat late: every beat misses the +-70 ms window.
    shifted = beat_chord(10.0, seed=2, offset_s=0.125)
    assert rhythm.beat_continuity_f(context, shifted, sample_rate=RATE)["f"] < 0.5
    silent = rhythm.beat_continuity_f(context, np.zeros_like(continuation), sample_rate=RATE)
    assert silent["f"] == 0.0 and "no beat" in silent["reason"]
    # Slips: none at the cut of an on-grid continuation; 80 ms at a join into the same beat 80 ms late.
    stumbling = np.concatenate([continuation[:5 * RATE], beat_chord(10.0, seed=2, offset_s=0.08)[5 * RATE:]])
    slips = rhythm.beat_continuity_f(context, stumbling, sample_rate=RATE, joins_s=[0.0, 5.0])["join_slips_ms"]
    assert len(slips) == 2 and slips[0] < 10.0 and slips[1] == pytest.approx(80.0, abs=12.0)
    t = np.arange(20 * RATE) / RATE
    drone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    beatless = rhythm.beat_continuity_f(drone, continuation, sample_rate=RATE)
    assert np.isnan(beatless["f"]) and beatless["reason"] == "no beat in the context"


# --------------------------------------------------------------------------------------- repetition


def test_an_exact_loop_is_found_over_its_whole_length(rng):
    period = 7 * 11025
    loop = np.tile(0.3 * rng.standard_normal(period).astype(np.float32), 18)  # 126 s
    result = repetition.repetition(loop, sample_rate=11025)
    assert result["loop_period_s"] == pytest.approx(7.0, abs=1e-3)
    assert result["longest_loop_s"] == pytest.approx(126 - 7, abs=0.2)
    assert result["repeated_share"] == pytest.approx((126 - 7) / 126, abs=0.01)


def test_a_crossfaded_loop_at_44100_with_a_fractional_period_is_found():
    """The ``loop`` baseline's stream: 10 s repeated with 50 ms crossfades, a period of 9.95 s, which is not a
    whole number of samples at the analysis rate (438795 / 4)."""
    rate, fade = 44100, 2205
    stretch = beat_chord(10.0, seed=5, rate=rate)
    fade_in, fade_out = equal_power_ramps(fade)
    cycle = np.concatenate([stretch[fade:-fade], stretch[-fade:] * fade_out + stretch[:fade] * fade_in])
    stream = np.tile(cycle, 13)[:120 * rate]
    result = repetition.repetition(stream, sample_rate=rate)
    assert result["loop_period_s"] == pytest.approx(9.95, abs=1e-4)
    assert result["longest_loop_s"] == pytest.approx(120 - 9.95, abs=0.2)


def test_a_repeat_at_another_gain_counts_and_music_noise_and_sweeps_do_not(rng):
    rate = 11025
    music = beat_chord(30.0, seed=6, rate=rate, bpm=97.0) + 0.05 * rng.standard_normal(30 * rate).astype(np.float32)
    other = beat_chord(20.0, seed=7, rate=rate, chord=F_SHARP_MAJOR, bpm=131.0)
    with_repeat = np.concatenate([music, 0.5 * music[:15 * rate], other])
    result = repetition.repetition(with_repeat, sample_rate=rate)
    assert result["longest_loop_s"] == pytest.approx(15.0, abs=0.2)
    assert result["loop_period_s"] == pytest.approx(30.0, abs=1e-3)
    assert result["repeated_share"] == pytest.approx(15.0 / 65.0, abs=0.01)

    noise = (0.3 * rng.standard_normal(120 * rate)).astype(np.float32)
    t = np.arange(120 * rate) / rate
    sweep = (0.3 * np.sin(2 * np.pi * (100 * t + 3900 / 240 * t ** 2))).astype(np.float32)
    for signal in (noise, sweep, np.concatenate([music, other])):
        found = repetition.repetition(signal, sample_rate=rate)
        assert found["longest_loop_s"] < 1.0 and found["repeated_share"] == 0.0
    assert repetition.repetition(np.zeros(rate * 5, np.float32), sample_rate=rate)["longest_loop_s"] == 0.0


def test_repetition_finds_a_loop_that_runs_ten_minutes(rng):
    loop = np.tile(0.3 * rng.standard_normal(10 * 11025).astype(np.float32), 60)
    result = repetition.repetition(loop, sample_rate=11025)
    assert result["longest_loop_s"] == pytest.approx(590, abs=0.2)
    assert result["loop_period_s"] == pytest.approx(10.0, abs=1e-3)
    assert result["repeated_share"] > 0.98


def test_real_time_factor_is_the_median_chunk():
    assert speed.real_time_factor([0.1, 0.2, 5.0], 10.0) == pytest.approx(0.02)
    assert np.isnan(speed.real_time_factor([], 10.0))


def test_the_evaluation_modules_load_no_training_framework():
    probe = ("import sys, training.evaluation.evaluate, training.evaluation.longlisten, training.corpus.evalset\n"
             "import training.evaluation.metrics.harmony, training.evaluation.metrics.repetition\n"
             "import training.evaluation.metrics.rhythm, training.evaluation.metrics.seams\n"
             "import training.evaluation.metrics.spectra, training.evaluation.metrics.speed\n"
             "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'torch'})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
