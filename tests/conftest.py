"""Shared fixtures: seeded randomness, synthetic songs, hand-built models."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.audio import Waveform
from tests.jack_server import start_jack
from tests.onnx_models import make_model


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20231124)


def synthetic_song(seconds: float, sample_rate: int, channels: int = 2, *, seed: int = 0) -> Waveform:
    """A deterministic "song": a chord of faded sines over a 120 bpm beat of noise bursts, panned per channel.

    Returns
    -------
    Waveform
        [shape=(frames, channels), dtype=float32], peak about 0.6.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    chord = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip((220.0, 277.18, 329.63), rng.uniform(0, 6, 3),
                                                               strict=True)) / 3
    swell = 0.75 + 0.25 * np.sin(2 * np.pi * 0.25 * t)
    beat_phase = (t * 2.0) % 1.0
    beat = np.exp(-beat_phase * 30) * rng.standard_normal(t.size) * 0.5
    mono = 0.45 * chord * swell + 0.15 * beat
    pans = np.linspace(0.7, 1.0, channels) if channels > 1 else np.ones(1)
    return Waveform((mono[:, None] * pans[None, :]).astype(np.float32), sample_rate)


def bar_song(seconds: float, sample_rate: int, channels: int = 2, *, bpm: float = 120.0, meter: int = 4,
             seed: int = 0) -> Waveform:
    """A deterministic song with bars: a kick on every beat (accented on the downbeat), hats between, and a chord
    that changes every bar (C, A minor, F, G), slightly different per channel.

    Returns
    -------
    Waveform
        [shape=(frames, channels), dtype=float32], peak under 1.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    beat = 60.0 / bpm
    in_beat = t % beat
    beat_index = (t // beat).astype(int)
    accent = np.where(beat_index % meter == 0, 1.0, 0.5)
    kick = accent * np.exp(-in_beat * 25) * np.sin(2 * np.pi * 55 * in_beat * (1 + np.exp(-in_beat * 40)))
    hats = np.exp(-((t + beat / 2) % beat) * 60) * rng.standard_normal(t.size) * 0.12
    chords = np.array([[261.63, 329.63, 392.0], [220.0, 261.63, 329.63], [174.61, 220.0, 261.63],
                       [196.0, 246.94, 293.66]])
    bar = (beat_index // meter) % 4
    pad = sum(np.sin(2 * np.pi * chords[bar, k] * t) for k in range(3)) / 3
    mono = 0.5 * kick + hats + 0.25 * pad * (0.6 + 0.4 * np.exp(-in_beat * 3))
    pans = np.linspace(0.8, 1.0, channels) if channels > 1 else np.ones(1)
    return Waveform((mono[:, None] * pans[None, :]).astype(np.float32), sample_rate)


@pytest.fixture
def analysis_threads(monkeypatch) -> list[str]:
    """The names of the threads the resynth generator analyses a memory on, in order, as they happen."""
    import engine.resynth as resynth_module

    names: list[str] = []
    real = resynth_module.analyse

    def recording(mono):
        names.append(threading.current_thread().name)
        return real(mono)

    monkeypatch.setattr(resynth_module, "analyse", recording)
    return names


@pytest.fixture(scope="session")
def repeat_model(tmp_path_factory):
    """An 8 kHz model that continues a context with its own last 10 s."""
    return make_model(tmp_path_factory.mktemp("models") / "repeat.onnx", "repeat")


@pytest.fixture(scope="session")
def sd():
    """sounddevice, seeing a running JACK server (dummy driver) that lives as long as the test process."""
    start_jack()
    import sounddevice  # after the server runs, so PortAudio sees it

    sounddevice._terminate()  # and rescan, in case another test imported it before the server ran
    sounddevice._initialize()
    return sounddevice
