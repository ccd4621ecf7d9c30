"""Audio devices as PortAudio sees them, and the exit a program takes when one died under it."""

from __future__ import annotations

import os
import sys

from ..errors import EncoreError
from .types import AudioDevice

# Set once any engine in this process lost its device. PortAudio then blocks forever in its exit handler
# (Pa_Terminate on a dead JACK server), so a program that is done leaves through exit_if_device_lost.
DEVICE_LOST_IN_PROCESS = False


def mark_device_lost() -> None:
    """Remember that a device died in this process (:func:`exit_if_device_lost` then leaves at once)."""
    global DEVICE_LOST_IN_PROCESS
    DEVICE_LOST_IN_PROCESS = True


def exit_if_device_lost(code: int) -> None:
    """End a program that is done with ``os._exit(code)`` if an audio device died under it, else return.

    Everything the program had to say must be said and written before: no exit handlers run.
    """
    if DEVICE_LOST_IN_PROCESS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def audio_devices() -> list[AudioDevice]:
    """Every audio device PortAudio sees (none without a sound card or an audio server).

    Raises
    ------
    EncoreError
        PortAudio itself is missing.
    """
    sd = _sounddevice()
    apis = [api["name"] for api in sd.query_hostapis()]
    default_in, default_out = (int(d) if d is not None else -1 for d in sd.default.device)
    return [AudioDevice(index=i, name=d["name"], host_api=apis[d["hostapi"]], inputs=int(d["max_input_channels"]),
                        outputs=int(d["max_output_channels"]), default_samplerate=float(d["default_samplerate"]),
                        is_default_input=i == default_in, is_default_output=i == default_out)
            for i, d in enumerate(sd.query_devices())]


def list_devices() -> list[str]:
    """Lines describing every audio device, the defaults marked as ``python -m sounddevice`` does.

    Raises
    ------
    EncoreError
        PortAudio sees no device at all (no sound card and no audio server running).
    """
    sd = _sounddevice()
    devices = sd.query_devices()
    if len(devices) == 0:
        raise EncoreError("no audio devices: no sound card, and no audio server (JACK, PulseAudio) is running")
    return str(devices).splitlines() + ["('>' default input, '<' default output, '*' both)"]


def _sounddevice():
    """Import sounddevice on first use: it needs PortAudio, which a render or a test may not."""
    try:
        import sounddevice
    except OSError as e:  # PortAudio's shared library is missing
        raise EncoreError(f"audio playback needs PortAudio (Debian: libportaudio2): {e}") from e
    return sounddevice
