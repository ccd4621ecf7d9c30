"""What the engine's process and the generator's process share: the constants, the errors, and what goes down the
pipe to describe a generator (:mod:`engine.process`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ExtendConfig, ResynthConfig
from ..contract import ModelContract

#: Seconds of audio the shared ring holds; a longer block goes through it in pieces.
RING_S = 30.0
#: Deaths in a row, with no block returned between them, after which the generator's failure is final.
MAX_RESTARTS = 3
#: Songs (or live memories) both sides keep by token: the started one and one analysed ahead.
KEPT_SONGS = 2


class GeneratorProcessError(RuntimeError):
    """The generator's process died :data:`MAX_RESTARTS` times in a row, or could not be started."""


class GenerationInterrupted(Exception):
    """A call gave up waiting because the engine is stopping (not a failure)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the engine shows of the model that runs in the generator's process."""

    name: str
    contract: ModelContract


@dataclass(frozen=True)
class GeneratorSpec:
    """How the child opens the generator (:func:`engine.generators.open_generator`'s arguments, picklable)."""

    model: str | None
    generator: str | None
    config: ExtendConfig
    resynth: ResynthConfig | None
    threads: int = 1
