"""Encore's engine: continue a song, endlessly, with an ONNX generator model.

Scripts start with the one-liners :func:`extend` and :func:`load_audio`; for streaming or control use
:func:`open_generator` (an :class:`Extender` for the paper's ``seed`` model, a :class:`Resynthesizer` for the
default ``jukebox`` and for ``resynth``, its twin with a learned scorer), and to play through the sound card,
:class:`Engine`. The engine never imports TensorFlow, Keras or Qt: models arrive as ONNX files that carry Encore's
contract (:mod:`engine.contract`).
"""

from .audio import AudioRepairWarning, Waveform, load_audio, repair_samples, save_audio
from .config import ExtendConfig, ResynthConfig
from .continuator import Continuator, default_model_path
from .contract import ModelContract
from .errors import (
    AudioContentError,
    AudioFileError,
    ConfigError,
    EncoreError,
    ModelContractError,
    RenderInterrupted,
)
from .extend import Extender
from .generators import GENERATORS, extend, load_model, open_generator
from .playback import Engine, EngineConfig, EngineEvent, EngineState, EngineStatus
from .rendering import ExtendStats, Generator
from .resynth import Resynthesizer

__version__ = "0.1.0"

__all__ = [
    "GENERATORS", "AudioContentError", "AudioFileError", "AudioRepairWarning", "ConfigError", "Continuator",
    "EncoreError", "Engine", "EngineConfig", "EngineEvent", "EngineState", "EngineStatus", "ExtendConfig",
    "ExtendStats", "Extender", "Generator", "ModelContract", "ModelContractError", "RenderInterrupted",
    "ResynthConfig", "Resynthesizer", "Waveform", "default_model_path", "extend", "load_audio", "load_model",
    "open_generator", "repair_samples", "save_audio",
]
