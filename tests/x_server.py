"""A real X server (Xvfb) for tests of a real window: started on a free display, stopped by the caller."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path


def start_xvfb(width: int = 1280, height: int = 800) -> tuple[subprocess.Popen, str]:
    """Start Xvfb on the first free display from :90 and wait until its socket answers.

    Returns
    -------
    process, display
        Terminate ``process`` when done; ``display`` is for ``DISPLAY`` (e.g. ``:90``).
    """
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed (Debian: xvfb); `make test` installs it")
    for number in range(90, 160):
        if Path(f"/tmp/.X{number}-lock").exists():
            continue
        process = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if Path(f"/tmp/.X11-unix/X{number}").exists():
                return process, f":{number}"
            time.sleep(0.02)
        process.kill()  # taken meanwhile, or too slow: the next number
        process.wait()
    raise RuntimeError("no free X display between :90 and :159")
