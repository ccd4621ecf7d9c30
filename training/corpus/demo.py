"""The shipped demo song: the start of Scott Joplin's Maple Leaf Rag (1899) on FluidSynth's piano.

Rendered from music21's corpus like the training scores (:mod:`training.corpus.scores`), but never one of them,
and written so that the same call gives the same bytes (``assets/demo/demo-song.ogg`` is its output).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from engine.audio import Waveform, save_audio
from engine.errors import AudioFileError, ConfigError

from ..common.files import first_line
from .arrangement import set_programs, set_tempo
from .jobs import audible_span
from .ogg import write_ogg_vorbis
from .scores import (
    DEMO_SCORE,
    PEAK_DBFS,
    check_renderer,
    drop_measures_after,
    expand_repeats,
    music21_corpus,
    parse_score,
    render_midi,
    write_midi,
)

#: Tempo of the demo, quarter notes per minute (Joplin asks for "Tempo di marcia", and "not fast").
DEMO_TEMPO_QPM = 96.0


def render_demo_song(path: str | os.PathLike, *, sample_rate: int = 44100, seconds: float = 45.0) -> Path:
    """Render the demo song: the start of :data:`training.corpus.scores.DEMO_SCORE` on FluidSynth's piano, in stereo.

    The song is cut at ``seconds`` in the middle of the music (it is where Encore carries on), with a 5 ms
    ramp against a click and no fade. Its peak is :data:`training.corpus.scores.PEAK_DBFS`. The same call writes
    the same bytes.

    Parameters
    ----------
    path : str or os.PathLike
        ``.ogg`` (Vorbis), ``.flac`` or ``.wav`` (16-bit). Missing folders are created.
    sample_rate : int
        Output rate, in Hz.
    seconds : float
        Length of the song, in seconds.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    AudioFileError
        Unsupported extension or a destination that cannot be written.
    ConfigError
        Bad settings, or FluidSynth, its soundfont or music21 missing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".ogg", ".flac", ".wav"):
        raise AudioFileError(f"{path}: cannot write '{path.suffix}'; use .ogg, .flac or .wav")
    if not 1.0 <= seconds <= 600.0:
        raise ConfigError(f"demo song length must be 1 to 600 s, got {seconds}")
    if sample_rate < 8000:
        raise ConfigError(f"sample rate must be at least 8000 Hz, got {sample_rate}")
    check_renderer()
    _, corpus_root = music21_corpus()

    with tempfile.TemporaryDirectory(prefix="encore-demo-") as tmp:
        midi_path = Path(tmp) / "demo.mid"
        score = parse_score(corpus_root / DEMO_SCORE)
        score = expand_repeats(score)[0]
        # Only the start is heard: writing and rendering the whole rag would take three times as long.
        drop_measures_after(score, (seconds + 5.0) * DEMO_TEMPO_QPM / 60.0)
        set_tempo(score, DEMO_TEMPO_QPM)
        set_programs(score, [0] * len(score.parts))
        write_midi(score, midi_path)
        stereo = render_midi([midi_path], sample_rate, Path(tmp) / "demo.wav", max_seconds=seconds + 60.0)

    start, end = audible_span(stereo.mean(axis=1), sample_rate)
    length = round(seconds * sample_rate)
    if end - start < length:
        raise ConfigError(f"the demo score lasts only {(end - start) / sample_rate:.0f} s, "
                          f"shorter than the {seconds} s asked for")
    song = stereo[start:start + length]
    ramp = max(1, round(0.005 * sample_rate))
    song[-ramp:] *= np.linspace(1.0, 0.0, ramp, dtype=np.float32)[:, None]
    song *= 10 ** (PEAK_DBFS / 20) / max(float(np.max(np.abs(song))), 1e-9)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AudioFileError(f"{path}: cannot create its folder ({first_line(e)})") from e
    if suffix != ".ogg":
        return save_audio(path, Waveform(song, sample_rate))
    return write_ogg_vorbis(path, song, sample_rate)
