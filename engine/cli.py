"""The engine's commands (``encore extend``, ``python -m engine extend`` ...): extend songs, inspect models,
measure speed.

Every user mistake ends in one line on stderr and a non-zero exit; heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from .errors import ConfigError, EncoreError, RenderInterrupted
from .generators import DEFAULT_GENERATOR, GENERATORS, REGISTRY

EXIT_USER_ERROR = 2

_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """Seconds from ``600``, ``90s``, ``10m``, ``1h30m``, ``1:30`` or ``1:00:00``."""
    text = text.strip().lower()
    if ":" in text:
        parts = text.split(":")
        if len(parts) <= 3 and all(re.fullmatch(r"\d+(\.\d+)?", p) for p in parts):
            return float(sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts))))
    else:
        match = _DURATION.match(text)
        if text and match and any(match.groupdict().values()):
            h, m, s = (float(match[k] or 0) for k in "hms")
            return h * 3600 + m * 60 + s
    raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 600, 90s, 10m, 1h30m, 1:30)")


class ProgressBar:
    """A progress callback for ``write``: a tqdm bar on stderr of seconds rendered, drawn only on a terminal.

    Called as ``bar(done_s, total_s)``; ``close()`` ends its line.
    """

    def __init__(self, label: str, enabled: bool | None = None):
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None  # a tqdm bar, made on the first call

    def __call__(self, done: float, total: float) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=round(total, 1), desc=self.label, unit="s", file=sys.stderr, dynamic_ncols=True,
                             bar_format="{desc} {bar} {n:.0f}/{total:.0f} s of audio [{elapsed} elapsed, "
                                        "{remaining} left]")
        self._bar.update(round(done, 1) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


# --- commands -------------------------------------------------------------------------------------------

def _generator_options(args: argparse.Namespace) -> dict:
    """The generator named on the command line, as keyword arguments of Engine and open_generator."""
    from .config import ResynthConfig

    return {"model": args.model, "generator": args.generator, "resynth": ResynthConfig(variety=args.variety)}


def _song_or_demo(args: argparse.Namespace) -> None:
    """Set ``args.song`` to the shipped demo song for ``--demo``; a command needs one or the other."""
    if args.demo and args.song:
        raise ConfigError(f"{args.song} and --demo: give one song")
    if args.demo:
        from .shipped import DEMO_SONG

        if not DEMO_SONG.is_file():
            raise ConfigError(f"the demo song is not installed ({DEMO_SONG}): reinstall Encore")
        args.song = str(DEMO_SONG)
    elif not args.song:
        raise ConfigError("no song: give SONG, or --demo for the shipped demo song")


def cmd_extend(args: argparse.Namespace) -> int:
    from .audio import check_not_the_source, load_audio
    from .config import ExtendConfig
    from .generators import open_generator

    output = Path(args.output)
    if output.suffix.lower() not in (".wav", ".flac"):
        raise ConfigError(f"{output}: output must end in .wav or .flac")
    if not output.parent.is_dir():
        raise ConfigError(f"{output}: cannot write: folder {output.parent} does not exist")
    _song_or_demo(args)
    check_not_the_source(output, args.song)
    song = load_audio(args.song)
    extender = open_generator(config=ExtendConfig(crossfade_s=args.crossfade), threads=args.threads,
                              **_generator_options(args))
    bar = ProgressBar(f"extending {Path(args.song).name}", enabled=None if not args.quiet else False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes are printed once, below, on their own lines
        try:
            written = extender.write(song, output, args.duration, only_extension=args.only_extension, progress=bar,
                                     ending=not args.no_ending)
        finally:
            bar.close()
    stats = extender.stats
    for note in stats.notes:
        print(f"note: {note}", file=sys.stderr)
    if extender.segmentation:
        print(f"segmentation: {extender.segmentation}", file=sys.stderr)
    if stats.load_wait_seconds >= 0.05:
        print(f"note: the first chunk waited {stats.load_wait_seconds:.1f} s for librosa's one-time load "
              "(not in the real-time factor)", file=sys.stderr)
    # What follows the song's end (the song is written up to its last crossfade, and the continuation from it).
    continued = written if args.only_extension else written - song.seconds
    if not args.no_ending and extender.ends_on_phrases:
        print(f"note: the continuation ends on the song's own ending after {continued:.1f} s, at the phrase line "
              f"nearest {args.duration:.1f} s (--no-ending stops at exactly the duration)", file=sys.stderr)
    print(f"{extender.generator} generator, model {extender.model.name}, generated {continued:.1f} s "
          f"in {stats.chunks} chunks, real-time factor {stats.real_time_factor:.4f}, "
          f"wrote {output} ({written:.1f} s, {song.sample_rate} Hz, {song.channels} ch)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .audio import is_audio_file
    from .generators import load_model
    from .resynth import SimilarityScorer

    if args.model and not args.song and Path(args.model).is_file() and is_audio_file(args.model):
        print(f"{args.model} is a song, not a model: the default generator, and how the song is segmented "
              "(encore info --song SONG says the same)")
        args.song, args.model = args.model, None
    model = load_model(args.model, generator=args.generator)
    if isinstance(model, SimilarityScorer):
        print("jukebox (built in, no model file): jumps between the song's own bars by how alike they are; "
              "nothing learned")
    else:
        print(f"{getattr(model, 'path', model.name)}")
        for name, value in model.contract.describe():
            print(f"  {name:<13} {value}")
    session = getattr(model, "session", None)
    if session is not None:
        extra = {k: v for k, v in session.get_modelmeta().custom_metadata_map.items()
                 if k.startswith("encore.") and k[7:] not in {f for f in model.contract.__dataclass_fields__}}
        for key, value in sorted(extra.items()):
            print(f"  {key[7:]:<13} {value}")
        print(f"  {'loaded in':<13} {model.load_seconds:.2f} s")
    if args.song:
        from .analysis import ANALYSIS_RATE, analyse, warm_up
        from .audio import load_audio, to_model_input
        from .structure import find_structure

        song = load_audio(args.song)
        # librosa's one-time load (seconds in a fresh process) is not the analysis: time the two apart, or the
        # real-time factor printed would be that of starting Python.
        started = time.perf_counter()
        warm_up()
        loaded = time.perf_counter()
        analysis = analyse(to_model_input(song, ANALYSIS_RATE))
        structure = find_structure(analysis)
        analysed = time.perf_counter() - loaded
        print(f"{args.song} ({song.seconds:.1f} s)")
        print(f"  {'segmentation':<13} {analysis.describe()}")
        print(f"  {'structure':<13} {structure.describe()}, bars of {structure.bar_seconds:.2f} s")
        print(f"  {'analysed in':<13} {analysed:.2f} s (real-time factor {analysed / song.seconds:.4f}), "
              f"after librosa's one-time load of {loaded - started:.2f} s")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from .playback import list_devices

    for line in list_devices():
        print(line)
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    from .audio import load_audio
    from .playback import Engine, EngineConfig

    _song_or_demo(args)
    song = load_audio(args.song)
    config = EngineConfig(lead_s=args.lead)
    show = sys.stderr.isatty()
    with warnings.catch_warnings(), Engine(config, device=device_argument(args.output),
                                           **_generator_options(args)) as eng:
        warnings.simplefilter("ignore")
        try:
            eng.play(song, endless=args.endless)
            if args.endless:
                def enter_key():
                    for _ in sys.stdin:  # Enter: end the song on its own ending
                        eng.end_song()
                        print("\nending: the song's own ending follows at the next phrase line", file=sys.stderr)

                threading.Thread(target=enter_key, name="encore-enter-key", daemon=True).start()
                if sys.stdin.isatty():
                    print("endless: press Enter to end the song on its own ending, Ctrl-C to stop now",
                          file=sys.stderr)
            while True:
                status = eng.status()
                if status.state == "error":
                    break
                if status.state == "finished" and status.ahead_s == 0:
                    time.sleep(0.3)  # let the device play out its last buffer
                    break
                if show:
                    sys.stderr.write(f"\r{_clock(status.playhead_s)} played, {status.ahead_s:4.1f} s ahead, "
                                     f"{status.chunks} chunks, {status.late_chunks} late, "
                                     f"{status.underruns} underruns ")
                time.sleep(0.25)
        except KeyboardInterrupt:
            pass
        finally:
            if show:
                sys.stderr.write("\n")
        eng.stop()
        _raise_first_error(eng)
        status = eng.status()
    restarts = f", the generator's process restarted {status.generator_restarts} times" \
        if status.generator_restarts else ""
    print(f"played {status.playhead_s / 60:.1f} min ({_clock(status.playhead_s)}) of {Path(args.song).name}, "
          f"{status.chunks} chunks generated, {status.late_chunks} late chunks, {status.underruns} underruns"
          f"{restarts}")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from .playback import Engine, EngineConfig, LiveConfig

    live = LiveConfig(silence_s=args.silence, threshold_db=args.threshold, monitor=args.monitor,
                      cancel_echo=not args.no_echo_canceller)
    show = sys.stderr.isatty()
    with Engine(EngineConfig(lead_s=args.lead), device=device_argument(args.output),
                **_generator_options(args)) as eng:
        eng.live(live, input_device=device_argument(args.input))

        def enter_key():
            for _ in sys.stdin:  # every Enter: carry on now
                eng.carry_on()

        threading.Thread(target=enter_key, name="encore-enter-key", daemon=True).start()
        print("listening: play, then stop (or press Enter) and Encore carries on; Ctrl-C quits", file=sys.stderr)
        print(f"echo: {eng.echo_handling()}", file=sys.stderr)
        try:
            while eng.status().state != "error":
                for event in _drain(eng.events):
                    if event.kind == "error":
                        raise EncoreError(event.detail)
                    if event.kind in ("continuing", "listening", "echo", "restarted"):
                        print(f"{_clock(event.playhead_s)} {event.kind}: {event.detail}", file=sys.stderr)
                if show:
                    status = eng.status()
                    reduction = "" if math.isnan(status.echo_reduction_db) else \
                        f"echo -{status.echo_reduction_db:.0f} dB  "
                    sys.stderr.write(f"\rinput {eng.input_level_db():6.1f} dBFS  {reduction}{status.state:<10} "
                                     f"{status.chunks} chunks, {status.underruns} underruns ")
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        eng.stop()
        _raise_first_error(eng)
        status = eng.status()
    if show:
        sys.stderr.write("\n")
    print(f"live: carried on {status.continuations} times, {status.chunks} chunks generated, {status.late_chunks} late "
          f"chunks, {status.underruns} underruns")
    return 0


def device_argument(text: str | None):
    """A device named on the command line: its number, or a part of its name (sounddevice's notation)."""
    return int(text) if text and text.isdigit() else text


def _raise_first_error(eng) -> None:
    """Turn the first error the engine's threads reported into the command's one-line error."""
    errors = [event.detail for event in _drain(eng.events) if event.kind == "error"]
    if errors:
        raise EncoreError(errors[0])


def _drain(events) -> list:
    items = []
    while not events.empty():
        items.append(events.get_nowait())
    return items


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench, run_echo_bench, run_realtime_bench, run_soak_bench

    if args.echo:
        return run_echo_bench(args)
    if args.soak:
        return run_soak_bench(args)
    return run_realtime_bench(args) if args.realtime else run_bench(args)


# --- parser ---------------------------------------------------------------------------------------------

def add_generator_arguments(p: argparse.ArgumentParser) -> None:
    """--generator, --model and --variety, the same on every command that generates."""
    p.add_argument("--generator", choices=GENERATORS,
                   help="; ".join(f"{kind.name}: {kind.summary}" for kind in REGISTRY.values()))
    p.add_argument("--model", help="ONNX model with Encore's contract; it says which generator it drives "
                                   "(default: the generator's shipped model, or $ENCORE_RESYNTH_MODEL / $ENCORE_MODEL)")
    p.add_argument("--variety", type=float, default=0.5, metavar="0..1",
                   help="resynth and jukebox: 0 stays close to the song's own order, 1 wanders (default 0.5)")


def build_parser(prog: str = "engine", other_commands: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The engine's commands; ``other_commands`` (name: help) are listed in ``--help`` for a front door to dispatch."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Encore's engine: songs that never end. Continues a song with a generator model, chunk "
                    "after chunk, joined without a seam.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "extend", help="write a song followed by its endless continuation",
        description="Write SONG followed by DURATION of continuation (or the continuation alone), 10 s at a time, "
                    "joins crossfaded. The jukebox generator (default) plays the song's own material in runs of whole "
                    "bars, jumping at phrase boundaries to where the music is most alike (resynth also weighs each "
                    "jump by a learned scorer), rendered from the original audio at its rate and channels; by "
                    "default it ends on the song's own ending (--no-ending: stop at DURATION). The seed "
                    "generator predicts waveform from the last 20 s; a song shorter than that is looped to fill "
                    "it, with a note. Songs under 0.5 s and silent songs are refused. Any rate and channel count "
                    "in; the output keeps them.",
        epilog="example: encore extend song.mp3 -o endless.flac --duration 10m",
    )
    p.add_argument("song", nargs="?", help="audio file to continue: wav, flac, ogg or mp3")
    p.add_argument("--demo", action="store_true", help="continue the shipped demo song (Maple Leaf Rag, 45 s)")
    p.add_argument("-o", "--output", required=True, help="file to write, .wav or .flac (16-bit)")
    p.add_argument("--duration", type=parse_duration, default=parse_duration("1m"),
                   help="length of the continuation: 600, 90s, 10m, 1h30m or 1:30 (default 1m)")
    add_generator_arguments(p)
    p.add_argument("--only-extension", action="store_true", help="write only what follows the song's end")
    p.add_argument("--no-ending", action="store_true",
                   help="stop at exactly --duration, mid-music; by default the continuation ends on the song's own "
                        "ending (its last phrases) at the phrase line nearest the duration (the seed model, which "
                        "knows no phrases, fades out over its last 3 s)")
    p.add_argument("--crossfade", type=float, default=0.05, metavar="SECONDS",
                   help="equal-power crossfade at the song's end, and between seed chunks (default 0.05)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1: fastest here)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extend)

    p = commands.add_parser("info", help="print a model's contract, and how a song is segmented",
                            description="Print the contract an ONNX model declares (rate, context, horizon, "
                                        "layout, what it was trained on), after checking it against the graph. "
                                        "With --song, also how resynth segments that song: beats (tempo, "
                                        "meter), or onsets or a fixed grid when it has no steady beat.")
    p.add_argument("model", nargs="?", help="ONNX file (default: the generator's shipped model)")
    p.add_argument("--generator", choices=GENERATORS, help=f"whose shipped model (default {DEFAULT_GENERATOR})")
    p.add_argument("--song", help="an audio file to segment")
    p.set_defaults(func=cmd_info)

    p = commands.add_parser(
        "play", help="play a song through the sound card, and with --endless carry on after it",
        description="Play SONG on the output device. With --endless, when the song ends its continuation "
                    "follows without a gap, generated ahead of the playhead, until Enter, which plays on to the "
                    "song's own ending from the next phrase line after what is generated ahead and finishes "
                    "there, or Ctrl-C, which stops at once. Either way it prints minutes played, chunks "
                    "generated, late chunks and underruns. The stream runs at the device's rate; the song is "
                    "converted once, at the start.",
        epilog="example: encore play song.ogg --endless",
    )
    p.add_argument("song", nargs="?", help="audio file: wav, flac, ogg or mp3")
    p.add_argument("--demo", action="store_true", help="play the shipped demo song (Maple Leaf Rag, 45 s)")
    p.add_argument("--endless", action="store_true",
                   help="carry on after the song ends, until Enter (end on the song's own ending) or Ctrl-C")
    add_generator_arguments(p)
    p.add_argument("--output", help="output device, by number or by a part of its name (see encore devices)")
    p.add_argument("--lead", type=float, default=10.0, metavar="SECONDS",
                   help="audio kept generated ahead of the playhead (default 10)")
    p.set_defaults(func=cmd_play)

    p = commands.add_parser(
        "live", help="listen, and carry on when the performer stops",
        description="Listen to the input; what was heard is kept (5 min for jukebox and resynth, 25 s for seed). "
                    "When the performer stops (input below --threshold for --silence seconds, after at least 2 s "
                    "of playing) or Enter is pressed, Encore carries on from what it heard (jukebox and resynth: "
                    "re-sequencing the heard material itself). When the performer plays again, Encore fades out "
                    "and listens again. Ctrl-C quits with a summary. Through speakers a microphone hears Encore "
                    "too: where libspeexdsp is installed, Encore finds how late its echo comes back (up to 0.5 s) "
                    "and cancels it from the input, so a performer quieter than the echo is still heard and what "
                    "they play is what is remembered; without it, a level gate learns how loud the echo is and "
                    "ignores it (the performer is heard over it once 6 dB louder). It says which one runs. "
                    "Headphones or a line input still hear the performer best.",
        epilog="example: encore live --input 'USB Audio' --monitor",
    )
    p.add_argument("--input", help="input device, by number or by a part of its name (see encore devices)")
    p.add_argument("--output", help="output device, by number or by a part of its name")
    p.add_argument("--monitor", action="store_true", help="pass the input through while listening")
    p.add_argument("--no-echo-canceller", action="store_true",
                   help="keep Encore's echo out with the level gate alone, even where libspeexdsp is installed")
    p.add_argument("--silence", type=float, default=1.5, metavar="SECONDS",
                   help="quiet this long means the performer stopped (default 1.5)")
    p.add_argument("--threshold", type=float, default=-40.0, metavar="DBFS",
                   help="input level that counts as playing (default -40)")
    add_generator_arguments(p)
    p.add_argument("--lead", type=float, default=10.0, metavar="SECONDS", help="audio generated ahead (default 10)")
    p.set_defaults(func=cmd_live)

    p = commands.add_parser("devices", help="list audio devices, marking the defaults",
                            description="List the audio devices PortAudio sees, as `python -m sounddevice` does: "
                                        "'>' marks the default input, '<' the default output, '*' both.")
    p.set_defaults(func=cmd_devices)

    p = commands.add_parser(
        "bench", help="measure generation speed and memory",
        description="Per 10 s chunk, side by side in one run (median of --repeats): the seed model in ONNX Runtime "
                    "with 1 and 2 threads, and every generator continuing SONG on one core; peak memory and time "
                    "to the first chunk of a fresh process; the analysis and phrase search of a 5-minute song. "
                    "Keras on the same weights beside ONNX Runtime: encore train bench --runtimes. --realtime, "
                    "--echo (live mode's echo canceller on simulated rooms) and --soak (play and live for minutes "
                    "on a running JACK server, with busy processes beside) measure other things instead.",
    )
    p.add_argument("--model", help="ONNX file (default: the shipped seed model; with --realtime the generator's)")
    p.add_argument("--generator", choices=GENERATORS,
                   help=f"with --realtime: which generator plays (default {DEFAULT_GENERATOR})")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per row; the median is reported (default 7)")
    p.add_argument("--realtime", action="store_true",
                   help="real-time figures instead: on one core with the other busy, per-chunk real-time factor, "
                        "lead time, late chunks and underruns per hour (offline clock), play() to first sound")
    p.add_argument("--hours", type=float, default=1.0, help="offline-clock hours for --realtime (default 1)")
    p.add_argument("--soak", action="store_true",
                   help="play --endless and then live through a room of JACK ports, each --minutes long, on a "
                        "running JACK server with --load busy processes beside: underruns, late chunks, "
                        "continuations and their timing, the echo's reduction, a quiet performer heard")
    p.add_argument("--minutes", type=float, default=10.0, help="with --soak: minutes of each run (default 10)")
    p.add_argument("--load", type=int, default=0,
                   help="with --soak: busy processes beside Encore, one per core in turn (default 0)")
    p.add_argument("--json", metavar="FILE", help="with --soak: write the figures to FILE as JSON")
    p.add_argument("--generator-thread", action="store_true",
                   help="with --soak: run the generator on a thread of Encore's process, as before it had a "
                        "process of its own (the baseline to compare with)")
    p.add_argument("--echo", action="store_true",
                   help="live mode's echo canceller instead, on simulated rooms playing SONG: the delay found, the "
                        "echo's reduction, a performer 6 dB under the echo against what is left, and its cost")
    p.add_argument("--song", help="song the generators continue (default: the demo song)")
    p.set_defaults(func=cmd_bench)
    for name, text in (other_commands or {}).items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse and run a subcommand; a user's mistake becomes one line on stderr and exit status 2.

    Shared by the ``engine`` and ``training`` commands.
    """
    args = parser.parse_args(argv)
    name = f"{parser.prog} {args.command}"
    from .logs import configure

    configure()
    _terminate_as_interrupt()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(name)
            return args.func(args)
    except EncoreError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RenderInterrupted as e:
        print(f"{name}: interrupted: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _terminate_as_interrupt() -> None:
    """SIGTERM (``kill``, ``timeout``, a service manager) ends a command as Ctrl-C does: a render keeps what it
    rendered, playback prints its summary, and the generator's process and its shared memory are closed, not
    left to the interpreter's end."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set a handler (a command run from a test's thread)

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _one_line_warning(name: str):
    """``warnings.showwarning`` for a command: what a user should know, on one line (no source line)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{name}: warning: {message}", file=sys.stderr if file is None else file)
    return show


def main(argv: list[str] | None = None, prog: str = "engine", other_commands: dict[str, str] | None = None) -> int:
    return run_command(build_parser(prog, other_commands), argv)


def console(argv: list[str] | None = None, prog: str = "engine", other_commands: dict[str, str] | None = None) -> int:
    """``python -m engine`` and ``encore``'s engine commands: :func:`main`, then an exit that cannot hang on a lost
    audio device."""
    code = main(argv, prog, other_commands)
    stream = sys.modules.get("engine.playback.devices")  # loaded only by the commands that use audio devices
    if stream is not None:
        stream.exit_if_device_lost(code)
    return code


if __name__ == "__main__":
    sys.exit(console())
