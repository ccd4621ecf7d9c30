"""Agreement of a beat analysis with itself on recorded songs, which have no labels.

Where a track repeats a passage (found from its own chroma and mel recurrence, independently of the analysis
judged: :func:`find_repeats`), the downbeats found in the first occurrence, moved by the repeat's lag, should fall
on the downbeats found in the repeat (:func:`repeat_agreement`); and the two halves of a track, analysed apart,
should get the same meter. Tracks (:func:`recorded_tracks`): Debian's ``wesnoth-1.16-music`` and
``supertuxkart-data`` (the evaluation set's packages, never trained on), whole.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

from engine.analysis import ANALYSIS_RATE, HOP, Analysis
from engine.audio import load_audio, to_model_input
from engine.errors import AudioContentError, AudioFileError, ConfigError

from ..common.files import first_line
from ..corpus.packages import dpkg_files
from .beat_scores import TEMPO_TOLERANCE, compared_methods, f_measure, summarise

#: Recorded packages (never corpus sources) and how many tracks of each are judged.
RECORDED_PACKAGES: tuple[str, ...] = ("wesnoth-1.16-music", "supertuxkart-data")
RECORDED_PER_PACKAGE = 6
#: Shortest recorded track judged, in seconds: two halves of 30 s at least.
MIN_RECORDED_S = 60.0
#: Repeats are looked for on blocks of this many onset frames (93 ms), over windows of REPEAT_S seconds
#: at lags of MIN_REPEAT_LAG_S or more; a window whose mean chroma and mel cosine similarity with its repeat
#: reaches REPEAT_SIMILARITY counts (a section played again scores 0.85-0.97 on the recordings, unrelated
#: passages 0.6-0.75). At most REPEATS_PER_TRACK, each from its own stretch and at its own lag.
REPEAT_BLOCK = 4
REPEAT_S = 10.0
MIN_REPEAT_LAG_S = 6.0
REPEAT_SIMILARITY = 0.8
REPEATS_PER_TRACK = 4


@dataclass(frozen=True)
class Repeat:
    """A passage of a track heard again.

    Attributes
    ----------
    start_s, seconds : float
        Where the first occurrence starts and how long the window is.
    lag_s : float
        Where the repeat starts, less ``start_s``: refined to a fraction of a frame on the onsets.
    similarity : float
        Mean cosine similarity of the two occurrences' chroma and mel blocks.
    """

    start_s: float
    seconds: float
    lag_s: float
    similarity: float


def find_repeats(mono: np.ndarray) -> list[Repeat]:
    """Passages a track plays again, from its own chroma and mel, independently of any beat tracking.

    Each lag of whole blocks (:data:`REPEAT_BLOCK`) is scored by the similarity of every window of
    :data:`REPEAT_S` with the window that lag later; the best windows at or above :data:`REPEAT_SIMILARITY`
    are taken greedily, none overlapping another in either occurrence nor within 1 s of another's lag. Each
    lag is then refined on the onset envelope, whose cross-correlation between the two occurrences peaks where
    their attacks line up (to a fraction of a frame: parabolic interpolation).

    Parameters
    ----------
    mono : numpy.ndarray
        [shape=(frames,), dtype=float32] at :data:`engine.analysis.ANALYSIS_RATE`.

    Returns
    -------
    list of Repeat
        Most similar first, at most :data:`REPEATS_PER_TRACK`.
    """
    import librosa

    power = np.abs(librosa.stft(mono, n_fft=2048, hop_length=HOP)) ** 2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=ANALYSIS_RATE, n_mels=32), ref=np.max,
                                 amin=1e-10, top_db=80.0)
    onset = librosa.onset.onset_strength(S=mel_db, sr=ANALYSIS_RATE, hop_length=HOP).astype(np.float64)
    chroma = librosa.feature.chroma_stft(S=power, sr=ANALYSIS_RATE, tuning=0.0)
    blocks = chroma.shape[1] // REPEAT_BLOCK

    def pooled(x: np.ndarray) -> np.ndarray:  # (dims, frames) -> (dims, blocks)
        return x[:, :blocks * REPEAT_BLOCK].reshape(x.shape[0], blocks, REPEAT_BLOCK).mean(axis=2)

    harmony = pooled(chroma)
    harmony /= np.maximum(np.linalg.norm(harmony, axis=0, keepdims=True), 1e-9)
    timbre = pooled(mel_db)
    timbre = (timbre - timbre.mean(axis=1, keepdims=True)) / np.maximum(timbre.std(axis=1, keepdims=True), 1e-9)
    timbre /= np.maximum(np.linalg.norm(timbre, axis=0, keepdims=True), 1e-9)
    look = np.concatenate([harmony, timbre]) / np.sqrt(2.0)
    block_s = REPEAT_BLOCK * HOP / ANALYSIS_RATE
    width, min_lag = round(REPEAT_S / block_s), round(MIN_REPEAT_LAG_S / block_s)
    candidates = []
    for lag in range(min_lag, blocks - width):
        similarity = np.convolve(np.sum(look[:, :-lag] * look[:, lag:], axis=0), np.ones(width) / width, "valid")
        start = int(np.argmax(similarity))
        if similarity[start] >= REPEAT_SIMILARITY:
            candidates.append((float(similarity[start]), start, lag))
    repeats: list[Repeat] = []
    taken: list[tuple[int, int]] = []
    for similarity, start, lag in sorted(candidates, reverse=True):
        spans = [(start, start + width), (start + lag, start + lag + width)]
        if (any(a < e and s < b for a, b in spans for s, e in _occupied(taken, width))
                or any(abs(lag - other) * block_s < 1.0 for _, other in taken)):
            continue
        taken.append((start, lag))
        repeats.append(Repeat(start_s=start * block_s, seconds=width * block_s,
                              lag_s=_refined_lag(onset, start * REPEAT_BLOCK, lag * REPEAT_BLOCK,
                                                 width * REPEAT_BLOCK) * HOP / ANALYSIS_RATE,
                              similarity=round(similarity, 3)))
        if len(repeats) == REPEATS_PER_TRACK:
            break
    return repeats


def _occupied(taken: list[tuple[int, int]], width: int) -> list[tuple[int, int]]:
    """The block spans that earlier repeats' two occurrences cover."""
    return [span for start, lag in taken for span in ((start, start + width), (start + lag, start + lag + width))]


def _refined_lag(onset: np.ndarray, start: int, lag: int, width: int) -> float:
    """The lag, in frames, within a block either way of ``lag``, at which the onsets of the two windows
    correlate best; between frames by parabolic interpolation."""
    reach = REPEAT_BLOCK
    first = onset[start:start + width]
    first = first - first.mean()
    scores = []
    for shift in range(-reach, reach + 1):
        second = onset[start + lag + shift:start + lag + shift + width]
        if second.shape[0] < width:
            scores.append(-np.inf)
            continue
        second = second - second.mean()
        scores.append(float(np.dot(first, second) / max(np.linalg.norm(first) * np.linalg.norm(second), 1e-12)))
    best = int(np.argmax(scores))
    shift = 0.0
    if 0 < best < len(scores) - 1 and np.isfinite(scores[best - 1]) and np.isfinite(scores[best + 1]):
        before, at, after = scores[best - 1], scores[best], scores[best + 1]
        curve = before - 2 * at + after
        shift = 0.5 * (before - after) / curve if curve < 0 else 0.0
    return lag + best - reach + shift


def repeat_agreement(analysis: Analysis, repeats: Sequence[Repeat]) -> float | None:
    """How well an analysis's downbeats carry over a track's repeats: the F-measure
    (:data:`training.evaluation.beat_scores.F_WINDOW_S`) of the downbeats found in each repeat against those found
    in its first occurrence moved by the lag, averaged over the repeats (None without a beat or without repeats).

    A beat a third of a bar off, a wrong meter or a metrical level that does not divide the bar makes a
    repeat's downbeats fall elsewhere than its first occurrence's (a lag of whole bars is a whole number of
    true bars, rarely of false ones); a downbeat consistently on the wrong beat of the bar does not.
    """
    if analysis.mode != "beats" or not repeats:
        return None
    downbeats = analysis.bounds[:-1][analysis.phase == 0] / analysis.sample_rate
    scores = []
    for repeat in repeats:
        # A beat's width in from each edge, so that a downbeat just outside one window cannot miss the other.
        margin = 60.0 / max(analysis.tempo_bpm, 1.0)
        lo, hi = repeat.start_s + margin, repeat.start_s + repeat.seconds - margin
        first = downbeats[(downbeats >= lo) & (downbeats < hi)] + repeat.lag_s
        again = downbeats[(downbeats >= lo + repeat.lag_s) & (downbeats < hi + repeat.lag_s)]
        scores.append(f_measure(first, again))
    return float(np.mean(scores))


def recorded_tracks(per_package: int = RECORDED_PER_PACKAGE) -> list[str]:
    """The recorded tracks judged: the evaluation set's fixed shuffle of each package's tracks
    (:func:`training.corpus.evalset.package_tracks`, seeded ``encore-evalset:<package>``), the first ``per_package``
    of each that last :data:`MIN_RECORDED_S` or more.

    Raises
    ------
    ConfigError
        Neither package is installed.
    """
    from ..corpus.evalset import package_tracks

    chosen = []
    for package in RECORDED_PACKAGES:
        tracks = sorted(package_tracks(package, dpkg_files(package)))
        random.Random(f"encore-evalset:{package}").shuffle(tracks)
        kept = 0
        for track in tracks:
            if kept == per_package:
                break
            try:
                if soundfile.info(track).duration >= MIN_RECORDED_S:
                    chosen.append(track)
                    kept += 1
            except (soundfile.LibsndfileError, RuntimeError, OSError):
                continue
    if not chosen:
        raise ConfigError(f"none of {', '.join(RECORDED_PACKAGES)} is installed: "
                          f"sudo apt-get install {' '.join(RECORDED_PACKAGES)}")
    return chosen


def evaluate_recorded(tracks: Sequence[str], progress: Callable[[str], None] | None = None) -> dict:
    """Label-free agreement of each analysis with itself on recorded tracks.

    Per track and analysis: ``repeat_f`` (:func:`repeat_agreement` over :func:`find_repeats`), ``halves_meter``
    (the two halves, analysed apart, get the same meter) and ``halves_tempo`` (and tempi within
    :data:`training.evaluation.beat_scores.TEMPO_TOLERANCE`; both None unless both halves have a beat), with the
    meter and tempo of the whole.

    Returns
    -------
    dict
        ``{"tracks": [...], "summary": {method: means over tracks}}``.
    """
    say = progress or (lambda line: None)
    methods = compared_methods()
    rows = []
    for track in tracks:
        try:
            mono = to_model_input(load_audio(track), ANALYSIS_RATE)
        except (AudioFileError, AudioContentError) as e:
            say(f"{track}: skipped, {first_line(e)}")
            continue
        repeats = find_repeats(mono)
        middle = mono.shape[0] // 2
        row = {"track": track, "seconds": round(mono.shape[0] / ANALYSIS_RATE, 1),
               "repeats": [asdict(r) for r in repeats]}
        for method, analyse in methods.items():
            whole, first, second = analyse(mono), analyse(mono[:middle]), analyse(mono[middle:])
            agreement = repeat_agreement(whole, repeats)
            beats = all(a.mode == "beats" for a in (first, second))
            row[method] = {
                "repeat_f": None if agreement is None else round(agreement, 3),
                "halves_meter": bool(first.meter == second.meter) if beats else None,
                "halves_tempo": bool(abs(first.tempo_bpm / second.tempo_bpm - 1) <= TEMPO_TOLERANCE) if beats else None,
                "beats": whole.mode == "beats", "meter": whole.meter, "tempo_bpm": round(whole.tempo_bpm, 2)}
        say(f"{Path(track).name}: {len(repeats)} repeats; " + "; ".join(
            f"{m} {row[m]['tempo_bpm']:.0f} bpm {row[m]['meter']}, repeat F "
            + ("-" if row[m]["repeat_f"] is None else f"{row[m]['repeat_f']:.2f}") for m in methods))
        rows.append(row)
    return {"tracks": rows, "summary": {m: summarise([r[m] for r in rows]) for m in methods}}
