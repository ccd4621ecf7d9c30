"""``encore bench --soak``: Encore played for minutes on a running JACK server, with busy processes beside it.

Two runs, one after the other, each ``minutes`` long:

- **play**: ``play --endless`` of a song (the demo song by default): underruns and late chunks;
- **live**: ``live`` through a room built of JACK ports. A room process (its own, so that its Python does not
  share Encore's interpreter) plays a performer into Encore's input, :data:`PHRASE_S` of the song then
  :data:`REST_S` of rest, over and over, every other phrase :data:`QUIET_DB` under Encore's echo; and returns
  Encore's own output to the input :data:`ROOM_DELAY_S` late, as loud as it was played, over a noise floor.
  Measured: underruns and late chunks, the continuations, how long after the performer's stop each began and
  how long after their comeback Encore began to fade, the echo's reduction (:mod:`engine.aec`), whether every
  quiet comeback was heard, and fades while the performer rested (Encore's own echo taken for them).

The figures (:func:`soak`) are what ``--json`` writes and ``make bench`` shows.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from multiprocessing import shared_memory

import numpy as np

from .audio import Waveform, resample
from .cores import busy_loop
from .errors import EncoreError
from .jack import connect, disconnect_capture, jack_device, jack_ports, new_ports
from .playback.types import EngineConfig
from .shared_ring import share_array

#: The performer's phrase and the rest after it, in seconds.
PHRASE_S = 8.0
REST_S = 12.0
#: Every other phrase is this much under Encore's echo, in dB.
QUIET_DB = 6.0
#: The room: Encore's output comes back this late, as loud as it was played, over white noise at NOISE_DBFS.
ROOM_DELAY_S = 0.1
ROOM_COUPLING = 1.0
NOISE_DBFS = -60.0
#: Live mode's silence before it carries on, in seconds (the target: carrying on within 1 s of the stop).
SOAK_SILENCE_S = 0.75
#: How often the soak looks at the engine, in seconds.
POLL_S = 0.01


def soak(minutes: float, load: int, song: Waveform, *, generator: str | None = None, own_process: bool = True,
         say: Callable[[str], None] = print) -> dict:
    """Play and then listen on the running JACK server for ``minutes`` each, with ``load`` busy processes.

    Parameters
    ----------
    minutes : float
        Length of each run.
    load : int
        Busy processes beside Encore, one per core in turn (one per core loads them all).
    song : Waveform
        What is played, and what the performer plays from.
    generator : str, optional
        The generator's name (the default generator when None).
    own_process : bool
        Run the generator in a process of its own (``EngineConfig.generator_process``, the default), or on a
        thread of the engine's process (the baseline before it had one).
    say : callable
        Progress lines.

    Returns
    -------
    dict
        ``{"play": {"minutes", "underruns", "late_chunks"}, "live": {"minutes", "underruns", "late_chunks",
        "continuations", "erle_db", "quiet_performer_heard", "echo_canceller", "continuation_delay_s",
        "fade_delay_s", "quiet_comebacks", "fades_without_performer", "generator_restarts"}, "generator_runs":
        str}``; the delays are ``{"median", "max"}`` in seconds.

    Raises
    ------
    EncoreError
        No JACK server runs, or PortAudio does not see it.
    """
    from .playback.devices import _sounddevice

    if not jack_ports():
        raise EncoreError("the soak needs a running JACK server (one without a sound card: jackd -d dummy -r 48000 &)")
    sd = _sounddevice()
    try:
        devices = jack_device(sd, "input"), jack_device(sd, "output")
    except RuntimeError as e:
        raise EncoreError(f"PortAudio does not see the JACK server ({e}); start JACK before Encore") from e
    cores = sorted(os.sched_getaffinity(0))
    hogs = [busy_loop(cores[i % len(cores)]) for i in range(load)]
    try:
        say(f"soak: play --endless for {minutes:g} min, {load} busy process(es) beside")
        config = EngineConfig(generator_process=own_process)
        played = _play(sd, devices, song, minutes, generator, config)
        say(f"soak: live through a room for {minutes:g} min")
        heard = _live(sd, devices, song, minutes, generator, config)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return {"play": played, "live": heard, "generator_runs": "its own process" if own_process else "a thread"}


def _play(sd, devices: tuple[int, int], song: Waveform, minutes: float, generator: str | None,
          config: EngineConfig) -> dict:
    from .playback import Engine

    with Engine(config, device=devices[1], generator=generator) as eng:
        eng.play(song, endless=True)
        _wait(eng, minutes * 60.0)
        status = eng.status()
    return {"minutes": minutes, "underruns": status.underruns, "late_chunks": status.late_chunks,
            "generator_restarts": status.generator_restarts}


def _wait(eng, seconds: float, poll: Callable[[], None] | None = None) -> None:
    """Let ``eng`` run ``seconds``, calling ``poll`` every :data:`POLL_S`; an engine error ends the soak."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        if poll is not None:
            poll()
        if eng.status().state == "error":
            raise EncoreError(f"the engine stopped: {eng.status().error}")


def _live(sd, devices: tuple[int, int], song: Waveform, minutes: float, generator: str | None,
          config: EngineConfig) -> dict:
    from .playback import Engine

    rate = int(sd.query_devices(devices[1])["default_samplerate"])
    phrase = resample(song.mono(), song.sample_rate, rate).astype(np.float32)
    context = multiprocessing.get_context("spawn")
    # Lock-free (one writer, an aligned word): a lock here could keep the room's callback waiting on the soak.
    frame = context.RawValue("q", -1)  # the room's frame count, for the event times
    events: list[tuple[int, str]] = []
    reductions: list[float] = []
    # The room copies the performer's song from shared memory: pickled into the room's spawn, the song held the
    # GIL of Encore's process for tens of milliseconds while its stream ran (a JACK xrun of Encore's client).
    shared = share_array(phrase)
    try:
        with Engine(config, device=devices[1], generator=generator) as eng:
            status = _live_in_a_room(eng, devices, (shared.name, phrase.shape), rate, minutes, frame, events,
                                     reductions)
    finally:
        shared.close()
        shared.unlink()
    return {"minutes": minutes, "underruns": status.underruns, "late_chunks": status.late_chunks,
            **_judge_live(events, rate, status.continuations), "echo_canceller": status.echo_canceller,
            "generator_restarts": status.generator_restarts,
            "erle_db": float(np.median(reductions)) if reductions else math.nan}


def _live_in_a_room(eng, devices: tuple[int, int], phrase: tuple[str, tuple[int, ...]], rate: int, minutes: float,
                    frame, events: list[tuple[int, str]], reductions: list[float]):
    """Encore listening in the room (:func:`_room`, playing the song shared as ``phrase``: its segment's name and
    shape) for ``minutes``, its events (stamped with the room's ``frame``) and echo reductions collected; returns
    its status at the end."""
    from .playback import LiveConfig

    before = set(jack_ports())
    eng.live(LiveConfig(silence_s=SOAK_SILENCE_S), input_device=devices[0])
    engine_inputs, engine_outputs = new_ports(before, ":in"), new_ports(before, ":out")
    disconnect_capture(engine_inputs)
    before = set(jack_ports())
    # Started after Encore's stream, not before: with the room's client first in the JACK graph, a 45 s soak
    # measured 16.7 dB of echo reduction in the first continuation (25.5 dB this way), and its quiet comeback
    # took 7.5 s to be heard.
    room = multiprocessing.get_context("spawn").Process(
        target=_room, args=(*phrase, rate, devices, frame, minutes * 60.0 + 10.0), daemon=True,
        name="encore-soak-room")
    room.start()
    try:
        room_inputs, room_outputs = new_ports(before, ":in", 1), new_ports(before, ":out", 1)
        for source in engine_outputs[:1]:
            connect(source, room_inputs[0])
        for destination in engine_inputs:
            connect(room_outputs[0], destination)

        def poll() -> None:
            now = frame.value
            events.extend((now, e.kind) for e in (eng.events.get_nowait() for _ in range(eng.events.qsize()))
                          if e.kind in ("continuing", "listening"))
            status = eng.status()
            if status.state == "continuing" and math.isfinite(status.echo_reduction_db):
                reductions.append(status.echo_reduction_db)

        _wait(eng, minutes * 60.0, poll)
        return eng.status()
    finally:
        room.kill()
        room.join()


def _judge_live(events: list[tuple[int, str]], rate: int, continuations: int) -> dict:
    """How long after each stop Encore carried on, and after each comeback it began to fade, from the events
    stamped with the room's frame count; and whether every quiet comeback was heard."""
    cycle, phrase = round((PHRASE_S + REST_S) * rate), round(PHRASE_S * rate)
    last = max((at for at, _ in events), default=0)
    carried, faded, quiet = [], [], []
    for k in range(last // cycle + 1):
        start, stop = k * cycle, k * cycle + phrase
        if stop + round(SOAK_SILENCE_S * rate) + rate <= last:
            after = [at for at, kind in events if kind == "continuing" and stop <= at < start + cycle]
            carried.append((after[0] - stop) / rate if after else math.inf)
        if k and start + phrase <= last:  # a comeback over Encore (the first phrase is heard from silence)
            back = [at for at, kind in events if kind == "listening" and start <= at < start + phrase]
            faded.append((back[0] - start) / rate if back else math.inf)
            if k % 2:
                quiet.append(bool(back))

    def spread(values: list[float]) -> dict:
        return {"median": statistics.median(values), "max": max(values)} if values else \
            {"median": math.nan, "max": math.nan}

    # A fade outside the performer's phrases: Encore took its own echo (or the room's noise) for the performer.
    unprompted = sum(1 for at, kind in events if kind == "listening" and at % cycle >= phrase)
    return {"continuations": continuations, "continuation_delay_s": spread(carried), "fade_delay_s": spread(faded),
            "quiet_comebacks": len(quiet), "quiet_performer_heard": bool(quiet) and all(quiet),
            "fades_without_performer": unprompted}


def _room(phrase_memory: str, phrase_shape: tuple[int, ...], rate: int, devices: tuple[int, int], frame,
          seconds: float) -> None:
    """The room process: the performer (from the song shared as ``phrase_memory``) into Encore's input, and
    Encore's output back into it."""
    import sounddevice as sd

    # Read in place, not with copy_shared_array: a child of multiprocessing shares the soak's resource tracker,
    # and unregistering there would leave the soak's own unlink unmatched (a KeyError in the tracker).
    memory = shared_memory.SharedMemory(name=phrase_memory)
    phrase = np.ndarray(phrase_shape, np.float32, buffer=memory.buf).copy()
    memory.close()
    cycle, length = round((PHRASE_S + REST_S) * rate), round(PHRASE_S * rate)
    delay = np.zeros(round(ROOM_DELAY_S * rate), np.float32)
    quiet = np.float32(10 ** (-QUIET_DB / 20))
    rng = np.random.default_rng(0)
    state = {"frame": 0, "delayed": delay}

    def callback(indata, outdata, frames, time_info, status):
        at = state["frame"]
        positions = at + np.arange(frames)
        k, into = positions // cycle, positions % cycle
        source = (k * length + into) % phrase.shape[0]  # each phrase goes on through the song
        performer = np.where(into < length, phrase[source], 0.0).astype(np.float32)
        performer *= np.where(k % 2 == 1, quiet, np.float32(1.0))
        delayed = np.concatenate([state["delayed"], indata[:, 0]])
        outdata[:, 0] = (performer + ROOM_COUPLING * delayed[:frames]
                         + rng.standard_normal(frames).astype(np.float32) * np.float32(10 ** (NOISE_DBFS / 20)))
        state["delayed"] = delayed[frames:]
        state["frame"] = at + frames
        frame.value = at + frames

    with sd.Stream(samplerate=rate, channels=1, dtype="float32", device=devices, callback=callback):
        time.sleep(seconds)
