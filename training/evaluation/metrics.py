"""Objective measures of a continuation: how close to the real next seconds, how seamless, how repetitive.

Every measure takes mono float arrays ``[shape=(frames,)]`` and the rate as the keyword ``sample_rate=`` (Hz);
downmix before calling. Pure numpy, scipy, librosa, mir_eval and pyloudnorm: importable without TensorFlow.
:mod:`training.evaluate` runs them over the evaluation set; they are written to be cheap enough for a few
hundred calls (one or two librosa analyses each).

Conventions: "context" is the audio before the cut (the model's input), "generated" what a generator made
after it, "true" the song's real continuation. Distances are 0 for identical audio and grow with difference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.fft

from engine.audio import resample
from engine.errors import ConfigError
from engine.seam import click_score

#: Bands of the log-mel spectra, and their floor: this many dB under the louder of the two signals compared.
LOGMEL_BANDS = 64
LOGMEL_RANGE_DB = 80.0
#: Length of the windows whose mean spectra are compared, in seconds: the coarse time evolution.
FEATURE_WINDOW_S = 1.0
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
#: Integrated loudness of silence, in LUFS (BS.1770's absolute gate).
LOUDNESS_FLOOR_LUFS = -70.0
#: :func:`repetition`: analysis rate (Hz), window (s), correlation of an exact repeat, lags tried, and the
#: shortest repeat counted in ``repeated_share`` (s).
REPEAT_RATE = 11025
REPEAT_WINDOW_S = 0.05
REPEAT_CORRELATION = 0.999
REPEAT_CANDIDATES = 20
REPEAT_WHITENING = 0.3
REPEAT_MIN_RUN_S = 10.0


# ------------------------------------------------------------------------------------ spectra, harmony


def logmel_distance(generated: np.ndarray, true: np.ndarray, *, sample_rate: int) -> float:
    """Mean absolute difference of the two signals' log-mel spectra, window by window, in dB.

    Each signal's 64-band mel power spectrogram (about 46 ms frames) is put in dB (``ref=1.0``), floored
    :data:`LOGMEL_RANGE_DB` under the louder of the two signals' peaks, and averaged over 1 s windows; the
    result is the mean of ``|generated - true|`` over windows and bands. It compares the coarse evolution of
    timbre and level, not waveforms: a continuation in the right style but not the same notes still scores
    well. Lower is better; silence against music scores tens of dB.

    Parameters
    ----------
    generated, true : numpy.ndarray
        [shape=(frames,)] mono; the longer is cut to the shorter.
    sample_rate : int
        In Hz.

    Returns
    -------
    float
        In dB, >= 0.
    """
    import librosa

    generated, true = _pair(generated, true)
    n_fft, hop = _stft_sizes(sample_rate)
    db = [librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=sample_rate, n_fft=n_fft, hop_length=hop,
                                                             n_mels=LOGMEL_BANDS), ref=1.0, amin=1e-10, top_db=None)
          for x in (generated, true)]
    floor = max(float(db[0].max()), float(db[1].max())) - LOGMEL_RANGE_DB
    means = [_window_means(np.maximum(d, floor), generated.shape[0], sample_rate, hop) for d in db]
    return float(np.mean(np.abs(means[0] - means[1])))


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
    generated, true = _pair(generated, true)
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

    x = _mono(x)
    if _silent(x) or x.shape[0] < 0.1 * sample_rate:
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


def spectral_flatness_ratio(generated: np.ndarray, original: np.ndarray, *, sample_rate: int) -> float:
    """Mean spectral flatness of ``generated`` over that of ``original`` (the music it continues).

    Flatness is the geometric over the arithmetic mean of each frame's power spectrum (librosa): near 0 for
    tones, near 1 for white noise. A continuation that smears into noise scores well above 1. Only whole frames
    count (no padding at the ends).

    Parameters
    ----------
    generated, original : numpy.ndarray
        [shape=(frames,)] mono.
    sample_rate : int
        In Hz (it only sets the frame length).

    Returns
    -------
    float
        1.0 when both are equally flat; NaN when ``original`` is empty of any spectrum.
    """
    import librosa

    n_fft, hop = _stft_sizes(sample_rate)
    # center=False: a centred first or last frame is half zero padding, and a waveform cut off mid-cycle there is
    # a click that is flat across the spectrum. For tonal music that one frame outweighs the rest (a steady tone
    # read 2.2 times flatter in 10 s than in 20 s of itself), so only whole frames of the signal count.
    flatness = [float(np.mean(librosa.feature.spectral_flatness(y=_mono(x), n_fft=n_fft, hop_length=hop,
                                                                center=False)))
                for x in (generated, original)]
    return flatness[0] / flatness[1] if flatness[1] > 0 else math.nan


# ------------------------------------------------------------------------------------------------ seams


def seam_scores(signal: np.ndarray, joins: Iterable[int], *, sample_rate: int) -> list[dict]:
    """:func:`engine.seam.click_score` at each join: how much a join stands out from the music around it.

    Parameters
    ----------
    signal : numpy.ndarray
        [shape=(frames,)] mono: the audio the joins are in.
    joins : iterable of int
        Frames where joins are centred; those outside ``[1, frames)`` are left out.
    sample_rate : int
        In Hz.

    Returns
    -------
    list of dict
        ``{"position": int, "jump": float, "hf_ratio": float}`` per join: ``jump`` is the largest
        sample-to-sample step within 5 ms of the join over the median step around it, ``hf_ratio`` the power
        above 5 kHz within 5 ms over that of the 200 ms around it.
    """
    x = _mono(signal)
    return [{"position": int(j), **click_score(x, int(j), sample_rate)} for j in joins if 1 <= j < x.shape[0]]


def reference_seam_scores(original: np.ndarray, *, sample_rate: int, count: int = 32, seed: int = 0) -> list[dict]:
    """The same scores as :func:`seam_scores` at the original music's own beat boundaries.

    No join is there, so these are the range that music itself reaches on the measure: a generator's joins
    are inaudible by this measure when they fall in it. Beats come from ``librosa.beat.beat_track``; ``count``
    of them are drawn (with replacement when there are fewer), or random positions when no beat is found.

    Parameters
    ----------
    original : numpy.ndarray
        [shape=(frames,)] mono music.
    sample_rate : int
        In Hz.
    count : int
        Positions scored.
    seed : int
        Seed of the draw.

    Returns
    -------
    list of dict
        As :func:`seam_scores`, ``count`` entries in time order.
    """
    import librosa

    x = _mono(original)
    rng = np.random.default_rng(seed)
    if x.shape[0] < 2 or count < 1:
        return []
    beats = np.array([], dtype=int)
    if not _silent(x):
        beats = librosa.beat.beat_track(y=x, sr=sample_rate, units="samples")[1].astype(int)
    beats = beats[(beats >= 1) & (beats < x.shape[0])]
    if beats.size:
        positions = rng.choice(beats, size=count, replace=beats.size < count)
    else:
        positions = rng.integers(1, x.shape[0], size=count)
    return seam_scores(x, np.sort(positions), sample_rate=sample_rate)


def seam_summary(scores: Sequence[dict]) -> dict:
    """Median and 95th percentile of ``jump`` and ``hf_ratio`` over seam scores (NaN when there are none)."""
    summary = {"count": len(scores)}
    for key in ("jump", "hf_ratio"):
        values = np.array([s[key] for s in scores], dtype=float)
        summary[f"{key}_median"] = float(np.median(values)) if values.size else math.nan
        summary[f"{key}_p95"] = float(np.percentile(values, 95)) if values.size else math.nan
    return summary


def loudness_step_lu(signal: np.ndarray, join: int, *, sample_rate: int, window_s: float = 3.0) -> float:
    """Loudness after a join minus loudness before it, in LU.

    Integrated loudness (ITU-R BS.1770, pyloudnorm's meter) of the ``window_s`` before and after ``join``;
    a silent side reads :data:`LOUDNESS_FLOOR_LUFS`, so the result is always finite.

    Parameters
    ----------
    signal : numpy.ndarray
        [shape=(frames,)] mono.
    join : int
        Frame of the join.
    sample_rate : int
        In Hz.
    window_s : float
        Seconds measured on each side (less where the signal is shorter, at least 0.4 s).

    Returns
    -------
    float
        In LU: positive when the audio got louder at the join.

    Raises
    ------
    ConfigError
        Less than 0.4 s (one BS.1770 block) on a side of the join.
    """
    import pyloudnorm

    x = _mono(signal)
    width = round(window_s * sample_rate)
    before, after = x[max(0, join - width):max(0, join)], x[max(0, join):join + width]
    if min(before.shape[0], after.shape[0]) < 0.4 * sample_rate:
        raise ConfigError(f"loudness needs 0.4 s on each side of the join at frame {join}; the signal has "
                          f"{before.shape[0] / sample_rate:.2f} s before and "
                          f"{after.shape[0] / sample_rate:.2f} s after")
    meter = pyloudnorm.Meter(sample_rate)
    levels = []
    for side in (before, after):
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")
            level = float(meter.integrated_loudness(side.astype(np.float64)))
        levels.append(level if np.isfinite(level) and level > LOUDNESS_FLOOR_LUFS else LOUDNESS_FLOOR_LUFS)
    return levels[1] - levels[0]


# --------------------------------------------------------------------------------------- tempo, key, beat


def tempo_bpm(x: np.ndarray, *, sample_rate: int) -> float:
    """Tempo in beats per minute: the period of the beat grid that best fits the audio's onsets.

    librosa's tracker finds the beats, but its period is quantised to whole frames (about 1 % steps at
    110 bpm, enough to drift a beat off the grid within 10 s); the period is then refined to 0.05 % by the
    comb of beats that collects the most onset strength (:func:`beat_grid`).

    Parameters
    ----------
    x : numpy.ndarray
        [shape=(frames,)] mono.
    sample_rate : int
        In Hz.

    Returns
    -------
    float
        In bpm; NaN when fewer than 4 beats are found (silence, no pulse).
    """
    period, _ = beat_grid(x, sample_rate=sample_rate)
    return 60.0 / period if np.isfinite(period) else math.nan


def beat_grid(x: np.ndarray, *, sample_rate: int) -> tuple[float, float]:
    """The regular beat grid that best explains the audio: its period and its last beat.

    librosa's beat tracker gives the beats; a line through them gives a first period. Period (within 3 %, in
    0.05 % steps) and phase (within 40 ms of the last tracked beat) are then chosen to maximise the mean onset
    strength (3 ms frames) at the grid's beats over the whole signal.

    Parameters
    ----------
    x : numpy.ndarray
        [shape=(frames,)] mono.
    sample_rate : int
        In Hz.

    Returns
    -------
    period_s : float
        Seconds per beat; NaN when fewer than 4 beats are found.
    last_beat_s : float
        Time of the grid's last beat in the signal, in seconds from its start; NaN without a grid.
    """
    x, sample_rate = _beat_rate(_mono(x), sample_rate)
    return _fit_grid(x, sample_rate, _beat_times(x, sample_rate))


def _fit_grid(x: np.ndarray, sample_rate: int, beats: np.ndarray) -> tuple[float, float]:
    """:func:`beat_grid` from beats already tracked (seconds, in ``x``'s time)."""
    import librosa

    beats = beats[beats <= x.shape[0] / sample_rate]
    if beats.shape[0] < 4:
        return math.nan, math.nan
    period = float(np.polyfit(np.arange(beats.shape[0]), beats, 1)[0])
    hop = 1 << max(4, round(math.log2(sample_rate / 344.0)))  # about 3 ms
    envelope = librosa.onset.onset_strength(y=x, sr=sample_rate, hop_length=hop)
    times = np.arange(envelope.shape[0]) * hop / sample_rate
    periods = period * (1.0 + np.linspace(-0.03, 0.03, 121))
    phases = beats[-1] + np.linspace(-0.04, 0.04, 33)
    count = int(beats[-1] / period * 0.97)  # beats back from the last one, all inside the signal
    steps = np.arange(count + 1)
    # grid[p, f, k]: the k-th beat back from phase f at period p
    grid = phases[None, :, None] - steps[None, None, :] * periods[:, None, None]
    score = np.interp(grid, times, envelope, left=0.0, right=0.0).mean(axis=2)
    best_p, best_f = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(periods[best_p]), float(phases[best_f])


def tempo_held(context: np.ndarray, generated: np.ndarray, *, sample_rate: int, tolerance: float = 0.04) -> dict:
    """Does the continuation keep the context's tempo?

    Held when the tempo ratio is within ``tolerance`` of 1, or of exactly 2 or 1/2 (a tracker may lock to
    another metrical level on each side).

    Parameters
    ----------
    context : numpy.ndarray
        [shape=(frames,)] mono: the seconds before the cut (20 s in the evaluation).
    generated : numpy.ndarray
        [shape=(frames,)] mono: what follows the cut (10 s).
    sample_rate : int
        In Hz.
    tolerance : float
        Relative tolerance of the ratio.

    Returns
    -------
    dict
        ``context_bpm``, ``generated_bpm``, ``ratio`` (generated / context; NaN when either has no tempo)
        and ``held`` (bool; False when there is no tempo to compare).
    """
    before, after = tempo_bpm(context, sample_rate=sample_rate), tempo_bpm(generated, sample_rate=sample_rate)
    ratio = after / before if np.isfinite(before) and np.isfinite(after) else math.nan
    held = bool(np.isfinite(ratio) and any(abs(ratio / m - 1.0) <= tolerance for m in (0.5, 1.0, 2.0)))
    return {"context_bpm": before, "generated_bpm": after, "ratio": ratio, "held": held}


def key_profile(x: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Mean chroma (librosa ``chroma_stft``, each frame scaled to a maximum of 1).

    Returns
    -------
    numpy.ndarray
        [shape=(12,), dtype=float64] from C to B; zeros for silence.
    """
    x = _mono(x)
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


def beat_continuity_f(context: np.ndarray, generated: np.ndarray, *, sample_rate: int,
                      joins_s: Sequence[float] = ()) -> dict:
    """Do the beats after the cut land on the context's beat grid carried on?

    Beats are tracked once, over context and continuation together. The reference: the grid of the beats
    before the cut, refined as in :func:`beat_grid` on the context's audio alone (period and last beat), and
    extrapolated over the continuation. The estimate: the tracked beats after the cut. Scored with
    ``mir_eval.beat.f_measure`` (+-70 ms), times taken from the cut; mir_eval's usual 5 s trim is not applied,
    since the tracker has the whole context behind it at the cut.

    The same tracked beats measure each join's slip: how far the beats just after it are out of step with the
    beats just before it (:func:`_join_slips`), which the F-measure, summed over 10 s, cannot place.

    Parameters
    ----------
    context, generated : numpy.ndarray
        [shape=(frames,)] mono, before and after the cut.
    sample_rate : int
        In Hz.
    joins_s : sequence of float
        Joins in seconds from the cut (0 is the cut itself), whose slips to measure.

    Returns
    -------
    dict
        ``f`` (0 to 1; 0 when the continuation has no beat although the context has one; NaN when the
        context has none), ``reason`` (why ``f`` is NaN or 0, else None), ``reference_beats`` and
        ``estimated_beats`` (counts after the cut), ``grid_bpm`` (the context's grid; NaN without one) and
        ``join_slips_ms`` (one per join with beats on both sides; empty without a grid).
    """
    import mir_eval

    context, generated = _mono(context), _mono(generated)
    cut, span = context.shape[0] / sample_rate, generated.shape[0] / sample_rate
    result = {"f": math.nan, "reason": None, "reference_beats": 0, "estimated_beats": 0, "grid_bpm": math.nan,
              "join_slips_ms": []}
    # One tracker run over both: two runs may settle on different phases of the same pulse (on- and
    # off-beat), which would read as a lost beat; the grid is fitted to the context's audio alone.
    tracked = _beat_times(np.concatenate([context, generated]), sample_rate)
    interval, last = _fit_grid(*_beat_rate(context, sample_rate), tracked[tracked < cut])
    if not np.isfinite(interval):
        return {**result, "reason": "no beat in the context"}
    reference = last + interval * np.arange(1, int(np.ceil((cut + span - last) / interval)) + 1) - cut
    reference = reference[(reference >= 0) & (reference < span)]
    tracked = tracked - cut
    estimated = tracked[(tracked >= 0) & (tracked < span)]
    result.update(reference_beats=int(reference.shape[0]), estimated_beats=int(estimated.shape[0]),
                  grid_bpm=60.0 / interval, join_slips_ms=_join_slips(tracked, interval, joins_s))
    if not reference.shape[0]:
        return {**result, "reason": "the context's beat grid has no beat in the continuation"}
    if not estimated.shape[0]:
        return {**result, "f": 0.0, "reason": "no beat tracked after the cut"}
    return {**result, "f": float(mir_eval.beat.f_measure(reference, estimated))}


#: A join's slip compares up to this many beats on each side of it.
SLIP_BEATS = 3


def _join_slips(tracked: np.ndarray, period: float, joins_s: Sequence[float]) -> list[float]:
    """Each join's slip in ms: the phase (against ``period``) of the beats tracked after it minus that of the
    beats before it, wrapped to half a period.

    Up to :data:`SLIP_BEATS` beats each side, those after starting 50 ms past the join (a beat on the join
    belongs to neither side); at least 2 each side, else the join is left out. Phases are averaged on the
    circle, so beats either side of the grid's half-way point do not cancel. The true continuation, measured
    at its cut, gives the tracker's own scatter.
    """
    slips = []
    for join in joins_s:
        before = tracked[(tracked < join) & (tracked > join - (SLIP_BEATS + 0.5) * period)][-SLIP_BEATS:]
        after = tracked[tracked > join + 0.05][:SLIP_BEATS]
        if before.shape[0] < 2 or after.shape[0] < 2:
            continue
        phase_before, phase_after = (np.angle(np.exp(2j * np.pi * beats / period).mean()) for beats in (before, after))
        turn = (phase_after - phase_before) / (2 * np.pi)
        slips.append(float(abs(turn - round(turn)) * period * 1000.0))
    return slips


# ------------------------------------------------------------------------------------------- repetition


def repetition(signal: np.ndarray, *, sample_rate: int, min_run_s: float = REPEAT_MIN_RUN_S) -> dict:
    """How much of a long extension is an exact copy of itself one period earlier.

    Method, at :data:`REPEAT_RATE` Hz: the candidate periods are the :data:`REPEAT_CANDIDATES` highest peaks
    at lags of 1 s or more of the signal's autocorrelation, computed by FFT from the power spectrum raised to
    :data:`REPEAT_WHITENING` (so held tones do not crowd out the sharp peak of an exact repeat). For each period ``P``
    the signal is cut into 50 ms windows and each window ``x[t:t+w]`` is compared with ``x[t-P:t-P+w]`` by
    normalised correlation; the window is *repeated* when the correlation is at least
    :data:`REPEAT_CORRELATION` and neither is silent (50 dB under the signal's RMS). Correlation is blind to
    gain, so a repeat played louder or softer still counts. Periods that are not a whole number of samples
    (a loop made at another rate) are found to 1/200 sample and compared through a fractional delay.

    ``longest_loop_s`` is the longest run of consecutive repeated windows for one period: how long the audio
    kept copying itself. A song looped for 10 minutes scores about 10 min less one period; music, noise or a
    sweep score 0. ``repeated_share`` is the share of the signal's windows that lie in such runs of at least
    ``min_run_s``, over all periods: how often the same stretch recurs.

    Parameters
    ----------
    signal : numpy.ndarray
        [shape=(frames,)] mono, minutes long.
    sample_rate : int
        In Hz.
    min_run_s : float
        Shortest run counted in ``repeated_share``, in seconds.

    Returns
    -------
    dict
        ``longest_loop_s`` (s), ``loop_period_s`` (s, the period of that run; NaN when none),
        ``repeated_share`` (0 to 1), ``seconds`` (the signal's length).
    """
    x = _mono(signal)
    y = resample(x, sample_rate, REPEAT_RATE) if sample_rate != REPEAT_RATE else x
    rate, n = REPEAT_RATE, y.shape[0]
    hop = round(REPEAT_WINDOW_S * rate)
    windows = n // hop
    result = {"longest_loop_s": 0.0, "loop_period_s": math.nan, "repeated_share": 0.0, "seconds": n / rate}
    min_lag, max_lag = round(1.0 * rate), n - 2 * hop
    if max_lag <= min_lag or not np.any(y):
        return result

    size = scipy.fft.next_fast_len(2 * n, real=True)
    spectrum = scipy.fft.rfft(y, size, workers=-1)
    # The power spectrum raised to REPEAT_WHITENING (a "PHAT-beta" weighting) before the inverse transform:
    # held tones otherwise fill every candidate with lags of their own periods, while an exact repeat, being
    # correlated at every frequency, keeps a sharp peak.
    power = (spectrum.real ** 2 + spectrum.imag ** 2) ** REPEAT_WHITENING
    autocorrelation = scipy.fft.irfft(power, size, workers=-1)[:max_lag + 1]
    autocorrelation /= max(float(autocorrelation[0]), 1e-30)
    lags = _top_peaks(autocorrelation, min_lag, hop, REPEAT_CANDIDATES)

    frames = y[:windows * hop].reshape(windows, hop)
    cumulative = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
    loud_floor = max(1e-5, 10 ** (-50 / 20) * math.sqrt(cumulative[-1] / n))
    energy = cumulative[hop:windows * hop + 1:hop] - cumulative[:windows * hop:hop]
    loud = np.sqrt(np.maximum(energy, 0.0) / hop) > loud_floor
    comparer = _FractionalComparer(frames, hop)
    covered = np.zeros(windows, dtype=bool)
    periods: list[float] = []
    for lag in lags:
        lag = int(lag)
        # A multiple of a period already found repeats only where that period does: nothing new to see.
        if any(abs(lag / round(lag / p) - p) * round(lag / p) <= 2.0 for p in periods if round(lag / p) >= 2):
            continue
        first = -(-(lag + 1) // hop)  # the first window with a whole window (and a sample to spare) one lag back
        if first >= windows:
            continue
        starts = np.arange(first, windows) * hop - lag
        earlier = y[first * hop - lag:windows * hop - lag].reshape(-1, hop)
        energy_b = cumulative[starts + hop] - cumulative[starts]
        candidates = loud[first:] & (np.sqrt(np.maximum(energy_b, 0.0) / hop) > loud_floor)
        if not np.any(candidates):
            continue
        products = np.einsum("ij,ij->i", frames[first:], earlier, dtype=np.float64)
        correlation = products / np.sqrt(np.maximum(energy[first:] * energy_b, 1e-30))
        offset, best = comparer.refine(first, earlier, np.where(candidates, correlation, -1.0))
        if best < REPEAT_CORRELATION:
            continue
        periods.append(lag + offset)
        if abs(offset) > 0.01:
            correlation = comparer.correlate(first, earlier, offset)
        repeated = candidates & (correlation >= REPEAT_CORRELATION)
        for start, stop in _runs(repeated):
            seconds = (stop - start) * hop / rate
            if seconds > result["longest_loop_s"]:
                result.update(longest_loop_s=seconds, loop_period_s=(lag + offset) / rate)
            if seconds >= min_run_s:
                covered[first + start:first + stop] = True
    result["repeated_share"] = float(covered.sum() / windows)
    return result


class _FractionalComparer:
    """Correlates windows with windows a fractional number of samples away, through their spectra.

    Both windows are Hann-tapered; delaying the earlier one by ``f`` samples multiplies its spectrum by
    ``exp(-2j pi k f / size)``, so the correlation at any ``f`` is a weighted sum over the cross-spectrum.
    """

    def __init__(self, frames: np.ndarray, hop: int):
        self.frames = frames
        self.size = scipy.fft.next_fast_len(hop, real=True)
        self.taper = np.hanning(hop + 2)[1:-1]
        bins = self.size // 2 + 1
        self.weights = np.full(bins, 2.0)
        self.weights[0] = 1.0
        if self.size % 2 == 0:
            self.weights[-1] = 1.0
        self.bins = np.arange(bins)
        self._spectra: np.ndarray | None = None

    def _spectrum(self, frames: np.ndarray) -> np.ndarray:
        return scipy.fft.rfft(frames * self.taper, self.size, axis=1)

    def _correlations(self, a: np.ndarray, b: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        cross = a * np.conj(b) * self.weights
        norms = np.sqrt(np.sum(self.weights * np.abs(a) ** 2, axis=1) * np.sum(self.weights * np.abs(b) ** 2, axis=1))
        phase = np.exp(2j * np.pi * np.outer(self.bins, offsets) / self.size)
        return (cross @ phase).real / np.maximum(norms, 1e-30)[:, None]

    def refine(self, first: int, earlier: np.ndarray, correlation: np.ndarray, probes: int = 64) -> tuple[float, float]:
        """The fractional offset (-1 to 1 samples) that best aligns the most-correlated windows, and the
        highest correlation of a window there."""
        chosen = np.argpartition(correlation, -probes)[-probes:] if correlation.shape[0] > probes else (
            np.arange(correlation.shape[0]))
        chosen = chosen[correlation[chosen] > -1.0]
        a = self._spectrum(self.frames[first + chosen])
        b = self._spectrum(earlier[chosen])
        grid = np.linspace(-1.0, 1.0, 41)
        scores = self._correlations(a, b, grid)
        centre = grid[int(np.argmax(scores.mean(axis=0)))]
        fine = centre + np.linspace(-0.05, 0.05, 21)
        scores = self._correlations(a, b, fine)
        best = int(np.argmax(scores.mean(axis=0)))
        return float(fine[best]), float(scores[:, best].max())

    def correlate(self, first: int, earlier: np.ndarray, offset: float) -> np.ndarray:
        """Correlation of every window from ``first`` on with its partner delayed by ``offset`` samples."""
        if self._spectra is None:
            self._spectra = self._spectrum(self.frames)
        return self._correlations(self._spectra[first:], self._spectrum(earlier), np.array([offset]))[:, 0]


def _top_peaks(curve: np.ndarray, start: int, spacing: int, count: int) -> np.ndarray:
    """Positions of the ``count`` highest local maxima of ``curve[start:]``, at most one per ``spacing`` samples.

    The curve is cut into blocks of ``spacing``; a block's maximum is a peak when no neighbouring block holds a
    higher one. Positive peaks only, highest first.
    """
    blocks = (curve.shape[0] - start) // spacing
    if blocks < 1:
        return np.array([], dtype=int)
    tiles = curve[start:start + blocks * spacing].reshape(blocks, spacing)
    where = np.argmax(tiles, axis=1)
    heights = tiles[np.arange(blocks), where]
    padded = np.concatenate([[-np.inf], heights, [-np.inf]])
    peak = (heights >= padded[:-2]) & (heights >= padded[2:]) & (heights > 0)
    chosen = np.flatnonzero(peak)
    chosen = chosen[np.argsort(heights[chosen], kind="stable")[::-1][:count]]
    return start + chosen * spacing + where[chosen]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


# ---------------------------------------------------------------------------------------------- speed


def real_time_factor(chunk_seconds: Iterable[float], audio_seconds_per_chunk: float) -> float:
    """Median compute time per chunk over the audio a chunk holds (below 1 is faster than real time).

    Parameters
    ----------
    chunk_seconds : iterable of float
        Compute time of each chunk, in seconds.
    audio_seconds_per_chunk : float
        Seconds of audio one chunk adds.

    Returns
    -------
    float
        NaN when there are no chunks.
    """
    times = np.asarray(list(chunk_seconds), dtype=float)
    if not times.size or not audio_seconds_per_chunk > 0:
        return math.nan
    return float(np.median(times) / audio_seconds_per_chunk)


# ------------------------------------------------------------------------------------------- helpers


def _mono(x: np.ndarray) -> np.ndarray:
    """The audio as float32 with non-finite samples zeroed; the caller's own array when nothing needs it.

    The metrics only read it. Copying every time is not free: a fresh 10-minute array costs more in page
    faults than in arithmetic (about 1.3 s of system time for 29 M samples on the project's machines).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ConfigError(f"metrics take mono (frames,) audio, got shape {x.shape}; downmix first")
    if np.isfinite(x).all():
        return x
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _mono(a), _mono(b)
    n = min(a.shape[0], b.shape[0])
    if n == 0:
        raise ConfigError("cannot compare empty audio")
    return a[:n], b[:n]


def _silent(x: np.ndarray) -> bool:
    return not x.size or float(np.max(np.abs(x))) < 1e-5


def _stft_sizes(sample_rate: int) -> tuple[int, int]:
    """FFT length (a power of two near 46 ms) and hop (a quarter of it) for the rate."""
    n_fft = 1 << max(8, round(math.log2(0.046 * sample_rate)))
    return n_fft, n_fft // 4


def _chroma(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """[shape=(12, frames)] chroma; zeros where the audio is silent."""
    import librosa

    n_fft, hop = _stft_sizes(sample_rate)
    if _silent(x):
        return np.zeros((12, 1 + x.shape[0] // hop))
    # tuning=0: no tuning estimate (it is slow, and continuation and original should be read the same way).
    return librosa.feature.chroma_stft(y=x, sr=sample_rate, n_fft=n_fft, hop_length=hop, tuning=0.0)


def _window_means(feature: np.ndarray, frames: int, sample_rate: int, hop: int) -> np.ndarray:
    """Mean of a [shape=(bands, stft_frames)] feature over each whole 1 s window: [shape=(windows, bands)]."""
    windows = max(1, int(frames / sample_rate // FEATURE_WINDOW_S))
    index = np.arange(feature.shape[1]) * hop // round(FEATURE_WINDOW_S * sample_rate)
    keep = index < windows
    sums = np.zeros((windows, feature.shape[0]))
    np.add.at(sums, index[keep], feature[:, keep].T)
    counts = np.bincount(index[keep], minlength=windows)[:, None]
    return sums / np.maximum(counts, 1)


def _beat_times(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times in seconds (librosa's dynamic-programming tracker); empty for silence."""
    import librosa

    if _silent(x) or x.shape[0] < sample_rate:
        return np.array([])
    x, sample_rate = _beat_rate(x, sample_rate)
    return np.asarray(librosa.beat.beat_track(y=x, sr=sample_rate, units="time")[1], dtype=float)


#: Beats are tracked at this rate at most (librosa's own default rate; onsets need no more).
BEAT_RATE = 22050


def _beat_rate(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """``x`` at :data:`BEAT_RATE` when its rate is higher, else as it is."""
    if sample_rate <= BEAT_RATE:
        return x, sample_rate
    return resample(x, sample_rate, BEAT_RATE), BEAT_RATE
