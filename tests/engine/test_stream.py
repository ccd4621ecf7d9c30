"""Real-time playback on the offline clock: the callback delivers exactly the seamless extension."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import AudioContentError, ConfigError, EncoreError
from engine.extend import Extender
from engine.playback import Engine, EngineConfig
from tests.conftest import synthetic_song


@pytest.mark.parametrize("blocksize", [65, 512, 8193])
def test_offline_playback_equals_the_extension(repeat_model, blocksize):
    song = synthetic_song(22.0, 44100)
    expected = np.concatenate(list(Extender(repeat_model).render(song, 25.0)))
    with Engine(EngineConfig(blocksize=blocksize), model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=True)
        played = eng.render(expected.shape[0] / 44100)
        status = eng.status()
    np.testing.assert_array_equal(played, expected)
    assert status.chunks >= 3 and status.late_chunks == 0 and status.underruns == 0 and status.starved_s == 0
    assert 0 < status.recent_real_time_factor < 1  # the last minute's chunks: what the player's status bar shows
    assert status.playhead_s == pytest.approx(expected.shape[0] / 44100)


def test_a_song_without_endless_ends(repeat_model):
    song = synthetic_song(3.0, 22050, channels=1)
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=False)
        played = eng.render(5.0)
        kinds = [eng.events.get_nowait().kind for _ in range(eng.events.qsize())]
    np.testing.assert_array_equal(played[: song.frames], song.samples)
    assert not played[song.frames:].any()
    assert kinds == ["finished"] and eng.status().starved_s == 0


def test_events_tell_the_song_end_and_each_chunk(repeat_model):
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(synthetic_song(21.0, 8000), endless=True)
        eng.render(40.0)
        kinds = [eng.events.get_nowait().kind for _ in range(eng.events.qsize())]
    assert kinds[0] == "song_end" and kinds.count("chunk") >= 2


def test_playback_refuses_what_extension_refuses(repeat_model):
    with Engine(model=repeat_model, clock="offline") as eng:
        with pytest.raises(AudioContentError, match="silent"):
            eng.play(synthetic_song(21.0, 8000).__class__(np.zeros((8000 * 21, 2)), 8000))
    with pytest.raises(ConfigError, match="guard"):
        EngineConfig(guard_s=20.0)


# --- the controls the desktop player uses, on the offline clock ------------------------------------------------

def UNIT_RAMP(block: int) -> np.ndarray:  # noqa: N802 - reads as the constant it is
    """The callback's gain ramp over one block: 1/block up to 1."""
    return (np.arange(1, block + 1, dtype=np.float32) / block)[:, None]


def _extension(model, song, seconds):
    return np.concatenate(list(Extender(model).render(song, seconds)))


@pytest.mark.parametrize("seek_s", [5.0, 40.0])  # inside the song; 18 s into its continuation
def test_seeking_plays_exactly_the_timeline_from_there(repeat_model, seek_s):
    song = synthetic_song(22.0, 8000)
    expected = _extension(repeat_model, song, 40.0)
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=True)
        eng.render(2.0)
        eng.seek(seek_s)
        played = eng.render(10.0)
        status = eng.status()
    start, block = round(seek_s * 8000), EngineConfig().blocksize
    truth = expected[start:start + played.shape[0]]
    np.testing.assert_allclose(played[:block], truth[:block] * UNIT_RAMP(block), atol=1e-7)  # a seek fades in
    np.testing.assert_array_equal(played[block:], truth[block:])
    assert status.playhead_s == pytest.approx(seek_s + 10.0)


def test_pause_fades_out_holds_the_playhead_and_resume_fades_in(repeat_model):
    song = synthetic_song(22.0, 8000)
    expected = _extension(repeat_model, song, 10.0)
    block = 250
    with Engine(EngineConfig(blocksize=block), model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=True)
        before = eng.render(3.0)
        eng.pause()
        held = eng.render(1.0)
        status = eng.status()
        eng.resume()
        after = eng.render(3.0)
    at = 3 * 8000
    assert status.state == "paused" and status.playhead_s == pytest.approx((at + block) / 8000)  # one block more
    np.testing.assert_array_equal(before, expected[:at])
    np.testing.assert_allclose(held[:block], expected[at:at + block] * (1 - UNIT_RAMP(block)), atol=1e-7)
    assert not held[block:].any()
    resumed = at + block
    np.testing.assert_allclose(after[:block], expected[resumed:resumed + block] * UNIT_RAMP(block), atol=1e-7)
    np.testing.assert_array_equal(after[block:], expected[resumed + block:resumed + 3 * 8000])


def test_endless_switched_off_before_the_end_plays_the_whole_song_and_finishes(repeat_model):
    song = synthetic_song(22.0, 8000)
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=True)
        eng.render(1.0)
        eng.set_endless(False)
        played = eng.render(30.0)
        kinds = [eng.events.get_nowait().kind for _ in range(eng.events.qsize())]
    np.testing.assert_array_equal(played[:song.frames - 8000], song.samples[8000:])
    assert not played[song.frames - 8000:].any() and kinds == ["finished"]


def test_endless_switched_on_late_continues_the_song_exactly(repeat_model):
    song = synthetic_song(22.0, 8000)
    expected = _extension(repeat_model, song, 15.0)
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=False)
        first = eng.render(20.0)  # the song's end is written (10 s lead) but held back by its crossfade
        eng.set_endless(True)
        rest = eng.render(15.0)
        assert eng.status().state == "playing" and eng.status().chunks >= 1
    np.testing.assert_array_equal(np.concatenate([first, rest]), expected[:35 * 8000])


def test_a_silent_song_plays_but_cannot_be_made_endless(repeat_model):
    silence = synthetic_song(5.0, 8000).__class__(np.zeros((8000 * 5, 1), np.float32), 8000)
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(silence, endless=False)
        with pytest.raises(EncoreError, match="cannot be continued.*silent"):
            eng.set_endless(True)
        eng.render(6.0)
        assert eng.status().state == "finished"


def test_volume_ramps_over_one_block_then_scales_exactly(repeat_model):
    song = synthetic_song(22.0, 8000)
    expected = _extension(repeat_model, song, 5.0)
    block = 256
    with Engine(EngineConfig(blocksize=block), model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=True)
        eng.render(block / 8000)
        eng.set_volume(0.25)
        played = eng.render(4 * block / 8000)
        with pytest.raises(ConfigError, match="volume"):
            eng.set_volume(1.5)
    reference = expected[block:5 * block]
    gains = played[:block, 0] / reference[:block, 0]
    steady = np.abs(reference[:block, 0]) > 0.05
    assert np.all(np.diff(gains[steady]) <= 1e-5) and gains[steady][-1] == pytest.approx(0.25, abs=0.01)
    np.testing.assert_allclose(played[block:], 0.25 * reference[block:], atol=1e-7)


def test_seams_and_the_continuation_written_ahead_are_there_to_draw(repeat_model):
    song = synthetic_song(22.0, 8000)
    expected = _extension(repeat_model, song, 40.0)
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=True)
        eng.render(30.0)
        seams = eng.seams()
        start, ahead = eng.continuation_since(0)
        status = eng.status()
    assert seams[0] == pytest.approx(status.song_s)  # the song's end, then one join per chunk
    np.testing.assert_allclose(np.diff(seams), 10.0 - 0.05, atol=1 / 8000)
    assert start == 30 * 8000 and ahead.shape[0] / 8000 == pytest.approx(status.ahead_s)
    np.testing.assert_array_equal(ahead, expected[start:start + ahead.shape[0]])


def test_endless_switched_off_during_the_continuation_plays_out_with_a_fade_and_can_be_undone(repeat_model):
    song = synthetic_song(22.0, 8000)
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=True)
        eng.render(30.0)
        eng.set_endless(False)
        eng.set_endless(True)  # undone in time: it goes on
        eng.render(20.0)
        assert eng.status().state == "playing"
        eng.set_endless(False)
        tail = eng.render(40.0)
        status = eng.status()
    assert status.state == "finished"
    sounding = np.flatnonzero(np.abs(tail).max(axis=1) > 0)
    assert 0 < sounding[-1] / 8000 <= 10.0 + 10.0  # at most the lead and one chunk more
    end = tail[sounding[-1] - 399:sounding[-1] + 1]  # the last 50 ms fade to nothing: no cut
    assert np.abs(end[-20:]).max() < 0.05 * np.abs(tail[:sounding[-1]]).max()


def test_the_seed_models_end_song_is_endless_off_and_endless_on_undoes_it(repeat_model):
    # The seed model knows no phrases: its end_song() switches Endless off, and is never told end() (it has none).
    song = synthetic_song(22.0, 8000)
    with Engine(model=repeat_model, clock="offline") as eng:
        eng.play(song, endless=True)
        eng.render(30.0)
        eng.end_song()
        assert eng.status().ending
        eng.set_endless(True)  # undone in time: it goes on, endlessly
        eng.render(30.0)
        status = eng.status()
    assert status.state == "playing" and not status.ending and status.error == ""
    kinds = [eng.events.get_nowait().kind for _ in range(eng.events.qsize())]
    assert "ending" not in kinds and "error" not in kinds


def test_a_playing_song_is_analysed_once_while_it_plays_not_when_its_continuation_is_due(analysis_threads):
    import time

    from tests.conftest import bar_song

    song = bar_song(24.0, 22050)
    with Engine(clock="offline", generator="jukebox") as eng:
        eng.play(song, endless=True)
        deadline = time.monotonic() + 30.0
        while not eng.status().segmentation and time.monotonic() < deadline:
            time.sleep(0.05)
        status = eng.status()  # the offline clock has not moved: the song has not even begun
        assert status.segmentation.startswith("beats: 120 bpm, 4/4") and status.playhead_s == 0, status
        assert np.isnan(status.echo_db)  # a song that plays: no live input, no echo to measure
        played = eng.render(35.0)
        assert analysis_threads == ["encore-anticipate"]
        eng.seek(3.0)  # the same song again: its analysis is kept
        again = eng.render(32.0)  # to the same 35 s on the timeline
    assert analysis_threads == ["encore-anticipate"]
    np.testing.assert_array_equal(again[-10 * 22050:], played[-10 * 22050:])
    assert np.isfinite(played).all() and np.abs(played[-10 * 22050:]).max() > 0.1


def test_a_bug_on_the_generator_thread_is_logged_with_its_traceback_and_shown_in_one_line(repeat_model):
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("engine.playback")
    logger.addHandler(handler)
    song = synthetic_song(25.0, 8000, channels=1)
    try:
        with Engine(model=repeat_model, clock="offline") as eng:
            def broken_block():
                raise ZeroDivisionError("a bug")

            eng.extender.next_block = broken_block
            eng.play(song, endless=True)
            eng.render(song.seconds + 2.0)
            status = eng.status()
    finally:
        logger.removeHandler(handler)
    assert status.state == "error"
    assert status.error.startswith("generator failed: ZeroDivisionError: a bug (a bug: its traceback is in ")
    assert "\n" not in status.error
    (record,) = [r for r in records if r.levelno == logging.ERROR]
    assert record.exc_info and record.exc_info[0] is ZeroDivisionError  # the traceback goes to the log


def test_the_live_callback_allocates_nothing_for_a_block_longer_than_its_silence(repeat_model):
    """The duplex callback records silence as what Encore played while it listens, from a preallocated block:
    a 20 000-frame block (longer than that block) is written in pieces, never from a new array."""
    import tracemalloc
    from types import SimpleNamespace

    from engine.playback.types import EngineState
    from engine.ring import RingBuffer

    frames = 20_000
    with Engine(model=repeat_model, clock="offline") as eng:
        # what live() sets up before its stream opens, at 8 kHz and mono
        eng._input, eng._played = RingBuffer(8000 * 10, 1), RingBuffer(8000 * 10, 1)
        eng._in_channels, eng._state = 1, EngineState.LISTENING
        eng._played_silence = np.zeros(8192, np.float32)
        indata = np.full((frames, 1), 0.25, np.float32)
        outdata = np.ones((frames, 1), np.float32)
        status = SimpleNamespace(input_overflow=False, output_underflow=False)
        eng._duplex_callback(indata, outdata, frames, None, status)  # once, so any lazy setup is done
        eng._played.write(np.ones(frames, np.float32))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            eng._duplex_callback(indata, outdata, frames, None, status)
            grown = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        played = eng._played.latest(frames)
    assert grown < 10_000, f"{grown} bytes allocated in the callback"
    assert not outdata.any() and not played.any() and eng._played.end == 3 * frames
