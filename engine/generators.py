"""Choosing a generator: ``jukebox`` (the default), ``resynth`` or ``seed`` (the paper's model).

``jukebox`` and ``resynth`` sequence the song's own bars in phrases (:mod:`engine.sequencer`); resynth also
weighs each jump by its learned scorer. The scorer has not earned the default (issue 21): on the 36 held-out
clips it is even with plain similarity, not better by two standard errors (``assets/figures/evaluation.md``).

A model file says what it is in its contract (``encore.generator``), so ``--model FILE`` alone is enough;
``--generator`` picks a shipped default, and the two must agree when both are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import Waveform
from .config import ExtendConfig, ResynthConfig
from .errors import ConfigError, ModelContractError


@dataclass(frozen=True)
class GeneratorKind:
    """One entry of the registry: what a user picks, and how menus and help describe it."""

    name: str
    #: What it is, in a few words, for ``--generator``'s help and the player's Model menu.
    summary: str
    #: Whether it runs an ONNX model (``--model`` applies).
    uses_model: bool


#: Every generator, the default first: the one place that lists them (the command line, the player's Model menu
#: and :func:`load_model` read it).
REGISTRY: dict[str, GeneratorKind] = {kind.name: kind for kind in (
    GeneratorKind("jukebox", "the song's own bars, re-sequenced in phrases by similarity (the default)", False),
    GeneratorKind("resynth", "the same, each jump also weighed by the learned scorer", True),
    GeneratorKind("seed", "the 2023 paper's waveform model", True),
)}
#: Generator names, the default first.
GENERATORS = tuple(REGISTRY)
DEFAULT_GENERATOR = GENERATORS[0]


def load_model(model=None, *, generator: str | None = None, threads: int = 1):
    """Load the model a generator runs.

    Parameters
    ----------
    model : str, os.PathLike or a loaded model, optional
        An ONNX file (its contract says which generator it drives), or None for ``generator``'s shipped default.
        A loaded :class:`~engine.continuator.Continuator`, :class:`~engine.scorer.SegmentScorer` or
        :class:`~engine.resynth.SimilarityScorer` is returned as it is.
    generator : {"jukebox", "resynth", "seed"}, optional
        Without a file, default :data:`DEFAULT_GENERATOR`; with a file, what the file declares, and if given it
        must match.
    threads : int
        ONNX Runtime intra-op threads.

    Returns
    -------
    Continuator or SegmentScorer or SimilarityScorer

    Raises
    ------
    ModelContractError
        Unknown generator, a file that is not an Encore model, or one made for another generator.
    """
    from .continuator import Continuator, open_model
    from .resynth import SimilarityScorer
    from .scorer import SegmentScorer

    if isinstance(model, Continuator | SegmentScorer | SimilarityScorer):
        return model
    if generator is not None and generator not in GENERATORS:
        raise ModelContractError(f"unknown generator {generator!r} (choose from {', '.join(GENERATORS)})")
    if model is None:
        generator = generator or DEFAULT_GENERATOR
    if generator is not None and not REGISTRY[generator].uses_model:
        if model is not None:
            raise ModelContractError(f"the {generator} generator uses no model: leave out --model")
        return SimilarityScorer()
    if model is None:
        return SegmentScorer(threads=threads) if generator == "resynth" else Continuator(threads=threads)
    opened = open_model(Path(model), threads=threads)  # once: its contract says which class runs it
    declared = opened[1].generator
    if generator is not None and generator != declared:
        raise ModelContractError(f"{model}: a {declared} model, but the {generator} generator was asked for")
    runner = SegmentScorer if declared == "resynth" else Continuator
    return runner(model, threads=threads, opened=opened)


def open_generator(model=None, config=None, *, generator: str | None = None, resynth=None, threads: int = 1):
    """A streaming generator ready for ``start(song)``: :class:`~engine.extend.Extender` for ``seed``,
    :class:`~engine.resynth.Resynthesizer` for ``resynth`` and ``jukebox``.

    Parameters
    ----------
    model, generator, threads
        As in :func:`load_model`.
    config : ExtendConfig, optional
    resynth : ResynthConfig, optional
        Sequencing and rendering settings of ``resynth`` and ``jukebox`` (``variety`` among them).

    Returns
    -------
    engine.rendering.Generator
        An :class:`~engine.extend.Extender` or a :class:`~engine.resynth.Resynthesizer`: each has ``start``,
        ``next_block``, ``extend``, ``render``, ``write``, ``stats``, ``joins``, ``segmentation`` and ``reset``.
    """
    from .continuator import Continuator
    from .extend import Extender
    from .resynth import Resynthesizer

    loaded = load_model(model, generator=generator, threads=threads)
    if isinstance(loaded, Continuator):
        return Extender(loaded, config)
    return Resynthesizer(loaded, config, resynth=resynth)


def extend(samples: np.ndarray, *, sample_rate: int, seconds: float | None = None, minutes: float | None = None,
           model: str | None = None, generator: str | None = None, variety: float | None = None,
           only_extension: bool = False, config: ExtendConfig | None = None) -> np.ndarray:
    """Extend a song in one call: the song followed by its continuation.

    For streaming, progress, statistics or reusing a loaded model, use :func:`engine.open_generator` (an
    :class:`Extender` or a :class:`~engine.resynth.Resynthesizer`).

    Parameters
    ----------
    samples : numpy.ndarray
        [shape=(frames,) or (frames, channels)] the song, float in [-1, 1].
    sample_rate : int
        Rate of ``samples`` in Hz; the result has the same rate.
    seconds, minutes : float
        Length of the continuation (give one).
    model : str, optional
        ONNX model path (its contract says which generator it drives); the generator's shipped model when None.
    generator : {"jukebox", "resynth", "seed"}, optional
        Default :data:`engine.generators.DEFAULT_GENERATOR` (``jukebox``).
    variety : float, optional
        resynth and jukebox: 0 (the song's own order) to 1 (wander); default 0.5.
    only_extension : bool
        Return only the continuation.
    config : ExtendConfig, optional

    Returns
    -------
    numpy.ndarray
        Same layout as ``samples`` (1-D stays 1-D), float32.
    """
    if (seconds is None) == (minutes is None):
        raise ConfigError("give exactly one of seconds= or minutes=")
    length = seconds if seconds is not None else float(minutes or 0.0) * 60.0
    samples = np.asarray(samples, dtype=np.float32)
    song = Waveform(samples, sample_rate)
    resynth = ResynthConfig() if variety is None else ResynthConfig(variety=variety)
    with open_generator(model, config, generator=generator, resynth=resynth) as extender:
        out = extender.extend(song, length, only_extension=only_extension).samples
    return out[:, 0] if samples.ndim == 1 else out
