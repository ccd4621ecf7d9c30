"""A real JACK audio server (dummy driver) for playback tests.

The server is started before sounddevice is imported (PortAudio only sees JACK if it runs by then) and is
stopped only after the test process has ended: a watcher shell waits for the process to exit, then stops the
server, because stopping JACK under a process that still holds PortAudio clients can crash it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from engine.jack import jack_ports

JACK_RATE = 44100
JACK_PERIOD = 1024


def start_jack() -> None:
    """Start this test process's own jackd with the dummy driver (unless it runs) and wait until it answers.

    The server is named after the process (``$JACK_DEFAULT_SERVER``, which PortAudio, the JACK tools and every
    subprocess inherit): two test runs side by side on one machine must not share a server, or the first to end
    stops the other's.
    """
    if shutil.which("jackd") is None:
        raise RuntimeError("jackd is not installed (Debian: jackd2); `make test` installs it")
    name = os.environ.setdefault("JACK_DEFAULT_SERVER", f"encore-test-{os.getpid()}")
    if jack_ports():
        return
    watcher = (f"jackd -n {name} --no-realtime -d dummy -r {JACK_RATE} -p {JACK_PERIOD} >/dev/null 2>&1 & "
               f"server=$!; "
               f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 0.5; done; kill $server")
    subprocess.Popen(["sh", "-c", watcher], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not jack_ports():
        if time.monotonic() > deadline:
            raise RuntimeError("jackd did not answer jack_lsp within 10 s")
        time.sleep(0.05)
