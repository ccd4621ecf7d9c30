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

from .beats import (
    ANALYSIS_RATE,
    HOP,
    N_FFT,
    _beat_bounds,
    _beat_bounds_librosa,
    _grid_bounds,
    _onset_bounds,
    pulse_clarity,
)
from .errors import AudioContentError

#: Mel bands of the log-mel summary.
N_MELS = 32
#: Version of the feature layout below; a resynth model declares the one it was trained on.
FEATURE_SPEC = "segment-features-v1"
#: Version of where segments fall (the beat level, the beats' placement, meter and downbeats); the layout of
#: their features is FEATURE_SPEC's. 2: issue 21 (beat level from onset and harmony periodicity, beats moved
#: onto attacks and onto the chords' beats, meters 2, 3 and 4 from harmonic change); 3: the
#: squeezed beats at a memory's ends replaced by the steady grid.
SEGMENTATION_VERSION = 3
#: Per segment: 32 log-mel (dB re. the memory's mean, /10), 12 chroma (max 1), onset strength (re. the memory's
#: mean), loudness (dB re. the memory's mean, /10), duration (re. the median segment, minus 1).
FEATURE_NAMES = tuple([f"logmel{i}" for i in range(N_MELS)] + [f"chroma{i}" for i in range(12)]
                      + ["onset", "loudness", "duration"])
FEATURE_DIM = len(FEATURE_NAMES)
#: Slices of the feature vector that describe timbre and harmony (what the join cost compares).
TIMBRE = slice(0, N_MELS)
HARMONY = slice(N_MELS, N_MELS + 12)
LOUDNESS = N_MELS + 13


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
        Segments per bar: 2, 3 or 4 with a beat, 1 for onsets and the grid.
    mode : str
        ``beats``, ``onsets`` or ``grid``.
    tempo_bpm : float
        Tempo of the beat grid (0 without a beat).
    pulse_clarity : float
        0..1, how periodic the onsets are (see :func:`~engine.beats.has_steady_pulse`).
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


@dataclass(frozen=True)
class Spectra:
    """What :func:`analyse` reads of a signal's spectrogram, per STFT frame (frame ``f`` centred on sample
    ``f * HOP``). Each frame depends only on the :data:`N_FFT` samples around it, so when a signal grows at its
    end (live input heard so far), :func:`spectra` keeps the frames of its unchanged beginning.

    Attributes
    ----------
    mel_power : numpy.ndarray
        [shape=(N_MELS, frames), dtype=float32] mel band power.
    chroma : numpy.ndarray
        [shape=(12, frames), dtype=float32] chroma, each frame's maximum 1.
    frame_power : numpy.ndarray
        [shape=(frames,), dtype=float32] mean power over the STFT's bins.
    """

    mel_power: np.ndarray
    chroma: np.ndarray
    frame_power: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.frame_power.shape[0])


def spectra(y: np.ndarray, *, reuse: Spectra | None = None, same: int = 0) -> Spectra:
    """The spectra of ``y``, keeping those of ``reuse``'s frames that lie in the samples ``y`` shares with the signal
    ``reuse`` was computed from.

    Parameters
    ----------
    y : numpy.ndarray
        [shape=(samples,), dtype=float32] mono at :data:`ANALYSIS_RATE`.
    reuse : Spectra, optional
        The spectra of an earlier signal.
    same : int
        How many leading samples ``y`` and that earlier signal have in common (0 when unknown).

    Returns
    -------
    Spectra
        ``1 + samples // HOP`` frames, as a whole-signal STFT (centred, zero-padded) gives them.
    """
    import librosa

    sr = ANALYSIS_RATE
    frames = 1 + y.shape[0] // HOP
    kept = 0
    if reuse is not None and same >= N_FFT // 2:  # frames whose window ends within the common samples
        kept = min(reuse.frames, (same - N_FFT // 2) // HOP + 1, frames)
    start = kept * HOP - N_FFT // 2  # where frame ``kept``'s window begins, before 0 for the first two frames
    tail = np.concatenate([np.zeros(max(0, -start), np.float32), np.asarray(y[max(0, start):], np.float32),
                           np.zeros(N_FFT // 2, np.float32)])
    power = np.abs(librosa.stft(tail, n_fft=N_FFT, hop_length=HOP, center=False)) ** 2
    fresh = Spectra(mel_power=librosa.feature.melspectrogram(S=power, sr=sr, n_mels=N_MELS),
                    chroma=librosa.feature.chroma_stft(S=power, sr=sr, tuning=0.0),
                    frame_power=power.mean(axis=0))
    if kept == 0 or reuse is None:
        return fresh
    return Spectra(*(np.concatenate([old[..., :kept], new], axis=-1)
                     for old, new in ((reuse.mel_power, fresh.mel_power), (reuse.chroma, fresh.chroma),
                                      (reuse.frame_power, fresh.frame_power))))


def analyse(mono: np.ndarray, *, spectra_of: Spectra | None = None) -> Analysis:
    """Segment a memory and describe each segment.

    With a steady pulse the segments are beats: the beat level is the period at which the onsets and the
    harmonic rhythm are most periodic, under a prior around :data:`TEMPO_PRIOR_BPM` (:func:`beat_level_bpm`);
    librosa's tracker places the beats at that period, and the bar (2, 3 or 4 beats) and its downbeat are where
    the harmony changes (:func:`_meter_and_phase`).

    Parameters
    ----------
    mono : numpy.ndarray
        [shape=(frames,), dtype=float32] at :data:`ANALYSIS_RATE`, at least 0.5 s.
    spectra_of : Spectra, optional
        ``mono``'s spectra, when already computed (:func:`spectra`, :class:`engine.growing.GrowingMemory`).

    Returns
    -------
    Analysis

    Raises
    ------
    AudioContentError
        Shorter than 0.5 s.
    """
    return _analyse(mono, spectra_of=spectra_of)


def _analyse(mono: np.ndarray, *, legacy: bool = False, spectra_of: Spectra | None = None) -> Analysis:
    """:func:`analyse`; with ``legacy``, the beats, meter and downbeats as they were found before issue 21
    (librosa's own tempo estimate, meter and downbeat from novelty periodicity). The legacy path is kept only so
    that ``training downbeats`` can report both in one run; nothing else calls it."""
    import librosa

    y = np.ascontiguousarray(mono, dtype=np.float32)
    sr = ANALYSIS_RATE
    if y.shape[0] < sr // 2:
        raise AudioContentError(f"{y.shape[0] / sr:.2f} s of memory is too short to continue (0.5 s at least)")
    computed = spectra(y) if spectra_of is None else spectra_of
    if computed.frames != 1 + y.shape[0] // HOP:
        raise ValueError(f"spectra of {computed.frames} frames for {y.shape[0]} samples")
    # 80 dB under the loudest band: below that, a band's level is numerical noise whose flux is not an onset.
    mel_db = librosa.power_to_db(computed.mel_power, ref=np.max, amin=1e-10, top_db=80.0)
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=HOP)
    chroma = computed.chroma
    frame_power = computed.frame_power  # levels are relative to the memory's mean, so the scale cancels
    clarity = pulse_clarity(onset)

    meter, phase = 1, None
    if legacy:
        bounds, mode, tempo = _beat_bounds_librosa(y, onset, clarity)
    else:
        bounds, mode, tempo, meter, phase = _beat_bounds(y, onset, chroma, clarity)
    if bounds is None:
        bounds, mode = _onset_bounds(y, onset)
    if bounds is None:
        bounds, mode = _grid_bounds(y.shape[0]), "grid"

    features = _segment_features(bounds, mel_db, chroma, onset, frame_power)
    if mode != "beats":
        meter, phase = 1, np.zeros(features.shape[0], np.int64)
    elif legacy:
        meter, phase = _meter_and_phase_novelty(features)
    elif phase is None:  # _beat_bounds gives a phase with every set of beats
        raise RuntimeError("beats were found without their place in the bar")
    return Analysis(bounds=bounds, features=features, phase=phase, meter=meter, mode=mode,
                    tempo_bpm=tempo if mode == "beats" else 0.0, pulse_clarity=clarity, frames=int(y.shape[0]),
                    onset=onset.astype(np.float32))


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


def _meter_and_phase_novelty(features: np.ndarray) -> tuple[int, np.ndarray]:
    """The meter and downbeat as found before issue 21 (3 or 4 beats, from the periodicity of accents and
    timbre and harmony changes); for ``training downbeats`` only."""
    look = np.concatenate([features[:, TIMBRE], features[:, HARMONY]], axis=1)
    change = np.concatenate([[0.0], np.linalg.norm(np.diff(look, axis=0), axis=1)])
    accent = features[:, N_MELS + 12].astype(np.float64)

    def standard(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / max(float(x.std()), 1e-9)

    novelty = standard(accent) + standard(change)

    def lagged(lag: int) -> float:
        return float(np.mean(novelty[lag:] * novelty[:-lag])) if novelty.shape[0] > 2 * lag else 0.0

    meter = 3 if lagged(3) + lagged(6) > lagged(4) + lagged(8) + 0.1 else 4
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
            noise = (0.1 * rng.standard_normal(int(t.shape[0]))).astype(np.float32)
            analyse(noise)  # the STFT, features and the onset path
            onset = (np.mod(np.arange(t.shape[0] // HOP), 22) == 0).astype(np.float32) + 0.1
            chroma = np.abs(rng.standard_normal((12, onset.shape[0])))
            _beat_bounds(noise, onset, chroma, clarity=1.0)  # the beat tracker, whatever the noise's own clarity
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
