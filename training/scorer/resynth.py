"""The resynth generator's learned scorer: which segment of a song comes next, trained contrastively.

The engine's resynth generator continues a song by playing its own segments (beats, onsets or grid cells, see
:mod:`engine.analysis`) in a new order. At each step it needs to rank the song's segments as the next one. This
module trains that ranking and exports it for :class:`engine.scorer.SegmentScorer`.

Model (two independent branches; the score of candidate ``j`` is ``query . keys[j]``)
    ``candidates`` [shape=(batch, segments, candidate_dim)]: each segment with the ``candidate_window - 1``
    segments before it (:func:`engine.analysis.candidate_rows`) -> an MLP -> ``keys``
    [shape=(batch, segments, embedding)], unit length. Keys do not depend on the context, so the engine
    computes them once per memory.
    ``context`` [shape=(batch, context_segments, FEATURE_DIM + 1)]: the last segments played, newest last, with a
    present flag (:func:`engine.analysis.context_features`) -> a per-segment Dense -> a learned position
    embedding -> causal dilated Conv1D blocks with residuals -> the newest row and the mean of the present rows
    -> an MLP, added to the key MLP's embedding (before normalising) of the context laid out as a candidate row
    (the last segments played, and the newest again as the guess of what follows) -> ``query``
    [shape=(batch, embedding)], unit length times a learned logit scale. With the context's part at zero the
    query scores "segments whose lead-in sounds like what was just played"; training teaches it what to change.
    With ``candidate_lookahead`` L above 0, each candidate row also holds the mean features of the L segments
    from the candidate on (what playing on from it sounds like), and a second term is added to the score: a
    learned squared distance ``s |W (recent - ahead)|^2`` between that mean and the mean of the context's last
    :data:`RECENT_SEGMENTS` segments (``W`` starts as :data:`RUN_MATCH_START`). It is written as extra query and key
    dimensions (:class:`RunMatchQuery`, :class:`RunMatchKey`), so the score is still ``query . keys[j]``.
Examples: two targets (``ExampleConfig.target``)
    ``"next"`` (the default): the true next segment ``t + 1`` against other segments of
    the song with its bar phase (never segment ``t`` itself). With a candidate window over 1 this is nearly
    trivial (the key of ``t + 1`` holds ``t``, which the context ends with); it teaches continuity rather than
    prediction.
    ``"standin"`` (the shipped scorer's): at a song's end the engine must jump, and the true next segment is never
    in its memory.
    So for a position ``t`` the candidates are segments of the memory heard so far (``1 .. t - 8``, with
    ``t + 1``'s bar phase when there are enough, as the engine offers them), and each is scored by how far
    playing on from it in the original order is from the song's true continuation: :func:`continuation_costs`
    over the next ``standin_segments`` segments (mean absolute log-mel difference plus
    ``standin_harmony_weight`` times the chroma difference, in dB). The target is a soft distribution over the
    candidates that favours the cheapest (``softmax(-sharpness * z)``, ``z`` the costs standardised within the
    example).
    New positions and candidates are drawn each epoch (seeded), in a random key (:func:`transpose`); the
    validation examples are drawn once, untransposed.
Loss
    Cross-entropy of the scores' softmax against the target (InfoNCE when the target is one-hot). The target's
    favourite sits at index 0 (the key branch cannot see an index), so top-1 accuracy means "found it".
Baselines (``report.json``, printed after training, for both tasks whichever was trained)
    "Most similar": minus the euclidean distance of timbre and harmony to segment ``t``: of the candidate itself
    for ``"next"`` ("the next beat sounds like the current one"), of the segment before it for ``"standin"``
    ("jump where the music sounds like where we are", the jukebox rule); and chance, ``1 / candidates``. Each
    scorer's "pick cost" is the mean cost of the candidate it ranks first.

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

from engine.analysis import (
    ANALYSIS_RATE,
    FEATURE_DIM,
    FEATURE_SPEC,
    HARMONY,
    TIMBRE,
    Analysis,
    candidate_dim,
    candidate_rows,
    context_features,
)
from engine.contract import ModelContract
from engine.errors import ConfigError

from ..common.runs import WEIGHTS_FILE, FitConfig, HistoryWriter, TimeBudget
from ..corpus.build import corpus_summary_of
from ..corpus.split import DataConfig, list_audio_files, split_files
from .segments import default_cache_dir, segment_files

# === Config ===

#: Names of the graph's inputs and outputs, as the contract declares them.
CONTEXT_NAME, CANDIDATES_NAME, QUERY_NAME, KEYS_NAME = "context", "candidates", "query", "keys"
#: ``kind`` of a resynth run in its config.json (a seed run has none).
RUN_KIND = "resynth"
#: What a scorer can be trained to find (:class:`ExampleConfig`).
TARGETS = ("standin", "next")
#: Added to the run's seed for the validation examples, so they are never a training epoch's.
VALIDATION_SEED_OFFSET = 1_000_003
#: Context segments whose mean a candidate's lookahead is compared with (``candidate_lookahead`` above 0). On
#: validation positions, 8 picked better stand-ins than 16 or 32 with a hand-set distance.
RECENT_SEGMENTS = 8
#: The run match's projection before training, per feature: timbre 1, harmony 2, the rest 0.
RUN_MATCH_START = np.zeros(FEATURE_DIM, np.float32)
RUN_MATCH_START[TIMBRE], RUN_MATCH_START[HARMONY] = 1.0, 2.0


@dataclass(frozen=True)
class ScorerConfig:
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
    candidate_window : int
        Segments a key reads: the candidate and the ``candidate_window - 1`` before it in the song (a key can
        then tell whether the music leading into a candidate sounds like the music just played).
    candidate_lookahead : int
        When above 0, a key also reads the mean features of the ``candidate_lookahead`` segments from the
        candidate on (what playing on from it would sound like; never past the memory's end), and the score
        gains a learned distance between that mean and the mean of the context's last
        :data:`RECENT_SEGMENTS` segments (:class:`RunMatchQuery`). 0: neither.
    run_match_only : bool
        With a lookahead, score by the run match alone: no MLP branches, only the projection ``W`` and the
        scale ``s`` are learned (about 2,200 parameters, where the MLPs overfit after 3 to 5 epochs).
    """

    context_segments: int = 32
    context_s: float = 20.0
    horizon_s: float = 10.0
    width: int = 64
    embedding: int = 64
    conv_layers: int = 3
    kernel: int = 3
    dropout: float = 0.3
    candidate_window: int = 1
    candidate_lookahead: int = 0
    run_match_only: bool = False

    @property
    def candidate_dim(self) -> int:
        """Features per candidate row: ``candidate_window`` segments' side by side, oldest first, then the
        lookahead block when there is one (:func:`engine.analysis.candidate_rows`)."""
        return candidate_dim(self.candidate_window, self.candidate_lookahead)

    def __post_init__(self) -> None:
        for name in ("context_segments", "width", "embedding", "kernel", "candidate_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"resynth {name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.candidate_lookahead <= 64:
            raise ConfigError(f"resynth candidate_lookahead must be 0 to 64, got {self.candidate_lookahead}")
        if self.run_match_only and self.candidate_lookahead <= 0:
            raise ConfigError("a run-match-only scorer needs a candidate lookahead above 0")
        if self.conv_layers < 0:
            raise ConfigError(f"resynth conv_layers must be 0 or more, got {self.conv_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"resynth dropout must be in [0, 1), got {self.dropout}")
        contract_for(self)  # the exported contract must hold: check it with the engine's own rules now

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ScorerConfig:
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
    target : {"standin", "next"}
        What the scorer learns to find (see the module docstring). ``"next"``: the true next segment among
        other segments of the song. ``"standin"``: the segment of the memory heard so far whose continuation
        in the original order sounds most like the song's true continuation; the engine never has the true
        next segment in its memory when a song has ended, so this is the choice it actually makes.
    standin_segments : int
        ``"standin"``: segments of continuation compared (16 beats: about 8 s at 120 bpm).
    standin_sharpness : float
        ``"standin"``: the soft target is ``softmax(-sharpness * z)``, ``z`` the candidates' continuation
        distances standardised within the example (higher: nearer one-hot on the best stand-in).
    standin_harmony_weight : float
        ``"standin"``: weight of harmony beside timbre in the continuation distance (:func:`continuation_costs`).
    """

    candidates: int = 32
    examples_per_song: int = 64
    min_history: int = 4
    transpose: bool = True
    target: str = "next"
    standin_segments: int = 16
    standin_sharpness: float = 3.0
    standin_harmony_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.candidates < 2:
            raise ConfigError(f"--candidates must be at least 2 (one true, one false), got {self.candidates}")
        if self.examples_per_song < 1:
            raise ConfigError(f"--examples-per-song must be at least 1, got {self.examples_per_song}")
        if self.min_history < 1:
            raise ConfigError(f"min_history must be at least 1, got {self.min_history}")
        if self.target not in TARGETS:
            raise ConfigError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.standin_segments < 2 or self.standin_sharpness <= 0:
            raise ConfigError("standin_segments must be at least 2 and standin_sharpness above 0")

    @property
    def first_position(self) -> int:
        """Fewest segments heard before a position: a stand-in needs a memory with its own continuations."""
        return self.min_history if self.target == "next" else max(self.min_history, 2 * self.standin_segments)


def contract_for(config: ScorerConfig, *, corpus: str = "", project_version: str = "") -> ModelContract:
    """The contract a scorer of ``config`` is exported with."""
    return ModelContract(
        generator="resynth", sample_rate=ANALYSIS_RATE, chunk_s=config.horizon_s, context_s=config.context_s,
        horizon_s=config.horizon_s, input_name=CONTEXT_NAME, output_name=QUERY_NAME,
        input_layout="batch,segment,feature", output_layout="batch,embedding", candidate_name=CANDIDATES_NAME,
        key_name=KEYS_NAME, context_segments=config.context_segments, candidate_window=config.candidate_window,
        candidate_lookahead=config.candidate_lookahead,
        feature_spec=FEATURE_SPEC, preset="resynth",
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


def _recent_mean(context, rows: int):
    """Mean features of the present rows among the context's last ``rows``: ``(batch, FEATURE_DIM)``."""
    recent = context[:, -rows:, :]
    present = recent[..., -1:]
    total = keras.ops.sum(recent[..., :FEATURE_DIM] * present, axis=1)
    return total / keras.ops.maximum(keras.ops.sum(present, axis=1), 1.0)


class Newest(layers.Layer):
    """The context laid out as a candidate row whose segment would follow it: the last ``window - 1`` segments
    played, then segment ``t`` again as the guess of what comes next, then (with a lookahead) the mean of the
    last :data:`RECENT_SEGMENTS` as the guess of how it goes on: ``(batch, K, FEATURE_DIM + 1) ->
    (batch, candidate_dim)``. With ``window`` 1 and no lookahead, segment ``t``'s features."""

    def __init__(self, window: int = 1, lookahead: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.window, self.lookahead = window, lookahead

    def call(self, context):
        rows = [context[:, -k, :FEATURE_DIM] for k in range(self.window - 1, 0, -1)] + [context[:, -1, :FEATURE_DIM]]
        if self.lookahead > 0:
            rows.append(_recent_mean(context, RECENT_SEGMENTS))
        return keras.ops.concatenate(rows, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], candidate_dim(self.window, self.lookahead))

    def get_config(self):
        return {**super().get_config(), "window": self.window, "lookahead": self.lookahead}


class RecentMean(layers.Layer):
    """The mean features of the context's last :data:`RECENT_SEGMENTS` present rows: ``(batch, FEATURE_DIM)``."""

    def call(self, context):
        return _recent_mean(context, RECENT_SEGMENTS)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], FEATURE_DIM)


class Lookahead(layers.Layer):
    """The lookahead block of candidate rows (their last ``FEATURE_DIM`` columns)."""

    def call(self, candidates):
        return candidates[..., -FEATURE_DIM:]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], FEATURE_DIM)


class RunMatchQuery(layers.Layer):
    """The query's part of a learned squared distance ``s * |u - v|^2`` between the projected recent context
    ``u`` and a candidate's projected lookahead ``v``: ``u (batch, P) -> [2 s u, -s] (batch, P + 1)``.

    With :class:`RunMatchKey`'s ``[v, |v|^2]`` the dot product is ``-s |u - v|^2 + s |u|^2``, and the last term
    is the same for every candidate of a context, so the softmax sees the distance alone. ``s`` is learned,
    within [``minimum``, ``maximum``].
    """

    def __init__(self, initial: float = 0.2, minimum: float = 1e-3, maximum: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        self.initial, self.minimum, self.maximum = initial, minimum, maximum

    def build(self, input_shape):
        self.log_scale = self.add_weight(shape=(), name="log_scale",
                                         initializer=keras.initializers.Constant(math.log(self.initial)))
        self.built = True

    def call(self, u):
        scale = keras.ops.exp(keras.ops.clip(self.log_scale, math.log(self.minimum), math.log(self.maximum)))
        return keras.ops.concatenate([2.0 * scale * u, -scale * keras.ops.ones_like(u[:, :1])], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + 1)

    def get_config(self):
        return {**super().get_config(), "initial": self.initial, "minimum": self.minimum, "maximum": self.maximum}


class RunMatchKey(layers.Layer):
    """The key's part of :class:`RunMatchQuery`'s distance: ``v (..., P) -> [v, |v|^2] (..., P + 1)``."""

    def call(self, v):
        return keras.ops.concatenate([v, keras.ops.sum(v * v, axis=-1, keepdims=True)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


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
                                                  LogitScale, DotScores, RecentMean, Lookahead, RunMatchQuery,
                                                  RunMatchKey)}


# === Functional model ===


def _run_match(context, candidates):
    """The run match's query and key parts: a learned metric between what playing on from a candidate sounds
    like and what was just heard. It starts as the hand-set distance that picked the best stand-ins on
    validation: timbre, and harmony weighted twice (the jukebox's own weighting of the join cost)."""
    project = layers.Dense(FEATURE_DIM, use_bias=False, kernel_initializer=keras.initializers.Constant(
        np.diag(RUN_MATCH_START)), name="match_project")
    match_query = RunMatchQuery(name="match_query")(project(RecentMean(name="recent")(context)))
    match_keys = RunMatchKey(name="match_keys")(project(Lookahead(name="lookahead")(candidates)))
    return match_query, match_keys


def build_scorer(config: ScorerConfig) -> keras.Model:
    """The exported model: two independent branches.

    Returns
    -------
    keras.Model
        Inputs ``context`` [shape=(batch, context_segments, FEATURE_DIM + 1)] and ``candidates``
        [shape=(batch, segments, candidate_dim)]; outputs ``query`` [shape=(batch, D)] and ``keys``
        [shape=(batch, segments, D)]: D is ``embedding``, plus ``FEATURE_DIM + 1`` with a lookahead (the run
        match), or ``FEATURE_DIM + 1`` alone for ``run_match_only``.
    """
    w = config.width
    context = keras.Input((config.context_segments, FEATURE_DIM + 1), name=CONTEXT_NAME)
    candidates = keras.Input((None, config.candidate_dim), name=CANDIDATES_NAME)
    if config.run_match_only:
        match_query, match_keys = _run_match(context, candidates)
        return keras.Model([context, candidates], [layers.Identity(name=QUERY_NAME)(match_query),
                                                   layers.Identity(name=KEYS_NAME)(match_keys)],
                           name="encore_resynth_scorer")
    # One segment's embedding: the keys, and the start of the query (the segment just played).
    segment_layers = [layers.Dense(w, activation="silu", name="key_in"),
                      layers.Dense(w, activation="silu", name="key_hidden"),
                      layers.Dense(config.embedding, name="key_out")]

    def embed(x):
        for layer in segment_layers:
            x = layer(x)
        return x

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
    newest = Newest(config.candidate_window, config.candidate_lookahead, name="newest")(context)
    h = layers.Add(name="query_residual")([embed(newest), h])
    if config.candidate_lookahead <= 0:
        keys = L2Normalize(name=KEYS_NAME)(embed(candidates))
        query = LogitScale(name=QUERY_NAME)(L2Normalize(name="query_unit")(h))
        return keras.Model([context, candidates], [query, keys], name="encore_resynth_scorer")
    # The run match, added to the cosine score.
    match_query, match_keys = _run_match(context, candidates)
    cosine = LogitScale(name="query_scaled")(L2Normalize(name="query_unit")(h))
    query = layers.Concatenate(name=QUERY_NAME)([cosine, match_query])
    keys = layers.Concatenate(name=KEYS_NAME)([L2Normalize(name="keys_unit")(embed(candidates)), match_keys])
    return keras.Model([context, candidates], [query, keys], name="encore_resynth_scorer")


def build_training_model(scorer: keras.Model) -> keras.Model:
    """The scorer with the scores on top: ``[context, candidates] -> (batch, M)``, for the InfoNCE loss."""
    query, keys = scorer.outputs
    return keras.Model(scorer.inputs, DotScores(name="scores")([query, keys]), name="encore_resynth_training")


# === Examples ===


@dataclass(frozen=True)
class Examples:
    """Contrastive examples; candidate 0 is the one to find (the true next segment, or the best stand-in).

    Attributes
    ----------
    context : numpy.ndarray
        [shape=(examples, context_segments, FEATURE_DIM + 1), dtype=float32]
    candidates : numpy.ndarray
        [shape=(examples, M, candidate_dim), dtype=float32] (:func:`engine.analysis.candidate_rows`)
    own : numpy.ndarray
        [shape=(examples, M, FEATURE_DIM), dtype=float32] each candidate segment's own features (a candidate
        row may also hold the segments before it and a lookahead).
    previous : numpy.ndarray
        [shape=(examples, M, FEATURE_DIM), dtype=float32] the segment before each candidate in the song (what
        a jukebox compares with the segment just played).
    targets : numpy.ndarray
        [shape=(examples, M), dtype=float32] the distribution the scores are trained towards (one-hot on
        candidate 0 for ``"next"``).
    costs : numpy.ndarray
        [shape=(examples, M), dtype=float32] how far each candidate's continuation is from the true one
        (:func:`continuation_costs`, in dB); for ``"next"``, 0 for the true next segment and 1 for the others.
    mode : numpy.ndarray
        [shape=(examples,), dtype=str] the song's segmentation: beats, onsets or grid.
    same_phase : numpy.ndarray
        [shape=(examples,), dtype=bool] every candidate has the bar phase of the true next segment.
    """

    context: np.ndarray
    candidates: np.ndarray
    own: np.ndarray
    previous: np.ndarray
    targets: np.ndarray
    costs: np.ndarray
    mode: np.ndarray
    same_phase: np.ndarray

    def __len__(self) -> int:
        return int(self.context.shape[0])

    @property
    def current(self) -> np.ndarray:
        """[shape=(examples, FEATURE_DIM)] features of segment ``t``, the newest in the context."""
        return self.context[:, -1, :FEATURE_DIM]


def _choose(pool: np.ndarray, fallback: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """``size`` of ``pool`` (all different), topped up from ``fallback`` and then with repeats when too few.

    Returns the indices and whether ``pool`` alone had enough.
    """
    if pool.size >= size:
        return rng.choice(pool, size=size, replace=False), True
    rest = np.setdiff1d(fallback, pool)
    chosen = np.concatenate([pool, rng.choice(rest, size=min(rest.size, size - pool.size), replace=False)])
    return np.concatenate([chosen, rng.choice(fallback, size=size - chosen.size)]).astype(np.int64), False


def continuation_costs(a: Analysis, starts: np.ndarray, t: int, segments: int, *,
                       harmony_weight: float = 0.5) -> np.ndarray:
    """How far playing the memory on from each of ``starts`` is from the song's true continuation after ``t``.

    Parameters
    ----------
    a : Analysis
        The whole song.
    starts : numpy.ndarray
        [shape=(M,), dtype=int] candidate segments, all at most ``t``.
    t : int
        The last segment heard; the memory is segments ``0..t`` and the truth is ``t + 1 ..``.
    segments : int
        How many segments of continuation are compared (fewer when a candidate's run reaches ``t``).
    harmony_weight : float
        Weight of the mean absolute chroma difference (chroma in [0, 1]) beside the mean absolute log-mel
        difference (dB / 10).

    Returns
    -------
    numpy.ndarray
        [shape=(M,), dtype=float32] mean over the compared segments of the two differences, weighted, x 10 (so
        the log-mel part is in dB).
    """
    total = np.zeros(starts.shape[0], np.float64)
    counted = np.zeros(starts.shape[0], np.float64)
    for k in range(segments):
        ok = starts + k <= t
        if not ok.any() or t + 1 + k >= a.segments:
            break
        mine, true = a.features[starts[ok] + k], a.features[t + 1 + k]
        step = (np.mean(np.abs(mine[:, TIMBRE] - true[TIMBRE]), axis=1)
                + harmony_weight * np.mean(np.abs(mine[:, HARMONY] - true[HARMONY]), axis=1))
        total[ok] += step
        counted[ok] += 1
    return (10.0 * total / np.maximum(counted, 1)).astype(np.float32)


def draw_examples(analyses: list[Analysis], config: ScorerConfig, examples: ExampleConfig,
                  rng: np.random.Generator) -> Examples:
    """Draw positions and candidates from each song (see the module docstring)."""
    m, standin = examples.candidates, examples.target == "standin"
    horizon = examples.standin_segments if standin else 1
    rows: dict[str, list] = {name: [] for name in ("context", "candidates", "own", "previous", "targets", "costs",
                                                    "mode", "same_phase")}
    for a in analyses:
        n = a.segments
        # t + horizon < n - 1: the last segment may be cut short
        positions = np.arange(examples.first_position, n - 1 - horizon)
        if positions.size == 0:
            continue
        index = np.arange(n)
        for t in rng.choice(positions, size=min(examples.examples_per_song, positions.size), replace=False):
            following = t + 1
            if standin:
                # The memory so far, less its last stretch: a candidate needs a run of its own to be compared,
                # and the engine does not jump back into the last bars it played.
                heard = index[1:max(2, t + 1 - horizon // 2)]
                chosen, enough = _choose(heard[a.phase[heard] == a.phase[following]], heard, m, rng)
                costs = continuation_costs(a, chosen, t, horizon, harmony_weight=examples.standin_harmony_weight)
                order = np.argsort(costs, kind="stable")
                chosen, costs = chosen[order], costs[order]
                z = (costs - costs.mean()) / max(float(costs.std()), 1e-6)
                targets = np.exp(-examples.standin_sharpness * (z - z.min()))
                targets /= targets.sum()
            else:
                others = index[(index != following) & (index != t)]
                negatives, enough = _choose(others[a.phase[others] == a.phase[following]], others, m - 1, rng)
                chosen = np.concatenate([[following], negatives])
                costs = np.r_[0.0, np.ones(m - 1)]
                targets = np.r_[1.0, np.zeros(m - 1)]
            rows["context"].append(context_features(a, np.arange(t + 1), context_segments=config.context_segments,
                                                    context_s=config.context_s))
            # The keys' lookahead stops where the memory does: at t for a stand-in, the song's end otherwise
            # (the true next segment is not in a memory that ends at t).
            rows["candidates"].append(candidate_rows(a, chosen, config.candidate_window, config.candidate_lookahead,
                                                     memory_end=t if standin else None))
            rows["own"].append(a.features[chosen])
            rows["previous"].append(a.features[np.maximum(chosen - 1, 0)])
            rows["targets"].append(targets.astype(np.float32))
            rows["costs"].append(np.asarray(costs, np.float32))
            rows["mode"].append(a.mode)
            rows["same_phase"].append(enough)
    if not rows["context"]:
        raise ConfigError(f"no song has enough segments for an example ({examples.first_position + horizon + 2} "
                          "at least)")
    return Examples(**{name: np.stack(values) if name not in ("mode", "same_phase") else np.array(values)
                       for name, values in rows.items()})


def transpose(examples: Examples, rng: np.random.Generator) -> Examples:
    """The examples in other keys: each one's chroma rotated by 0 to 11 semitones (drawn), rows alike."""
    shifts = rng.integers(0, 12, size=len(examples))
    bins = (np.arange(12)[None, :] - shifts[:, None]) % 12  # new bin b holds old bin b - shift

    def rotate(x: np.ndarray) -> np.ndarray:
        # Rows may hold several segments side by side (a candidate window): rotate each one's chroma.
        rows = x.reshape(x.shape[0], x.shape[1], max(1, x.shape[2] // FEATURE_DIM), -1).copy()
        rows[..., HARMONY] = np.take_along_axis(rows[..., HARMONY], bins[:, None, None, :], axis=3)
        return rows.reshape(x.shape)

    return replace(examples, context=rotate(examples.context), candidates=rotate(examples.candidates),
                   own=rotate(examples.own), previous=rotate(examples.previous))


class ExampleBatches(keras.utils.PyDataset):
    """Batches of ``((context, candidates), target distribution)``; training draws new examples every epoch."""

    def __init__(self, analyses: list[Analysis], config: ScorerConfig, examples: ExampleConfig, *,
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
        self.labels = drawn.targets[order]

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


def most_similar_scores(examples: Examples, *, target: str) -> np.ndarray:
    """The trivial scorer: minus a timbre-and-harmony distance to segment ``t``, the one just played.

    For ``"next"`` the candidate itself is compared ("the next beat sounds like the current one"); for
    ``"standin"`` the segment before it ("jump where the music sounds like where we are": the jukebox rule,
    and what the engine's join cost starts from).

    Returns
    -------
    numpy.ndarray
        [shape=(examples, M)]
    """
    look = np.r_[TIMBRE, HARMONY]
    compared = examples.own if target == "next" else examples.previous
    difference = compared[:, :, look] - examples.current[:, None, look]
    return -np.sqrt(np.sum(difference.astype(np.float64) ** 2, axis=-1))


def rank_metrics(scores: np.ndarray, costs: np.ndarray | None = None) -> dict[str, float]:
    """Top-1 and top-5 accuracy and mean rank of candidate 0, ties broken at random (in expectation).

    Parameters
    ----------
    scores : numpy.ndarray
        [shape=(examples, M)], higher is better; candidate 0 is the one to find.
    costs : numpy.ndarray, optional
        [shape=(examples, M)] :attr:`Examples.costs`: adds ``pick_cost``, the mean cost of each example's
        top-scored candidate.
    """
    true = scores[:, :1]
    above = np.sum(scores[:, 1:] > true, axis=1)
    tied = np.sum(scores[:, 1:] == true, axis=1)

    def top(k: int) -> float:
        return float(np.mean(np.clip((k - above) / (tied + 1), 0.0, 1.0)))

    metrics = {"top1": top(1), "top5": top(5), "mean_rank": float(np.mean(1 + above + tied / 2))}
    if costs is not None:
        metrics["pick_cost"] = float(np.mean(np.take_along_axis(costs, np.argmax(scores, axis=1)[:, None], 1)))
    return metrics


def chance_metrics(examples: Examples) -> dict[str, float]:
    m = examples.candidates.shape[1]
    return {"top1": 1 / m, "top5": min(5, m) / m, "mean_rank": (m + 1) / 2,
            "pick_cost": float(np.mean(examples.costs))}


def evaluate(model: keras.Model, tasks: dict[str, Examples], *, batch_size: int = 256) -> dict:
    """The learned scorer, the most-similar scorer, the two added as the engine adds them, and chance on the same
    examples, per task, overall and per mode.

    Parameters
    ----------
    tasks : dict
        ``{"next": Examples, "standin": Examples}`` (either may be missing).
    """
    report = {}
    for target, examples in tasks.items():
        learned = np.asarray(model.predict([examples.context, examples.candidates], batch_size=batch_size,
                                           verbose=0))
        similar = most_similar_scores(examples, target=target)
        together = engine_scores(learned, similar)
        by_mode = {}
        for mode in ("beats", "onsets", "grid"):
            rows = examples.mode == mode
            if rows.any():
                by_mode[mode] = {"examples": int(rows.sum()),
                                 "learned": rank_metrics(learned[rows], examples.costs[rows]),
                                 "most_similar": rank_metrics(similar[rows], examples.costs[rows])}
        report[target] = {
            "examples": len(examples), "candidates": int(examples.candidates.shape[1]),
            "same_phase_share": float(np.mean(examples.same_phase)),
            "best_cost": float(np.mean(examples.costs[:, 0])),
            "scorers": {"learned": rank_metrics(learned, examples.costs),
                        "most_similar": rank_metrics(similar, examples.costs),
                        "learned_and_similar": rank_metrics(together, examples.costs),
                        "chance": chance_metrics(examples)},
            "by_mode": by_mode}
    return report


def engine_scores(learned: np.ndarray, similar: np.ndarray) -> np.ndarray:
    """The learned scores and the most-similar rule added as the engine's beam search adds its learned term and
    join cost: ``WEIGHT_LEARNED * log softmax(learned) - WEIGHT_JOIN * distance / median distance``.

    Parameters
    ----------
    learned, similar : numpy.ndarray
        [shape=(examples, M)]: the scorer's logits and :func:`most_similar_scores` (minus a distance).

    Returns
    -------
    numpy.ndarray
        [shape=(examples, M)], higher is better.
    """
    from engine.resynth import Sequencer

    logits = learned.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    distance = -similar
    scale = np.maximum(np.median(distance, axis=1, keepdims=True), 1e-9)
    return Sequencer.WEIGHT_LEARNED * log_probabilities - Sequencer.WEIGHT_JOIN * distance / scale


TASK_TITLES = {
    "next": "find the true next segment among {others} other segments of the song",
    "standin": "find the memory's best stand-in for the true continuation among {m} segments heard before it "
               "(pick cost: how far the chosen segment's own continuation is from the true one, dB)",
}


def format_table(report: dict) -> str:
    """The validation tables of ``report.json``, one per task, as printed after training."""
    lines = []
    for target, v in report["validation"].items():
        lines += [f"validation, {target} (trained on: {report.get('target', 'next')}): "
                  + TASK_TITLES[target].format(others=v["candidates"] - 1, m=v["candidates"])
                  + f"; {v['examples']} examples from {report['validation_songs']} songs, all candidates of the "
                  f"right bar phase in {100 * v['same_phase_share']:.0f} %",
                  f"{'scorer':<38}{'top-1':>8}{'top-5':>8}{'mean rank':>11}{'pick cost':>11}"]
        names = {"learned": "learned (query . key)", "most_similar": "most similar to the current segment",
                 "learned_and_similar": "both, added as the beam search does",
                 "chance": f"chance (1/{v['candidates']})"}
        for key, label in names.items():
            if key not in v["scorers"]:  # a report written before that scorer was added
                continue
            s = v["scorers"][key]
            lines.append(f"{label:<38}{100 * s['top1']:>7.1f}%{100 * s['top5']:>7.1f}%{s['mean_rank']:>11.2f}"
                         f"{s['pick_cost']:>11.3f}")
        lines.append(f"{'best possible':<38}{'':>8}{'':>8}{'':>11}{v['best_cost']:>11.3f}")
        for mode, row in v["by_mode"].items():
            lines.append(f"  {mode} ({row['examples']} examples): learned {100 * row['learned']['top1']:.1f}% / "
                         f"most similar {100 * row['most_similar']['top1']:.1f}% top-1")
    return "\n".join(lines)


# === Training ===


def fit_resynth(data_dir: str | Path, run_dir: str | Path, config: ScorerConfig, examples: ExampleConfig,
                data_config: DataConfig, fit_config: FitConfig, *, segments_dir: str | Path | None = None,
                workers: int = 2, verbose: int = 2) -> Path:
    """Segment a folder of audio (cached), train the scorer and write a run folder with its report.

    Parameters
    ----------
    data_dir : path
        Folder of audio files, searched recursively; split into train and validation by file as
        ``training fit`` splits it (:func:`training.split.split_files`).
    run_dir : path
        New folder for the run.
    config, examples : ScorerConfig, ExampleConfig
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
                                        seed=data_config.seed + VALIDATION_SEED_OFFSET, redraw=False)
    scorer = build_scorer(config)
    model = build_training_model(scorer)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=fit_config.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.CategoricalAccuracy(name="top1")])
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
        "target": examples.target,
        "validation": evaluate(model, _validation_tasks(validation, config, examples, data_config.seed,
                                                        drawn=validation_batches.examples),
                               batch_size=fit_config.batch_size),
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


def _validation_tasks(validation: list[Analysis], config: ScorerConfig, examples: ExampleConfig, seed: int, *,
                      drawn: Examples | None = None) -> dict[str, Examples]:
    """Validation examples of both tasks (the trained one first), each drawn as :class:`ExampleBatches` draws
    its validation batches; ``drawn``, when given, is the trained task's, already drawn that way."""
    tasks = {}
    for target in sorted(TARGETS, key=lambda name: name != examples.target):
        if target == examples.target and drawn is not None:
            tasks[target] = drawn
            continue
        rng = np.random.default_rng([seed + VALIDATION_SEED_OFFSET, 0])  # ExampleBatches' epoch 0
        tasks[target] = draw_examples(validation, config, replace(examples, target=target), rng)
    return tasks


def report_resynth(run_dir: str | Path, *, segments_dir: str | Path | None = None) -> dict:
    """Score a resynth run's best weights again on its validation songs, both tasks, and update its report.json.

    For a run trained before the stand-in task existed, or to see a scorer on the task it was not trained on.

    Returns
    -------
    dict
        The updated contents of report.json.
    """
    run_dir = Path(run_dir)
    scorer, config, settings = load_resynth_run(run_dir)
    files = [Path(p) for p in settings["validation_files"]]
    missing = [p for p in files if not p.exists()]
    if missing:
        raise ConfigError(f"{run_dir}: {len(missing)} validation songs are gone (first: {missing[0]})")
    corpus = segment_files(files, segments_dir or default_cache_dir(settings["data_dir"]), workers=2)
    validation = [corpus.analyses[p] for p in files if p in corpus.analyses]
    examples = ExampleConfig(**{**asdict(ExampleConfig()), **settings.get("examples", {})})
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report.update(target=examples.target, validation_songs=len(validation),
                  validation=evaluate(build_training_model(scorer),
                                      _validation_tasks(validation, config, examples, settings["data"]["seed"])))
    report_path.write_text(json.dumps(report, indent=2))
    return report


def is_resynth_run(run_dir: str | Path) -> bool:
    """Whether a run folder holds a resynth scorer (its config.json says ``"kind": "resynth"``)."""
    config_path = Path(run_dir) / "config.json"
    return config_path.exists() and json.loads(config_path.read_text()).get("kind") == RUN_KIND


def load_resynth_run(run_dir: str | Path) -> tuple[keras.Model, ScorerConfig, dict]:
    """Rebuild a run's scorer with its best weights.

    Returns
    -------
    tuple
        ``(scorer keras.Model, ScorerConfig, settings dict)``.
    """
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / WEIGHTS_FILE
    if not config_path.exists() or not weights_path.exists():
        raise ConfigError(f"{run_dir}: not a training run (needs config.json and {WEIGHTS_FILE})")
    settings = json.loads(config_path.read_text())
    config = ScorerConfig.from_dict(settings["model"])
    scorer = build_scorer(config)
    build_training_model(scorer).load_weights(str(weights_path))
    return scorer, config, settings


# === Export ===


def to_onnx(scorer: keras.Model, config: ScorerConfig, metadata: dict[str, str]):
    """Convert a Keras scorer to an ONNX ModelProto with dynamic batch and candidate axes, carrying ``metadata``."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from ..common.onnx_graph import OPSET, finish_graph

    # One structured argument: tf2onnx calls model(*args), and a second positional one would be ``training``.
    signature = [(tf.TensorSpec((None, config.context_segments, FEATURE_DIM + 1), tf.float32, name=CONTEXT_NAME),
                  tf.TensorSpec((None, None, config.candidate_dim), tf.float32, name=CANDIDATES_NAME))]
    proto, _ = tf2onnx.convert.from_keras(scorer, input_signature=signature, opset=OPSET)
    finish_graph(proto, metadata, inputs=(CONTEXT_NAME, CANDIDATES_NAME), outputs=(QUERY_NAME, KEYS_NAME),
                 doc="Encore resynth segment scorer, exported from Keras with tf2onnx")
    try:  # tf2onnx leaves an op it cannot convert in the graph with a warning; ONNX Runtime would refuse the file
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConfigError(f"exported scorer is not valid ONNX: {str(e).strip().splitlines()[0][:200]}") from e
    return proto


def export_resynth(run_dir: str | Path, out_path: str | Path) -> Path:
    """Write a resynth run's best weights as ONNX with the resynth contract (the seed model's twin:
    :func:`training.seed.export.export`)."""
    import onnx

    from ..common.onnx_graph import checked_output_path, project_version

    out_path = checked_output_path(out_path)
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
    target = report.get("target", "next")
    v = report["validation"][target]
    s = v["scorers"]
    return (f"{report['epochs']} epochs (best {report['best_epoch']}), trained to find the {target} segment; "
            f"validation top-1 {100 * s['learned']['top1']:.1f} % vs most-similar "
            f"{100 * s['most_similar']['top1']:.1f} % and chance {100 * s['chance']['top1']:.1f} %, pick cost "
            f"{s['learned']['pick_cost']:.2f} vs {s['most_similar']['pick_cost']:.2f} dB over {v['examples']} "
            "examples")

