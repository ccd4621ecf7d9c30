"""Where Encore's log goes: a file in the user's cache folder, so a bug's traceback is kept without filling the
terminal, where the user gets one line.

The engine's threads log with :mod:`logging` (``engine.playback`` and the rest); the commands and the player call
:func:`configure` once at start. A library user who configures logging themselves gets the records as usual.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

#: The packages whose loggers write to Encore's log.
LOGGERS = ("engine", "player", "training", "encore")
_configured: Path | None = None


def log_path() -> Path:
    """``$ENCORE_LOG``, else ``$XDG_CACHE_HOME/encore/encore.log`` (``~/.cache/encore/encore.log``)."""
    if os.environ.get("ENCORE_LOG"):
        return Path(os.environ["ENCORE_LOG"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "encore" / "encore.log"


def configure(level: int = logging.INFO) -> Path | None:
    """Send Encore's log records to :func:`log_path` (1 MB, two old files kept); returns the file, or None when
    it cannot be written (then warnings and errors go to stderr, as Python does without a handler)."""
    global _configured
    if _configured is not None:
        return _configured
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=2,
                                                                        encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s: "
                                           "%(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # the file has them; the terminal gets one line from the command
    _configured = path
    return path
