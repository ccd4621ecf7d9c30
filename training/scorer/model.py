"""The scorer's Keras model: two independent branches, and the score of candidate ``j`` is ``query . keys[j]``.

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

Its config (:class:`ScorerConfig`) also fixes the contract it is exported with (:func:`contract_for`). How it is
trained: :mod:`training.scorer.examples` and :mod:`training.scorer.fit`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import keras
import numpy as np
from keras import layers

from engine.analysis import (
    ANALYSIS_RATE,
    FEATURE_DIM,
    FEATURE_SPEC,
    HARMONY,
    TIMBRE,
    candidate_dim,
)
from engine.contract import ModelContract
from engine.errors import ConfigError

# === Config ===

#: Names of the graph's inputs and outputs, as the contract declares them.
CONTEXT_NAME, CANDIDATES_NAME, QUERY_NAME, KEYS_NAME = "context", "candidates", "query", "keys"
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
