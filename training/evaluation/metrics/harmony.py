"""How close a continuation's harmony comes to the real one's (key profiles), and whether it stays in the key of the
music before it (Krumhansl-Schmuckler key estimates and chroma profiles)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from engine.audio import resample

from .signals import as_mono, cut_to_shorter, is_silent, stft_sizes

#: :func:`harmony_profile`: the rate (Hz) and hop (samples, 23 ms; a power of two, as the multirate CQT
#: needs) of its constant-Q chroma.
HARMONY_RATE = 22050
HARMONY_HOP = 512
#: Krumhansl-Kessler key profiles (Krumhansl 1990), tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
#: Two chroma profiles at least this correlated count as the same key even when the estimates differ.
KEY_PROFILE_CORRELATION = 0.8


def harmony_distance(generated: np.ndarray, true: np.ndarray, *, sample_rate: int) -> float:
    """How far the continuation's harmony is from the real one's: 1 minus the concordance of their key profiles.

    Each signal's key profile is its mean chroma over the whole window (constant-Q chroma, 36 bins an octave
    folded to 12 pitch classes, each frame scaled to a maximum of 1), taken relative to its own mean
    (``p / mean(p) - 1``: how much more or less each pitch class sounds than the average one, whatever the
    texture's overall level). The two relative profiles ``u`` (generated) and ``v`` (true) are compared with
    Lin's concordance correlation coefficient, ``2 <u, v> / (|u|^2 + |v|^2)`` (their means are 0 by
    construction): 1 when the same pitch classes stand out by as much, 0 when they share no structure, -1 when
    the one's prominent classes are the other's weak ones. The distance is 1 minus that. A whole 10 s profile
    is the key and the chords in it, not their order: a continuation in the song's key, on its chords, scores
    well even where it plays them at other moments (a beat-synchronous comparison would punish that as much
    as a wrong key).

    Why degenerate output ranks last: silence, a flat profile (or non-finite audio, read as silence) has no
    relative contrast, so ``u = 0`` and the distance is exactly 1. Noise of any colour spreads evenly over
    the pitch classes of a constant-Q (log-frequency) analysis, so its relative profile is nearly flat (2-4 %
    contrast, the standard deviation over the mean, over 10 s, against about 30 % for music) and its distance
    stays near 1: its leftover ripple is random in direction but counts only as much as it is large. A plain
    correlation (Pearson, or a cosine of mean-centred profiles) normalises that ripple to full size and reads
    it as a shape: measured, white noise correlated up to 0.74 with some transposition of a song's profile.
    And the cosine of uncentred chroma (the measure this replaces) scores a flat profile as close to anything,
    so a faint hiss came out best of all generators. Per-frame scaling makes the level irrelevant: a hiss
    30 dB down is judged as noise, not as near-silence.

    Parameters
    ----------
    generated, true : numpy.ndarray
        [shape=(frames,)] mono; the longer is cut to the shorter.
    sample_rate : int
        In Hz.

    Returns
    -------
    float
        0 to 2: 0 for the same key profile, 1 for no shared harmony (silence, noise, or either side flat),
        up to 2 for opposite profiles (a tritone away scores about 1.3).
    """
    generated, true = cut_to_shorter(generated, true)
    u, v = (_relative_profile(harmony_profile(x, sample_rate=sample_rate)) for x in (generated, true))
    energy = float(u @ u + v @ v)
    if not energy > 1e-12:  # both flat: nothing in common to find
        return 1.0
    return float(1.0 - 2.0 * (u @ v) / energy)


def harmony_profile(x: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Mean constant-Q chroma (librosa ``chroma_cqt``, no tuning estimate, each frame scaled to a maximum of 1).

    Parameters
    ----------
    x : numpy.ndarray
        [shape=(frames,)] mono.
    sample_rate : int
        In Hz; the audio is analysed at :data:`HARMONY_RATE`.

    Returns
    -------
    numpy.ndarray
        [shape=(12,), dtype=float64] from C to B, each in [0, 1]; zeros for silence (and audio under 0.1 s).
    """
    import librosa

    x = as_mono(x)
    if is_silent(x) or x.shape[0] < 0.1 * sample_rate:
        return np.zeros(12)
    # One rate for every song, so that a 44.1 and a 22.05 kHz file are read alike (the CQT's top octave,
    # C7-C8, needs a Nyquist over 4.2 kHz, which an 8 kHz file lacks).
    y = resample(x, sample_rate, HARMONY_RATE)
    with warnings.catch_warnings():
        # Under about 3 s the lowest octaves' (decimated) frames are longer than the signal: librosa pads them
        # and says so, once per octave. The profile is still the mean over what is there.
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        chroma = librosa.feature.chroma_cqt(y=y, sr=HARMONY_RATE, hop_length=HARMONY_HOP, tuning=0.0)
    return np.nan_to_num(chroma.mean(axis=1).astype(np.float64))


def _relative_profile(profile: np.ndarray) -> np.ndarray:
    """``profile / mean(profile) - 1``; zeros for a profile that is all zero or not finite."""
    mean = float(np.mean(profile))
    if not (np.isfinite(mean) and mean > 0 and np.isfinite(profile).all()):
        return np.zeros_like(profile)
    return profile / mean - 1.0


def key_profile(x: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Mean chroma (librosa ``chroma_stft``, each frame scaled to a maximum of 1).

    Returns
    -------
    numpy.ndarray
        [shape=(12,), dtype=float64] from C to B; zeros for silence.
    """
    x = as_mono(x)
    return _chroma(x, sample_rate).mean(axis=1) if x.shape[0] else np.zeros(12)


def key_estimate(x: np.ndarray, *, sample_rate: int) -> tuple[str | None, float]:
    """Krumhansl-Schmuckler key: the best-correlated of 24 rotated major and minor profiles.

    Parameters
    ----------
    x : numpy.ndarray
        [shape=(frames,)] mono, or a [shape=(12,)] chroma profile (:func:`key_profile`).
    sample_rate : int
        In Hz (unused for a profile).

    Returns
    -------
    name : str or None
        ``"C major"``, ``"F# minor"``...; None when the chroma is flat (silence).
    correlation : float
        Pearson correlation of the chroma with the winning key's profile; NaN with no key.
    """
    profile = np.asarray(x, dtype=np.float64)
    if profile.shape != (12,):
        profile = key_profile(x, sample_rate=sample_rate)
    if not np.std(profile) > 1e-9:
        return None, math.nan
    best = (None, -math.inf)
    for mode, template in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if r > best[1]:
                best = (f"{PITCH_NAMES[tonic]} {mode}", r)
    return best


def key_held(context: np.ndarray, generated: np.ndarray, *, sample_rate: int,
             threshold: float = KEY_PROFILE_CORRELATION) -> dict:
    """Does the continuation stay in the context's key?

    Held when both estimate the same key (:func:`key_estimate`), or when their chroma profiles correlate at
    ``threshold`` or more (neighbouring keys share most pitches; a key estimate flips between them easily).

    Returns
    -------
    dict
        ``context_key``, ``generated_key`` (str or None), ``correlation`` (Pearson, of the two chroma
        profiles; NaN when one is silent) and ``held`` (bool).
    """
    a, b = key_profile(context, sample_rate=sample_rate), key_profile(generated, sample_rate=sample_rate)
    key_a, key_b = key_estimate(a, sample_rate=sample_rate)[0], key_estimate(b, sample_rate=sample_rate)[0]
    r = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 1e-9 and np.std(b) > 1e-9 else math.nan
    held = bool(key_a is not None and (key_a == key_b or (np.isfinite(r) and r >= threshold)))
    return {"context_key": key_a, "generated_key": key_b, "correlation": r, "held": held}


def _chroma(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """[shape=(12, frames)] chroma; zeros where the audio is silent."""
    import librosa

    n_fft, hop = stft_sizes(sample_rate)
    if is_silent(x):
        return np.zeros((12, 1 + x.shape[0] // hop))
    # tuning=0: no tuning estimate (it is slow, and continuation and original should be read the same way).
    return librosa.feature.chroma_stft(y=x, sr=sample_rate, n_fft=n_fft, hop_length=hop, tuning=0.0)
