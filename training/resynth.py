"""The resynth generator's learned scorer: which segment of a song comes next, trained contrastively.

The engine's resynth generator continues a song by playing its own segments (beats, onsets or grid cells, see
:mod:`engine.analysis`) in a new order. At each step it needs to rank the song's segments as the next one. This
module trains that ranking and exports it for :class:`engine.scorer.SegmentScorer`.

Model (two independent branches; the score of candidate ``j`` is ``query . keys[j]``)
    ``candidates`` [shape=(batch, segments, FEATURE_DIM)] -> an MLP applied to every segment alone -> ``keys``
    [shape=(batch, segments, embedding)], unit length. Keys depend on one segment each (permutation-equivariant),
    so the engine computes them once per memory.
    ``context`` [shape=(batch, context_segments, FEATURE_DIM + 1)]: the last segments played, newest last, with a
    present flag (:func:`engine.analysis.context_features`) -> a per-segment Dense -> a learned position
    embedding -> causal dilated Conv1D blocks with residuals -> the newest row and the mean of the present rows
    -> an MLP, added to the newest segment's own embedding (the key MLP's, before normalising) -> ``query``
    [shape=(batch, embedding)], unit length times a learned logit scale. With the context's part at zero the
    query scores "segments like the one just played"; training teaches the context what to change.
Examples
    A song in its original order is the ground truth of "what comes next": for a position ``t``, the context is
    the segments up to ``t``, the positive is segment ``t + 1``, and the negatives are other segments of the same
    song with ``t + 1``'s bar phase (the engine only offers candidates of the right phase), or any other segment
    when the song has too few. Segment ``t`` itself is never a negative: a sequencer does not repeat the segment
    it has just played in place, and offering it would make the "most similar" baseline pick it every time in
    onset and grid songs, where all segments share one phase. New positions and negatives are drawn each epoch
    (seeded), in a random key (:func:`transpose`); the validation examples are drawn once, untransposed.
Loss
    InfoNCE: softmax cross-entropy of the scores against the positive, which sits at index 0 (the key branch
    cannot see an index).
Baselines (``report.json``, printed after training)
    "Most similar": score candidates by minus the euclidean distance between their timbre and harmony features and
    segment ``t``'s ("the next beat sounds like the current one"); and chance, ``1 / candidates``.

A run folder holds ``config.json`` (with ``"kind": "resynth"``), ``history.json``, ``model.weights.h5`` (best on
validation loss) and ``report.json``; ``training export`` writes the ONNX file with the resynth contract.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np
from keras import layers

from engine.analysis import ANALYSIS_RATE, FEATURE_DIM, FEATURE_SPEC, HARMONY, TIMBRE, Analysis, context_features
from engine.contract import ModelContract
from engine.errors import ConfigError

from .data import DataConfig, list_audio_files, split_files
from .fit import WEIGHTS_FILE, FitConfig, HistoryWriter, TimeBudget, corpus_summary_of
from .segments import default_cache_dir, segment_files

# === Config ===

#: Names of the graph's inputs and outputs, as the contract declares them.
CONTEXT_NAME, CANDIDATES_NAME, QUERY_NAME, KEYS_NAME = "context", "candidates", "query", "keys"
#: ``kind`` of a resynth run in its config.json (a seed run has none).
RUN_KIND = "resynth"


@dataclass(frozen=True)
class ResynthConfig:
    """Shape of the scorer; lengths in seconds.

    Parameters
    ----------
    context_segments : int
        Rows of the context (the last segments played).
    context_s : float
        Only segments within the last ``context_s`` seconds count (:func:`engine.analysis.context_features`).
    horizon_s : float
        Seconds the engine renders per chunk (the contract's ``chunk_s`` and ``horizon_s``).
    width : int
        Width of the per-segment layers.
    embedding : int
        D, the length of a query and a key.
    conv_layers : int
        Causal Conv1D blocks, dilations 1, 2, 4, ...
    kernel : int
        Their kernel size, in segments.
    dropout : float
        Dropout rate on the pooled context while training.
    """

    context_segments: int = 32
    context_s: float = 20.0
    horizon_s: float = 10.0
    width: int = 64
    embedding: int = 64
    conv_layers: int = 3
    kernel: int = 3
    dropout: float = 0.3

    def __post_init__(self) -> None:
        for name in ("context_segments", "width", "embedding", "kernel"):
            if getattr(self, name) < 1:
                raise ConfigError(f"resynth {name} must be at least 1, got {getattr(self, name)}")
        if self.conv_layers < 0:
            raise ConfigError(f"resynth conv_layers must be 0 or more, got {self.conv_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"resynth dropout must be in [0, 1), got {self.dropout}")
        contract_for(self)  # the exported contract must hold: check it with the engine's own rules now

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ResynthConfig:
        return cls(**values)


@dataclass(frozen=True)
class ExampleConfig:
    """How songs become training examples.

    Parameters
    ----------
    candidates : int
        M: the true next segment and M - 1 negatives per example.
    examples_per_song : int
        Positions drawn per song and epoch (all of a song's positions when it has fewer).
    min_history : int
        Fewest segments before the position (so the context holds something to go on).
    transpose : bool
        Rotate the chroma of each training example (context and candidates alike) by a random number of
        semitones: the same song in another key, so the scorer learns harmony that moves, not the keys of the
        training songs.
    """

    candidates: int = 32
    examples_per_song: int = 64
    min_history: int = 4
    transpose: bool = True

    def __post_init__(self) -> None:
        if self.candidates < 2:
            raise ConfigError(f"--candidates must be at least 2 (one true, one false), got {self.candidates}")
        if self.examples_per_song < 1:
            raise ConfigError(f"--examples-per-song must be at least 1, got {self.examples_per_song}")
        if self.min_history < 1:
            raise ConfigError(f"min_history must be at least 1, got {self.min_history}")


def contract_for(config: ResynthConfig, *, corpus: str = "", project_version: str = "") -> ModelContract:
    """The contract a scorer of ``config`` is exported with."""
    return ModelContract(
        generator="resynth", sample_rate=ANALYSIS_RATE, chunk_s=config.horizon_s, context_s=config.context_s,
        horizon_s=config.horizon_s, input_name=CONTEXT_NAME, output_name=QUERY_NAME,
        input_layout="batch,segment,feature", output_layout="batch,embedding", candidate_name=CANDIDATES_NAME,
        key_name=KEYS_NAME, context_segments=config.context_segments, feature_spec=FEATURE_SPEC, preset="resynth",
        corpus=corpus, project_version=project_version)


# === Layers ===


class PositionEmbedding(layers.Layer):
    """Adds a learned vector per row: row ``k`` of the context is always "``K - k`` segments ago"."""

    def __init__(self, steps: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.steps, self.width = steps, width

    def build(self, input_shape):
        self.position = self.add_weight(shape=(self.steps, self.width), name="position",
                                        initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.built = True

    def call(self, x):
        return x + self.position

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "width": self.width}


class PresentMask(layers.Layer):
    """Zeroes the rows of ``x`` whose context row is missing (present flag 0): ``[x, context] -> x``."""

    def call(self, inputs):
        x, context = inputs
        return x * context[..., -1:]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class Newest(layers.Layer):
    """The newest context row's features (segment ``t``): ``(batch, K, FEATURE_DIM + 1) -> (batch, FEATURE_DIM)``."""

    def call(self, context):
        return context[:, -1, :FEATURE_DIM]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], FEATURE_DIM)


class PresentPool(layers.Layer):
    """The newest row and the mean of the present rows, side by side: ``[x, context] -> (batch, 2 * width)``."""

    def call(self, inputs):
        x, context = inputs
        present = context[..., -1:]
        mean = keras.ops.sum(x * present, axis=1) / keras.ops.maximum(keras.ops.sum(present, axis=1), 1.0)
        return keras.ops.concatenate([x[:, -1, :], mean], axis=-1)

    def compute_output_shape(self, input_shapes):
        shape = input_shapes[0]
        return (shape[0], 2 * shape[-1])


class L2Normalize(layers.Layer):
    """Scales each vector (last axis) to unit length."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        return x / keras.ops.sqrt(keras.ops.sum(x * x, axis=-1, keepdims=True) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


class LogitScale(layers.Layer):
    """Multiplies by a learned scale (the inverse temperature of InfoNCE), kept within [1, ``maximum``]."""

    def __init__(self, initial: float = 10.0, maximum: float = 100.0, **kwargs):
        super().__init__(**kwargs)
        self.initial, self.maximum = initial, maximum

    def build(self, input_shape):
        self.log_scale = self.add_weight(shape=(), name="log_scale",
                                         initializer=keras.initializers.Constant(math.log(self.initial)))
        self.built = True

    def call(self, x):
        return x * keras.ops.exp(keras.ops.clip(self.log_scale, 0.0, math.log(self.maximum)))

    def get_config(self):
        return {**super().get_config(), "initial": self.initial, "maximum": self.maximum}


class DotScores(layers.Layer):
    """Scores of every candidate: ``[query (batch, D), keys (batch, M, D)] -> (batch, M)``."""

    def call(self, inputs):
        query, keys = inputs
        return keras.ops.einsum("bd,bmd->bm", query, keys)

    def compute_output_shape(self, input_shapes):
        return input_shapes[1][:2]


CUSTOM_OBJECTS = {cls.__name__: cls for cls in (PositionEmbedding, PresentMask, Newest, PresentPool, L2Normalize,
                                                  LogitScale, DotScores)}


# === Functional model ===


def build_scorer(config: ResynthConfig) -> keras.Model:
    """The exported model: two independent branches.

    Returns
    -------
    keras.Model
        Inputs ``context`` [shape=(batch, context_segments, FEATURE_DIM + 1)] and ``candidates``
        [shape=(batch, segments, FEATURE_DIM)]; outputs ``query`` [shape=(batch, embedding)] and ``keys``
        [shape=(batch, segments, embedding)].
    """
    w = config.width
    context = keras.Input((config.context_segments, FEATURE_DIM + 1), name=CONTEXT_NAME)
    candidates = keras.Input((None, FEATURE_DIM), name=CANDIDATES_NAME)
    # One segment's embedding: the keys, and the start of the query (the segment just played).
    segment_layers = [layers.Dense(w, activation="silu", name="key_in"),
                      layers.Dense(w, activation="silu", name="key_hidden"),
                      layers.Dense(config.embedding, name="key_out")]

    def embed(x):
        for layer in segment_layers:
            x = layer(x)
        return x

    keys = L2Normalize(name=KEYS_NAME)(embed(candidates))

    h = layers.Dense(w, activation="silu", name="context_in")(context)
    h = PresentMask(name="context_mask")([PositionEmbedding(config.context_segments, w, name="position")(h), context])
    for i in range(config.conv_layers):
        step = layers.Conv1D(w, config.kernel, padding="causal", dilation_rate=2 ** i, activation="silu",
                             name=f"context_conv{i}")(h)
        h = layers.Add(name=f"context_residual{i}")([h, step])
    h = layers.Dropout(config.dropout, name="context_dropout")(PresentPool(name="context_pool")([h, context]))
    h = layers.Dense(2 * w, activation="silu", name="query_hidden")(h)
    h = layers.Dense(config.embedding, name="query_out")(h)
    # The query is the newest segment's own embedding moved by what the context says: with the moving part at
    # zero it scores like "the most similar segment", which the context then corrects.
    h = layers.Add(name="query_residual")([embed(Newest(name="newest")(context)), h])
    query = LogitScale(name=QUERY_NAME)(L2Normalize(name="query_unit")(h))
    return keras.Model([context, candidates], [query, keys], name="encore_resynth_scorer")


def build_training_model(scorer: keras.Model) -> keras.Model:
    """The scorer with the scores on top: ``[context, candidates] -> (batch, M)``, for the InfoNCE loss."""
    query, keys = scorer.outputs
    return keras.Model(scorer.inputs, DotScores(name="scores")([query, keys]), name="encore_resynth_training")


# === Examples ===


@dataclass(frozen=True)
class Examples:
    """Contrastive examples; candidate 0 is the true next segment.

    Attributes
    ----------
    context : numpy.ndarray
        [shape=(examples, context_segments, FEATURE_DIM + 1), dtype=float32]
    candidates : numpy.ndarray
        [shape=(examples, M, FEATURE_DIM), dtype=float32]
    mode : numpy.ndarray
        [shape=(examples,), dtype=str] the song's segmentation: beats, onsets or grid.
    same_phase : numpy.ndarray
        [shape=(examples,), dtype=bool] every negative has the positive's bar phase.
    """

    context: np.ndarray
    candidates: np.ndarray
    mode: np.ndarray
    same_phase: np.ndarray

    def __len__(self) -> int:
        return int(self.context.shape[0])

    @property
    def current(self) -> np.ndarray:
        """[shape=(examples, FEATURE_DIM)] features of segment ``t``, the newest in the context."""
        return self.context[:, -1, :FEATURE_DIM]


def draw_examples(analyses: list[Analysis], config: ResynthConfig, examples: ExampleConfig,
                  rng: np.random.Generator) -> Examples:
    """Draw positions and negatives from each song (see the module docstring)."""
    m = examples.candidates
    contexts, candidates, modes, same_phase = [], [], [], []
    for a in analyses:
        n = a.segments
        positions = np.arange(examples.min_history, n - 2)  # t + 1 < n - 1: the last segment may be cut short
        if positions.size == 0:
            continue
        for t in rng.choice(positions, size=min(examples.examples_per_song, positions.size), replace=False):
            following = t + 1
            others = np.flatnonzero((np.arange(n) != following) & (np.arange(n) != t))
            same = others[a.phase[others] == a.phase[following]]
            if same.size >= m - 1:
                negatives = rng.choice(same, size=m - 1, replace=False)
            else:  # too few of the right phase: the rest from any phase, and repeats only when the song is tiny
                rest = np.setdiff1d(others, same)
                negatives = np.concatenate([same, rng.choice(rest, size=min(rest.size, m - 1 - same.size),
                                                             replace=False)])
                negatives = np.concatenate([negatives, rng.choice(others, size=m - 1 - negatives.size)])
            contexts.append(context_features(a, np.arange(t + 1), context_segments=config.context_segments,
                                             context_s=config.context_s))
            candidates.append(a.features[np.concatenate([[following], negatives])])
            modes.append(a.mode)
            same_phase.append(same.size >= m - 1)
    if not contexts:
        raise ConfigError(f"no song has enough segments for an example ({examples.min_history + 3} at least)")
    return Examples(np.stack(contexts), np.stack(candidates), np.array(modes), np.array(same_phase))


def transpose(examples: Examples, rng: np.random.Generator) -> Examples:
    """The examples in other keys: each one's chroma rotated by 0 to 11 semitones (drawn), rows alike."""
    shifts = rng.integers(0, 12, size=len(examples))
    bins = (np.arange(12)[None, :] - shifts[:, None]) % 12  # new bin b holds old bin b - shift

    def rotate(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[..., HARMONY] = np.take_along_axis(x[..., HARMONY], bins[:, None, :], axis=2)
        return x

    return replace(examples, context=rotate(examples.context), candidates=rotate(examples.candidates))


class ExampleBatches(keras.utils.PyDataset):
    """Batches of ``((context, candidates), label 0)``; training draws new examples every epoch."""

    def __init__(self, analyses: list[Analysis], config: ResynthConfig, examples: ExampleConfig, *,
                 batch_size: int, seed: int, redraw: bool):
        super().__init__()
        self.analyses, self.config, self.example_config = analyses, config, examples
        self.batch_size, self.seed, self.redraw, self.epoch = batch_size, seed, redraw, 0
        self._draw()

    def _draw(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch])
        drawn = draw_examples(self.analyses, self.config, self.example_config, rng)
        if self.redraw and self.example_config.transpose:
            drawn = transpose(drawn, rng)
        order = rng.permutation(len(drawn)) if self.redraw else np.arange(len(drawn))
        self.examples = drawn
        self.inputs = (drawn.context[order], drawn.candidates[order])
        self.labels = np.zeros(len(drawn), np.int32)

    def __len__(self) -> int:
        return math.ceil(len(self.examples) / self.batch_size)

    def __getitem__(self, index: int):
        batch = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return (self.inputs[0][batch], self.inputs[1][batch]), self.labels[batch]

    def on_epoch_end(self) -> None:
        if self.redraw:
            self.epoch += 1
            self._draw()


# === Evaluation ===


def most_similar_scores(examples: Examples) -> np.ndarray:
    """The trivial scorer: minus the distance of each candidate's timbre and harmony to segment ``t``'s.

    Returns
    -------
    numpy.ndarray
        [shape=(examples, M)]
    """
    look = np.r_[TIMBRE, HARMONY]
    difference = examples.candidates[:, :, look] - examples.current[:, None, look]
    return -np.sqrt(np.sum(difference.astype(np.float64) ** 2, axis=-1))


def rank_metrics(scores: np.ndarray) -> dict[str, float]:
    """Top-1 and top-5 accuracy and mean rank of candidate 0, ties broken at random (in expectation).

    Parameters
    ----------
    scores : numpy.ndarray
        [shape=(examples, M)], higher is better; candidate 0 is the true one.
    """
    true = scores[:, :1]
    above = np.sum(scores[:, 1:] > true, axis=1)
    tied = np.sum(scores[:, 1:] == true, axis=1)

    def top(k: int) -> float:
        return float(np.mean(np.clip((k - above) / (tied + 1), 0.0, 1.0)))

    return {"top1": top(1), "top5": top(5), "mean_rank": float(np.mean(1 + above + tied / 2))}


def chance_metrics(candidates: int) -> dict[str, float]:
    return {"top1": 1 / candidates, "top5": min(5, candidates) / candidates, "mean_rank": (candidates + 1) / 2}


def evaluate(model: keras.Model, examples: Examples, *, batch_size: int = 256) -> dict:
    """The learned scorer, the most-similar scorer and chance on the same examples, overall and per mode."""
    learned = np.asarray(model.predict([examples.context, examples.candidates], batch_size=batch_size, verbose=0))
    similar = most_similar_scores(examples)
    m = examples.candidates.shape[1]
    by_mode = {}
    for mode in ("beats", "onsets", "grid"):
        rows = examples.mode == mode
        if rows.any():
            by_mode[mode] = {"examples": int(rows.sum()), "learned": rank_metrics(learned[rows]),
                             "most_similar": rank_metrics(similar[rows])}
    return {"examples": len(examples), "candidates": m,
            "same_phase_share": float(np.mean(examples.same_phase)),
            "scorers": {"learned": rank_metrics(learned), "most_similar": rank_metrics(similar),
                        "chance": chance_metrics(m)},
            "by_mode": by_mode}


def format_table(report: dict) -> str:
    """The validation table of ``report.json``, as printed after training."""
    v = report["validation"]
    lines = [f"validation: {v['examples']} examples from {report['validation_songs']} songs, {v['candidates']} "
             f"candidates each (the true next segment + {v['candidates'] - 1} others; all of its bar phase in "
             f"{100 * v['same_phase_share']:.0f} %)",
             f"{'scorer':<38}{'top-1':>8}{'top-5':>8}{'mean rank':>11}"]
    names = {"learned": "learned (query . key)", "most_similar": "most similar to the current segment",
             "chance": f"chance (1/{v['candidates']})"}
    for key, label in names.items():
        s = v["scorers"][key]
        lines.append(f"{label:<38}{100 * s['top1']:>7.1f}%{100 * s['top5']:>7.1f}%{s['mean_rank']:>11.2f}")
    for mode, row in v["by_mode"].items():
        lines.append(f"  {mode} ({row['examples']} examples): learned {100 * row['learned']['top1']:.1f}% / "
                     f"most similar {100 * row['most_similar']['top1']:.1f}% top-1")
    return "\n".join(lines)


# === Training ===


def fit_resynth(data_dir: str | Path, run_dir: str | Path, config: ResynthConfig, examples: ExampleConfig,
                data_config: DataConfig, fit_config: FitConfig, *, segments_dir: str | Path | None = None,
                workers: int = 2, verbose: int = 2) -> Path:
    """Segment a folder of audio (cached), train the scorer and write a run folder with its report.

    Parameters
    ----------
    data_dir : path
        Folder of audio files, searched recursively; split into train and validation by file as
        ``training fit`` splits it (:func:`training.data.split_files`).
    run_dir : path
        New folder for the run.
    config, examples : ResynthConfig, ExampleConfig
    data_config : DataConfig
        ``files`` and ``seed`` of the split; ``seed`` also draws the examples.
    fit_config : FitConfig
        Epochs, batch size, learning rate, patience and time budget; the rest is for seed models.
    segments_dir : path, optional
        Analysis cache (default ``DATA_DIR/.segments``).
    workers : int
        Processes for the analysis.

    Returns
    -------
    pathlib.Path
        The run folder.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir}: run folder exists and is not empty; choose a new one")
    say = print if verbose else (lambda *_: None)
    train_files, validation_files = split_files(list_audio_files(data_dir), data_config)
    corpus = segment_files(train_files + validation_files, segments_dir or default_cache_dir(data_dir),
                           workers=workers, progress=lambda line: say(line, flush=True))
    say(f"segments: {corpus.summary()}", flush=True)
    for path, note in corpus.skipped.items():
        say(f"  skipped {path}: {note}")
    train = [corpus.analyses[p] for p in train_files if p in corpus.analyses]
    validation = [corpus.analyses[p] for p in validation_files if p in corpus.analyses]
    if not train or not validation:
        raise ConfigError(f"{data_dir}: no analysable songs on the {'training' if not train else 'validation'} side")

    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(data_config.seed)
    settings = {
        "kind": RUN_KIND, "model": config.to_dict(), "examples": asdict(examples), "data": asdict(data_config),
        "fit": asdict(fit_config), "data_dir": str(Path(data_dir).resolve()), "corpus": corpus_summary_of(data_dir),
        "segments": corpus.summary(),
        "train_files": [str(p) for p in train_files], "validation_files": [str(p) for p in validation_files],
        "skipped_files": {str(p): note for p, note in corpus.skipped.items()},
    }
    (run_dir / "config.json").write_text(json.dumps(settings, indent=2))

    train_batches = ExampleBatches(train, config, examples, batch_size=fit_config.batch_size, seed=data_config.seed,
                                   redraw=True)
    validation_batches = ExampleBatches(validation, config, examples, batch_size=fit_config.batch_size,
                                        seed=data_config.seed + 1_000_003, redraw=False)
    scorer = build_scorer(config)
    model = build_training_model(scorer)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=fit_config.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1")])
    say(f"model: {scorer.count_params()} parameters; {len(train_batches.examples)} training examples per epoch "
        f"from {len(train)} songs (drawn anew each epoch), {len(validation_batches.examples)} validation examples "
        f"from {len(validation)} songs", flush=True)
    weights = run_dir / WEIGHTS_FILE
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(weights), monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
        HistoryWriter(run_dir / "history.json"),
        keras.callbacks.TerminateOnNaN(),
    ]
    if fit_config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=fit_config.patience))
    if fit_config.max_minutes:
        callbacks.append(TimeBudget(fit_config.max_minutes * 60))
    started = time.monotonic()
    model.fit(train_batches, validation_data=validation_batches, epochs=fit_config.epochs, callbacks=callbacks,
              verbose=verbose)
    minutes = (time.monotonic() - started) / 60
    if weights.exists():
        model.load_weights(str(weights))  # the report is of the weights that export ships
    else:  # every epoch's val_loss was NaN: keep the last weights anyway
        model.save_weights(str(weights))

    history = json.loads((run_dir / "history.json").read_text())
    losses = [row.get("val_loss", math.inf) for row in history]
    report = {
        "validation": evaluate(model, validation_batches.examples, batch_size=fit_config.batch_size),
        "validation_songs": len(validation), "train_songs": len(train),
        "train_examples_per_epoch": len(train_batches.examples),
        "epochs": len(history), "best_epoch": int(np.argmin(losses)) + 1 if history else 0,
        "best_val_loss": float(min(losses)) if history else math.nan,
        "training_minutes": round(minutes, 2), "parameters": scorer.count_params(),
        "segments": corpus.summary(),
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    say(format_table(report))
    say(f"trained {report['epochs']} epochs in {minutes:.1f} min (best at {report['best_epoch']})")
    return run_dir


def is_resynth_run(run_dir: str | Path) -> bool:
    """Whether a run folder holds a resynth scorer (its config.json says ``"kind": "resynth"``)."""
    config_path = Path(run_dir) / "config.json"
    return config_path.exists() and json.loads(config_path.read_text()).get("kind") == RUN_KIND


def load_resynth_run(run_dir: str | Path) -> tuple[keras.Model, ResynthConfig, dict]:
    """Rebuild a run's scorer with its best weights.

    Returns
    -------
    tuple
        ``(scorer keras.Model, ResynthConfig, settings dict)``.
    """
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / WEIGHTS_FILE
    if not config_path.exists() or not weights_path.exists():
        raise ConfigError(f"{run_dir}: not a training run (needs config.json and {WEIGHTS_FILE})")
    settings = json.loads(config_path.read_text())
    config = ResynthConfig.from_dict(settings["model"])
    scorer = build_scorer(config)
    build_training_model(scorer).load_weights(str(weights_path))
    return scorer, config, settings


# === Export ===


def to_onnx(scorer: keras.Model, config: ResynthConfig, metadata: dict[str, str]):
    """Convert a Keras scorer to an ONNX ModelProto with dynamic batch and candidate axes, carrying ``metadata``."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from .export import OPSET, finish_graph

    # One structured argument: tf2onnx calls model(*args), and a second positional one would be ``training``.
    signature = [(tf.TensorSpec((None, config.context_segments, FEATURE_DIM + 1), tf.float32, name=CONTEXT_NAME),
                  tf.TensorSpec((None, None, FEATURE_DIM), tf.float32, name=CANDIDATES_NAME))]
    proto, _ = tf2onnx.convert.from_keras(scorer, input_signature=signature, opset=OPSET)
    finish_graph(proto, metadata, inputs=(CONTEXT_NAME, CANDIDATES_NAME), outputs=(QUERY_NAME, KEYS_NAME),
                 doc="Encore resynth segment scorer, exported from Keras with tf2onnx")
    try:  # tf2onnx leaves an op it cannot convert in the graph with a warning; ONNX Runtime would refuse the file
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConfigError(f"exported scorer is not valid ONNX: {str(e).strip().splitlines()[0][:200]}") from e
    return proto


def export_resynth(run_dir: str | Path, out_path: Path) -> Path:
    """Write a resynth run's best weights as ONNX with the resynth contract (see :func:`training.export.export`)."""
    import onnx

    from .export import project_version

    scorer, config, settings = load_resynth_run(run_dir)
    contract = contract_for(config, corpus=str(settings.get("corpus", "")), project_version=project_version())
    metadata = {**contract.to_metadata(), "encore.parameters": str(scorer.count_params()),
                "encore.training": training_summary(Path(run_dir))}
    onnx.save_model(to_onnx(scorer, config, metadata), str(out_path))
    return out_path


def training_summary(run_dir: Path) -> str:
    """One line on how a run trained and how its scorer ranks on validation (from report.json)."""
    path = run_dir / "report.json"
    if not path.exists():
        return ""
    report = json.loads(path.read_text())
    s = report["validation"]["scorers"]
    return (f"{report['epochs']} epochs (best {report['best_epoch']}), validation top-1 "
            f"{100 * s['learned']['top1']:.1f} % vs most-similar {100 * s['most_similar']['top1']:.1f} % and chance "
            f"{100 * s['chance']['top1']:.1f} % over {report['validation']['examples']} examples")

