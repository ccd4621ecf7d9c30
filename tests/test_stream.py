"""Real-time playback on the offline clock: the callback delivers exactly the seamless extension."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import AudioContentError, ConfigError
from engine.extend import Extender
from engine.stream import Engine, EngineConfig
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
