"""Shared fixtures: seeded randomness, synthetic songs, hand-built models."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from engine.audio import Waveform
from tests.jack_server import start_jack
from tests.onnx_models import make_model

#: What a test needs, marked from the fixtures it asks for, so that ``make test-fast`` (``-m "not slow and not
#: audio_server and not gui"``) keeps the unit tests of the edit-test loop without a list to maintain by hand.
NEEDS = {"audio_server": {"sd"}, "gui": {"qtbot", "display"}}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, fixtures in NEEDS.items():
            if fixtures & set(getattr(item, "fixturenames", ())):
                item.add_marker(marker)


@pytest.fixture(scope="session", autouse=True)
def encore_log(tmp_path_factory):
    """The tests' Encore log (engine.logs), never the user's ~/.cache; subprocesses inherit it."""
    path = tmp_path_factory.mktemp("log") / "encore.log"
    os.environ["ENCORE_LOG"] = str(path)
    return path


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


#: The sections of :func:`phrase_song`: a chord progression (one chord a bar, roots in Hz) and a lead's
#: overtone weights, each unlike the others.
SECTIONS = {
    "A": ((261.63, 220.0, 174.61, 196.0), (1.0, 0.0, 0.0)),       # C Am F G, a pure tone
    "B": ((293.66, 392.0, 329.63, 246.94), (1.0, 0.5, 0.33)),     # D G E B, brighter
    "C": ((349.23, 311.13, 233.08, 277.18), (1.0, 0.0, 0.6)),     # F Eb Bb C#, hollow
    "D": ((207.65, 185.0, 164.81, 155.56), (0.6, 1.0, 0.2)),      # Ab F# E Eb, nasal
}


def phrase_song(sections: str = "ABAC", sample_rate: int = 22050, channels: int = 1, *, bars_per_section: int = 8,
                bpm: float = 120.0, meter: int = 4, ending: bool = False, seed: int = 0) -> Waveform:
    """A deterministic song in sections (:data:`SECTIONS`): each a chord progression, one chord a bar over 4-bar
    phrases, with a lead of its own timbre playing the chord's root on every beat, an octave higher in a section's
    second phrase than in its first; a kick on every beat (the downbeat accented) and hats between run through it
    all. Bar 0 starts at 0 s.

    Parameters
    ----------
    ending : bool
        Close on a last chord (the first section's first) that rings for two bars and dies away, as a song's own
        ending does; without it the song stops mid-music at the last section's end.

    Returns
    -------
    Waveform
        [shape=(frames, channels), dtype=float32], peak under 1.
    """
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    bars = len(sections) * bars_per_section + (2 if ending else 0)
    t = np.arange(round(bars * meter * beat * sample_rate)) / sample_rate
    in_beat, beat_index = t % beat, (t // beat).astype(int)
    bar_index = beat_index // meter
    accent = np.where(beat_index % meter == 0, 1.0, 0.5)
    kick = accent * np.exp(-in_beat * 25) * np.sin(2 * np.pi * 55 * in_beat * (1 + np.exp(-in_beat * 40)))
    hats = np.exp(-((t + beat / 2) % beat) * 60) * rng.standard_normal(t.size) * 0.08
    section = np.minimum(bar_index // bars_per_section, len(sections) - 1)
    mono = 0.5 * kick + hats
    for k, name in enumerate(sections):
        roots, overtones = SECTIONS[name]
        inside = (section == k) & (bar_index < len(sections) * bars_per_section)
        root = np.asarray(roots)[bar_index[inside] % 4]
        octave = 2.0 ** (1 + (bar_index[inside] % bars_per_section) // 4 % 2)  # each phrase of a section its own
        tt = t[inside]
        chord = sum(np.sin(2 * np.pi * root * ratio * tt) for ratio in (1.0, 1.26, 1.5)) / 3
        lead = sum(w * np.sin(2 * np.pi * octave * root * (h + 1) * tt) for h, w in enumerate(overtones))
        mono[inside] += (0.2 * chord + 0.15 * lead * np.exp(-in_beat[inside] * 4))
    if ending:
        tail = bar_index >= len(sections) * bars_per_section
        since = t[tail] - t[tail][0]
        mono[tail] = 0.35 * sum(np.sin(2 * np.pi * SECTIONS[sections[0]][0][0] * r * t[tail]) for r in (1, 1.26, 1.5)) \
            / 3 * np.exp(-since * 2.5)
    pans = np.linspace(0.8, 1.0, channels) if channels > 1 else np.ones(1)
    return Waveform((0.8 * mono[:, None] * pans[None, :]).astype(np.float32), sample_rate)


@pytest.fixture
def analysis_threads(monkeypatch) -> list[str]:
    """The names of the threads the resynth generator analyses a memory on, in order, as they happen."""
    import engine.resynth as resynth_module

    names: list[str] = []
    real = resynth_module.analyse

    def recording(mono, **kwargs):
        names.append(threading.current_thread().name)
        return real(mono, **kwargs)

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
