"""Wiring a JACK server's ports with JACK's own command-line tools (``jack_lsp``, ``jack_connect``): what the soak
benchmark (:mod:`engine.soak`) and the playback tests use to build a room out of ports.

The server is the one ``$JACK_DEFAULT_SERVER`` names (the default server without it), as for PortAudio.
"""

from __future__ import annotations

import subprocess
import time

#: PortAudio's name for JACK's host API.
HOST_API = "JACK Audio Connection Kit"


def jack_ports(env: dict[str, str] | None = None) -> list[str]:
    """Ports of the JACK server that ``env`` names (the default server without it); none when it is not up or
    JACK's tools are not installed."""
    try:
        result = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, timeout=10)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return []
    return result.stdout.split() if result.returncode == 0 else []


def jack_device(sd, kind: str) -> int:
    """The JACK device's index for ``kind`` ('input' or 'output'), found by host API name, never by index.

    Raises
    ------
    RuntimeError
        PortAudio sees no JACK device of that kind.
    """
    apis = [i for i, a in enumerate(sd.query_hostapis()) if a["name"] == HOST_API]
    for index, device in enumerate(sd.query_devices()):
        if device["hostapi"] in apis and device[f"max_{kind}_channels"] > 0:
            return index
    raise RuntimeError(f"no JACK {kind} device among {sd.query_devices()}")


def connect(source: str, destination: str) -> None:
    """Connect port ``source`` to port ``destination``."""
    subprocess.run(["jack_connect", source, destination], check=True, timeout=10)


def disconnect_capture(inputs: list[str]) -> None:
    """Unplug the server's capture ports from ``inputs``, so they hear only what is wired to them."""
    for port in jack_ports():
        if port.startswith("system:capture"):
            for ours in inputs:
                subprocess.run(["jack_disconnect", port, ours], timeout=10, capture_output=True)


def new_ports(before: set[str], kind: str, count: int = 2) -> list[str]:
    """Ports of ``kind`` (":in", ":out") that appeared since ``before``; JACK registers them shortly after a stream
    starts.

    Raises
    ------
    RuntimeError
        They did not appear within 5 s.
    """
    deadline = time.monotonic() + 5
    while len(ports := sorted(p for p in set(jack_ports()) - before if kind in p)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"JACK ports {kind} did not appear: {jack_ports()}")
        time.sleep(0.02)
    return ports
