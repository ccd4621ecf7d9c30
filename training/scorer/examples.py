"""Contrastive examples drawn from segmented songs: a position ``t``, its context, and candidates to rank.

Two targets (``ExampleConfig.target``):

``"next"`` (the default)
    The true next segment ``t + 1`` against other segments of the song with its bar phase (never segment ``t``
    itself). With a candidate window over 1 this is nearly trivial (the key of ``t + 1`` holds ``t``, which the
    context ends with); it teaches continuity rather than prediction.
``"standin"`` (the shipped scorer's)
    At a song's end the engine must jump, and the true next segment is never in its memory.
    So for a position ``t`` the candidates are segments of the memory heard so far (``1 .. t - 8``, with
    ``t + 1``'s bar phase when there are enough, as the engine offers them), and each is scored by how far
    playing on from it in the original order is from the song's true continuation: :func:`continuation_costs`
    over the next ``standin_segments`` segments (mean absolute log-mel difference plus
    ``standin_harmony_weight`` times the chroma difference, in dB). The target is a soft distribution over the
    candidates that favours the cheapest (``softmax(-sharpness * z)``, ``z`` the costs standardised within the
    example).

New positions and candidates are drawn each epoch (seeded), in a random key (:func:`transpose`); the
validation examples are drawn once, untransposed (:func:`validation_tasks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import keras
import numpy as np

from engine.analysis import (
    FEATURE_DIM,
    HARMONY,
    TIMBRE,
    Analysis,
    candidate_rows,
    context_features,
)
from engine.errors import ConfigError

from .model import ScorerConfig

#: What a scorer can be trained to find (:class:`ExampleConfig`).
TARGETS = ("standin", "next")
#: Added to the run's seed for the validation examples, so they are never a training epoch's.
VALIDATION_SEED_OFFSET = 1_000_003


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


def validation_tasks(validation: list[Analysis], config: ScorerConfig, examples: ExampleConfig, seed: int, *,
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
