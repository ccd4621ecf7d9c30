"""The engine is light: importing it never loads TensorFlow, Keras or Qt, and the runtime does not need them."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_engine_loads_no_training_framework():
    probe = ("import sys, engine, engine.cli, engine.bench, engine.extend\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'tensorflow', 'keras', 'tf2onnx', 'PyQt6', 'training', 'torch'})\n"
             "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_runtime_dependencies_do_not_pull_tensorflow():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    for heavy in ("tensorflow", "keras", "tf2onnx", "torch"):
        assert heavy not in runtime
    assert any(dep.startswith("tensorflow") for dep in project["optional-dependencies"]["train"])


def test_the_player_imports_the_engine_and_nothing_from_training():
    probe = ("import sys, player, player.window, player.render, player.app\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'tf2onnx', "
             "'training', 'torch'})\n"
             "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.stdout.strip() == ""
    extra = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
                     ["player"]).lower()
    assert "pyqt6" in extra and "tensorflow" not in extra
