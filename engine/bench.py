"""``engine bench``: how fast and how big generation is, measured side by side in one run.

Rows, each the median of N timed runs of one 10 s chunk after two warm-up runs:
- ONNX Runtime on the model file, 1 and 2 intra-op threads;
- when TensorFlow is installed: the same architecture rebuilt in Keras with seeded weights, timed with
  ``model.predict`` and with a compiled ``tf.function``, and the ONNX export of exactly those weights through ONNX
  Runtime (so the Keras and ONNX rows run the same model and weights; their outputs are compared).
Then a fresh engine-only process (no TensorFlow) measures its peak resident memory and its time from start to the
first generated chunk of a 25 s song.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .continuator import Continuator, default_model_path

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


def run_bench(args: argparse.Namespace) -> int:
    path = Path(args.model) if args.model else default_model_path()
    model = Continuator(path)
    contract = model.contract
    rng = np.random.default_rng(0)
    context = (0.1 * rng.standard_normal(contract.context_samples)).astype(np.float32)
    batch = context.reshape(1, *contract.input_shape)
    rows: list[tuple[str, float]] = []
    print(f"engine bench: {path.name}, {contract.horizon_s:g} s per chunk, median of {args.repeats} "
          f"after {WARMUP_RUNS} warm-up runs", flush=True)

    for threads in (1, 2):
        runner = Continuator(path, threads=threads)
        rows.append((f"onnxruntime {path.name}, {threads} thread{'s' * (threads > 1)}",
                     median_seconds(lambda r=runner: r.predict(context), args.repeats)))

    keras_note = ""
    if args.no_keras:
        keras_note = "Keras rows skipped (--no-keras)"
    else:
        try:
            rows += _keras_rows(model, batch, args.repeats)
        except ImportError:
            keras_note = "Keras rows skipped: TensorFlow is not installed (pip install '.[train]')"

    print(f"{'runtime':<58} {'ms/chunk':>9} {'RTF':>8}")
    for name, seconds in rows:
        print(f"{name:<58} {seconds * 1000:>9.1f} {seconds / contract.horizon_s:>8.4f}")
    if keras_note:
        print(keras_note)

    probe = subprocess.run([sys.executable, "-c", _FIRST_CHUNK_PROBE, str(path)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if probe.returncode != 0:
        print(f"fresh-process probe failed: {probe.stderr.strip().splitlines()[-1:]}")
        return 1
    fresh = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"fresh engine process (no TensorFlow loaded: {not fresh['tensorflow_loaded']}): "
          f"import + model load {fresh['load_s']:.2f} s, first chunk ready {fresh['first_chunk_s']:.2f} s "
          f"after start, peak RSS {fresh['peak_rss_mib']:.0f} MiB")
    return 0


def _keras_rows(model: Continuator, batch: np.ndarray, repeats: int) -> list[tuple[str, float]]:
    """Keras predict, a compiled tf.function, and ONNX Runtime on the export of the same weights."""
    import keras
    import tensorflow as tf  # only here: the engine itself never imports TensorFlow

    from training.export import architecture_metadata, contract_for, to_onnx
    from training.model import ModelConfig, build_model

    c = model.contract
    metadata = model.session.get_modelmeta().custom_metadata_map
    widths = tuple(int(w) for w in metadata["encore.widths"].split(",")) if "encore.widths" in metadata else ()
    config = ModelConfig(preset=c.preset or "compact", sample_rate=c.sample_rate, chunk_s=c.chunk_s,
                         context_s=c.context_s, horizon_s=c.horizon_s, widths=widths)
    keras.utils.set_random_seed(0)
    net = build_model(config)
    compiled = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
    tensor = tf.constant(batch)
    rows = [
        ("keras model.predict", median_seconds(lambda: net.predict(batch, verbose=0), repeats)),
        ("keras compiled tf.function", median_seconds(lambda: compiled(tensor).numpy(), repeats)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "same-weights.onnx"
        metadata = contract_for(config).to_metadata()
        metadata.update(architecture_metadata(net, config))
        import onnx

        onnx.save_model(to_onnx(net, config, metadata), str(onnx_path))
        for threads in (1, 2):
            twin = Continuator(onnx_path, threads=threads)
            rows.append((f"onnxruntime, same weights as keras, {threads} thread{'s' * (threads > 1)}",
                         median_seconds(lambda t=twin: t.predict(batch.reshape(-1)), repeats)))
        keras_out = net.predict(batch, verbose=0).reshape(-1)
        difference = float(np.max(np.abs(twin.predict(batch.reshape(-1)) - keras_out)))
    print(f"keras vs onnxruntime on the same weights: max |difference| {difference:.2e} "
          f"(outputs up to {np.max(np.abs(keras_out)):.2e})")
    return rows
