"""The dev set: 40 s clips of the training corpus's *validation* songs, for choosing the engine's settings.

The evaluation set (:mod:`training.corpus.evalset`) must not be tuned on, and the training songs flatter a learned
scorer, so the resynth sequencer's weights are chosen on clips of the songs ``training fit`` holds out: the
same split by file (:func:`training.corpus.split.split_files`, ``files`` and ``seed`` as for ``training fit``).
``training evaluate DEVSET --generators resynth,jukebox`` then scores them exactly as it scores the
evaluation set.

Which songs: a fixed shuffle of the validation songs (numpy seed ``seed``), skipping songs under
:data:`MIN_SONG_S` and clips whose RMS is under :data:`MIN_RMS`. Where in a song: the 40 s that start 30 % of the
way into the rest of it, past any intro. Clips keep the song's rate and channels, as 16-bit WAV
``OUT_DIR/<nn>-<song>.wav``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

from engine.audio import load_audio
from engine.errors import ConfigError, EncoreError

from .split import DataConfig, list_audio_files, split_files

#: Length of a clip, and where it starts: this share of the song's length that remains after the clip.
CLIP_S = 40.0
START_SHARE = 0.3
#: Shortest song a clip is cut from (a clip from a shorter one would hold its start or its ending).
MIN_SONG_S = 60.0
#: Clips quieter than this RMS (about -40 dBFS) are not music in full flow.
MIN_RMS = 0.01


def validation_songs(corpus_dir: str | os.PathLike, *, files: int = 0, seed: int = 0) -> list[Path]:
    """The songs of ``corpus_dir`` that ``training fit --files --seed`` holds out, in the dev set's fixed shuffle
    (numpy seed ``seed``): where the engine's settings are chosen, clipped (:func:`build_devset`) or whole (the
    long listen's ``--dev-corpus``).

    Parameters
    ----------
    corpus_dir : str or os.PathLike
        Folder of audio files, searched recursively (the training corpus).
    files, seed : int
        The split, as ``training fit --files --seed``.

    Returns
    -------
    list of pathlib.Path
        Every validation song, none of the training songs.

    Raises
    ------
    ConfigError
        No folder, or under 2 audio files in it (too few to split).
    """
    _, validation = split_files(list_audio_files(corpus_dir), DataConfig(files=files, seed=seed))
    return [validation[index] for index in np.random.default_rng(seed).permutation(len(validation))]


def build_devset(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, *, clips: int = 60, files: int = 0,
                 seed: int = 0, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Cut ``clips`` clips from the validation songs of ``corpus_dir`` into ``out_dir``.

    Parameters
    ----------
    corpus_dir : str or os.PathLike
        Folder of audio files, searched recursively (the training corpus).
    out_dir : str or os.PathLike
        Created if needed; clips already there are overwritten.
    clips : int
        Clips wanted; fewer when there are not enough long validation songs.
    files, seed : int
        The split, as ``training fit --files --seed``.
    progress : callable, optional
        Called with a line per clip.

    Returns
    -------
    list of pathlib.Path
        The clips written, in order.

    Raises
    ------
    ConfigError
        No audio in ``corpus_dir``, ``clips`` under 1, or no validation song long enough.
    """
    if clips < 1:
        raise ConfigError(f"clips must be 1 or more, got {clips}")
    say = progress or (lambda line: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path in validation_songs(corpus_dir, files=files, seed=seed):
        try:
            song = load_audio(path)
        except EncoreError as e:
            say(f"{path.name}: skipped ({e})")
            continue
        if song.seconds < MIN_SONG_S:
            continue
        length = round(CLIP_S * song.sample_rate)
        start = round(START_SHARE * (song.frames - length))
        clip = song.samples[start:start + length]
        if float(np.sqrt(np.mean(clip.astype(np.float64) ** 2))) < MIN_RMS:
            continue
        target = out / f"{len(written):02d}-{path.stem[:40]}.wav"
        soundfile.write(target, clip, song.sample_rate, subtype="PCM_16")
        written.append(target)
        say(f"{target.name}: {path} from {start / song.sample_rate:.1f} s")
        if len(written) == clips:
            break
    if not written:
        raise ConfigError(f"{corpus_dir}: no validation song is {MIN_SONG_S:g} s or longer")
    return written
