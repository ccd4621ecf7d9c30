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


class RenderInterrupted(KeyboardInterrupt):
    """Ctrl-C during a render to a file: the file was finished with what had been rendered.

    Parameters
    ----------
    path : pathlib.Path
        The output file: the new, shorter render, or, when nothing had been rendered, the file that was there
        before (untouched) or none.
    seconds : float
        Seconds the file holds (0.0 when nothing was written).
    """

    def __init__(self, path, seconds: float):
        super().__init__(path, seconds)
        self.path, self.seconds = path, seconds

    def __str__(self) -> str:
        if not self.seconds:
            return f"nothing was rendered yet; {self.path} was not written"
        return f"{self.path} holds the {self.seconds:.1f} s rendered until then, faded out at its end"
