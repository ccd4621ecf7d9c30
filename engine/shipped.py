"""The files Encore ships: the default models and the demo song, found with ``importlib.resources``.

A wheel installs ``assets/`` as the package ``encore_assets`` (see pyproject.toml), so these resolve in
site-packages from any working directory as well as in a source checkout (an editable install maps the package to
``assets/``). A checkout used without any install falls back to its own ``assets/`` folder.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

ASSETS_PACKAGE = "encore_assets"
_SOURCE_ASSETS = Path(__file__).resolve().parent.parent / "assets"
_extracted = contextlib.ExitStack()  # files unpacked from a zipped install, removed at exit
atexit.register(_extracted.close)


def shipped_file(relative: str) -> Path:
    """The path of a shipped file, e.g. ``"models/encore-compact.onnx"`` (it may not exist: callers say so).

    Parameters
    ----------
    relative : str
        Its path inside ``assets/``, with ``/`` separators.

    Returns
    -------
    pathlib.Path
        A real file on disk: ONNX Runtime and libsndfile open paths, so a resource inside a zip is unpacked.
    """
    try:
        root = resources.files(ASSETS_PACKAGE)
    except ModuleNotFoundError:
        return _SOURCE_ASSETS / relative
    resource = root.joinpath(*relative.split("/"))
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(resources.as_file(resource))


#: The shipped models: the paper's seed generator (compact preset) and the resynth scorer.
DEFAULT_MODEL = shipped_file("models/encore-compact.onnx")
DEFAULT_RESYNTH_MODEL = shipped_file("models/encore-resynth.onnx")
#: The demo song: the first 45 s of Maple Leaf Rag (provenance in assets/README.md).
DEMO_SONG = shipped_file("demo/demo-song.ogg")
