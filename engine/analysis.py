"""Analysis of a song's memory for the resynth generator: segments, bar phase and per-segment features.

The memory (a song played so far, or live input heard so far) is cut into segments: beats where the music has
a steady pulse, else onsets, else a fixed grid (ambient, free time). Each segment gets a feature vector that
the learned scorer, the join cost and the jukebox baseline all read, so the engine and the training code
compute features with this one module (:data:`FEATURE_SPEC` names the version in the model's contract).

Everything is at :data:`ANALYSIS_RATE`, mono. librosa does the signal work; its numba-compiled functions are
slow only on their very first call in a fresh environment (they are cached on disk after that), and
:func:`warm_up` runs them on a second of noise so an engine can pay that on a background thread, off the path
to the first sound.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .errors import AudioContentError

#: Rate the analysis runs at, in Hz (the seed models' rate: one resampled mono copy serves both).
ANALYSIS_RATE = 22050
#: STFT hop and window, in samples at ANALYSIS_RATE (23.2 ms frames).
HOP = 512
N_FFT = 2048
#: Mel bands of the log-mel summary.
N_MELS = 32
#: Version of the feature layout below; a resynth model declares the one it was trained on.
FEATURE_SPEC = "segment-features-v1"
#: Per segment: 32 log-mel (dB re. the memory's mean, /10), 12 chroma (max 1), onset strength (re. the memory's
#: mean), loudness (dB re. the memory's mean, /10), duration (re. the median segment, minus 1).
FEATURE_NAMES = tuple([f"logmel{i}" for i in range(N_MELS)] + [f"chroma{i}" for i in range(12)]
                      + ["onset", "loudness", "duration"])
FEATURE_DIM = len(FEATURE_NAMES)
#: Slices of the feature vector that describe timbre and harmony (what the join cost compares).
TIMBRE = slice(0, N_MELS)
HARMONY = slice(N_MELS, N_MELS + 12)
LOUDNESS = N_MELS + 13

#: Below this pulse clarity (peak of the onset envelope's normalised autocorrelation, 60-240 bpm) the music has
#: no steady beat to cut on. Measured: a drum groove or the demo song score 0.4-0.8, a pad or noise under 0.15.
MIN_PULSE_CLARITY = 0.2
#: Mean onset strength (dB of positive change per frame, averaged over mel bands) under which a memory is a
#: sustained sound with no onsets to speak of: music measures 0.5-1.5 here, noise 0.45, a steady pad 0.05.
MIN_ONSET_STRENGTH = 0.15
#: Beats whose intervals vary more than this (coefficient of variation) are not a grid to cut on.
MAX_BEAT_IRREGULARITY = 0.25
#: Fewest segments a memory needs; shorter or emptier memories fall back to a finer fixed grid.
MIN_SEGMENTS = 8
#: The beat tracker's tempo estimate: librosa's autocorrelation window (s), and the frame step of ours.
TEMPO_WINDOW_S = 8.0
TEMPOGRAM_STRIDE = 4
#: Cell of the fixed-grid fallback, in seconds.
GRID_S = 0.5
#: Onsets closer than this are merged into one segment, in seconds.
MIN_ONSET_GAP_S = 0.2


@dataclass(frozen=True)
class Analysis:
    """Segments of a memory and their features, at :data:`ANALYSIS_RATE`.

    Attributes
    ----------
    bounds : numpy.ndarray
        [shape=(segments + 1,), dtype=int64] sample positions; segment ``k`` is ``[bounds[k], bounds[k+1])``.
        The last segment ends where the memory ends, so it may be cut short.
    features : numpy.ndarray
        [shape=(segments, FEATURE_DIM), dtype=float32]
    phase : numpy.ndarray
        [shape=(segments,), dtype=int64] position in the bar, 0 = downbeat (all 0 without a beat).
    meter : int
        Segments per bar: 3 or 4 with a beat, 1 for onsets and the grid.
    mode : str
        ``beats``, ``onsets`` or ``grid``.
    tempo_bpm : float
        Tempo of the beat grid (0 without a beat).
    pulse_clarity : float
        0..1, how periodic the onsets are (see :data:`MIN_PULSE_CLARITY`).
    frames : int
        Samples analysed.
    sample_rate : int
        :data:`ANALYSIS_RATE`.
    onset : numpy.ndarray or None
        [shape=(frames // HOP + 1,), dtype=float32] onset strength per STFT frame (frame ``f`` centred on sample
        ``f * HOP``), for aligning the rhythm at cuts (:mod:`engine.rhythm`); None where only the features
        were kept (the training cache).
    """

    bounds: np.ndarray
    features: np.ndarray
    phase: np.ndarray
    meter: int
    mode: str
    tempo_bpm: float
    pulse_clarity: float
    frames: int
    sample_rate: int = ANALYSIS_RATE
    onset: np.ndarray | None = None

    @property
    def segments(self) -> int:
        return int(self.features.shape[0])

    @property
    def durations(self) -> np.ndarray:
        """[shape=(segments,), dtype=int64] segment lengths in samples."""
        return np.diff(self.bounds)

    @property
    def loudness_db(self) -> np.ndarray:
        """[shape=(segments,)] each segment's level in dB relative to the memory's mean level."""
        return self.features[:, LOUDNESS] * 10.0

    def describe(self) -> str:
        """One line for ``engine info`` and the engine's status."""
        if self.mode == "beats":
            return (f"beats: {self.tempo_bpm:.0f} bpm, {self.meter}/4, {self.segments} beats "
                    f"(pulse clarity {self.pulse_clarity:.2f})")
        why = f"no steady beat (pulse clarity {self.pulse_clarity:.2f})"
        if self.mode == "onsets":
            return f"onsets: {why}, cut at {self.segments} onsets"
        return f"grid: {why} and few onsets, cut every {np.median(self.durations) / self.sample_rate:.2f} s"


def analyse(mono: np.ndarray) -> Analysis:
    """Segment a memory and describe each segment.

    Parameters
    ----------
    mono : numpy.ndarray
        [shape=(frames,), dtype=float32] at :data:`ANALYSIS_RATE`, at least 0.5 s.

    Returns
    -------
    Analysis

    Raises
    ------
    AudioContentError
        Shorter than 0.5 s.
    """
    import librosa

    y = np.ascontiguousarray(mono, dtype=np.float32)
    sr = ANALYSIS_RATE
    if y.shape[0] < sr // 2:
        raise AudioContentError(f"{y.shape[0] / sr:.2f} s of memory is too short to continue (0.5 s at least)")
    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    # 80 dB under the loudest band: below that, a band's level is numerical noise whose flux is not an onset.
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sr, n_mels=N_MELS), ref=np.max,
                                 amin=1e-10, top_db=80.0)
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=HOP)
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, tuning=0.0)
    frame_power = power.mean(axis=0)  # levels are relative to the memory's mean, so the scale cancels
    clarity = pulse_clarity(onset)

    bounds, mode, tempo = _beat_bounds(y, onset, clarity)
    if bounds is None:
        bounds, mode = _onset_bounds(y, onset)
    if bounds is None:
        bounds, mode = _grid_bounds(y.shape[0]), "grid"

    features = _segment_features(bounds, mel_db, chroma, onset, frame_power)
    meter, phase = (_meter_and_phase(features) if mode == "beats"
                    else (1, np.zeros(features.shape[0], np.int64)))
    return Analysis(bounds=bounds, features=features, phase=phase, meter=meter, mode=mode,
                    tempo_bpm=tempo if mode == "beats" else 0.0, pulse_clarity=clarity, frames=int(y.shape[0]),
                    onset=onset.astype(np.float32))


def pulse_clarity(onset: np.ndarray) -> float:
    """How periodic the onsets are, 0..1: the highest peak of the onset envelope's normalised autocorrelation
    between 60 and 240 bpm, after the envelope's slow trend (a 1 s moving average) is taken out, so a sound that
    only swells and fades (a pad) has no pulse."""
    frames_per_s = ANALYSIS_RATE / HOP
    lo, hi = round(0.25 * frames_per_s), round(1.0 * frames_per_s)
    if onset.shape[0] < 2 * hi + 2 or float(onset.mean()) < MIN_ONSET_STRENGTH:
        return 0.0
    width = round(frames_per_s)
    trend = np.convolve(onset.astype(np.float64), np.ones(width) / width, mode="same")
    o = onset - trend
    o -= o.mean()
    energy = float(np.dot(o, o))
    if energy <= 1e-12:
        return 0.0
    spectrum = np.fft.rfft(o, 2 * o.shape[0])
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:hi + 2] / energy
    lags = np.arange(lo, hi + 1)
    peaks = lags[(acf[lags] > acf[lags - 1]) & (acf[lags] >= acf[lags + 1])]
    return float(np.clip(acf[peaks].max(), 0.0, 1.0)) if peaks.size else 0.0


def _beat_bounds(y: np.ndarray, onset: np.ndarray, clarity: float) -> tuple[np.ndarray | None, str, float]:
    import librosa

    if clarity < MIN_PULSE_CLARITY:
        return None, "", 0.0
    tempo, beats = librosa.beat.beat_track(onset_envelope=onset, sr=ANALYSIS_RATE, hop_length=HOP, trim=False,
                                           bpm=global_tempo(onset))
    beats = np.unique(np.asarray(beats, dtype=np.int64)) * HOP
    beats = beats[beats < y.shape[0] - HOP]
    if beats.shape[0] < MIN_SEGMENTS + 1:
        return None, "", 0.0
    intervals = np.diff(beats)
    if np.std(intervals) / np.mean(intervals) > MAX_BEAT_IRREGULARITY:
        return None, "", 0.0
    bounds = np.append(beats, y.shape[0]).astype(np.int64)
    # The mean over the whole span: each interval is rounded to whole STFT frames, their median is not the tempo.
    return bounds, "beats", float(60.0 * ANALYSIS_RATE * (beats.shape[0] - 1) / (beats[-1] - beats[0]))


def global_tempo(onset: np.ndarray) -> float:
    """The tempo librosa's beat tracker would estimate for itself, at a fraction of the cost.

    ``librosa.feature.tempo`` averages an 8 s windowed autocorrelation taken at every onset frame, then weights
    it by a prior around 120 bpm; the windows overlap almost entirely, so this takes them at every
    :data:`TEMPOGRAM_STRIDE`-th frame (:func:`tempogram`). The estimate was identical to librosa's on all 324
    songs of the corpus and the 36 evaluation clips at strides 2 and 4 (at 8, one song differed), and whole
    analyses were identical on the evaluation and dev clips cut at 30 and 40 s and on the demo song. The
    tempogram was the beat tracker's largest cost: analysing the demo song took 97 ms with it and 64 ms with
    this, a 218 s song 452 and 267 ms.

    Parameters
    ----------
    onset : numpy.ndarray
        [shape=(onset frames,)] onset strength at :data:`HOP` hops of :data:`ANALYSIS_RATE`.

    Returns
    -------
    float
        Beats per minute.
    """
    import librosa

    return float(librosa.feature.tempo(onset_envelope=onset, sr=ANALYSIS_RATE, hop_length=HOP,
                                       tg=tempogram(onset, TEMPOGRAM_STRIDE))[0])


def tempogram(onset: np.ndarray, stride: int = 1) -> np.ndarray:
    """librosa's autocorrelation tempogram (``librosa.feature.tempogram`` with an 8 s window), at every
    ``stride``-th onset frame only.

    Returns
    -------
    numpy.ndarray
        [shape=(window frames, ceil(onset frames / stride))] each column scaled to a peak of 1.
    """
    import librosa

    win = int(librosa.time_to_frames(TEMPO_WINDOW_S, sr=ANALYSIS_RATE, hop_length=HOP))
    n = onset.shape[-1]
    # As librosa: windows centred on each frame over a linear ramp to zero at both ends, Hann-weighted.
    padded = np.pad(onset, (win // 2, win // 2), mode="linear_ramp", end_values=[0, 0])
    frames = librosa.util.frame(padded, frame_length=win, hop_length=1)[:, :n][:, ::stride]
    window = librosa.filters.get_window("hann", win, fftbins=True)
    return librosa.util.normalize(librosa.autocorrelate(frames * window[:, None], axis=0), norm=np.inf, axis=0)


def _onset_bounds(y: np.ndarray, onset: np.ndarray) -> tuple[np.ndarray | None, str]:
    import librosa

    if float(onset.mean()) < MIN_ONSET_STRENGTH:
        return None, ""  # a sustained sound: its "onsets" are ripples of the analysis itself
    frames = librosa.onset.onset_detect(onset_envelope=onset, sr=ANALYSIS_RATE, hop_length=HOP, backtrack=True)
    kept: list[int] = []
    for position in np.asarray(frames, dtype=np.int64) * HOP:
        if not kept or position - kept[-1] >= MIN_ONSET_GAP_S * ANALYSIS_RATE:
            kept.append(int(position))
    seconds = y.shape[0] / ANALYSIS_RATE
    # Sparse onsets (under one per 3 s) would make segments too long to jump between.
    if len(kept) < MIN_SEGMENTS + 1 or len(kept) < seconds / 3.0:
        return None, ""
    return np.append(kept, y.shape[0]).astype(np.int64), "onsets"


def _grid_bounds(frames: int) -> np.ndarray:
    # A short memory gets a finer grid, so it still has MIN_SEGMENTS cells to choose from.
    cell = max(HOP, min(round(GRID_S * ANALYSIS_RATE), frames // MIN_SEGMENTS))
    return np.append(np.arange(0, frames - cell // 2, cell), frames).astype(np.int64)


def _segment_features(bounds: np.ndarray, mel_db: np.ndarray, chroma: np.ndarray, onset: np.ndarray,
                      frame_power: np.ndarray) -> np.ndarray:
    frames = mel_db.shape[1]
    first = np.clip(bounds[:-1] // HOP, 0, frames - 1)
    last = np.clip(np.maximum(bounds[1:] // HOP, first + 1), 1, frames)

    def segment_means(values: np.ndarray) -> np.ndarray:  # values (..., frames) -> (segments, ...)
        cumulative = np.concatenate([np.zeros(values.shape[:-1] + (1,)), np.cumsum(values, axis=-1)], axis=-1)
        return ((cumulative[..., last] - cumulative[..., first]) / (last - first)).T

    mel = segment_means(mel_db.astype(np.float64))
    mel = (mel - mel_db.mean(axis=1)) / 10.0
    harmony = segment_means(chroma.astype(np.float64))
    harmony = harmony / np.maximum(harmony.max(axis=1, keepdims=True), 1e-6)
    strength = segment_means(onset[None, :].astype(np.float64))[:, 0] / max(float(onset.mean()), 1e-6)
    level_db = 10 * np.log10(segment_means(frame_power[None, :].astype(np.float64))[:, 0] + 1e-10)
    mean_db = 10 * np.log10(float(frame_power.mean()) + 1e-10)
    durations = np.diff(bounds).astype(np.float64)
    columns = [mel, harmony, np.clip(strength, 0, 10)[:, None], ((level_db - mean_db) / 10.0)[:, None],
               (durations / np.median(durations) - 1.0)[:, None]]
    return np.concatenate(columns, axis=1).astype(np.float32)


def _meter_and_phase(features: np.ndarray) -> tuple[int, np.ndarray]:
    """Beats per bar (3 or 4) and the downbeat, from where the music changes: each beat's accent (onset
    strength) plus how far its timbre and harmony moved from the beat before. Bars start with accents and chord
    changes, so that novelty repeats with the bar's period, and peaks on the downbeat."""
    look = np.concatenate([features[:, TIMBRE], features[:, HARMONY]], axis=1)
    change = np.concatenate([[0.0], np.linalg.norm(np.diff(look, axis=0), axis=1)])
    accent = features[:, N_MELS + 12].astype(np.float64)

    def standard(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / max(float(x.std()), 1e-9)

    novelty = standard(accent) + standard(change)

    def periodicity(lag: int) -> float:
        return float(np.mean(novelty[lag:] * novelty[:-lag])) if novelty.shape[0] > 2 * lag else 0.0

    meter = 3 if periodicity(3) + periodicity(6) > periodicity(4) + periodicity(8) + 0.1 else 4
    count = features.shape[0]
    downbeat = int(np.argmax([novelty[p::meter].mean() if count > p else -np.inf for p in range(meter)]))
    return meter, (np.arange(count, dtype=np.int64) - downbeat) % meter


def context_features(analysis: Analysis, history: np.ndarray, *, context_segments: int,
                     context_s: float) -> np.ndarray:
    """What a resynth scorer reads: the features of the last segments played, newest last.

    Parameters
    ----------
    analysis : Analysis
    history : numpy.ndarray
        [shape=(played,), dtype=int] segment indices in the order they were played (or heard), newest last.
    context_segments : int
        Rows of the result (the model's ``encore.context_segments``).
    context_s : float
        Only segments within the last ``context_s`` seconds of the history count.

    Returns
    -------
    numpy.ndarray
        [shape=(context_segments, FEATURE_DIM + 1), dtype=float32]: features, then 1.0 for a row that holds a
        segment; missing rows (a short history) are all zero at the front.
    """
    out = np.zeros((context_segments, FEATURE_DIM + 1), np.float32)
    recent = np.asarray(history[-context_segments:], dtype=np.int64)
    if recent.size == 0:
        return out
    seconds = analysis.durations[recent][::-1].cumsum()[::-1] / analysis.sample_rate  # time from each to the end
    recent = recent[seconds - analysis.durations[recent] / analysis.sample_rate < context_s]
    out[context_segments - recent.size:, :FEATURE_DIM] = analysis.features[recent]
    out[context_segments - recent.size:, FEATURE_DIM] = 1.0
    return out


def candidate_rows(analysis: Analysis, segments: np.ndarray, window: int, lookahead: int = 0, *,
                   memory_end: int | None = None) -> np.ndarray:
    """What a resynth scorer's keys read: each segment with the ``window - 1`` segments before it in the memory,
    and, with a ``lookahead``, what playing on from it in order would sound like.

    Parameters
    ----------
    analysis : Analysis
    segments : numpy.ndarray
        [shape=(M,), dtype=int] segment indices.
    window : int
        Segments per row (the model's ``encore.candidate_window``); before the memory's first segment, the
        first segment stands in.
    lookahead : int
        The model's ``encore.candidate_lookahead``: when above 0, a last block holds the mean features of the
        segments from the candidate on, ``lookahead`` of them at most and none past ``memory_end``.
    memory_end : int, optional
        The memory's last segment (the analysis's last by default; training passes the last segment heard).

    Returns
    -------
    numpy.ndarray
        [shape=(M, candidate_dim(window, lookahead)), dtype=float32]: oldest segment first, the candidate itself
        next, then the lookahead block.
    """
    segments = np.asarray(segments, dtype=np.int64)
    offsets = np.arange(1 - window, 1)
    rows = analysis.features[np.maximum(segments[:, None] + offsets[None, :], 0)]
    rows = rows.reshape(segments.shape[0], window * FEATURE_DIM).astype(np.float32, copy=False)
    if lookahead <= 0:
        return rows
    last = analysis.segments - 1 if memory_end is None else int(memory_end)
    total = np.concatenate([np.zeros((1, FEATURE_DIM)), np.cumsum(analysis.features, axis=0, dtype=np.float64)])
    ends = np.maximum(np.minimum(segments + lookahead, last + 1), segments + 1)  # the candidate at least
    ahead = (total[ends] - total[segments]) / (ends - segments)[:, None]
    return np.concatenate([rows, ahead.astype(np.float32)], axis=1)


def candidate_dim(window: int, lookahead: int = 0) -> int:
    """Features per candidate row of :func:`candidate_rows`."""
    return (window + (1 if lookahead > 0 else 0)) * FEATURE_DIM


_warm = threading.Event()
_warm_lock = threading.Lock()


def warm_up() -> None:
    """Run the analysis once on a short signal, so librosa's first-call costs are paid now (idempotent)."""
    with _warm_lock:  # a second caller waits for the first instead of loading librosa beside it
        if _warm.is_set():
            return
        try:
            rng = np.random.default_rng(0)
            t = np.arange(ANALYSIS_RATE * 6) / ANALYSIS_RATE
            noise = (0.1 * rng.standard_normal(t.shape[0])).astype(np.float32)
            analyse(noise)  # the STFT, features and the onset path
            onset = (np.mod(np.arange(t.shape[0] // HOP), 22) == 0).astype(np.float32) + 0.1
            _beat_bounds(noise, onset, clarity=1.0)  # the beat tracker, whatever the noise's own clarity
        finally:
            _warm.set()  # even after a failure: nobody waits forever; the real analysis will raise it again


def warm_up_in_background() -> threading.Thread | None:
    """Start :func:`warm_up` on a daemon thread (None when already warm)."""
    if _warm.is_set():
        return None
    thread = threading.Thread(target=warm_up, name="encore-analysis-warm-up", daemon=True)
    thread.start()
    return thread


#: Longest anything waits for librosa's warm-up, in seconds (a fresh install that skipped make's compile step
#: takes about 25 s here; after that, about 2.5 s).
WARM_UP_WAIT_S = 60.0


def wait_for_warm_up(timeout: float = WARM_UP_WAIT_S) -> bool:
    """Block until a warm-up has finished (True), or ``timeout`` seconds (False).

    Loading librosa and its compiled functions holds the interpreter lock for tens of ms at a time, long enough
    to make an audio callback miss its block (measured here: 2 underruns in 20 s of JACK playback started while
    it ran, none after it). So an audio stream opens only once it is done.
    """
    return _warm.wait(timeout)
