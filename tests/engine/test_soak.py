"""An hour of endless playback on the offline clock, with each shipped generator and the demo song."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import load_audio
from engine.playback import Engine
from engine.shipped import DEMO_SONG

#: Resident memory may move by allocator noise, not by the hour: 16 MiB is under 1% of an hour's audio.
RSS_GROWTH_BOUND_MIB = 16.0


def resident_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


#: Audio each chunk adds: a seed chunk's last 50 ms crossfade waits for the next one; resynth renders whole chunks.
AUDIO_PER_CHUNK_S = {"seed": 9.95, "resynth": 10.0}


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["resynth", "seed"])
def test_an_hour_of_endless_playback_holds_memory_level_and_range(generator):
    song = load_audio(DEMO_SONG)
    with Engine(clock="offline", generator=generator) as eng:
        eng.play(song, endless=True)
        peaks, levels, rss = [], [], {}
        for minute in range(60):
            block = eng.render(60.0)
            assert np.all(np.isfinite(block)), f"NaN or inf in minute {minute}"
            peaks.append(float(np.max(np.abs(block))))
            levels.append(20 * np.log10(np.sqrt(np.mean(block ** 2))))
            if minute in (5, 59):
                rss[minute] = resident_mib()
        status = eng.status()
    assert status.playhead_s == 3600.0
    assert status.chunks >= (3600 - status.song_s) / AUDIO_PER_CHUNK_S[generator]
    if generator == "resynth":  # rendered from the original every time: nothing drifts or compounds in an hour
        song_level = 20 * np.log10(np.sqrt(np.mean(song.samples[-10 * song.sample_rate:] ** 2)))
        assert abs(np.median(levels[1:]) - song_level) < 2.0 and np.ptp(levels[1:]) < 6.0, levels
    assert status.late_chunks == 0 and status.starved_s == 0
    assert max(peaks) <= 1.0
    assert max(peaks[1:]) <= 10 ** (-1 / 20) + 1e-6  # the continuation never passes the limiter's ceiling
    assert rss[59] - rss[5] < RSS_GROWTH_BOUND_MIB, rss


def test_the_live_soak_judges_each_stop_and_comeback_from_the_rooms_frame_count():
    from engine.soak import PHRASE_S, REST_S, _judge_live

    rate = 100
    cycle, phrase = round((PHRASE_S + REST_S) * rate), round(PHRASE_S * rate)
    events = []
    for k in range(4):  # phrases at k * cycle; Encore carries on 0.9 s after each stop, fades 0.3 s into the next
        events.append((k * cycle + phrase + 90, "continuing"))
        if k < 3:
            events.append(((k + 1) * cycle + 30, "listening"))
    events.append((cycle + phrase + 500, "listening"))  # a fade while the performer rests: its own echo
    judged = _judge_live(sorted(events), rate, continuations=4)
    assert judged["continuation_delay_s"] == {"median": 0.9, "max": 0.9}
    assert judged["fade_delay_s"] == {"median": 0.3, "max": 0.3}
    assert judged["quiet_comebacks"] == 2 and judged["quiet_performer_heard"] is True
    assert judged["fades_without_performer"] == 1

    # The first comeback (every other one is quiet) is not heard: Encore plays on over the performer.
    missed = [event for event in events if event != (cycle + 30, "listening")]
    judged = _judge_live(sorted(missed), rate, continuations=4)
    assert judged["quiet_performer_heard"] is False and judged["fade_delay_s"]["max"] == float("inf")
