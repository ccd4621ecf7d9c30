"""One exception root for Encore.

Every error a user can cause (a bad file, a bad model, a bad argument) is an :class:`EncoreError`;
the command-line tools print its message on one line and exit non-zero. Anything else is a bug.
"""

from __future__ import annotations


class EncoreError(Exception):
    """Root of every error Encore raises for a user's input."""


class AudioFileError(EncoreError):
    """An audio file is missing, unreadable, empty, or cannot be written."""


class AudioContentError(EncoreError):
    """Audio that was read fine but cannot be continued (silence, too short, nonsense values)."""


class ModelContractError(EncoreError):
    """An ONNX file is not an Encore model, or its contract does not match what is asked of it."""


class ConfigError(EncoreError):
    """A setting is out of range or inconsistent with another one."""
