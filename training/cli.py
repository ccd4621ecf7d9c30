"""The ``training`` command: build a corpus, train, export to ONNX, report.

Heavy imports (TensorFlow, Keras, music21) happen inside each command, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from engine.cli import EXIT_USER_ERROR, run_command
from engine.errors import EncoreError


def cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus.build import build_corpus, corpus_summary

    manifest = build_corpus(args.out_dir, sources=tuple(args.sources.split(",")), max_scores=args.max_scores,
                            workers=args.workers, progress=lambda line: print(line, flush=True))
    print(f"wrote {manifest}: {corpus_summary(manifest)}")
    if not args.no_shards:
        import json

        from .corpus.split import list_audio_files
        from .seed.shards import read_manifest, write_shards

        sample_rate = json.loads(Path(manifest).read_text())["sample_rate"]
        shards = write_shards(list_audio_files(Path(args.out_dir) / "audio"), Path(args.out_dir) / "shards",
                              sample_rate=sample_rate, source=args.out_dir, workers=args.workers,
                              progress=lambda line: print(line, flush=True))
        print(f"wrote {shards}: {read_manifest(shards).summary()}")
    return 0


def cmd_shards(args: argparse.Namespace) -> int:
    import time

    from .corpus.split import DataConfig, list_audio_files
    from .seed.shards import read_manifest, write_shards

    started = time.monotonic()
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.data_dir) / "shards"
    manifest = write_shards(list_audio_files(args.data_dir), out_dir, sample_rate=args.sample_rate,
                            songs_per_shard=args.songs_per_shard, split=DataConfig(files=args.files, seed=args.seed),
                            source=args.data_dir, workers=args.workers,
                            progress=None if args.quiet else lambda line: print(line, flush=True))
    shards = read_manifest(manifest)
    size = sum(shard.path.stat().st_size for shard in shards.shards)
    print(f"wrote {manifest}: {shards.summary()}, {size / 1e9:.2f} GB, {time.monotonic() - started:.0f} s")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    if args.runtimes:
        return _bench_runtimes(args)

    from .bench import bench_pipeline, synthetic_shards
    from .seed.shards import find_shards, read_manifest

    model_config = _model_config(args)
    with tempfile.TemporaryDirectory(prefix="encore-bench-") as tmp:
        if args.data_dir is None:
            print(f"data        synthetic: {args.songs} songs of tones, {args.song_seconds:g} s each, written to {tmp}",
                  flush=True)
            shards_dir = synthetic_shards(tmp, sample_rate=model_config.sample_rate, songs=args.songs,
                                          seconds=args.song_seconds)
        else:
            manifest = find_shards(args.data_dir)
            if manifest is None:
                raise EncoreError(f"{args.data_dir}: no shards (manifest.json or shards/manifest.json); write them "
                                  f"with: encore train shards {args.data_dir}")
            shards_dir = manifest.parent
        shards = read_manifest(shards_dir, sample_rate=model_config.sample_rate)
        print(f"data        {shards_dir}: {shards.summary()}")
        window_s = model_config.context_s + model_config.horizon_s
        print(f"model       {model_config.preset} {','.join(map(str, model_config.widths))} at "
              f"{model_config.sample_rate} Hz; batch {args.batch_size} of {window_s:g} s windows, "
              f"{args.windows_per_song} per song{', augmented' if args.augment else ''}; "
              f"medians of {args.batches} batches after {args.warmup} warm-up", flush=True)
        # The figures are only as good as the machine is quiet: say how busy it was before the run began.
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
        print(f"machine     {os.cpu_count()} CPU cores{f', {gpus} GPU' if gpus else ', no GPU'}; load average "
              f"{os.getloadavg()[0]:.1f} before the run", flush=True)
        result = bench_pipeline(shards_dir, model_config, batch_size=args.batch_size, batches=args.batches,
                                warmup=args.warmup, windows_per_song=args.windows_per_song, seed=args.seed,
                                augment=args.augment)
    print(f"pipeline    {result.examples_per_s:10.1f} examples/s   "
          f"({result.pipeline_batch_s * 1000:.1f} ms per batch, the pipeline alone)")
    print(f"step data   {result.step_data_s * 1000:10.1f} ms           (training fed by the pipeline)")
    print(f"step cached {result.step_cached_s * 1000:10.1f} ms           (the same batches as tensors in memory)")
    print(f"ratio       {result.ratio:10.3f}              (data / cached; 1 = the pipeline costs training nothing; "
          f"the pipeline delivers {result.headroom:.1f}x what training consumes)")
    return 0


def _bench_runtimes(args: argparse.Namespace) -> int:
    """``training bench --runtimes``: ONNX Runtime and Keras per 10 s chunk, on the same architecture and weights."""
    from engine.bench import WARMUP_RUNS
    from engine.continuator import Continuator, default_model_path

    from .bench import runtime_rows

    model = Continuator(args.model or default_model_path())
    horizon = model.contract.horizon_s
    print(f"training bench --runtimes: {model.path.name}, {horizon:g} s per chunk, median of {args.repeats} after "
          f"{WARMUP_RUNS} warm-up runs", flush=True)
    rows = runtime_rows(model, args.repeats)
    print(f"{'runtime':<58} {'ms/chunk':>9} {'RTF':>8}")
    for name, seconds in rows:
        print(f"{name:<58} {seconds * 1000:>9.1f} {seconds / horizon:>8.4f}")
    return 0


def _model_config(args: argparse.Namespace):
    from .seed.model import ModelConfig

    widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else ()
    try:
        return ModelConfig(preset=args.preset, sample_rate=args.sample_rate, widths=widths)
    except ValueError as e:  # an unknown preset; contract rules raise ModelContractError themselves
        raise EncoreError(str(e)) from e


def cmd_demo_song(args: argparse.Namespace) -> int:
    from .corpus.demo import render_demo_song

    path = render_demo_song(args.path, seconds=args.seconds)
    print(f"wrote {path}")
    return 0


#: Defaults of the options whose default depends on --model: (seed, resynth).
FIT_DEFAULTS = {"batch_size": (20, 128), "learning_rate": (0.01, 0.001), "files": (170, 0)}


def cmd_fit(args: argparse.Namespace) -> int:
    from .corpus.split import DataConfig
    from .seed.fit import FitConfig, fit

    for name, defaults in FIT_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, defaults[args.model == "resynth"])
    data_config = DataConfig(files=args.files, windows_per_song=args.windows_per_song, seed=args.seed)
    fit_config = FitConfig(epochs=args.epochs, batch_size=args.batch_size,
                           validation_batch_size=args.validation_batch_size, learning_rate=args.learning_rate,
                           patience=args.patience, max_minutes=args.max_minutes, augment=args.augment,
                           strategy=args.strategy, backup_every=args.backup_every)
    if args.model == "resynth":
        from .scorer.examples import ExampleConfig
        from .scorer.fit import fit_resynth
        from .scorer.model import ScorerConfig

        examples = ExampleConfig(candidates=args.candidates, examples_per_song=args.examples_per_song,
                                 target=args.target, standin_harmony_weight=args.standin_harmony_weight)
        model = ScorerConfig(candidate_window=args.candidate_window, candidate_lookahead=args.candidate_lookahead,
                             run_match_only=args.run_match_only)
        run_dir = fit_resynth(args.data_dir, args.run_dir, model, examples, data_config, fit_config,
                              segments_dir=args.segments_dir, verbose=2)
        print(f"wrote {run_dir}")
        return 0
    model_config = _model_config(args)
    run_dir = fit(args.data_dir, args.run_dir, model_config, data_config, fit_config, verbose=2)
    print(f"wrote {run_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .scorer.export import export_resynth
    from .scorer.run import is_resynth_run
    from .seed.export import export

    path = (export_resynth if is_resynth_run(args.run_dir) else export)(args.run_dir, args.output)
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .scorer.report import format_table, report_resynth
    from .scorer.run import is_resynth_run
    from .seed.report import write_report

    if is_resynth_run(args.run_dir):
        print(format_table(report_resynth(args.run_dir)))
        print(f"wrote {Path(args.run_dir) / 'report.json'}")
        return 0
    figures = write_report(args.run_dir)
    print(f"wrote {Path(args.run_dir) / 'loss.png'}, spectrograms.png, report.json")
    for key, value in figures.items():
        print(f"  {key:<18} {value:.6g}" if isinstance(value, float) else f"  {key:<18} {value}")
    return 0


def cmd_evalset(args: argparse.Namespace) -> int:
    import json

    from .corpus.evalset import build_evalset

    manifest = build_evalset(args.out_dir, clips_per_package=args.clips_per_package,
                             progress=None if args.quiet else lambda line: print(line, flush=True))
    clips = json.loads(Path(manifest).read_text())["clips"]
    print(f"wrote {manifest}: {len(clips)} clips of {clips[0]['seconds']:g} s")
    return 0


def cmd_devset(args: argparse.Namespace) -> int:
    from .corpus.devset import build_devset

    clips = build_devset(args.corpus_dir, args.out_dir, clips=args.clips, files=args.files, seed=args.seed,
                         progress=None if args.quiet else lambda line: print(line, flush=True))
    print(f"wrote {len(clips)} clips of 40 s to {args.out_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.analysis import warm_up
    from engine.cores import pinned

    from .evaluation.allocator import freed_memory_kept
    from .evaluation.evaluate import evaluate
    from .evaluation.report import format_table

    generators = [name.strip() for name in args.generators.split(",") if name.strip()]
    # One core, as a listener's machine busy with other things would give: the real-time factors are per core
    # (every thread, numpy's and scipy's BLAS threads too). With --jobs, evaluate pins each worker to a core of
    # its own instead. Afterwards a caller of main() in-process (a test, a script) has its cores back.
    one_core = args.jobs == 1
    if one_core:
        warm_up()  # librosa's one-time load belongs to the process, not to the first song's chunk
    # Freed memory stays in the process for the next song's arrays (training.evaluation.allocator): a third of the time
    # went to page faults without it. Workers of --jobs keep theirs themselves.
    with (pinned({min(os.sched_getaffinity(0))}) if one_core else contextlib.nullcontext()), freed_memory_kept():
        results = evaluate(args.songs_dir, args.out, generators=generators, songs=args.songs, cut_s=args.cut_s,
                           repetition_minutes=args.repetition_minutes, repetition_songs=args.repetition_songs,
                           variety=args.variety, threads=args.threads, seed=args.seed, draws=args.draws,
                           jobs=args.jobs, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_table(results))
    print(f"wrote {Path(args.out) / 'results.json'}, results.md, spectrograms/")
    return 0


def cmd_downbeats(args: argparse.Namespace) -> int:
    from .evaluation.downbeats import format_table, run

    results = run(args.out_dir, scores=args.scores, recorded=args.recorded, workers=args.workers,
                  progress=None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True))
    print(format_table(results))
    print(f"wrote {Path(args.out_dir) / 'downbeats.json'}")
    return 0


def cmd_rejudge(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import rejudge
    from .evaluation.report import format_table

    results = rejudge(args.eval_dir)
    print(format_table(results))
    print(f"rewrote {Path(args.eval_dir) / 'results.json'} and results.md")
    return 0


def cmd_longlisten(args: argparse.Namespace) -> int:
    from .evaluation.allocator import freed_memory_kept
    from .evaluation.longlisten import format_table, longlisten

    generators = [name.strip() for name in args.generators.split(",") if name.strip()]
    # Freed memory kept for the next song's arrays (training.evaluation.allocator); workers of --jobs keep theirs.
    with freed_memory_kept():
        results = longlisten(args.out_dir, songs=args.songs, minutes=args.minutes, generators=generators,
                             songs_dir=args.songs_dir, ten_seconds=args.ten_seconds, jobs=args.jobs,
                             dev_corpus=args.dev_corpus, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_table(results))
    print(f"wrote {Path(args.out_dir) / 'longlisten.json'}, longlisten.md, figures/ "
          f"({results['settings']['seconds']:.0f} s)")
    return 0


def build_parser(prog: str = "training") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog,
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
    p.add_argument("--no-shards", action="store_true",
                   help="do not also write OUT_DIR/shards (TFRecord shards for the streaming pipeline)")
    p.set_defaults(func=cmd_corpus)

    p = commands.add_parser(
        "shards", help="write a folder of audio as TFRecord shards",
        description="Write every audio file under DATA_DIR as TFRecord shards of whole songs (mono 16-bit PCM at "
                    "--sample-rate), split into train and validation by file exactly as training fit splits files, "
                    "with manifest.json listing each shard's split, songs, frames and size, and any file that "
                    "could not be decoded (skipped, not fatal). The same files give the same bytes; a re-run "
                    "rewrites only shards whose files changed. training fit and training bench stream from "
                    "DATA_DIR/shards when it exists.")
    p.add_argument("data_dir", help="folder of audio files (searched recursively)")
    p.add_argument("-o", "--out-dir", help="shards folder (default DATA_DIR/shards)")
    p.add_argument("--sample-rate", type=int, default=22050, help="rate of the models to train, Hz (default 22050)")
    p.add_argument("--songs-per-shard", type=int, default=16,
                   help="songs per shard file (default 16: about 140 MB for 3 min songs at 22050 Hz)")
    p.add_argument("--files", type=int, default=0, help="most files to use before the split, 0 for all (default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, as training fit --seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    p.set_defaults(func=cmd_shards)

    p = commands.add_parser(
        "bench", help="is the input pipeline the bottleneck of training?",
        description="Measure, in one run, medians of: the shard pipeline alone (examples/s), a training step fed "
                    "by it, and a training step on the same batches cached as tensors in memory, and the ratio "
                    "of the two steps (1 = the pipeline costs training nothing). Without DATA_DIR, a small set of "
                    "synthetic songs (tones) is sharded in a temporary folder; nothing is downloaded.")
    p.add_argument("data_dir", nargs="?", help="a shards folder, or a folder with shards/ (default: synthetic)")
    p.add_argument("--preset", choices=("paper", "compact"), default="compact", help="default compact")
    p.add_argument("--widths", help="hidden widths, e.g. 128,64,32,16 (default: the preset's)")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--batches", type=int, default=20, help="batches measured per figure (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="batches run first and not measured (default 3)")
    p.add_argument("--windows-per-song", type=int, default=1)
    p.add_argument("--augment", action="store_true", help="gain, polarity and varispeed on the windows")
    p.add_argument("--songs", type=int, default=16, help="synthetic songs (default 16)")
    p.add_argument("--song-seconds", type=float, default=45.0, help="length of a synthetic song (default 45)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runtimes", action="store_true",
                   help="instead: the seed model per 10 s chunk in ONNX Runtime (1 and 2 threads) and in Keras "
                        "(predict, a compiled tf.function) against ONNX Runtime on the export of the same weights")
    p.add_argument("--model", help="with --runtimes: the ONNX seed model (default: the shipped one)")
    p.add_argument("--repeats", type=int, default=7, help="with --runtimes: timed runs per row (default 7)")
    p.set_defaults(func=cmd_bench)

    p = commands.add_parser("demo-song", help="render the shipped demo song",
                            description="Render the demo song (a public-domain score, FluidSynth) to PATH.")
    p.add_argument("path", help=".ogg, .flac or .wav")
    p.add_argument("--seconds", type=float, default=45.0)
    p.set_defaults(func=cmd_demo_song)

    p = commands.add_parser(
        "fit", help="train a seed model or the resynth scorer",
        description="Train the paper's encoder-decoder on a folder of audio. Defaults are the paper's: Adam "
                    "0.01, MSE, batch 20 / 10, 200 epochs, files split 120 / 50 (or by that ratio), one 30 s "
                    "window per song (20 s in, 10 s out). The best weights on validation are kept. Streams "
                    "TFRecord shards when DATA_DIR has them (training corpus/shards). Runs under tf.distribute: "
                    "with TF_CONFIG naming several workers, on all of them (see the README); a run killed and "
                    "restarted with the same command resumes from RUN_DIR/backup. "
                    "With --model resynth, train the resynth generator's segment scorer instead: every file is "
                    "segmented once by the engine's analysis (cached in --segments-dir), files are split as for "
                    "the seed model, and the scorer learns which segment comes next among --candidates of the "
                    "same song (InfoNCE; Adam 0.001, batch 128, all files by default). RUN_DIR/report.json and "
                    "the printed table compare its validation accuracy with the most-similar-segment scorer and "
                    "chance. Only --epochs, --batch-size, --learning-rate, --files, --patience, --max-minutes and "
                    "--seed apply to it.")
    p.add_argument("data_dir", help="folder of audio files (searched recursively), or with shards/manifest.json")
    p.add_argument("--run-dir", required=True, help="new folder for the run")
    p.add_argument("--model", choices=("seed", "resynth"), default="seed",
                   help="seed: the paper's waveform model (default); resynth: the segment scorer")
    p.add_argument("--preset", choices=("paper", "compact"), default="compact",
                   help="paper: 31 unshared units, ~400 M parameters; compact: units shared across steps (default)")
    p.add_argument("--widths", help="hidden widths, e.g. 128,64,32,16 (default: the preset's)")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, help="default 20 (seed), 128 (resynth)")
    p.add_argument("--validation-batch-size", type=int, default=10)
    p.add_argument("--learning-rate", type=float, help="Adam's; default 0.01 (seed), 0.001 (resynth)")
    p.add_argument("--files", type=int,
                   help="most files to use, 0 for all (default 170 = 120 + 50 for seed, 0 for resynth)")
    p.add_argument("--windows-per-song", type=int, default=1, help="30 s windows per song (default 1)")
    p.add_argument("--candidates", type=int, default=32,
                   help="resynth: segments ranked per example, the true next one included (default 32)")
    p.add_argument("--examples-per-song", type=int, default=64,
                   help="resynth: positions drawn per song and epoch, new ones each epoch (default 64)")
    p.add_argument("--target", default="next", choices=("next", "standin"),
                   help="resynth: what the scorer learns to find: the true next segment (default), or the "
                        "memory's best stand-in for the true continuation (the shipped scorer's)")
    p.add_argument("--candidate-window", type=int, default=1,
                   help="resynth: segments each key reads, the candidate and those before it (default 1)")
    p.add_argument("--candidate-lookahead", type=int, default=0,
                   help="resynth: keys also read the mean of this many segments from the candidate on, matched "
                        "to the last 8 heard by a learned distance (default 0: off)")
    p.add_argument("--standin-harmony-weight", type=float, default=0.5,
                   help="resynth, --target standin: weight of chroma beside log-mel in a stand-in's cost "
                        "(default 0.5)")
    p.add_argument("--run-match-only", action="store_true",
                   help="resynth, with a lookahead: score by the learned run match alone (no MLP branches)")
    p.add_argument("--segments-dir", help="resynth: analysis cache (default DATA_DIR/.segments)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after N epochs without a better validation loss (default 0: never)")
    p.add_argument("--max-minutes", type=float, default=0, help="wall-clock budget (default 0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", action="store_true",
                   help="random gain, polarity and (with shards) a small varispeed on training windows")
    p.add_argument("--strategy", default="auto", choices=("auto", "default", "mirrored", "multi-worker", "tpu"),
                   help="tf.distribute strategy; auto: multi-worker when TF_CONFIG names 2+ workers, else a TPU, "
                        "else mirrored on 2+ GPUs, else one device (default auto)")
    p.add_argument("--backup-every", type=int, default=0,
                   help="steps between fault-tolerance backups in RUN_DIR/backup; 0: at each epoch's end. A run "
                        "restarted with the same command resumes from its last backup")
    p.set_defaults(func=cmd_fit)

    p = commands.add_parser("export", help="export a run to ONNX with Encore's contract",
                            description="Convert a run's best weights to ONNX (tf2onnx) with the contract in its "
                                        "metadata: a seed model's, or a resynth scorer's (the run says which). "
                                        "Models over 300 M parameters are written as .onnx + .onnx.data.")
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", required=True, help="destination .onnx")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("report", help="write a run's loss curves and spectrograms (resynth: score it again)",
                            description="Write loss.png, spectrograms.png and report.json into the run folder. For "
                                        "a resynth run, score its best weights again on its validation songs on "
                                        "both tasks (the true next segment, the best stand-in) beside the "
                                        "most-similar rule, print the tables and update report.json.")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = commands.add_parser(
        "evalset", help="cut the evaluation set from two soundtrack packages never trained on",
        description="Cut 40 s clips of music in full flow from the Debian packages wesnoth-1.16-music "
                    "(orchestral) and supertuxkart-data (pop, electronic), which are not training corpus "
                    "sources, into OUT_DIR as FLAC at the original rate and channels: about half from each "
                    "package, one per track while tracks last and never more than two, each starting 10 s or "
                    "more into its track with no 2 s stretch under -40 dBFS. OUT_DIR/manifest.json records "
                    "each clip's package, version, original file, start and licence; OUT_DIR/licenses/ holds "
                    "each package's copyright file. Deterministic; a re-run rewrites nothing. Install the "
                    "packages with: make apt-eval.")
    p.add_argument("out_dir")
    p.add_argument("--clips-per-package", type=int, default=18, help="clips from each package (default 18)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    p.set_defaults(func=cmd_evalset)

    p = commands.add_parser(
        "devset", help="cut the dev set (for choosing settings) from the corpus's validation songs",
        description="Cut 40 s clips, 30 % into each song, from the songs that training fit holds out for "
                    "validation (the same split: --files, --seed), into OUT_DIR as 16-bit WAV. Settings of the "
                    "engine are chosen on these with training evaluate, never on the evaluation set.")
    p.add_argument("corpus_dir", help="the training corpus (training corpus)")
    p.add_argument("out_dir")
    p.add_argument("--clips", type=int, default=60, help="clips to cut (default 60)")
    p.add_argument("--files", type=int, default=0, help="as training fit --files (default 0: all)")
    p.add_argument("--seed", type=int, default=0, help="as training fit --seed (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    p.set_defaults(func=cmd_devset)

    p = commands.add_parser(
        "evaluate", help="score the generators against the real continuation of songs",
        description="For each song in SONGS_DIR (sorted; the evaluation set from training evalset), cut at "
                    "--cut-s, let each generator continue the first part for 10 s and compare with the song's "
                    "real next 10 s: log-mel and harmony (key profile) distance, click scores of the joins against the "
                    "music's own beat boundaries, tempo and key held, beat continuity (F-measure), loudness "
                    "step at the cut, spectral flatness, real-time factor; then a --repetition-minutes "
                    "extension scored for exact loops. The real continuation is scored as the row 'true'. "
                    "Writes OUT/results.json, OUT/results.md and OUT/spectrograms/<song>.png, prints the table "
                    "and, for each model generator, PASS/FAIL on the bar. Progress goes to stderr.")
    p.add_argument("songs_dir", help="folder of songs (not searched recursively)")
    p.add_argument("--generators", default="seed,resynth,jukebox,loop,match,silence",
                   help="comma-separated: seed, resynth, jukebox (the engine's), loop (the last 10 s repeated "
                        "with crossfades), match (one jump back to the beat whose last 8 beats best match the "
                        "song's last 8, that stretch repeated), silence (default all)")
    p.add_argument("--out", default="evaluation", help="output folder (default ./evaluation)")
    p.add_argument("--songs", type=int, default=0, help="most songs to use, 0 for all (default)")
    p.add_argument("--cut-s", type=float, default=30.0,
                   help="where songs are cut, s: the 20 s before it are the context (default 30)")
    p.add_argument("--repetition-minutes", type=float, default=10.0,
                   help="length of the long extension scored for loops, 0 to skip (default 10)")
    p.add_argument("--repetition-songs", type=int, default=None,
                   help="only the first N songs get the long extension (default all)")
    p.add_argument("--variety", type=float, default=None, help="the engine generators' variety (their default)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the beat boundaries scored as the music's own")
    p.add_argument("--draws", type=int, default=4,
                   help="continuations per song for resynth and jukebox, whose variety draws at random: their 10 s "
                        "metrics are averaged over seeds 0..N-1 (default 4)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes, each on a core of its own, scoring songs side by side; the scores are "
                        "the same as with 1, the real-time factors per core still (default 1)")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser(
        "rejudge", help="judge an evaluation's results again with this code's bar, running no generator",
        description="Read EVAL_DIR/results.json (from training evaluate), summarise its per-song scores and judge "
                    "the bar again with this version's criteria, each with the share of song resamplings that "
                    "give the same verdict; rewrite results.json and results.md and print the table. Nothing is "
                    "scored again: a criterion newer than the run (harmony, in runs scored with chroma) is "
                    "reported missing and not judged.")
    p.add_argument("eval_dir", help="the --out folder of a training evaluate run")
    p.set_defaults(func=cmd_rejudge)

    p = commands.add_parser(
        "downbeats", help="how well the engine finds the beat, the meter and the downbeats",
        description="Render held-out music21 scores (those a default training corpus build never renders) with "
                    "FluidSynth as the corpus does, with the demo song, into OUT_DIR/renders with their exact beat "
                    "and downbeat times (kept: a re-run renders nothing), and score the engine's analysis on them "
                    "as it is and as it was before issue 21: downbeat and beat F-measure (mir_eval, +-70 ms), the "
                    "share with the bar and the tempo right. With --recorded, also on whole tracks of "
                    "wesnoth-1.16-music and supertuxkart-data, which have no labels: whether the downbeats of a "
                    "passage the track repeats fall on those of the repeat, and whether its two halves get one "
                    "meter. Prints the table and writes OUT_DIR/downbeats.json; progress goes to stderr.")
    p.add_argument("out_dir")
    p.add_argument("--scores", type=int, default=36, help="renders in the set, the demo song included (default 36)")
    p.add_argument("--recorded", action="store_true", help="also judge agreement on 12 recorded tracks")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the table")
    p.set_defaults(func=cmd_downbeats)

    p = commands.add_parser(
        "longlisten", help="judge the generators over minutes of continuation of whole songs",
        description="The whole song is the memory: each generator plays --minutes of continuation after it, and "
                    "is measured as a listener hears it: jumps a minute (joins after the song's end), the median "
                    "run between joins in seconds, beats and bars of the song, the share of jumps that enter on a "
                    "downbeat (within 70 ms), the share of joins where the beat grid holds (the beats after a join "
                    "slip at most 40 ms against those before it), the share of the song's bars played whole in the "
                    "minutes and in the first 10, and the longest exact loop. Songs: whole tracks of "
                    "wesnoth-1.16-music and supertuxkart-data (never trained on; half from each, in the evaluation "
                    "set's fixed order, tracks under 30 s skipped), or every song of --songs-dir. Writes "
                    "OUT_DIR/longlisten.json, OUT_DIR/longlisten.md and, per song and generator, a spectrogram of "
                    "the song's last 20 s and the first minute after it with the joins marked "
                    "(OUT_DIR/figures/<song>/<generator>.png; the first song's also OUT_DIR/figures/<generator>.png); "
                    "prints the table: medians over songs, paired differences against jukebox and match, and "
                    "PASS/FAIL for resynth and jukebox on the bar (at most 8 jumps a minute, a median run of 16 "
                    "beats or more, the grid kept at 95 % of joins or more, 60 % of a song's bars or more heard "
                    "in 10 minutes), with training evaluate's 10 s medians beside when OUT_DIR/../results.json or "
                    "--ten-seconds is there. Progress goes to stderr.")
    p.add_argument("out_dir")
    p.add_argument("--songs", type=int, default=None,
                   help="songs (default 12 from the packages, every song of --songs-dir)")
    p.add_argument("--minutes", type=float, default=10.0, help="continuation per song and generator (default 10)")
    p.add_argument("--generators", default="resynth,jukebox,match,loop",
                   help="comma-separated: resynth, jukebox, match, loop (default all four)")
    p.add_argument("--songs-dir", help="a folder of songs instead of the evaluation packages (not searched "
                                       "recursively)")
    p.add_argument("--dev-corpus", metavar="CORPUS",
                   help="the training corpus: its validation songs (the dev set's, whole) instead of the evaluation "
                        "packages, to choose settings on; the evaluation packages judge them")
    p.add_argument("--ten-seconds", metavar="RESULTS_JSON",
                   help="results.json of training evaluate, whose 10 s medians go beside (default "
                        "OUT_DIR/../results.json when it exists)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes, each on a core of its own, measuring songs side by side (default 1)")
    p.set_defaults(func=cmd_longlisten)
    return parser


#: What the ``train`` extra brings: a command that needs one of these, when it is missing, says how to install it.
TRAIN_EXTRA_MODULES = {"tensorflow", "keras", "tf2onnx", "onnx", "music21", "matplotlib", "mir_eval", "pyloudnorm"}


def main(argv: list[str] | None = None, prog: str = "training") -> int:
    parser = build_parser(prog)
    try:
        return run_command(parser, argv)
    except ModuleNotFoundError as e:
        module = (e.name or "").split(".")[0]
        if module not in TRAIN_EXTRA_MODULES:
            raise
        command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)[:1]])
        print(f"{command}: error: this command needs {module}, from the training extra: pip install 'encore[train]' "
              f"(in a checkout: pip install -e '.[train]')", file=sys.stderr)
        return EXIT_USER_ERROR

if __name__ == "__main__":
    sys.exit(main())
