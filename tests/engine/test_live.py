"""Live mode's level helpers (engine.playback.live), apart from a stream; live mode itself is tested on JACK."""

from __future__ import annotations

import numpy as np
import pytest

from engine.playback.live import loud_head, quiet_tail

RATE = 48000
STEP = 480  # 10 ms
THRESHOLD = 10 ** (-40 / 20)


def _window_ending_quiet(quiet_ms: int, channels: int = 1) -> np.ndarray:
    """50 ms of input: a tone at -12 dBFS that stops ``quiet_ms`` before the newest frame, then -70 dBFS noise."""
    frames, quiet = round(0.05 * RATE), round(quiet_ms / 1000 * RATE)
    rng = np.random.default_rng(quiet_ms)
    x = 10 ** (-70 / 20) * rng.standard_normal((frames, channels))
    x[:frames - quiet] += 0.25 * np.sin(2 * np.pi * 440 * np.arange(frames - quiet) / RATE)[:, None]
    return (x[:, 0] if channels == 1 else x).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("quiet_ms", "expected_ms"), [(0, 0), (3, 0), (10, 10), (20, 20), (33, 30), (40, 40)])
def test_the_quiet_after_the_last_sound_is_found_to_10_ms(channels, quiet_ms, expected_ms):
    # The stop is counted from where the sound ended, not from the end of the last window that held some of it.
    assert quiet_tail(_window_ending_quiet(quiet_ms, channels), THRESHOLD, STEP) == expected_ms * RATE // 1000


def test_a_window_without_a_loud_stretch_is_quiet_throughout():
    assert quiet_tail(_window_ending_quiet(50), THRESHOLD, STEP) == 2400
    assert quiet_tail(np.zeros(2400, np.float32), THRESHOLD, STEP) == 2400
    assert quiet_tail(np.zeros(100, np.float32), THRESHOLD, STEP) == 100  # shorter than a stretch


def test_a_loud_stretch_in_the_middle_ends_where_it_ends():
    x = np.zeros(2400, np.float32)
    x[960:1440] = 0.5  # the third of five stretches
    assert quiet_tail(x, THRESHOLD, STEP) == 960


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("silent_ms", "expected_ms"),
                         [(0, 0), (3, 0), (10, 10), (20, 20), (33, 30), (40, 40), (50, 50)])
def test_where_a_sound_began_in_the_window_is_found_to_10_ms(channels, silent_ms, expected_ms):
    # A comeback's required playing is counted from here, not from the first window loud on average.
    x = _window_ending_quiet(silent_ms, channels)[::-1].copy()  # the tone starts ``silent_ms`` in
    assert loud_head(x, THRESHOLD, STEP) == expected_ms * RATE // 1000


def test_the_stretches_of_where_a_sound_began_end_at_the_newest_frame():
    x = np.zeros(2400 + 100, np.float32)  # 100 frames older than the first whole stretch are not looked at
    x[:100] = 0.5
    x[100 + 3 * STEP:] = 0.5
    assert loud_head(x, THRESHOLD, STEP) == 100 + 3 * STEP
    assert loud_head(np.zeros(100, np.float32), THRESHOLD, STEP) == 100
