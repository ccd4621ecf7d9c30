"""Encore's model contract: what an ONNX file must declare in its metadata to be loaded as a generator.

A model is a plugin. Any ONNX file whose metadata carries these keys (prefixed ``encore.``) and whose graph has
the declared input and output can be loaded, whatever trained it::

    encore.contract_version  1
    encore.generator         seed            (predicts waveform from waveform)
    encore.sample_rate       22050           Hz
    encore.chunk_s           1.0             seconds per vector
    encore.context_s         20.0            seconds in
    encore.horizon_s         10.0            seconds out
    encore.input_name        context         [shape=(batch, context_s/chunk_s, chunk_s*rate), float32]
    encore.output_name       continuation    [shape=(batch, horizon_s/chunk_s, chunk_s*rate), float32]
    encore.input_layout      batch,chunk,sample
    encore.output_layout     batch,chunk,sample
    encore.preset            compact         informative
    encore.corpus            ...             informative: what it was trained on
    encore.project_version   0.1.0           informative: Encore version that exported it

A resynth model (``encore.generator resynth``) scores which segment of the song's own memory comes next, so
it reads features, not waveform (:mod:`engine.analysis`), and declares these instead of the waveform shapes::

    encore.input_layout      batch,segment,feature   context [shape=(batch, context_segments, features + 1)]:
                                                     the last segments' features and a 0/1 "present" flag
    encore.output_layout     batch,embedding         query [shape=(batch, embedding)]
    encore.candidate_name    candidates              [shape=(batch, segments, candidate_window * features)],
                                                     any segment count
    encore.candidate_window  3                       segments per candidate row: the candidate and those before
                                                     it, oldest first (optional, default 1)
    encore.candidate_lookahead 16                    when above 0, each row ends with one more block: the mean of
                                                     the segments from the candidate on, up to this many and
                                                     never past the memory's end (optional, default 0)
    encore.key_name          keys                    [shape=(batch, segments, embedding)]
    encore.context_segments  32
    encore.feature_spec      segment-features-v1     the engine refuses a spec it does not compute
    encore.chunk_s           10.0                    one rendered chunk (= horizon_s)

The score of candidate ``j`` is ``query . keys[j]`` (trained with InfoNCE).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import ModelContractError

CONTRACT_VERSION = 1
PREFIX = "encore."
LAYOUT = "batch,chunk,sample"
#: Input and output layouts of each generator kind.
LAYOUTS = {"seed": (LAYOUT, LAYOUT), "resynth": ("batch,segment,feature", "batch,embedding")}
GENERATORS = tuple(LAYOUTS)


@dataclass(frozen=True)
class ModelContract:
    """What a generator model consumes and produces; lengths in seconds, sample counts derived."""

    sample_rate: int
    chunk_s: float
    context_s: float
    horizon_s: float
    input_name: str = "context"
    output_name: str = "continuation"
    input_layout: str = LAYOUT
    output_layout: str = LAYOUT
    generator: str = "seed"
    candidate_name: str = ""
    key_name: str = ""
    context_segments: int = 0
    candidate_window: int = 1
    candidate_lookahead: int = 0
    feature_spec: str = ""
    preset: str = ""
    corpus: str = ""
    project_version: str = ""
    contract_version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        problems = []
        if self.contract_version != CONTRACT_VERSION:
            problems.append(f"contract version {self.contract_version} (this Encore reads {CONTRACT_VERSION})")
        if self.generator not in GENERATORS:
            problems.append(f"generator {self.generator!r} (this Encore runs {', '.join(GENERATORS)})")
        expected = LAYOUTS.get(self.generator, (LAYOUT, LAYOUT))
        for name, layout in zip(("input_layout", "output_layout"), expected, strict=True):
            if getattr(self, name) != layout:
                problems.append(f"{name} {getattr(self, name)!r} (expected {layout!r} for {self.generator})")
        if self.generator == "resynth":
            from .analysis import FEATURE_SPEC

            if self.feature_spec != FEATURE_SPEC:
                problems.append(f"feature_spec {self.feature_spec!r} (this Encore computes {FEATURE_SPEC!r})")
            if self.context_segments < 1:
                problems.append(f"context_segments {self.context_segments}")
            if not 1 <= self.candidate_window <= 16:
                problems.append(f"candidate_window {self.candidate_window} (1 to 16)")
            if not 0 <= self.candidate_lookahead <= 64:
                problems.append(f"candidate_lookahead {self.candidate_lookahead} (0 to 64)")
            if not self.candidate_name or not self.key_name:
                problems.append("candidate_name and key_name are required for resynth")
        if self.sample_rate < 1000:
            problems.append(f"sample_rate {self.sample_rate} Hz")
        for name in ("chunk_s", "context_s", "horizon_s"):
            value = getattr(self, name)
            if value <= 0:
                problems.append(f"{name} {value}")
        if not problems:
            if not _whole(self.chunk_s * self.sample_rate):
                problems.append(f"chunk_s {self.chunk_s} is not a whole number of samples at {self.sample_rate} Hz")
            for name in ("context_s", "horizon_s"):
                if not _whole(getattr(self, name) / self.chunk_s):
                    problems.append(f"{name} {getattr(self, name)} is not a whole number of {self.chunk_s} s chunks")
        if problems:
            raise ModelContractError("unsupported model contract: " + "; ".join(problems))

    @property
    def chunk_samples(self) -> int:
        """Samples per vector."""
        return round(self.chunk_s * self.sample_rate)

    @property
    def context_chunks(self) -> int:
        return round(self.context_s / self.chunk_s)

    @property
    def horizon_chunks(self) -> int:
        return round(self.horizon_s / self.chunk_s)

    @property
    def context_samples(self) -> int:
        """Samples of audio the model reads, at ``sample_rate``."""
        return self.context_chunks * self.chunk_samples

    @property
    def horizon_samples(self) -> int:
        """Samples of audio the model writes, at ``sample_rate``."""
        return self.horizon_chunks * self.chunk_samples

    @property
    def input_shape(self) -> tuple[int, int]:
        """Input shape without the batch axis."""
        return (self.context_chunks, self.chunk_samples)

    @property
    def output_shape(self) -> tuple[int, int]:
        """Output shape without the batch axis."""
        return (self.horizon_chunks, self.chunk_samples)

    def to_metadata(self) -> dict[str, str]:
        """The contract as ONNX metadata properties (string to string)."""
        return {PREFIX + f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], *, source: str = "model") -> ModelContract:
        """Read a contract from ONNX metadata properties.

        Raises
        ------
        ModelContractError
            Keys are missing or values do not parse; the message names them.
        """
        values: dict = {}  # the metadata's strings, then parsed to each field's type
        missing: list[str] = []
        for f in fields(cls):
            key = PREFIX + f.name
            if key not in metadata:
                if f.name in _REQUIRED:
                    missing.append(key)
                continue
            values[f.name] = metadata[key]
        if missing:
            if not any(k.startswith(PREFIX) for k in metadata):
                raise ModelContractError(f"{source}: not an Encore model (its ONNX metadata has no {PREFIX}* keys)")
            raise ModelContractError(f"{source}: Encore contract incomplete, missing {', '.join(missing)}")
        try:
            for name, kind in _TYPES.items():
                if name in values:
                    values[name] = kind(values[name])
        except ValueError as e:
            raise ModelContractError(f"{source}: Encore contract has a bad value ({e})") from e
        try:
            return cls(**values)
        except ModelContractError as e:
            raise ModelContractError(f"{source}: {e}") from e

    def describe(self) -> list[tuple[str, str]]:
        """Rows for ``engine info``: (name, value with units)."""
        if self.generator == "resynth":
            return [
                ("generator", "resynth (scores the song's own segments; renders from the original audio)"),
                ("preset", self.preset or "-"), ("analysis rate", f"{self.sample_rate} Hz"),
                ("context", f"{self.context_s:g} s, at most {self.context_segments} segments"),
                ("candidates", f"{self.candidate_window} segment{'s' * (self.candidate_window > 1)} per key"
                               + (f", and the mean of the {self.candidate_lookahead} from it on"
                                  if self.candidate_lookahead else "")),
                ("horizon", f"{self.horizon_s:g} s per chunk"),
                ("features", self.feature_spec),
                ("input", f"{self.input_name} {self.input_layout}; {self.candidate_name} batch,segment,feature"),
                ("output", f"{self.output_name} {self.output_layout}; {self.key_name} batch,segment,embedding"),
                ("trained on", self.corpus or "-"), ("exported by", f"Encore {self.project_version or '?'}"),
                ("contract", f"version {self.contract_version}"),
            ]
        return [
            ("generator", self.generator), ("preset", self.preset or "-"),
            ("sample rate", f"{self.sample_rate} Hz"),
            ("context", f"{self.context_s:g} s = {self.context_chunks} x {self.chunk_s:g} s chunks"),
            ("horizon", f"{self.horizon_s:g} s = {self.horizon_chunks} x {self.chunk_s:g} s chunks"),
            ("input", f"{self.input_name} {self.input_layout} (batch, {self.context_chunks}, {self.chunk_samples})"),
            ("output", f"{self.output_name} {self.output_layout} (batch, {self.horizon_chunks}, "
                       f"{self.chunk_samples})"),
            ("trained on", self.corpus or "-"), ("exported by", f"Encore {self.project_version or '?'}"),
            ("contract", f"version {self.contract_version}"),
        ]


_REQUIRED = ("sample_rate", "chunk_s", "context_s", "horizon_s", "contract_version", "generator")
_TYPES = {"sample_rate": int, "chunk_s": float, "context_s": float, "horizon_s": float, "contract_version": int,
          "context_segments": int, "candidate_window": int, "candidate_lookahead": int}


def _whole(value: float) -> bool:
    return abs(value - round(value)) < 1e-6 and round(value) >= 1
