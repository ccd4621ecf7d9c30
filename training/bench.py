"""``training bench``: is the shard input pipeline the bottleneck of training?

Three measurements in one run, each a median over the same number of batches after a warm-up (tracing, thread
start-up, the first reads) is dropped:

1. **pipeline**: the training pipeline (:func:`training.seed.data.make_shard_dataset`) iterated alone, as fast as it
   goes: examples per second;
2. **step, data**: Keras ``fit`` steps of the model and optimiser ``training fit`` uses, fed by that pipeline;
3. **step, cached**: the same steps on the same batches, held in memory as tensors beforehand.

Their ratio, data / cached, is the claim: 1.0 means the pipeline costs training nothing. Both step times are
taken between consecutive ``on_train_batch_begin`` callbacks, so they include fetching the batch. The pipeline
shares the CPU with the step, so on a small machine the ratio also shows what its threads take from training.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio import Waveform, save_audio
from engine.bench import median_seconds
from engine.continuator import Continuator
from engine.errors import ConfigError

from .seed.model import ModelConfig


@dataclass(frozen=True)
class BenchResult:
    """Medians of one ``training bench`` run.

    Parameters
    ----------
    batch_size, batches : int
        Examples per batch; batches per measurement (after the warm-up).
    pipeline_batch_s : float
        Seconds per batch of the pipeline alone.
    step_data_s, step_cached_s : float
        Seconds per training step fed by the pipeline, and on cached tensors.
    """

    batch_size: int
    batches: int
    pipeline_batch_s: float
    step_data_s: float
    step_cached_s: float

    @property
    def examples_per_s(self) -> float:
        """Examples per second the pipeline delivers alone."""
        return self.batch_size / self.pipeline_batch_s

    @property
    def ratio(self) -> float:
        """Step time fed by the pipeline over step time on cached tensors; 1.0 is no cost."""
        return self.step_data_s / self.step_cached_s

    @property
    def headroom(self) -> float:
        """Examples per second the pipeline delivers over those training consumes."""
        return self.examples_per_s / (self.batch_size / self.step_data_s)


def bench_pipeline(shards: str | os.PathLike, model_config: ModelConfig, *, batch_size: int = 20,
                   batches: int = 20, warmup: int = 3, windows_per_song: int = 1, seed: int = 0,
                   augment: bool = False, learning_rate: float = 0.01) -> BenchResult:
    """Measure the shard pipeline alone, training fed by it, and training on the same batches cached.

    Parameters
    ----------
    shards : path-like
        A shards folder (or its manifest) at ``model_config.sample_rate``; its training shards are read.
    model_config : ModelConfig
    batch_size, batches, warmup : int
        Examples per batch; batches measured; batches run first and not measured.
    windows_per_song, seed, augment
        As for :func:`training.seed.data.make_shard_dataset`.
    learning_rate : float
        Adam's, as in ``training fit``.

    Returns
    -------
    BenchResult

    Raises
    ------
    ConfigError
        Bad counts, or shards that are broken or at another rate than the model.
    """
    import keras
    import tensorflow as tf

    from .seed.data import make_shard_dataset
    from .seed.model import build_model
    from .seed.shards import read_manifest

    if batch_size < 1 or batches < 1 or warmup < 1:
        raise ConfigError(f"batch size, batches and warm-up must be 1 or more, got {batch_size}, {batches}, "
                          f"{warmup}")
    manifest = read_manifest(shards, sample_rate=model_config.sample_rate)
    steps = warmup + batches + 1  # one more: a step's time runs to the next step's start

    def pipeline():
        # repeat: every batch full, however few songs; the same seed gives the same batches each time it is built.
        return make_shard_dataset(manifest.paths("train"), model_config, batch_size=batch_size,
                                  windows_per_song=windows_per_song, shuffle=True, seed=seed, augment=augment,
                                  repeat=True)

    # 1. The pipeline alone; its batches are kept for the cached run.
    kept, times = [], []
    iterator = iter(pipeline())
    for _ in range(steps):
        started = time.perf_counter()
        kept.append(next(iterator))
        times.append(time.perf_counter() - started)
    del iterator
    pipeline_batch_s = statistics.median(times[warmup:warmup + batches])

    keras.utils.set_random_seed(seed)
    model = build_model(model_config)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")

    # 2. Cached: the batches live in variables, so reading one is a copy from memory and nothing else (a
    # from_tensor_slices constant would be serialised into the dataset graph, which stops at 2 GB).
    contexts = tf.Variable(tf.stack([c for c, _ in kept]), trainable=False)
    continuations = tf.Variable(tf.stack([y for _, y in kept]), trainable=False)
    del kept
    cached = tf.data.Dataset.range(steps).map(lambda i: (contexts[i], continuations[i]))
    step_cached_s = _median_step(model, cached, steps, warmup, batches)

    # 3. Fed by a fresh pipeline with the same seed: the same batches, now made while training runs.
    step_data_s = _median_step(model, pipeline(), steps, warmup, batches)
    return BenchResult(batch_size=batch_size, batches=batches, pipeline_batch_s=pipeline_batch_s,
                       step_data_s=step_data_s, step_cached_s=step_cached_s)


def synthetic_shards(out_dir: str | os.PathLike, *, sample_rate: int, songs: int = 16, seconds: float = 45.0,
                     seed: int = 0) -> Path:
    """Write a small shard set of synthetic songs (tones over a beat); nothing is downloaded.

    Each song is a chord of three harmonic tones on its own root, swelling, over a noise-burst beat at its own
    tempo, written as FLAC under ``out_dir/audio`` and sharded into ``out_dir/shards``.

    Returns
    -------
    pathlib.Path
        The shards folder.
    """
    from .seed.shards import write_shards

    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    files = []
    for index in range(songs):
        root = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        chord = sum(np.sin(2 * np.pi * root * ratio * t + rng.uniform(0, 6)) / (1 + k)
                    for k, ratio in enumerate((1.0, 1.25, 1.5)))
        swell = 0.7 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t)
        beat = np.exp(-((t * rng.uniform(1.5, 3.0)) % 1.0) * 30) * rng.standard_normal(t.size)
        song = (0.3 * chord * swell + 0.1 * beat).astype(np.float32)
        files.append(save_audio(out_dir / "audio" / f"song{index:03d}.flac", Waveform(song, sample_rate)))
    write_shards(files, out_dir / "shards", sample_rate=sample_rate, songs_per_shard=max(1, songs // 8))
    return out_dir / "shards"


def _median_step(model, dataset, steps: int, warmup: int, batches: int) -> float:
    """Median seconds per Keras ``fit`` step over ``batches`` steps after ``warmup``."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begins: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.begins.append(time.perf_counter())

    timer = StepTimer()
    # shuffle=False: the pipeline shuffles itself; one epoch of exactly ``steps`` steps.
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[timer])
    durations = np.diff(timer.begins)
    return float(np.median(durations[warmup:warmup + batches]))


def runtime_rows(model: Continuator, repeats: int) -> list[tuple[str, float]]:
    """Seconds per 10 s chunk: ONNX Runtime on ``model``, and Keras (predict, a compiled tf.function) against
    ONNX Runtime on the export of the same architecture with the same seeded weights, side by side.

    Parameters
    ----------
    model : engine.continuator.Continuator
        A seed model; its contract (and ``encore.widths``) says which architecture Keras rebuilds.
    repeats : int
        Timed runs per row after :data:`engine.bench.WARMUP_RUNS` warm-up runs; the median is reported.

    Returns
    -------
    list of (str, float)
        Row name and median seconds per chunk.
    """
    import keras
    import tensorflow as tf

    from .seed.export import architecture_metadata, contract_for, to_onnx
    from .seed.model import build_model

    c = model.contract
    rng = np.random.default_rng(0)
    context = (0.1 * rng.standard_normal(c.context_samples)).astype(np.float32)
    batch = context.reshape(1, *c.input_shape)
    metadata = model.session.get_modelmeta().custom_metadata_map
    widths = tuple(int(w) for w in metadata["encore.widths"].split(",")) if "encore.widths" in metadata else ()
    config = ModelConfig(preset=c.preset or "compact", sample_rate=c.sample_rate, chunk_s=c.chunk_s,
                         context_s=c.context_s, horizon_s=c.horizon_s, widths=widths)
    keras.utils.set_random_seed(0)
    net = build_model(config)
    compiled = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
    tensor = tf.constant(batch)
    rows = []
    for threads in (1, 2):
        runner = Continuator(model.path, threads=threads)
        rows.append((f"onnxruntime {model.path.name}, {threads} thread{'s' * (threads > 1)}",
                     median_seconds(lambda r=runner: r.predict(context), repeats)))
    rows += [
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
