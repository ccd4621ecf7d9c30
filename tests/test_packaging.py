"""The wheel works on its own: a plain (not editable) install, run from another folder, extends the demo song.

The shipped models and the demo song travel as the package ``encore_assets`` and are found with
importlib.resources, so nothing may depend on the source tree's paths. The wheel is built and installed for real;
only its dependencies are borrowed from this interpreter (a .pth line) instead of downloaded again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from engine.shipped import DEMO_SONG

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Encore's wheel, built from this checkout as a user's ``pip install .`` builds it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                   check=True, capture_output=True, text=True, timeout=600)
    (built,) = out.glob("encore-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (no editable link to the checkout); returns its bin folder."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # numpy, ONNX Runtime & co. from this interpreter's site-packages; its editable link to the checkout is a .pth
    # file there, which a path added this way does not run.
    Path(purelib, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, text=True, timeout=300)
    return venv / "bin"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ENCORE_MODEL", "ENCORE_RESYNTH_MODEL")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_wheel_carries_the_models_the_demo_song_and_the_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("encore_assets/models/encore-compact.onnx", "encore_assets/models/encore-resynth.onnx",
                    "encore_assets/demo/demo-song.ogg", "encore_assets/README.md",
                    "encore-0.1.0.dist-info/licenses/LICENSE", "encore/cli.py", "engine/shipped.py"):
        assert shipped in names
    assert not any(name.startswith("encore_assets/figures") for name in names), "figures stay in the source tree"
    # pyproject.toml lists the packages by name: a subpackage left off that list would be missing from the wheel
    sources = {str(p.relative_to(ROOT)) for package in ("encore", "engine", "player", "training")
               for p in (ROOT / package).rglob("*.py")}
    assert sources - names == set()


@pytest.mark.slow
def test_an_installed_encore_extends_the_demo_song_from_any_folder(installed, tmp_path):
    where = _run([str(installed / "python"), "-c", "import engine, encore_assets; "
                  "print(engine.__file__); print(encore_assets.__file__)"], cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert all(str(ROOT) not in line for line in where.stdout.splitlines()), where.stdout

    out = tmp_path / "endless-demo.wav"
    result = _run([str(installed / "encore"), "extend", "--demo", "-o", str(out), "--duration", "20s", "-q",
                   "--no-ending"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    demo_seconds = sf.info(str(DEMO_SONG)).duration
    assert sf.info(str(out)).duration == pytest.approx(demo_seconds + 20, abs=0.1)

    seed = _run([str(installed / "encore"), "info", "--generator", "seed"], cwd=tmp_path)
    assert seed.returncode == 0 and "encore-compact.onnx" in seed.stdout, seed.stderr


@pytest.mark.slow
def test_the_one_command_names_its_parts_and_says_which_extra_is_missing(installed, tmp_path):
    helped = _run([str(installed / "encore"), "--help"], cwd=tmp_path)
    assert helped.returncode == 0
    for command in ("extend", "play", "live", "info", "devices", "bench", "player", "train"):
        assert f"    {command} " in helped.stdout
    # the borrowed site-packages has TensorFlow, so hide it as a venv without the train extra lacks it: a training
    # command that cannot import it ends in one line naming the extra, exit 2
    missing = _run([str(installed / "python"), "-c",
                    "import sys; sys.modules['tensorflow'] = None; from encore.cli import main; "
                    "sys.exit(main(['train', 'bench']))"], cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("encore train bench: error: this command needs tensorflow, from the training "
                                     "extra: pip install 'encore[train]'"), missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    for user_error in (["extend", "-o", "x.wav"], ["extend", "--demo", "song.ogg", "-o", "x.wav"]):
        result = _run([str(installed / "encore"), *user_error], cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("encore extend: error: ")
