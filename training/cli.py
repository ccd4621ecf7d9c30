"""The ``training`` command: build a corpus, train, export to ONNX, report.

Heavy imports (TensorFlow, Keras, music21) happen inside each command, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli import run_command
from engine.errors import EncoreError


def cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus import build_corpus, corpus_summary

    manifest = build_corpus(args.out_dir, sources=tuple(args.sources.split(",")), max_scores=args.max_scores,
                            workers=args.workers, progress=lambda line: print(line, flush=True))
    print(f"wrote {manifest}: {corpus_summary(manifest)}")
    return 0


def cmd_demo_song(args: argparse.Namespace) -> int:
    from .corpus import render_demo_song

    path = render_demo_song(args.path, seconds=args.seconds)
    print(f"wrote {path}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .data import DataConfig
    from .fit import FitConfig, fit
    from .model import ModelConfig

    widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else ()
    try:
        model_config = ModelConfig(preset=args.preset, sample_rate=args.sample_rate, widths=widths)
    except ValueError as e:  # an unknown preset; contract rules raise ModelContractError themselves
        raise EncoreError(str(e)) from e
    data_config = DataConfig(files=args.files, windows_per_song=args.windows_per_song, seed=args.seed)
    fit_config = FitConfig(epochs=args.epochs, batch_size=args.batch_size,
                           validation_batch_size=args.validation_batch_size, learning_rate=args.learning_rate,
                           patience=args.patience, max_minutes=args.max_minutes)
    run_dir = fit(args.data_dir, args.run_dir, model_config, data_config, fit_config, verbose=2)
    print(f"wrote {run_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    path = export(args.run_dir, args.output)
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    figures = write_report(args.run_dir)
    print(f"wrote {Path(args.run_dir) / 'loss.png'}, spectrograms.png, report.json")
    for key, value in figures.items():
        print(f"  {key:<18} {value:.6g}" if isinstance(value, float) else f"  {key:<18} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="training",
                                     description="Train Encore's seed models and export them to ONNX.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "corpus", help="build the offline training corpus",
        description="Render music21 scores with FluidSynth and transcode the Debian soundtrack packages "
                    "(warzone2100-music, ufoai-music, 0ad-data, planetblupi-music-ogg) into OUT_DIR as 22050 Hz "
                    "mono FLAC, with manifest.json recording each file's source and licence. Deterministic; "
                    "an interrupted build resumes. Nothing is downloaded.")
    p.add_argument("out_dir")
    p.add_argument("--sources", default="music21,debian", help="comma-separated: music21, debian (default both)")
    p.add_argument("--max-scores", type=int, default=160, help="music21 scores to render (default 160)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.set_defaults(func=cmd_corpus)

    p = commands.add_parser("demo-song", help="render the shipped demo song",
                            description="Render the demo song (a public-domain score, FluidSynth) to PATH.")
    p.add_argument("path", help=".ogg, .flac or .wav")
    p.add_argument("--seconds", type=float, default=45.0)
    p.set_defaults(func=cmd_demo_song)

    p = commands.add_parser(
        "fit", help="train a seed model",
        description="Train the paper's encoder-decoder on a folder of audio. Defaults are the paper's: Adam "
                    "0.01, MSE, batch 20 / 10, 200 epochs, files split 120 / 50 (or by that ratio), one 30 s "
                    "window per song (20 s in, 10 s out). The best weights on validation are kept.")
    p.add_argument("data_dir", help="folder of audio files (searched recursively)")
    p.add_argument("--run-dir", required=True, help="new folder for the run")
    p.add_argument("--preset", choices=("paper", "compact"), default="compact",
                   help="paper: 31 unshared units, ~400 M parameters; compact: units shared across steps (default)")
    p.add_argument("--widths", help="hidden widths, e.g. 128,64,32,16 (default: the preset's)")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--validation-batch-size", type=int, default=10)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--files", type=int, default=170, help="most files to use, 0 for all (default 170 = 120 + 50)")
    p.add_argument("--windows-per-song", type=int, default=1, help="30 s windows per song (default 1)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after N epochs without a better validation loss (default 0: never)")
    p.add_argument("--max-minutes", type=float, default=0, help="wall-clock budget (default 0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_fit)

    p = commands.add_parser("export", help="export a run to ONNX with Encore's contract",
                            description="Convert a run's best weights to ONNX (tf2onnx) with the contract in its "
                                        "metadata. Models over 300 M parameters are written as .onnx + .onnx.data.")
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", required=True, help="destination .onnx")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("report", help="write a run's loss curves and spectrograms",
                            description="Write loss.png, spectrograms.png and report.json into the run folder.")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)

if __name__ == "__main__":
    sys.exit(main())
