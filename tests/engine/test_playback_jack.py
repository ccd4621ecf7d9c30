"""Endless playback through a real audio server (JACK, dummy driver), recorded back through a loopback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from engine.continuator import Continuator
from engine.jack import connect, disconnect_capture, jack_device, jack_ports, new_ports
from engine.playback import Engine, EngineConfig
from tests.conftest import synthetic_song
from tests.jack_server import JACK_RATE
from tests.onnx_models import make_model


class Recorder:
    """Records the JACK input while Encore plays, with Encore's outputs wired to it."""

    def __init__(self, sd, channels: int = 2):
        self.sd, self.channels = sd, channels
        self.blocks: list[np.ndarray] = []

    def _take(self, indata, frames, time_info, status):
        self.blocks.append(indata.copy())

    def __enter__(self):
        before = set(jack_ports())
        self.stream = self.sd.InputStream(samplerate=JACK_RATE, channels=self.channels, dtype="float32",
                                          device=jack_device(self.sd, "input"), callback=self._take)
        self.stream.start()
        self.inputs = new_ports(before, ":in")
        return self

    def wire(self, before: set[str]) -> None:
        """Connect the ports that appeared since ``before`` (Encore's outputs) to the recorder's inputs."""
        for source, destination in zip(new_ports(before, ":out"), self.inputs, strict=True):
            connect(source, destination)

    def __exit__(self, *exc):
        self.stream.stop()
        self.stream.close()

    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks)


def silent_windows(signal: np.ndarray, rate: int, window_s: float = 0.05) -> int:
    """Count 50 ms windows of digital silence between the first and the last sound."""
    mono = np.abs(signal).max(axis=1)
    sounding = np.flatnonzero(mono > 1e-4)
    body = mono[sounding[0]: sounding[-1]]
    n = int(window_s * rate)
    windows = body[: len(body) // n * n].reshape(-1, n).max(axis=1)
    return int(np.sum(windows < 1e-4))


def perform_into(sd, engine_inputs: list[str], performer):
    """Start a JACK output stream played by the ``performer`` callback and wire it to the engine's inputs alone
    (not the dummy capture); returns the started stream."""
    before = set(jack_ports())
    player = sd.OutputStream(samplerate=JACK_RATE, channels=2, dtype="float32", device=jack_device(sd, "output"),
                             callback=performer)
    disconnect_capture(engine_inputs)
    player.start()
    for source, destination in zip(new_ports(before, ":out"), engine_inputs, strict=True):
        connect(source, destination)
    return player


def play_and_record(sd, engine: Engine, song, seconds: float) -> np.ndarray:
    with Recorder(sd) as recorder:
        before = set(jack_ports())
        engine.play(song, endless=True)
        recorder.wire(before)
        time.sleep(seconds)
        engine.stop()
    return recorder.audio()


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
def test_endless_playback_runs_on_with_no_gap_at_the_song_end(sd, repeat_model):
    song = synthetic_song(8.0, JACK_RATE)
    eng = Engine(EngineConfig(lead_s=10.0), model=repeat_model, device=jack_device(sd, "output"))
    recorded = play_and_record(sd, eng, song, 31.0)
    status = eng.status()
    assert status.playhead_s > 30.0, status       # the device clock pulled audio for the whole time
    assert status.playhead_s > status.song_s + 20  # ... well past the song's end
    assert status.starved_s == 0 and status.late_chunks == 0, status
    assert recorded.shape[0] > 29 * JACK_RATE
    assert silent_windows(recorded, JACK_RATE) == 0
    level = np.sqrt(np.mean(recorded[recorded.shape[0] // 2:] ** 2))
    assert level > 0.05


class SlowContinuator(Continuator):
    """A generator far slower than real time: 6 s per chunk."""

    def predict(self, context):
        time.sleep(6.0)
        return super().predict(context)


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
def test_a_slow_generator_is_heard_as_music_not_silence(sd, repeat_model):
    song = synthetic_song(4.0, JACK_RATE)
    eng = Engine(EngineConfig(lead_s=2.0, guard_s=0.5, filler_s=1.0), model=SlowContinuator(repeat_model),
                 device=jack_device(sd, "output"))
    recorded = play_and_record(sd, eng, song, 12.0)
    status = eng.status()
    assert status.late_chunks >= 3, status
    assert status.starved_s == 0, status
    assert silent_windows(recorded, JACK_RATE) == 0
    assert threading.active_count() < 20


def run_engine(*args: str, env: dict | None = None, interrupt_after: float | None = None,
               interrupt_once: str | None = None):
    """The engine command in a fresh process; optionally Ctrl-C (SIGINT) after some seconds.

    With ``interrupt_once``, the seconds count from when that text first appears on the command's stderr (a
    command still starting up under load would otherwise be interrupted before it handles Ctrl-C).
    """
    import os
    import signal
    import subprocess
    import sys
    import threading

    # A shell runs background jobs with SIGINT ignored, and a child inherits that (Python then installs no
    # KeyboardInterrupt handler): give the command the Ctrl-C of a terminal whoever started the tests.
    # faulthandler prints every thread's stack on SIGABRT: a hang is reported with where it hung.
    process = subprocess.Popen([sys.executable, "-m", "engine", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    streams = {"out": [], "err": []}
    seen = threading.Event()

    def read(stream, lines: list) -> None:
        for line in stream:
            lines.append(line)
            if interrupt_once is not None and interrupt_once in line:
                seen.set()

    readers = [threading.Thread(target=read, args=(process.stdout, streams["out"]), daemon=True),
               threading.Thread(target=read, args=(process.stderr, streams["err"]), daemon=True)]
    for reader in readers:
        reader.start()
    if interrupt_after is not None:
        if interrupt_once is None or seen.wait(timeout=60):
            time.sleep(interrupt_after)
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        # Leave no process behind: its JACK client would make the next test's device names ambiguous.
        process.send_signal(signal.SIGABRT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for reader in readers:
            reader.join(timeout=5)
        threads = "".join(streams["err"])[-6000:]
        pytest.fail(f"engine {' '.join(args)} did not exit within 60 s; its threads:\n{threads}")
    for reader in readers:
        reader.join(timeout=10)
    return process.returncode, "".join(streams["out"]), "".join(streams["err"])


def test_devices_lists_the_server_and_marks_the_defaults(sd):
    code, out, err = run_engine("devices")
    assert code == 0, err
    assert "JACK Audio Connection Kit" in out and out.lstrip().startswith("*")


def test_no_audio_server_is_one_line_not_a_traceback():
    code, out, err = run_engine("devices", env={"JACK_DEFAULT_SERVER": "encore-no-such-server",
                                                "JACK_NO_START_SERVER": "1"})
    assert code == 2
    assert err.strip() == "engine devices: error: no audio devices: no sound card, and no audio server " \
                          "(JACK, PulseAudio) is running"


def test_play_endless_until_ctrl_c_prints_a_summary(sd, repeat_model, tmp_path):
    from engine.audio import save_audio

    song = save_audio(tmp_path / "song.wav", synthetic_song(3.0, JACK_RATE))
    code, out, err = run_engine("play", str(song), "--endless", "--model", str(repeat_model),
                                "--output", "JACK", interrupt_after=7.0)
    assert code == 0, err
    assert "Traceback" not in err
    summary = out.strip().splitlines()[-1]
    assert re.match(r"played 0\.\d min \(0:0\d\) of song\.wav, \d+ chunks generated", summary), summary
    assert "0 underruns" in summary
    chunks = int(summary.split(", ")[1].split()[0])
    assert chunks >= 1


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
def test_live_input_is_continued_when_the_performer_stops_and_yields_when_they_play_again(sd, repeat_model):
    """A phrase is played into Encore's input through JACK; Encore's output is recorded."""
    from engine.playback import LiveConfig

    phrase = synthetic_song(5.0, JACK_RATE).samples
    position = {"frame": 0, "playing": True}

    def performer(outdata, frames, time_info, status):
        if not position["playing"]:
            outdata.fill(0)
            return
        start = position["frame"] % (3 * phrase.shape[0])  # 5 s of phrase, then 10 s of rest, and again
        chunk = phrase[start:start + frames] if start < phrase.shape[0] else phrase[:0]
        outdata[: chunk.shape[0]] = chunk
        outdata[chunk.shape[0]:] = 0
        position["frame"] += frames

    eng = Engine(model=repeat_model, device=jack_device(sd, "output"))
    with Recorder(sd) as recorder:
        before = set(jack_ports())
        eng.live(LiveConfig(silence_s=1.5), input_device=jack_device(sd, "input"))
        engine_inputs, engine_outputs = new_ports(before, ":in"), new_ports(before, ":out")
        player = perform_into(sd, engine_inputs, performer)
        for source, destination in zip(engine_outputs, recorder.inputs, strict=True):
            connect(source, destination)
        time.sleep(10.0)  # 5 s phrase, 1.5 s of silence, then Encore carries on
        continuing_state = eng.status().state
        time.sleep(6.0)   # the performer starts again at 15 s
        resumed_state = eng.status().state
        player.stop()
        player.close()
        eng.stop()
        assert eng.status().state == "stopped"
    kinds = [eng.events.get_nowait().kind for _ in range(eng.events.qsize())]
    recorded = recorder.audio()
    assert continuing_state == "continuing", kinds
    assert kinds[0] == "continuing" and "chunk" not in kinds[:1]
    assert resumed_state in ("fading", "listening") and "listening" in kinds, kinds
    # Encore's output: silent while the phrase plays (no monitor), then music during the rest.
    level = [float(np.sqrt(np.mean(recorded[i: i + JACK_RATE // 2] ** 2)))
             for i in range(0, recorded.shape[0] - JACK_RATE // 2, JACK_RATE // 2)]
    assert max(level[:8]) < 1e-4, level[:8]           # first 4 s: the performer plays, Encore listens
    assert min(level[16:18]) > 0.02, level[14:20]      # 8 to 9 s: Encore carries on


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
def test_after_a_short_fill_over_the_continuation_encore_carries_on_again(sd, repeat_model):
    """The performer plays 5 s, rests (Encore carries on at 6.5 s), plays a 0.6 s fill at 10 s (Encore fades) and
    stays quiet: Encore carries on again, though the fill is shorter than min_heard_s."""
    from engine.playback import LiveConfig

    phrase = synthetic_song(5.0, JACK_RATE).samples
    fill_at, fill = 10 * JACK_RATE, round(0.6 * JACK_RATE)
    position = {"frame": 0}

    def performer(outdata, frames, time_info, status):
        at = position["frame"] + np.arange(frames)
        source = np.where(at < phrase.shape[0], at, np.where((at >= fill_at) & (at < fill_at + fill), at - fill_at, -1))
        outdata[:] = np.where(source[:, None] >= 0, phrase[source.clip(0)], 0.0)
        position["frame"] += frames

    eng = Engine(model=repeat_model, device=jack_device(sd, "output"))
    before = set(jack_ports())
    eng.live(LiveConfig(silence_s=1.0), input_device=jack_device(sd, "input"))
    player = perform_into(sd, new_ports(before, ":in"), performer)
    try:
        time.sleep(15.0)
        state = eng.status().state
    finally:
        player.stop()
        player.close()
        eng.stop()
    kinds = [e.kind for e in (eng.events.get_nowait() for _ in range(eng.events.qsize())) if e.kind != "chunk"]
    # Before the fix, Encore faded at the fill and then waited, silent, for min_heard_s of playing.
    assert [k for k in kinds if k in ("continuing", "listening")] == ["continuing", "listening", "continuing"], kinds
    assert state == "continuing" and eng.status().continuations == 2


def _live_through_a_room(sd, model, *, coupling: float, delay_s: float, comeback: float, cancel_echo: bool,
                         until_s: float = 13.0) -> dict:
    """Encore live in a room made of JACK ports: its output comes back ``coupling`` times as loud and ``delay_s``
    late, mixed with a performer who plays a 5 s phrase, rests, and plays it again ``comeback`` times as loud
    from 15 to 20 s. Returns the events (chunks left out), the status at ``until_s`` (Encore carrying on) and at
    17 s (the performer back), and the status at the end."""
    from engine.playback import LiveConfig

    phrase = synthetic_song(5.0, JACK_RATE).samples
    delay = round(delay_s * JACK_RATE)
    room_state = {"frame": 0, "delayed": np.zeros((delay, 2), np.float32)}

    def room(indata, outdata, frames, time_info, status):
        frame = room_state["frame"]
        outdata.fill(0)
        for start, loudness in ((0, 1.0), (15 * JACK_RATE, comeback)):
            offset = frame - start
            if -frames < offset < phrase.shape[0]:
                into, take = max(0, -offset), max(0, offset)
                chunk = phrase[take:take + frames - into]
                outdata[into:into + chunk.shape[0]] = loudness * chunk
        delayed = np.concatenate([room_state["delayed"], indata])
        outdata += coupling * delayed[:frames]
        room_state["delayed"] = delayed[frames:]
        room_state["frame"] = frame + frames

    eng = Engine(model=model, device=jack_device(sd, "output"))
    before = set(jack_ports())
    eng.live(LiveConfig(silence_s=1.5, cancel_echo=cancel_echo), input_device=jack_device(sd, "input"))
    engine_inputs, engine_outputs = new_ports(before, ":in"), new_ports(before, ":out")
    disconnect_capture(engine_inputs)
    before = set(jack_ports())
    stream = sd.Stream(samplerate=JACK_RATE, channels=2, dtype="float32", callback=room,
                       device=(jack_device(sd, "input"), jack_device(sd, "output")))
    stream.start()
    for source, destination in zip(engine_outputs, new_ports(before, ":in"), strict=True):
        connect(source, destination)
    for source, destination in zip(new_ports(before, ":out"), engine_inputs, strict=True):
        connect(source, destination)
    started = time.monotonic()
    events = []

    def wait_until(seconds: float):
        time.sleep(max(0.0, started + seconds - time.monotonic()))
        events.extend(eng.events.get_nowait() for _ in range(eng.events.qsize()))
        return eng.status()

    while_encore_plays = wait_until(until_s)
    when_the_performer_is_back = wait_until(17.0)
    deadline = time.monotonic() + 20.0
    while [e.kind for e in events].count("continuing") < 2 and time.monotonic() < deadline:
        wait_until(time.monotonic() - started + 0.1)
    stream.stop()
    stream.close()
    handling = eng.echo_handling()
    eng.stop()
    return {"events": [e for e in events if e.kind != "chunk"], "playing": while_encore_plays,
            "back": when_the_performer_is_back, "handling": handling}


def _continued_s(events) -> tuple[float, float]:
    """How much of what was heard the first and the second continuation continued, in seconds."""
    return tuple(float(re.search(r"continuing ([0-9.]+) s of what was heard", e.detail).group(1))
                 for e in events if e.kind == "continuing")


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
@pytest.mark.parametrize("coupling", [0.3, 0.0], ids=["speakers", "headphones"])
def test_live_input_through_speakers_ignores_encores_echo_and_keeps_it_out_of_memory(sd, repeat_model, coupling):
    """The level gate alone (no echo canceller): Encore's echo 10 dB down and 30 ms late, the performer back as
    loud as the echo's source would be, 1.5 times the first phrase."""
    run = _live_through_a_room(sd, repeat_model, coupling=coupling, delay_s=0.03, comeback=1.5, cancel_echo=False)
    events, kinds = run["events"], [e.kind for e in run["events"]]
    details = {e.kind: e.detail for e in events}
    assert "level gate" in run["handling"] and "switched off" in run["handling"]
    # Encore hears itself and keeps going (before engine.echo it faded out within a second, taking its echo
    # for the performer), yet yields to the performer, and continues again when they stop.
    assert run["playing"].state == "continuing", events
    assert run["back"].state in ("fading", "listening"), events
    assert kinds == ["continuing", "echo", "listening", "continuing"], events
    assert run["playing"].echo_canceller == "level gate" and np.isnan(run["playing"].echo_reduction_db)
    if coupling:
        assert re.search(r"hears Encore (8|9|10|11|12) dB down", details["echo"]), details["echo"]  # 10.5 dB
        assert 8.0 < run["playing"].echo_db < 12.5
    else:
        assert "does not hear Encore" in details["echo"], details["echo"]
        assert run["playing"].echo_db == np.inf
    # What the second continuation continues, beyond what the first did: with headphones, all of the 15 s
    # between the two phrases' ends; through speakers, only the 1.5 s of rest before Encore began and the
    # 16-20 s after its fade (0.2 s to notice the performer, 0.5 s of fade) and its echo (0.3 s allowed).
    first, second = _continued_s(events)
    assert (4.5 < second - first < 6.5) if coupling else (14.5 < second - first < 15.5), events


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
@pytest.mark.parametrize(("coupling", "delay_s", "comeback"), [(0.3, 0.03, 1.5), (1.0, 0.4, 0.5), (0.0, 0.03, 1.0)],
                         ids=["speakers", "a loud late echo and a quiet performer", "headphones"])
def test_live_input_through_speakers_cancels_encores_echo(sd, repeat_model, coupling, delay_s, comeback):
    """The echo canceller (engine.aec): the delay is measured, the echo taken 20 dB down or more, and a performer
    6 dB quieter than an echo that comes back 0.4 s late (a Bluetooth speaker) is heard over it."""
    run = _live_through_a_room(sd, repeat_model, coupling=coupling, delay_s=delay_s, comeback=comeback,
                               cancel_echo=True)
    events, kinds = run["events"], [e.kind for e in run["events"]]
    assert "cancelled (speexdsp" in run["handling"]
    assert run["playing"].state == "continuing", events
    assert run["back"].state in ("fading", "listening"), events  # the performer is heard, quieter or not
    assert run["playing"].echo_canceller == "speexdsp"
    first, second = _continued_s(events)
    if not coupling:
        assert kinds == ["continuing", "echo", "listening", "continuing"], events
        assert run["playing"].echo_db == np.inf and np.isnan(run["playing"].echo_reduction_db)
        assert 14.5 < second - first < 15.5, events  # nothing left out: the input never heard Encore
        return
    assert kinds == ["continuing", "echo", "echo", "listening", "continuing"], events
    found = float(re.search(r"comes back ([0-9]+) ms late", events[2].detail).group(1)) / 1000
    assert 0.02 <= found - delay_s <= 0.08, events[2]  # the room's delay and JACK's two periods each way
    assert abs(run["playing"].echo_db + 20 * np.log10(coupling)) < 2.5  # 10.5 dB down, and 0 dB
    assert run["playing"].echo_reduction_db >= 20.0
    # What the second continuation continues beyond the first: the rest before Encore began and the comeback
    # after Encore's fade and its echo (the delay measured and the room's tail: not 0.3 s, which would let a
    # 0.4 s echo in).
    assert 4.0 < second - first < 6.5, events


def _one_phrase_carried_on(sd, seconds: float, live_config, wait_s: float):
    """A performer plays ``seconds`` of the bar song once, then stops; Encore (jukebox, the generator in the
    engine's process, where the analysis_threads fixture sees its thread: in its own process the generator is told
    the same calls at the same moments, tests/engine/test_process.py) listens with ``live_config``. Returns the
    engine's state once it carries on (or after ``wait_s``) and its growing memory's kept memory at that moment."""
    from tests.conftest import bar_song

    phrase = bar_song(seconds, JACK_RATE).samples
    position = {"frame": 0}

    def performer(outdata, frames, time_info, status):  # the phrase once, then silence
        chunk = phrase[position["frame"]:position["frame"] + frames]
        outdata[: chunk.shape[0]] = chunk
        outdata[chunk.shape[0]:] = 0
        position["frame"] += frames

    eng = Engine(EngineConfig(generator_process=False), generator="jukebox", device=jack_device(sd, "output"))
    before = set(jack_ports())
    eng.live(live_config, input_device=jack_device(sd, "input"))
    player = perform_into(sd, new_ports(before, ":in"), performer)
    deadline = time.monotonic() + wait_s
    while eng.status().state != "continuing" and time.monotonic() < deadline:
        time.sleep(0.05)
    state = eng.status().state
    kept = eng.extender._growing._kept
    player.stop()
    player.close()
    eng.stop()
    return state, kept


def test_live_input_is_analysed_while_the_performer_is_quiet_not_when_encore_carries_on(sd, analysis_threads):
    """The resynth family's analysis of what was heard runs during the silence before Encore carries on."""
    from engine.playback import LiveConfig

    state, _ = _one_phrase_carried_on(sd, 6.0, LiveConfig(silence_s=1.5), wait_s=20.0)
    assert state == "continuing"
    assert analysis_threads == ["encore-anticipate"]


def test_a_long_phrase_is_analysed_while_it_is_played_and_the_stop_redoes_only_its_end(sd, analysis_threads):
    """After minutes of playing, no earlier stop's analysis shares the memory: it is analysed as it grows."""
    from engine.playback import LiveConfig

    state, kept = _one_phrase_carried_on(sd, 10.0, LiveConfig(silence_s=1.5, analyse_every_s=3.0), wait_s=25.0)
    assert state == "continuing"
    # At 3, 6 and 9 s of the phrase, then in the silence after it: on the analysis's own thread each time.
    assert analysis_threads == ["encore-anticipate"] * 4
    assert kept is not None and kept.prepared.reused_frames >= 8.5 * JACK_RATE  # all but the last second or so


def test_engine_live_listens_until_ctrl_c(sd, repeat_model):
    code, out, err = run_engine("live", "--input", "JACK", "--output", "JACK", "--model", str(repeat_model),
                                interrupt_after=1.0, interrupt_once="listening")
    assert code == 0, err
    assert "Traceback" not in err and "listening" in err
    assert out.strip().splitlines()[-1] == "live: carried on 0 times, 0 chunks generated, 0 late chunks, 0 underruns"


def test_engine_live_with_a_device_that_is_not_there(sd, repeat_model):
    code, out, err = run_engine("live", "--input", "no such microphone", "--model", str(repeat_model))
    assert code == 2
    assert err.count("\n") == 1 and "no audio input device 'no such microphone'" in err


def test_audio_devices_describe_the_server_by_name(sd):
    from engine.playback import audio_devices

    devices = [d for d in audio_devices() if d.host_api == "JACK Audio Connection Kit"]
    assert devices and devices[0].inputs > 0 and devices[0].outputs > 0
    assert devices[0].default_samplerate == JACK_RATE


def test_a_device_that_disappears_mid_play_is_one_line_and_the_command_ends(sd, repeat_model, tmp_path):
    """A second, named JACK server is killed under `engine play`: it must say so and exit, not hang."""
    import os
    import sys

    from engine.audio import save_audio

    song = save_audio(tmp_path / "song.wav", synthetic_song(5.0, JACK_RATE))
    env = {**os.environ, "JACK_DEFAULT_SERVER": "encore-vanishing", "JACK_NO_START_SERVER": "1"}
    server = subprocess.Popen(["jackd", "-n", "encore-vanishing", "--no-realtime", "-d", "dummy", "-r",
                               str(JACK_RATE), "-p", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not jack_ports(env):
            assert time.monotonic() < deadline, "the second JACK server did not start"
            time.sleep(0.05)
        player = subprocess.Popen([sys.executable, "-m", "engine", "play", str(song), "--endless", "--model",
                                   str(repeat_model)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        # Kill the server only once the player's stream has its ports (a fixed wait lost that race under load).
        deadline = time.monotonic() + 30
        while not any(port.startswith("PortAudio:out") for port in jack_ports(env)):
            assert player.poll() is None, player.communicate()
            assert time.monotonic() < deadline, "the player never opened its stream"
            time.sleep(0.05)
        time.sleep(0.5)
        assert player.poll() is None, player.communicate()
    finally:
        server.kill()
        server.wait()
    out, err = player.communicate(timeout=20)
    assert player.returncode == 2
    assert err.strip().splitlines() == ["engine play: error: the audio device stopped: it was disconnected or its "
                                        "server quit; choose another device"]


def test_a_song_shorter_than_the_lead_without_endless_starts_at_once_and_finishes(sd, repeat_model):
    """Its held-back last crossfade can never fill the lead: play() must not wait for it (it once waited 30 s)."""
    song = synthetic_song(3.0, JACK_RATE)
    with Engine(EngineConfig(lead_s=10.0), model=repeat_model, device=jack_device(sd, "output")) as eng:
        started = time.monotonic()
        eng.play(song, endless=False)
        while eng.status().state == "playing" and time.monotonic() - started < 30:
            time.sleep(0.05)
        status = eng.status()
    assert status.state == "finished" and status.playhead_s == pytest.approx(3.0, abs=1e-3)
    assert time.monotonic() - started < 3.0 + 10.0  # a deadlock bound, not a speed target


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
def test_endless_switched_off_during_the_continuation_finishes_on_a_device(sd, tmp_path):
    """On a device the guard must not take the play-out for a late generator and loop its last second."""
    model = make_model(tmp_path / "short.onnx", "repeat", context_s=4.0, horizon_s=2.0)
    with Engine(EngineConfig(lead_s=2.0), model=model, device=jack_device(sd, "output")) as eng:
        eng.play(synthetic_song(3.0, JACK_RATE), endless=True)
        while eng.status().playhead_s < 5.0:
            time.sleep(0.05)
        switched = eng.status().playhead_s
        eng.set_endless(False)
        deadline = time.monotonic() + 15
        while eng.status().state == "playing" and time.monotonic() < deadline:
            time.sleep(0.05)
        status = eng.status()
    assert status.state == "finished", status
    assert status.late_chunks == 0 and status.starved_s == 0, status
    assert status.playhead_s <= switched + 2.0 + 2.0 + 0.5  # the lead and one chunk, at most


@pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")
def test_a_seek_far_into_the_continuation_buffers_behind_an_open_stream(sd, repeat_model):
    """Regenerating 20 minutes takes seconds: the caller (a GUI) is not blocked for them; nothing starves."""
    with Engine(model=repeat_model, device=jack_device(sd, "output")) as eng:
        eng.play(synthetic_song(5.0, JACK_RATE), endless=True)
        eng.seek(1200.0)
        buffering_after_seek = eng.status().buffering
        deadline = time.monotonic() + 60
        while eng.status().playhead_s < 1201.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = eng.status()
    assert buffering_after_seek  # seek returned while the continuation was still being regenerated
    assert status.playhead_s >= 1201.0 and not status.buffering, status
    assert status.starved_s == 0 and status.late_chunks == 0, status


@pytest.mark.slow
def test_the_soak_plays_and_listens_on_the_server_and_writes_its_figures(sd, tmp_path):
    """``encore bench --soak`` for 45 s each: play --endless, then live through a room whose performer stops at
    8 s, comes back 6 dB under Encore's echo at 20 s and stops at 28 s."""
    out = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, "-m", "engine", "bench", "--soak", "--minutes", "0.75", "--load", "1",
                             "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    play, live = figures["play"], figures["live"]
    assert set(play) == {"minutes", "underruns", "late_chunks", "generator_restarts"} and play["minutes"] == 0.75
    assert figures["generator_runs"] == "its own process" and play["generator_restarts"] == 0
    assert live["generator_restarts"] == 0
    assert {"minutes", "underruns", "late_chunks", "continuations", "erle_db", "quiet_performer_heard"} <= set(live)
    assert all(isinstance(part[key], int) for part in (play, live) for key in ("underruns", "late_chunks"))
    assert live["continuations"] == 2  # after the stops at 8 and 28 s
    assert live["quiet_comebacks"] == 1 and live["quiet_performer_heard"] is True
    assert live["echo_canceller"] == "speexdsp" and live["erle_db"] >= 20.0
    # carried on after the 0.75 s of silence it waits for, and faded after the 0.2 s it waits for
    assert 0.75 <= live["continuation_delay_s"]["max"] < 1.5
    assert 0.2 <= live["fade_delay_s"]["max"] < 0.6
    assert "quiet performer heard: True" in result.stdout
