"""The generator in a process of its own: the same blocks as in the engine's process, a death that nobody hears,
the shared-memory ring between the two, and a user's script without a ``__main__`` guard."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from engine.audio import Waveform
from engine.errors import AudioContentError
from engine.generators import open_generator
from engine.process import GenerationInterrupted, GeneratorProcess, GeneratorProcessError
from engine.process import parent as parent_module
from engine.shared_ring import SharedRing
from tests.conftest import bar_song


def in_process_blocks(song, calls: list[str], model=None):
    """What the generator (jukebox, or ``model``'s) gives in this process for ``calls`` ("next" or "end"): the
    blocks and its joins."""
    extender = open_generator(model, generator=None if model else "jukebox")
    extender.start(song)
    blocks = [extender.next_block() if call == "next" else extender.end() for call in calls]
    return [b for b in blocks if b is not None], list(extender.joins)


@pytest.fixture(scope="module")
def song():
    return bar_song(40.0, 22050)


@pytest.mark.slow
def test_a_killed_process_is_replaced_and_the_blocks_go_on_bit_for_bit(song):
    """Killed after the ending was asked for: the new process is told the same calls, so the blocks after the
    death are the ones the old process would have given, and the ending still comes."""
    calls = ["next", "end"]
    with GeneratorProcess(generator="jukebox") as process:
        process.start(song)
        process.anticipate()
        blocks = []
        for call in calls:
            if call == "next":
                blocks.append(process.next_block())
            else:
                process.end()
        first = process.process
        first.kill()
        first.wait()
        while not process.finished and len(blocks) < 20:
            blocks.append(process.next_block())
            calls.append("next")
        assert process.restarts == 1 and process.process is not first
        joins = list(process.joins)
        assert process.segmentation.startswith("beats: 120 bpm")
    expected, expected_joins = in_process_blocks(song, calls)
    assert process.finished and len(blocks) == len(expected) > 3
    for got, want in zip(blocks, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert joins == expected_joins


def test_the_seed_model_runs_there_too(song, repeat_model):
    with GeneratorProcess(repeat_model) as process:
        assert process.generator == "seed" and process.model.name == "repeat"
        process.start(song)
        blocks = [process.next_block() for _ in range(2)]
        process.process.kill()
        blocks.append(process.next_block())
        assert process.restarts == 1
    expected, _ = in_process_blocks(song, ["next"] * 3, model=repeat_model)
    for got, want in zip(blocks, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_deaths_in_a_row_end_with_an_error_not_a_loop(song, repeat_model, monkeypatch):
    monkeypatch.setattr(parent_module, "MAX_RESTARTS", 1)
    with GeneratorProcess(repeat_model) as process:
        process.start(song)
        process.next_block()
        process.process.kill()
        process.next_block()  # the first death is replaced
        assert process.restarts == 1
        monkeypatch.setattr(process, "_spawn_command", lambda fd: [sys.executable, "-c", "import sys; sys.exit(3)"])
        process.process.kill()
        with pytest.raises(GeneratorProcessError, match="died 2 times in a row"):
            process.next_block()


def test_a_stopping_engine_is_not_kept_waiting(song):
    stopping = {"now": False}
    with GeneratorProcess(generator="jukebox", interrupted=lambda: stopping["now"]) as process:
        process.start(song)
        process.next_block()
        stopping["now"] = True
        began = time.monotonic()
        with pytest.raises(GenerationInterrupted):
            process.next_block()  # the analysis and the block take far longer than the poll
        assert time.monotonic() - began < 1.0
        stopping["now"] = False
        process.start(song)  # the abandoned block's answer is read past, not taken for this one
        first = process.next_block()
    expected, _ = in_process_blocks(song, ["next"])
    np.testing.assert_array_equal(first, expected[0])


def test_silence_and_crumbs_are_refused_at_once_in_the_callers_process():
    with GeneratorProcess(generator="jukebox") as process:
        with pytest.raises(AudioContentError, match="silent"):
            process.start(Waveform(np.zeros((22050 * 5, 2), np.float32), 22050))
        with pytest.raises(AudioContentError, match="at least"):
            process.start(bar_song(0.2, 22050))


def test_the_shared_ring_is_read_in_another_mapping_and_freed_by_its_owner():
    owner = SharedRing(8, 2)
    reader = SharedRing(8, 2, name=owner.name)
    frames = np.arange(24, dtype=np.float32).reshape(12, 2)
    owner.write(frames[:6])
    assert reader.end == 6 and owner.room() == 2  # nothing read yet: two frames of room
    np.testing.assert_array_equal(reader.read(0, 6), frames[:6])
    reader.read_to = 6
    assert owner.room() == 8
    owner.write(frames[6:])  # wraps around
    np.testing.assert_array_equal(reader.read(4, 12), frames[4:])
    name = owner.name
    reader.close()
    owner.close()
    with pytest.raises(FileNotFoundError):
        SharedRing(8, 2, name=name)


def test_a_users_script_without_a_main_guard_runs_the_generator_once(tmp_path):
    """multiprocessing's spawn would run such a script again in the child; the generator's process does not."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        from engine.process import GeneratorProcess
        from tests.conftest import bar_song
        print("script ran")
        with GeneratorProcess(generator="jukebox") as process:
            process.start(bar_song(20.0, 22050))
            print("block", process.next_block().shape)
    """))
    root = str(parent_module.Path(__file__).resolve().parents[2])
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": root})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("script ran") == 1 and "block (220500, 2)" in result.stdout


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
def test_the_stream_plays_on_while_a_killed_generator_process_is_replaced(sd, repeat_model):
    """On a JACK server: the generator's process killed during the continuation; the lead written ahead plays
    meanwhile, a new process takes over, and nothing is late, starved or wrong."""
    from engine.jack import jack_device
    from engine.playback import Engine, EngineConfig
    from tests.conftest import synthetic_song
    from tests.jack_server import JACK_RATE

    with Engine(EngineConfig(lead_s=10.0), model=repeat_model, device=jack_device(sd, "output")) as eng:
        eng.play(synthetic_song(5.0, JACK_RATE), endless=True)
        assert eng.status().generator_runs == "own process"
        deadline = time.monotonic() + 30
        while eng.status().playhead_s < 7.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        first = eng.extender.process
        first.kill()
        while eng.status().generator_restarts == 0 and time.monotonic() < deadline + 30:
            time.sleep(0.05)
        reached = eng.status().playhead_s
        while eng.status().playhead_s < reached + 5.0 and time.monotonic() < deadline + 40:
            time.sleep(0.05)
        status = eng.status()
        events = [eng.events.get_nowait() for _ in range(eng.events.qsize())]
    assert status.state == "playing" and status.playhead_s > status.song_s + 10.0 and status.error == "", status
    assert status.generator_restarts == 1 and eng.extender.process is not first
    assert status.late_chunks == 0 and status.starved_s == 0, status
    assert status.chunks >= 3  # the new process has generated since
    assert [e.detail for e in events if e.kind == "restarted"] == [
        f"the generator's process died (exit code {first.returncode}); restarted it"]
