"""``engine bench``: how fast and how big generation is, measured side by side in one run.

Rows, each the median of N timed runs of one 10 s chunk after two warm-up runs:
- ONNX Runtime on the model file, 1 and 2 intra-op threads (Keras on the same weights, beside ONNX Runtime, is
  ``training bench --runtimes``: the engine never imports training);
Then a fresh engine-only process (no TensorFlow) measures its peak resident memory and its time from start to the
first generated chunk of a 25 s song. Last, each generator (resynth, jukebox, seed) continues the demo song (or
``--song``) on one core: its first chunk (the resynth analysis of the whole song included; median of N fresh
generators), its first chunk when the song was analysed while it played, as the engine does
(:meth:`~engine.extend.Extender.anticipate`; the two alternate, fresh generators each time), and the median of the
next chunks. And the resynth work that grows with the song: the analysis, the bars and phrases and the first
jump of a 5-minute song (``--song`` or the demo song, repeated to 5 minutes), on one core.

``engine bench --echo`` measures live mode's echo canceller (:mod:`engine.aec`) instead: on simulated rooms
(:func:`~engine.aec.simulated_room`), how well the echo's delay is found, how far the echo is taken down after
it has converged, how far above what is left a performer 6 dB under the echo stands, and its cost per second of
input on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .continuator import Continuator, default_model_path
from .cores import busy_loop, pinned
from .ring import RingBuffer
from .shipped import DEMO_SONG

WARMUP_RUNS = 2

#: Run in a fresh interpreter: everything a user waits for before the first chunk is ready.
_FIRST_CHUNK_PROBE = """
import json, sys, time
started = time.perf_counter()
import numpy as np
import engine
song = engine.Waveform(0.3 * np.sin(2 * np.pi * 220 * np.arange(25 * 44100) / 44100), 44100)
extender = engine.Extender(sys.argv[1])
loaded = time.perf_counter()
extender.start(song)
extender.next_block()
done = time.perf_counter()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (here, one with TensorFlow).
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"load_s": loaded - started, "first_chunk_s": done - started, "peak_rss_mib": peak_kib / 1024,
                  "tensorflow_loaded": "tensorflow" in sys.modules}))
"""


def _run_probe(code: str, *argv: str) -> dict | None:
    """Run ``code`` in a fresh interpreter; its last stdout line is a JSON object of figures."""
    probe = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if probe.returncode != 0:
        print(f"fresh-process probe failed: {probe.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(probe.stdout.strip().splitlines()[-1])


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run()`` over ``repeats`` timed calls, after warm-up calls."""
    for _ in range(WARMUP_RUNS):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _song_path(args: argparse.Namespace) -> Path:
    """The song a bench plays or continues: ``--song``, else the demo song."""
    return Path(args.song) if args.song else DEMO_SONG


def run_bench(args: argparse.Namespace) -> int:
    from .audio import load_audio

    song_path = _song_path(args)
    song = load_audio(song_path)  # a bad song is one line now, not after minutes of rows
    path = Path(args.model) if args.model else default_model_path()
    model = Continuator(path)
    contract = model.contract
    rng = np.random.default_rng(0)
    context = (0.1 * rng.standard_normal(contract.context_samples)).astype(np.float32)
    rows: list[tuple[str, float]] = []
    print(f"engine bench: {path.name}, {contract.horizon_s:g} s per chunk, median of {args.repeats} "
          f"after {WARMUP_RUNS} warm-up runs", flush=True)

    for threads in (1, 2):
        runner = Continuator(path, threads=threads)
        rows.append((f"onnxruntime {path.name}, {threads} thread{'s' * (threads > 1)}",
                     median_seconds(lambda r=runner: r.predict(context), args.repeats)))  # type: ignore[misc]

    print(f"{'runtime':<58} {'ms/chunk':>9} {'RTF':>8}")
    for name, seconds in rows:
        print(f"{name:<58} {seconds * 1000:>9.1f} {seconds / contract.horizon_s:>8.4f}")
    print("Keras on the same architecture and weights, side by side with these: encore train bench --runtimes")

    fresh = _run_probe(_FIRST_CHUNK_PROBE, str(path))
    if fresh is None:
        return 1
    print(f"fresh engine process (no TensorFlow loaded: {not fresh['tensorflow_loaded']}): "
          f"import + model load {fresh['load_s']:.2f} s, first chunk ready {fresh['first_chunk_s']:.2f} s "
          f"after start, peak RSS {fresh['peak_rss_mib']:.0f} MiB")
    _print_generator_rows(args.repeats, song_path.name, song)
    _print_long_song_row(args.repeats, song_path.name, song)
    _print_live_memory_row(args.repeats, song_path.name, song)
    return 0


def run_soak_bench(args: argparse.Namespace) -> int:
    """``engine bench --soak``: play and live on a running JACK server (:mod:`engine.soak`), printed and, with
    ``--json``, written."""
    from .audio import load_audio
    from .soak import soak

    if not args.minutes > 0 or args.load < 0:
        from .errors import ConfigError

        raise ConfigError(f"--minutes must be positive and --load 0 or more, got {args.minutes} and {args.load}")
    song_path = _song_path(args)
    figures = soak(args.minutes, args.load, load_audio(song_path), generator=args.generator,
                   own_process=not args.generator_thread, say=lambda line: print(line, flush=True))
    play, live = figures["play"], figures["live"]
    print(f"the generator ran in {figures['generator_runs']}")
    print(f"play --endless of {song_path.name}, {args.minutes:g} min, {args.load} busy: {play['underruns']} "
          f"underruns, {play['late_chunks']} late chunks")
    print(f"live through a room, {args.minutes:g} min: {live['underruns']} underruns, {live['late_chunks']} late "
          f"chunks, {live['continuations']} continuations, carried on {live['continuation_delay_s']['median']:.2f} s "
          f"after the stop (at most {live['continuation_delay_s']['max']:.2f} s), fading "
          f"{live['fade_delay_s']['median']:.2f} s after the comeback (at most {live['fade_delay_s']['max']:.2f} s), "
          f"echo {live['erle_db']:.1f} dB down ({live['echo_canceller']}), quiet performer heard: "
          f"{live['quiet_performer_heard']} ({live['quiet_comebacks']} quiet comebacks), "
          f"{live['fades_without_performer']} fades while the performer rested")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


#: ``engine bench --echo``: rooms (delay in s, echo level against the output in dB), the rate and the seconds.
ECHO_ROOMS = ((0.02, 0.0), (0.1, 0.0), (0.25, 0.0), (0.5, 0.0), (0.25, 6.0), (0.5, 6.0))
ECHO_RATE = 48000
ECHO_SECONDS = 40.0


def run_echo_bench(args: argparse.Namespace) -> int:
    """``engine bench --echo``: the echo canceller on simulated rooms, playing ``--song`` (the demo song)."""
    import scipy.signal

    from . import aec
    from .audio import load_audio, resample

    if aec.why_unavailable():
        print(f"engine bench --echo: no echo canceller to measure: {aec.why_unavailable()}")
        return 1
    song_path = _song_path(args)
    song = load_audio(song_path)
    rate, frames = ECHO_RATE, round(ECHO_SECONDS * ECHO_RATE)
    played = resample(song.mono(), song.sample_rate, rate)
    played = np.resize(played, frames).astype(np.float32)  # repeated to the length when shorter
    converged = slice(frames // 2, frames - rate)  # after 20 s; the last frames pass through unprocessed
    high = scipy.signal.butter(4, 200, "highpass", fs=rate, output="sos")
    print(f"engine bench --echo: SpeexDSP's echo canceller, {song_path.name} played into simulated rooms "
          f"(120 ms of reverberation, a 5 kHz low-pass, noise at -60 dBFS), {ECHO_SECONDS:g} s at {rate} Hz; "
          f"echo return loss enhancement over the last 20 s")
    print(f"{'delay':>6} {'echo':>6} {'found':>7} {'ERLE':>7} {'>200 Hz':>8} {'filter alone':>13} {'performer':>10}")
    for delay_s, gain_db in ECHO_ROOMS:
        heard = aec.simulated_room(played, rate, delay_s=delay_s, gain_db=gain_db)
        found = aec.estimate_delay(played[: 3 * rate], heard[: 3 * rate], rate)
        if found is None:
            print(f"{delay_s * 1000:>4.0f} ms {gain_db:>+4.0f} dB   no delay found")
            continue
        cancelled, suppressed = aec.cancel_echo(heard, played, rate, found)
        erle = aec.echo_return_loss_enhancement(heard[converged], suppressed[converged])
        above = aec.echo_return_loss_enhancement(scipy.signal.sosfilt(high, heard)[converged],
                                                 scipy.signal.sosfilt(high, suppressed)[converged])
        alone = aec.echo_return_loss_enhancement(scipy.signal.sosfilt(high, heard)[converged],
                                                 scipy.signal.sosfilt(high, cancelled)[converged])
        # a performer 6 dB under the echo (the song from its middle) joins at 30 s: how far above the echo's
        # remains the suppressed input stands then
        performer = np.roll(played, frames // 2) * np.float32(10 ** ((gain_db - 6.0) / 20))
        performer[: 30 * rate] = 0
        _, with_performer = aec.cancel_echo(heard + performer, played, rate, found)
        stands = 10 * np.log10(np.mean(np.square(with_performer[31 * rate:frames - rate], dtype=np.float64))
                               / np.mean(np.square(with_performer[25 * rate:30 * rate], dtype=np.float64)))
        print(f"{delay_s * 1000:>4.0f} ms {gain_db:>+4.0f} dB {found * 1000:>5.0f} ms {erle:>5.1f} dB "
              f"{above:>6.1f} dB {alone:>11.1f} dB {stands:>+8.1f} dB")
    with pinned({min(os.sched_getaffinity(0))}):
        for channels in (1, 2):
            live = aec.LiveCanceller(rate, channels)
            live.use_delay(0.1)  # cancelling, as once the delay is known
            heard_ring, played_ring = RingBuffer(frames, channels), RingBuffer(4 * rate)
            heard = aec.simulated_room(played, rate, delay_s=0.1)
            started = time.perf_counter()
            for at in range(0, 10 * rate, 1024):  # the callback's blocks
                block = heard[at:at + 1024]
                heard_ring.write(block if channels == 1 else np.repeat(block[:, None], channels, axis=1))
                played_ring.write(played[at:at + 1024])
                live.advance(heard_ring, played_ring)
            seconds = (time.perf_counter() - started) / 10.0
            print(f"live canceller, {channels} channel{'s' * (channels > 1)} at {rate} Hz, one core: "
                  f"{seconds:.4f} s per second of input")
    return 0


#: The length of song whose analysis and phrase search ``engine bench`` times (issue 21: within 1 s).
LONG_SONG_S = 300.0
#: The live memory whose carry-on ``engine bench`` times, and what it grew (and lost) since the performer's last
#: stop, in seconds (a performer's 8 s phrase and the quiet after it, as in ``bench --soak``).
LIVE_MEMORY_S = 240.0
LIVE_STEP_S = 20.0


def _print_long_song_row(repeats: int, song_name: str, song) -> None:
    """Analysis, structure and the first jump of a :data:`LONG_SONG_S` song on one core: what the first
    continuation of a whole song costs when it was not analysed while it played."""
    from .analysis import ANALYSIS_RATE, analyse, warm_up
    from .audio import Waveform, to_model_input
    from .config import ResynthConfig
    from .resynth import SimilarityScorer
    from .sequencer import Sequencer
    from .structure import find_structure

    frames = round(LONG_SONG_S * song.sample_rate)
    long = Waveform(np.resize(song.samples, (frames, song.channels)), song.sample_rate)
    mono = to_model_input(long, ANALYSIS_RATE)
    warm_up()
    timings: dict[str, list[float]] = {"analysis": [], "bars and phrases": [], "first jump": []}
    with pinned({min(os.sched_getaffinity(0))}):
        for _ in range(repeats):
            started = time.perf_counter()
            analysis = analyse(mono)
            analysed = time.perf_counter()
            structure = find_structure(analysis)
            found = time.perf_counter()
            Sequencer(analysis, mono, SimilarityScorer(), ResynthConfig(), np.arange(analysis.segments - 1),
                      structure=structure).next_segment()
            done = time.perf_counter()
            for key, seconds in zip(timings, (analysed - started, found - analysed, done - found), strict=True):
                timings[key].append(seconds)
    parts = ", ".join(f"{key} {statistics.median(values) * 1000:.0f} ms" for key, values in timings.items())
    total = statistics.median([sum(values) for values in zip(*timings.values(), strict=True)])
    print(f"a {LONG_SONG_S / 60:.0f}-minute song ({song_name} repeated) on one core: {parts}; "
          f"{total:.2f} s in all ({structure.describe()})")


def _print_live_memory_row(repeats: int, song_name: str, song) -> None:
    """Live mode's carry-on on one core, from ``start`` to the first block of a :data:`LIVE_MEMORY_S` memory at
    48 kHz stereo: analysed whole; grown by :data:`LIVE_STEP_S` since the memory of the performer's last stop
    (:mod:`engine.growing`); and past the input ring, having lost as much at its start."""
    from .analysis import warm_up
    from .audio import Waveform, resample
    from .resynth import Resynthesizer

    rate = 48000
    mono = resample(song.mono(), song.sample_rate, rate)
    frames, step = round(LIVE_MEMORY_S * rate), round(LIVE_STEP_S * rate)
    material = np.resize(np.stack([mono, 0.9 * mono], axis=1), (frames + step, 2)).astype(np.float32)
    cases = {"analysed whole": None, "grown": (material[:frames - step], material[:frames]),
             "lost its start too": (material[:frames], material[step:])}
    warm_up()
    timings: dict[str, list[float]] = {name: [] for name in cases}
    with pinned({min(os.sched_getaffinity(0))}):
        for _ in range(repeats):
            for name, memories in cases.items():
                generator = Resynthesizer("jukebox")
                if memories is not None:
                    generator.start(Waveform(memories[0], rate))
                    generator.next_block()
                memory = Waveform(material[:frames] if memories is None else memories[1], rate)
                started = time.perf_counter()
                generator.start(memory)
                generator.next_block()
                timings[name].append(time.perf_counter() - started)
    whole = statistics.median(timings["analysed whole"])
    parts = ", ".join(f"{name} {statistics.median(values) * 1000:.0f} ms"
                      + ("" if values is timings["analysed whole"] else
                         f" ({whole / statistics.median(values):.1f}x)") for name, values in timings.items())
    print(f"live carry-on on one core, a {LIVE_MEMORY_S:.0f} s memory at 48 kHz stereo ({song_name} repeated), "
          f"start to first block: {parts}")


def _print_generator_rows(repeats: int, song_name: str, song) -> None:
    """Each generator on one core, continuing ``song`` (a Waveform called ``song_name``): the first chunk with the
    song's analysis in it, the first chunk after the song was analysed ahead (as while it plays), and the median
    of the next chunks."""
    from .analysis import warm_up
    from .generators import GENERATORS, open_generator

    warm_up()  # librosa's one-time import and JIT load is a process's, not a chunk's (engines do it in background)
    with pinned({min(os.sched_getaffinity(0))}):  # every thread, numpy's and scipy's BLAS threads too
        print(f"generators on one core, continuing {song_name} ({song.seconds:.0f} s): time per 10 s chunk")
        header = (f"{'first chunk, analysis incl.':>30} {'RTF':>8} {'first, analysed while playing':>31} "
                  f"{'RTF':>8} {'median next chunks':>20} {'RTF':>8}")
        print(f"{'generator':<10} {header}")
        for name in GENERATORS:
            firsts: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(repeats):  # each a fresh generator: the memory is analysed again every time
                for ahead in (False, True):
                    generator = open_generator(generator=name, threads=1)
                    generator.start(song)
                    thread = generator.anticipate() if ahead else None
                    if thread is not None:
                        thread.join()
                    started = time.perf_counter()
                    generator.next_block()
                    firsts[ahead].append(time.perf_counter() - started)
            first, anticipated = (statistics.median(firsts[ahead]) for ahead in (False, True))
            following = median_seconds(generator.next_block, repeats)
            horizon = generator.model.contract.horizon_s
            print(f"{name:<10} {first * 1000:>27.1f} ms {first / horizon:>8.4f} {anticipated * 1000:>28.1f} ms "
                  f"{anticipated / horizon:>8.4f} {following * 1000:>17.1f} ms {following / horizon:>8.4f}")


#: A fresh process measures what a user waits for: from play() to the first sound, and to the first chunk.
_PLAY_PROBE = """
import json, os, sys, time
started = time.perf_counter()
import engine
from engine.playback import Engine
song = engine.load_audio(sys.argv[2])
imported = time.perf_counter()
eng = Engine(model=None if sys.argv[1] == "-" else sys.argv[1], generator=None if sys.argv[3] == "-" else sys.argv[3],
             clock="offline")
loaded = time.perf_counter()
eng.play(song, endless=True)
block = eng.render(eng.config.blocksize / eng.sample_rate)
first_sound = time.perf_counter()
eng.render(song.seconds + 1.0)  # through the song's end: the first continuation chunk must exist by then
first_chunk = eng.extender.stats.first_chunk_seconds
load_wait = eng.extender.stats.load_wait_seconds
eng.stop()
print(json.dumps({"imports_s": imported - started, "load_s": loaded - imported, "play_to_sound_s": first_sound - loaded,
                  "first_chunk_s": first_chunk, "load_wait_s": load_wait, "song_s": song.seconds,
                  "sounding": bool(abs(block).max() > 0)}))
"""


def run_realtime_bench(args: argparse.Namespace) -> int:
    """Real-time figures on one core, with the other core loaded by a busy loop."""
    from .analysis import warm_up
    from .audio import load_audio
    from .playback import Engine, EngineConfig

    song_path = _song_path(args)
    warm_up()  # loads the thread pools that pin_process then sizes to one core
    cores = sorted(os.sched_getaffinity(0))
    own = {cores[0]}
    hog = busy_loop(cores[1]) if len(cores) > 1 else None
    try:
        with pinned(own):
            probe_code = f"import os\nos.sched_setaffinity(0, {own})\n" + _PLAY_PROBE
            first = _run_probe(probe_code, args.model or "-", str(song_path), args.generator or "-")
            if first is None:
                return 1

            config = EngineConfig()
            hours = args.hours
            with Engine(config, model=args.model, generator=args.generator, clock="offline") as eng:
                eng.play(load_audio(song_path), endless=True)
                for _ in range(round(hours * 60)):
                    eng.render(60.0)
                chunk_seconds = np.array(eng.extender.stats.chunk_seconds)
                status = eng.status()
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()  # reaped before we return: no busy loop outlives the bench, not even for a moment

    # New audio a chunk adds: a seed chunk's last crossfade is held back for the next one; resynth adds whole chunks.
    contract_horizon = eng.extender.model.contract.horizon_s - (
        eng.extender.config.crossfade_s if eng.extender.generator == "seed" else 0.0)
    # The generator starts a chunk when the lead falls below lead_s and the device keeps playing meanwhile,
    # so the lead left when the chunk lands is lead_s minus its compute time.
    lead = config.lead_s - chunk_seconds
    late = int(np.sum(chunk_seconds > config.lead_s - config.guard_s))
    played_h = status.playhead_s / 3600
    print(f"engine bench --realtime: {eng.extender.generator} generator, model {eng.extender.model.name}, "
          f"{song_path.name}, engine on core {cores[0]}"
          f"{f', busy loop on core {cores[1]}' if hog is not None else ' (one core: no busy loop)'}")
    print(f"{'figure':<44} {'value':>12}")
    rows = [
        ("chunks generated (offline clock)", f"{status.chunks}"),
        ("audio played (offline clock)", f"{played_h:.2f} h"),
        ("audio per chunk", f"{contract_horizon:.2f} s"),
        ("real-time factor per chunk, median", f"{np.median(chunk_seconds) / contract_horizon:.4f}"),
        ("real-time factor per chunk, max", f"{np.max(chunk_seconds) / contract_horizon:.4f}"),
        ("lead when a chunk lands, min", f"{lead.min():.3f} s"),
        ("lead when a chunk lands, median", f"{np.median(lead):.3f} s"),
        ("late chunks per hour", f"{late / played_h:.1f}"),
        ("underruns per hour (none on an offline clock)", f"{status.underruns / played_h:.1f}"),
        ("starved seconds", f"{status.starved_s:.3f}"),
        ("fresh process: imports", f"{first['imports_s']:.2f} s"),
        ("fresh process: model load", f"{first['load_s']:.2f} s"),
        ("play() to first sound", f"{first['play_to_sound_s']:.3f} s"),
        ("first continuation chunk: compute time", f"{first['first_chunk_s']:.3f} s"),
        ("  and before it, librosa's one-time load", f"{first['load_wait_s']:.3f} s"),
        ("  (it starts 10 s before the song's end of", f"{first['song_s']:.1f} s)"),
    ]
    for name, value in rows:
        print(f"{name:<44} {value:>12}")
    return 0
