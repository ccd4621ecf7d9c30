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

JACK_RATE = 44100
JACK_PERIOD = 1024
HOST_API = "JACK Audio Connection Kit"


def jack_ports(env: dict[str, str] | None = None) -> list[str]:
    """Ports of the JACK server that ``env`` names (the default server without it); none when it is not up."""
    result = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, timeout=10)
    return result.stdout.split() if result.returncode == 0 else []


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


def jack_device(sd, kind: str) -> int:
    """The JACK device's index for ``kind`` ('input' or 'output'), found by host API name, never by index."""
    api = next(i for i, a in enumerate(sd.query_hostapis()) if a["name"] == HOST_API)
    for index, device in enumerate(sd.query_devices()):
        if device["hostapi"] == api and device[f"max_{kind}_channels"] > 0:
            return index
    raise RuntimeError(f"no JACK {kind} device among {sd.query_devices()}")


def connect(source: str, destination: str) -> None:
    subprocess.run(["jack_connect", source, destination], check=True, timeout=10)


def disconnect_capture(inputs: list[str]) -> None:
    """Unplug the dummy driver's capture ports from ``inputs``, so they hear only what a test wires to them."""
    for port in jack_ports():
        if port.startswith("system:capture"):
            for ours in inputs:
                subprocess.run(["jack_disconnect", port, ours], timeout=10)


def new_ports(before: set[str], kind: str, count: int = 2) -> list[str]:
    """Ports of ``kind`` that appeared since ``before``; JACK registers them shortly after a stream starts."""
    deadline = time.monotonic() + 5
    while len(ports := sorted(p for p in set(jack_ports()) - before if kind in p)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"JACK ports {kind} did not appear: {jack_ports()}")
        time.sleep(0.02)
    return ports
