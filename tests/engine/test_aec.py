"""The echo canceller on simulated rooms: Encore's output delayed 20-500 ms, coloured by a short reverberant
room and a low-pass, at the performer's level or louder, under a noise floor. (libspeexdsp is one of the
runtime's Debian packages, which ``make test`` installs: without it these fail, they do not skip.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.aec import (
    LiveCanceller,
    SpeexEchoCanceller,
    cancel_echo,
    echo_return_loss_enhancement,
    estimate_delay,
    simulated_room,
)
from engine.audio import load_audio, resample
from engine.ring import RingBuffer
from engine.shipped import DEMO_SONG
from tests.conftest import bar_song, synthetic_song

RATE = 48000


def room(played: np.ndarray, **settings) -> np.ndarray:
    """What a microphone hears of ``played`` at 48 kHz (:func:`engine.aec.simulated_room`)."""
    return simulated_room(played, RATE, **settings)


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """40 s of Encore's output: a song with bars, mono, at 48 kHz, about -12 dBFS."""
    return bar_song(40.0, RATE, channels=1).samples[:, 0] * 0.5


@pytest.mark.parametrize("delay_s", [0.02, 0.1, 0.25, 0.5])
def test_the_echo_delay_is_found_to_within_12_ms(music, delay_s):
    heard = room(music, delay_s=delay_s)
    found = estimate_delay(music[: 3 * RATE], heard[: 3 * RATE], RATE)
    # the room's low-pass and reverberation move the correlation's peak a few ms later, never earlier
    assert found is not None and -0.002 <= found - delay_s <= 0.012, found


def test_no_delay_is_found_where_the_input_does_not_hear_encore(music, rng):
    quiet_room = rng.standard_normal(3 * RATE).astype(np.float32) * 10 ** (-50 / 20)  # headphones: only noise
    assert estimate_delay(music[: 3 * RATE], quiet_room, RATE) is None
    assert estimate_delay(music[: 3 * RATE], np.zeros(3 * RATE, np.float32), RATE) is None  # a muted input
    assert estimate_delay(np.zeros(3 * RATE, np.float32), room(music, delay_s=0.1)[: 3 * RATE], RATE) is None
    short = RATE * 9 // 10  # under the longest delay looked for and half a second
    assert estimate_delay(music[:short], room(music, delay_s=0.1)[:short], RATE) is None


@pytest.fixture(scope="module")
def demo_song() -> np.ndarray:
    """The shipped demo song (a piano rag), mono, at 48 kHz."""
    song = load_audio(DEMO_SONG)
    return resample(song.samples.mean(axis=1), song.sample_rate, RATE)[: 40 * RATE].astype(np.float32)


@pytest.mark.parametrize("gain_db", [0.0, 6.0], ids=["as loud", "6 dB louder"])
@pytest.mark.parametrize("delay_s", [0.02, 0.25, 0.5])
def test_the_echo_is_20_db_quieter_after_convergence(music, delay_s, gain_db):
    """On the synthetic song with bars (pure chords, noise hats, a swept kick: the hardest here); the demo song
    goes below 35 dB (the next test)."""
    heard = room(music, delay_s=delay_s, gain_db=gain_db)
    delay = estimate_delay(music[: 3 * RATE], heard[: 3 * RATE], RATE)
    cancelled, suppressed = cancel_echo(heard, music, RATE, delay)
    converged = slice(20 * RATE, 39 * RATE)  # converged; the last frames are passed through unprocessed
    assert echo_return_loss_enhancement(heard[converged], suppressed[converged]) >= 20.0
    # the filter alone does most of it; the suppressor adds the rest
    assert echo_return_loss_enhancement(heard[converged], cancelled[converged]) >= 17.0


def test_the_demo_songs_echo_is_35_db_quieter(demo_song):
    heard = room(demo_song, delay_s=0.25)
    _, suppressed = cancel_echo(heard, demo_song, RATE, estimate_delay(demo_song[: 3 * RATE], heard[: 3 * RATE],
                                                                        RATE))
    assert echo_return_loss_enhancement(heard[20 * RATE:39 * RATE], suppressed[20 * RATE:39 * RATE]) >= 35.0


def test_a_performer_6_db_quieter_than_the_echo_stands_out_above_what_is_left_of_it(music):
    """Encore plays on; from 30 s a performer, 6 dB under Encore's echo, plays too (double talk)."""
    heard = room(music, delay_s=0.3)
    performer = synthetic_song(40.0, RATE, channels=1, seed=5).samples[:, 0].copy()
    performer[: 30 * RATE] = 0
    echo_level = float(np.sqrt(np.mean(heard[30 * RATE:] ** 2)))
    performer *= echo_level * 10 ** (-6 / 20) / float(np.sqrt(np.mean(performer[30 * RATE:] ** 2)))
    delay = estimate_delay(music[: 3 * RATE], heard[: 3 * RATE], RATE)
    _, suppressed = cancel_echo(heard + performer, music, RATE, delay)
    level_with_performer = float(np.sqrt(np.mean(suppressed[31 * RATE:] ** 2)))
    residual = float(np.sqrt(np.mean(suppressed[25 * RATE:30 * RATE] ** 2)))
    assert 20 * math.log10(level_with_performer / residual) >= 12.0  # the echo gate's margin is 6 dB


def test_the_live_canceller_gives_the_same_audio_block_by_block_as_whole(music):
    """The callback writes blocks of any size; the live thread cancels whole frames of what has arrived."""
    heard = room(music[: 10 * RATE], delay_s=0.1)
    delay = estimate_delay(music[: 3 * RATE], heard[: 3 * RATE], RATE)
    _, whole = cancel_echo(heard, music[: 10 * RATE], RATE, delay)
    live = LiveCanceller(RATE, 1)
    live.use_delay(delay)
    heard_ring, played_ring = RingBuffer(8 * RATE), RingBuffer(4 * RATE)
    at = 0
    for block in [1, 65, 512, 8193] * 200:
        if at >= heard.size:
            break
        heard_ring.write(heard[at:at + block])
        played_ring.write(music[at:at + block])
        at += block
        live.advance(heard_ring, played_ring)
    # each frame's suppressed output comes a frame late: the ring's frame k is the input's frame k - frame
    start = max(live.suppressed.start, live.frame)
    late = live.suppressed.read(start, live.suppressed.end)
    np.testing.assert_array_equal(late, whole[start - live.frame:start - live.frame + late.shape[0]])
    assert heard.size - live.suppressed.end < live.frame


def test_the_live_canceller_measures_the_echo_and_its_reduction_and_finds_the_delay(music):
    heard = room(music[: 30 * RATE], delay_s=0.2, gain_db=-10.0)
    live = LiveCanceller(RATE, 2)  # a stereo input, each channel cancelled on its own
    heard_ring, played_ring = RingBuffer(8 * RATE, 2), RingBuffer(4 * RATE)
    assert live.delay_s is None and math.isnan(live.echo_reduction_db)
    for at in range(0, 30 * RATE, 4096):
        heard_ring.write(np.stack([heard[at:at + 4096], heard[at:at + 4096]], axis=1))
        played_ring.write(music[at:at + 4096])
        live.advance(heard_ring, played_ring)
        if live.delay_s is None and at >= 2 * RATE:
            assert live.estimate(heard_ring, played_ring, min(heard_ring.end, played_ring.end)) is not None
        live.measuring = live.delay_s is not None
    assert live.hears_encore and 0.2 <= live.delay_s <= 0.212
    assert live.suppressed.channels == 2 and live.suppressed.end == 30 * RATE // live.frame * live.frame
    assert 8.5 < live.echo_db < 11.5  # the room returns Encore 10 dB down
    assert live.echo_reduction_db >= 20.0


def test_before_the_delay_is_known_the_input_passes_through(music):
    live = LiveCanceller(RATE, 1)
    heard_ring, played_ring = RingBuffer(8 * RATE), RingBuffer(4 * RATE)
    heard_ring.write(music[: RATE])
    played_ring.write(music[: RATE])
    live.advance(heard_ring, played_ring)
    np.testing.assert_array_equal(live.suppressed.read(0, live.suppressed.end), music[: live.suppressed.end])


def test_frames_are_a_power_of_two_near_10_ms():
    assert [SpeexEchoCanceller(rate).frame for rate in (8000, 16000, 44100, 48000, 96000)] == [64, 128, 512, 512,
                                                                                                1024]
