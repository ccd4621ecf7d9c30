"""The paper's dense encoder-decoder over raw waveform, built with the Keras functional API.

From "Harmonizing Emotions: a musical journey through innovative extrapolation" (2023): 20 one-second chunks
X_0..X_19 in, 10 one-second chunks out.

Unit (one step)
    Take the step's history, a list of chunk-length vectors, and mix it *per sample*: sample i of the output is
    a learned weighted sum of sample i of every vector in the history (Dense(1) over the history axis), then
    LeakyReLU(0.3), then the hidden stack. The paper writes "concatenate to (22050 * (t+1)), reshape to
    (22050, t+1)"; taken literally that reshape interleaves neighbouring samples of the *same* chunk into a row.
    We implement the reading the paper means, "per sample, across the history": stack the history to
    (t+1, 22050) and permute to (22050, t+1) before the Dense(1).
Hidden stack
    Four blocks of Dense -> LeakyReLU -> BatchNormalization (512, 256, 128, 64 in the paper), then Dense(22050)
    with LeakyReLU.
Encoder
    Step t mixes the history [X_t, S_{t-1}, ..., S_0] (at t = 0 just [X_0]) and gives S_t.
Context block
    Mixes [S_0 .. S_19] and gives C.
Decoder
    Step k mixes [C, Y_{k-1}, ..., Y_0] and gives Y_k, the k-th predicted second.

Presets
    ``paper``: every step has its own weights (31 units, ~400 M parameters at the paper's widths).
    ``compact``: the recurrent reading of the paper's "custom recurrent units": one encoder unit shared by all 20
    steps, one context unit, one decoder unit shared by all 10 steps. A shared Dense(1) needs a fixed-width
    history, so the history is zero-padded to its longest length and ordered newest first: weight k always means
    "k steps back", which is what sharing a unit across time means, and zero slots add nothing through the linear
    mix, so step t computes exactly the unshared formula with shared weights. (A running summary would instead
    change what the unit sees, and a mask would add a second input for no gain.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import keras
from keras import layers

from engine.contract import ModelContract

# === Config ===

PRESET_WIDTHS = {"paper": (512, 256, 128, 64), "compact": (128, 64, 32, 16)}

#: Name of the model's single input, [shape=(batch, context_chunks, chunk_samples), dtype=float32].
INPUT_NAME = "context"
#: Name of the model's single output, [shape=(batch, horizon_chunks, chunk_samples), dtype=float32].
OUTPUT_NAME = "continuation"
LEAKY_SLOPE = 0.3


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a seed (waveform) model; lengths in seconds, sample counts derived.

    Parameters
    ----------
    preset : {"paper", "compact"}
        Unshared units (the paper) or units shared across steps.
    sample_rate : int
        Model rate in Hz (the paper: 22050).
    chunk_s : float
        Length of one input/output vector in seconds (the paper: 1.0).
    context_s, horizon_s : float
        Seconds in (20) and out (10).
    widths : tuple of int
        Widths of the four hidden blocks; the preset's when empty.
    """

    preset: str = "compact"
    sample_rate: int = 22050
    chunk_s: float = 1.0
    context_s: float = 20.0
    horizon_s: float = 10.0
    widths: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.preset not in PRESET_WIDTHS:
            raise ValueError(f"preset must be one of {sorted(PRESET_WIDTHS)}, got {self.preset!r}")
        if not self.widths:
            object.__setattr__(self, "widths", PRESET_WIDTHS[self.preset])
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        # The exported contract must hold, so build it once here with the engine's own rules; the sample
        # counts below come from it.
        object.__setattr__(self, "_contract", ModelContract(sample_rate=self.sample_rate, chunk_s=self.chunk_s,
                                                            context_s=self.context_s, horizon_s=self.horizon_s))

    @property
    def chunk_samples(self) -> int:
        return self._contract.chunk_samples

    @property
    def context_chunks(self) -> int:
        return self._contract.context_chunks

    @property
    def horizon_chunks(self) -> int:
        return self._contract.horizon_chunks

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return cls(**{**values, "widths": tuple(values.get("widths", ()))})


# === Layers ===


class HistoryMix(layers.Layer):
    """Dense(1) per sample across a history: (batch, steps, samples) -> (batch, samples), then LeakyReLU."""

    def __init__(self, steps: int, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps
        self.permute = layers.Permute((2, 1))  # (steps, samples) -> (samples, steps): the per-sample reading
        self.mix = layers.Dense(1)
        self.activation = layers.LeakyReLU(negative_slope=LEAKY_SLOPE)
        self.flatten = layers.Flatten()

    def build(self, input_shape):
        per_sample = (input_shape[0], input_shape[2], input_shape[1])
        self.mix.build(per_sample)
        self.built = True

    def call(self, history):
        return self.flatten(self.activation(self.mix(self.permute(history))))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


class HiddenStack(layers.Layer):
    """Four Dense -> LeakyReLU -> BatchNormalization blocks, then Dense(samples) with LeakyReLU."""

    def __init__(self, widths: tuple[int, ...], samples: int, **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.samples = samples
        self.blocks = []
        for width in self.widths:
            # synchronized: under a distribution strategy the batch statistics (and so the moving mean and
            # variance) are those of the global batch, identical on every worker; alone it changes nothing.
            self.blocks += [layers.Dense(width), layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
                            layers.BatchNormalization(synchronized=True)]
        self.out = layers.Dense(samples)
        self.out_activation = layers.LeakyReLU(negative_slope=LEAKY_SLOPE)

    def build(self, input_shape):
        shape = input_shape
        for layer in self.blocks:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.out.build(shape)
        self.built = True

    def call(self, x, training=None):
        for layer in self.blocks:
            x = layer(x, training=training) if isinstance(layer, layers.BatchNormalization) else layer(x)
        return self.out_activation(self.out(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.samples)

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "samples": self.samples}


class Unit(layers.Layer):
    """One step of the paper: mix the history per sample, then the hidden stack.

    Input [shape=(batch, steps, samples)]; output [shape=(batch, samples)].
    """

    def __init__(self, steps: int, widths: tuple[int, ...], samples: int, **kwargs):
        super().__init__(**kwargs)
        self.steps, self.widths, self.samples = steps, tuple(widths), samples
        self.history_mix = HistoryMix(steps)
        self.hidden = HiddenStack(self.widths, samples)

    def build(self, input_shape):
        self.history_mix.build(input_shape)
        self.hidden.build((input_shape[0], input_shape[2]))
        self.built = True

    def call(self, history, training=None):
        return self.hidden(self.history_mix(history), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.samples)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "widths": list(self.widths), "samples": self.samples}


CUSTOM_OBJECTS = {"HistoryMix": HistoryMix, "HiddenStack": HiddenStack, "Unit": Unit}


# === Functional model ===


def _stack(vectors: list, width: int, samples: int, name: str):
    """Stack newest-first vectors to (batch, width, samples), zero-padding missing history at the end."""
    if len(vectors) < width:
        zeros = layers.Lambda(lambda v: keras.ops.zeros_like(v), name=f"{name}_pad")(vectors[0])
        vectors = vectors + [zeros] * (width - len(vectors))
    if len(vectors) == 1:
        return layers.Reshape((1, samples), name=f"{name}_stack")(vectors[0])
    return layers.Lambda(lambda vs: keras.ops.stack(vs, axis=1), name=f"{name}_stack")(vectors)


def _steps(inputs: list, config: ModelConfig, unit_name: str, stack_name: str, shared: bool) -> list:
    """Run one unit per step; step t mixes ``[inputs[t], out_{t-1} .. out_0]`` and gives out_t.

    Shared: one unit for every step over a zero-padded history as long as the longest one. Unshared (the
    paper): unit t has its own weights and a history of exactly t + 1.
    """
    samples, longest = config.chunk_samples, len(inputs)
    shared_unit = Unit(longest, config.widths, samples, name=unit_name) if shared else None
    outputs: list = []
    for t, x in enumerate(inputs):
        history = [x] + outputs[::-1]
        steps = longest if shared else t + 1
        unit = shared_unit or Unit(steps, config.widths, samples, name=f"{unit_name}_{t}")
        outputs.append(unit(_stack(history, steps, samples, f"{stack_name}_{t}")))
    return outputs


def build_model(config: ModelConfig) -> keras.Model:
    """Build the seed model for a config.

    Returns
    -------
    keras.Model
        Input ``context`` [shape=(batch, context_chunks, chunk_samples), float32] and output
        ``continuation`` [shape=(batch, horizon_chunks, chunk_samples), float32], waveform at
        ``config.sample_rate``.
    """
    samples, n_in, n_out, widths = config.chunk_samples, config.context_chunks, config.horizon_chunks, config.widths
    shared = config.preset == "compact"
    context = keras.Input((n_in, samples), name=INPUT_NAME)
    chunks = [layers.Lambda(lambda c, i=i: c[:, i, :], name=f"x_{i}")(context) for i in range(n_in)]

    # Encoder: S_t from [X_t, S_{t-1} .. S_0].
    states = _steps(chunks, config, "encoder", "enc", shared)
    # Context block: C from [S_19 .. S_0] (newest first, like every other history).
    summary = Unit(n_in, widths, samples, name="context_block")(_stack(states[::-1], n_in, samples, "ctx"))
    # Decoder: Y_k from [C, Y_{k-1} .. Y_0].
    outputs = _steps([summary] * n_out, config, "decoder", "dec", shared)
    continuation = _stack(outputs, n_out, samples, "out")
    continuation = layers.Identity(name=OUTPUT_NAME)(continuation)
    return keras.Model(context, continuation, name=f"encore_seed_{config.preset}")


def parameter_count(config: ModelConfig) -> int:
    """Parameters of ``build_model(config)``, counted without building it (the paper preset is 1.6 GB).

    BatchNormalization's moving mean and variance are counted, as Keras's ``count_params`` does.
    """
    samples, n_in, n_out, widths = config.chunk_samples, config.context_chunks, config.horizon_chunks, config.widths
    stack, previous = 0, samples
    for width in widths:
        stack += previous * width + width + 4 * width
        previous = width
    stack += previous * samples + samples

    def mixer(steps: int) -> int:
        return steps + 1

    if config.preset == "compact":
        return 3 * stack + mixer(n_in) + mixer(n_in) + mixer(n_out)
    encoder = sum(stack + mixer(t + 1) for t in range(n_in))
    decoder = sum(stack + mixer(k + 1) for k in range(n_out))
    return encoder + stack + mixer(n_in) + decoder
