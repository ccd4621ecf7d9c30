"""The beat level, the beats, the meter and the downbeat of a song's memory, or its onsets or a grid.

:func:`engine.analysis.analyse` cuts the memory at what this module finds: beats where the music has a steady
pulse (with their place in the bar), else onsets, else a fixed grid. Everything is at :data:`ANALYSIS_RATE`,
mono, on the onset envelope and chroma that the analysis computes once.
"""

from __future__ import annotations

import math

import numpy as np

#: Rate the analysis runs at, in Hz (the seed models' rate: one resampled mono copy serves both).
ANALYSIS_RATE = 22050
#: STFT hop and window, in samples at ANALYSIS_RATE (23.2 ms frames).
HOP = 512
N_FFT = 2048

#: Below this pulse clarity (peak of the onset envelope's normalised autocorrelation, 60-240 bpm) the music has
#: no steady beat to cut on. Measured: a drum groove or the demo song score 0.4-0.8, a pad or noise under 0.15.
MIN_PULSE_CLARITY = 0.2
#: ...unless the memory is long enough for a weaker pulse to stand out of chance: a clarity this many times
#: 1/sqrt(onset frames) also counts (:func:`has_steady_pulse`). White noise reads about 2/sqrt(N) (its
#: autocorrelation's largest chance peak: 0.055 over 30 s, 0.027 over 3 minutes); legato scores rendered at one
#: tempo (a string quartet, chorales, a madrigal) read 0.06-0.16 over minutes, under 0.2 but clear of chance. On
#: 36 held-out renders with known beats (``encore train downbeats``), beat F went from 0.37 to 0.52 and the renders
#: cut on beats from 47 to 75 % (docs/measurements.md).
PULSE_OVER_CHANCE = 5.0
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
#: Beat periods the beat level is chosen from, in bpm.
BEAT_BPM_RANGE = (40.0, 240.0)
#: The beat level's prior: log-normal around this tempo, this many octaves wide (librosa's beat tracker's own
#: prior, unchanged: on the 36 labelled renders of ``training downbeats`` it chose the right level for 30; no
#: centre of 90-120 bpm with a width of 0.5-1.5 octaves did better).
TEMPO_PRIOR_BPM = 120.0
TEMPO_PRIOR_OCTAVES = 1.0
#: Weight of the harmonic rhythm's periodicity (chroma flux) beside the onsets' in choosing the beat level.
#: On the renders the level was right for 27 of 36 at 0 (librosa's own estimate: 22), 30 at 0.5, 31 at 1; the
#: onsets stay the first cue.
HARMONY_PULSE_WEIGHT = 0.5
#: How firmly librosa's tracker holds the beat level's tempo (its default is 100). At 100 it slid half a beat
#: onto the off-beats for 12 s of the demo song; on the renders, beat F-measure was 0.74 at 100, 0.79 at 300 and
#: 0.81 at 1000.
BEAT_TIGHTNESS = 300.0
#: Chroma flux compares the mean chroma of this many frames after a frame with as many before (93 ms).
CHROMA_FLUX_FRAMES = 4
#: Harmonic change at a candidate downbeat is measured between the mean chroma of this many half beats after it
#: and as many before: one beat each side (a chord on the beat) and four (a bar's harmony).
DOWNBEAT_SPANS = (2, 8)
#: Triple where the 3-beat fold's downbeat stands out this many times more than the best duple fold's: at 1 a
#: Celtic reel's halves came out 2/4 and 3/4 and a 4/4 madrigal 3/4 (by 5-8 %); at 1.15 the true triples of the
#: renders stay triple (by 1.4-1.9 times) but a 6/8 tracked in quarters (1.06) becomes duple.
TRIPLE_MARGIN = 1.15
#: A duple bar is called 4 beats long only where its third beat's cue falls short of the downbeat's by more
#: than this share of the downbeat's lead over the other half beats (2 beats otherwise). The renders cannot tell
#: 2/4 from 4/4 (the 4/4 ones lie at 0.27-0.79, the 2/4 ones at 0.03-0.91), so it is set by what a jump needs:
#: on the 18 held-out renders tracked with a beat (`training downbeats`), at 0.8 / 0.5 / 0.3 / 0, downbeat F
#: 0.611 / 0.606 / 0.644 / 0.589, the bar right 0.333 / 0.389 / 0.611 / 0.556, and the share of downbeats found
#: that are real bar lines 0.58 / 0.61 / 0.69 / 0.71. Reading two 2/4 bars as one of 4 keeps every jump on a
#: real bar line; reading a 4/4 bar as two of 2 puts half of them on its third beat. At 0.3 the demo song (0.71)
#: and a 2/4 bar_song (0.48-0.52) come out 4/4, their bars in pairs.
QUADRUPLE_RATIO = 0.3
#: Each beat is moved back from the onset envelope's peak to where its attack starts: the envelope's last frame
#: above this share of the peak, looked for within this share of a beat before the tracked beat; a song's beats
#: all move by the median of these distances. The tracker's beats lie 50 ms after the note-ons of a piano and
#: more for slow attacks (on the renders, beat F-measure at the tracked level rose from 0.48 to 0.66 with this;
#: a fixed 2 frames gave 0.60, 3 frames 0.64).
ATTACK_FLOOR = 0.2
ATTACK_SEARCH_BEATS = 0.15
#: librosa's tracker ends its path on the last local maximum of its cumulative score, which at a memory's end
#: often falls between beats; backtracking at a firm tightness then squeezes the last few beats toward it (on a
#: 120 bpm bar song cut 0.13 s into a beat, the last three came 0.46, 0.44 and 0.44 s apart and the last one
#: 0.13 s late). An interval at either end further than this share from the median is dropped and the grid
#: carried on from the steady beats.
STEADY_END_TOLERANCE = 0.06
#: A carried-on beat moves to the onset envelope's peak within this share of a beat, if the peak is at least
#: :data:`STEADY_END_ONSET` of the median onset at the tracked beats.
STEADY_END_SNAP = 0.1
STEADY_END_ONSET = 0.5
#: Cell of the fixed-grid fallback, in seconds.
GRID_S = 0.5
#: Onsets closer than this are merged into one segment, in seconds.
MIN_ONSET_GAP_S = 0.2


def has_steady_pulse(clarity: float, frames: int) -> bool:
    """Whether a memory has a beat to cut on: its :func:`pulse_clarity` reaches :data:`MIN_PULSE_CLARITY`, or
    :data:`PULSE_OVER_CHANCE` times what chance gives over its ``frames`` onset frames (the longer the memory, the
    weaker the pulse that is still no accident).

    Parameters
    ----------
    clarity : float
        :func:`pulse_clarity` of the memory's onset envelope, 0 to 1.
    frames : int
        Frames of that envelope (:data:`HOP` hops at :data:`~engine.analysis.ANALYSIS_RATE`).

    Returns
    -------
    bool
    """
    return clarity >= min(MIN_PULSE_CLARITY, PULSE_OVER_CHANCE / math.sqrt(max(frames, 1)))


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


def _beat_bounds(y: np.ndarray, onset: np.ndarray, chroma: np.ndarray, clarity: float
                 ) -> tuple[np.ndarray | None, str, float, int, np.ndarray | None]:
    """Beat segments, their tempo, the meter and each beat's place in the bar; ``(None, "", 0, 1, None)``
    without a steady beat.

    Parameters
    ----------
    y : numpy.ndarray
        [shape=(samples,)] the memory.
    onset : numpy.ndarray
        [shape=(frames,)] onset strength at :data:`HOP` hops.
    chroma : numpy.ndarray
        [shape=(12, frames)]
    clarity : float
        :func:`pulse_clarity` of ``onset``.

    Returns
    -------
    bounds : numpy.ndarray or None
        [shape=(beats + 1,), dtype=int64] sample positions, the memory's end last.
    mode : str
        ``"beats"`` or ``""``.
    tempo : float
        Beats per minute over the whole grid.
    meter : int
        Beats per bar: 2, 3 or 4.
    phase : numpy.ndarray or None
        [shape=(beats,), dtype=int64] 0 on downbeats.
    """
    import librosa

    none = None, "", 0.0, 1, None
    if not has_steady_pulse(clarity, onset.shape[0]):
        return none
    _, beats = librosa.beat.beat_track(onset_envelope=onset, sr=ANALYSIS_RATE, hop_length=HOP, trim=False,
                                       bpm=beat_level_bpm(onset, chroma), tightness=BEAT_TIGHTNESS)
    beats = np.unique(np.asarray(beats, dtype=np.int64))
    if beats.shape[0] < MIN_SEGMENTS + 1:
        return none
    beats = steady_ends(beats, onset)
    intervals = np.diff(beats)
    if np.std(intervals) / np.mean(intervals) > MAX_BEAT_IRREGULARITY:
        return none
    meter, phase, beats = _meter_and_phase(beats, chroma, onset)
    lead = _attack_lead(beats, onset)
    # A beat whose attack starts within the lead of the memory's start (a first kick at 0 s) starts at 0.
    keep = (beats >= 0) & (beats - lead < y.shape[0] / HOP - 1)
    positions = np.maximum(np.round((beats[keep] - lead) * HOP), 0).astype(np.int64)
    positions, first = np.unique(positions, return_index=True)
    phase = phase[keep][first]
    if positions.shape[0] < MIN_SEGMENTS + 1:
        return none
    bounds = np.append(positions, y.shape[0]).astype(np.int64)
    # The mean over the whole span: each interval is rounded to whole STFT frames, their median is not the tempo.
    tempo = float(60.0 * ANALYSIS_RATE * (positions.shape[0] - 1) / (positions[-1] - positions[0]))
    return bounds, "beats", tempo, meter, phase


def steady_ends(beats: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """Tracked beats with the squeezed ones at either end replaced by the steady grid carried on
    (:data:`STEADY_END_TOLERANCE`).

    Parameters
    ----------
    beats : numpy.ndarray
        [shape=(beats,), dtype=int64] onset frames, ascending, at least 4.
    onset : numpy.ndarray
        [shape=(frames,)] onset strength.

    Returns
    -------
    numpy.ndarray
        [shape=(beats',), dtype=int64] onset frames, ascending, within ``onset``.
    """
    if beats.shape[0] < 4:
        return beats
    period = float(np.median(np.diff(beats)))
    steady = np.abs(np.diff(beats) - period) <= STEADY_END_TOLERANCE * period
    first, last = 0, beats.shape[0] - 1
    while last - first > 2 and not steady[last - 1]:
        last -= 1
    while last - first > 2 and not steady[first]:
        first += 1
    if first == 0 and last == beats.shape[0] - 1:
        return beats
    frames, reach = onset.shape[0], max(1, int(round(STEADY_END_SNAP * period)))
    floor = STEADY_END_ONSET * float(np.median(onset[beats]))

    def carried(start: float, step: float, ahead: int) -> list[int]:
        found, position = [], start
        for _ in range(ahead):
            position += step
            if not 0 <= position < frames:
                break
            lo, hi = max(int(round(position)) - reach, 0), min(int(round(position)) + reach + 1, frames)
            peak = lo + int(np.argmax(onset[lo:hi]))
            if onset[peak] >= floor:
                position = float(peak)
            found.append(int(round(position)))
        return found

    before = carried(float(beats[first]), -period, first + 2)[::-1] if first else []
    after = carried(float(beats[last]), period, beats.shape[0] - last + 2) if last < beats.shape[0] - 1 else []
    return np.unique(np.array(before + list(beats[first:last + 1]) + after, dtype=np.int64))


def beat_level_bpm(onset: np.ndarray, chroma: np.ndarray) -> float:
    """The tempo of the beat level: the period at which both the onsets and the harmony are most periodic.

    The onset envelope and the chroma flux (how much the harmony moves, frame by frame) each get the
    autocorrelation of :func:`periodicity`; the beat is the peak of their weighted sum
    (:data:`HARMONY_PULSE_WEIGHT`) within :data:`BEAT_BPM_RANGE` that scores highest under the prior
    (:data:`TEMPO_PRIOR_BPM`). Unlike librosa's estimate (:func:`global_tempo`), whose autocorrelation keeps
    the envelope's mean and so is nearly flat over lags, these are centred: a syncopated rag at 96 quarter
    notes a minute peaks at 96 here and at 128 (its dotted eighths) there.

    Parameters
    ----------
    onset : numpy.ndarray
        [shape=(frames,)] onset strength at :data:`HOP` hops of :data:`ANALYSIS_RATE`.
    chroma : numpy.ndarray
        [shape=(12, frames)]

    Returns
    -------
    float
        Beats per minute.
    """
    frames_per_s = ANALYSIS_RATE / HOP
    lo = max(1, int(frames_per_s * 60.0 / BEAT_BPM_RANGE[1]))
    hi = int(np.ceil(frames_per_s * 60.0 / BEAT_BPM_RANGE[0]))
    salience = periodicity(onset, hi + 2) + HARMONY_PULSE_WEIGHT * periodicity(chroma_flux(chroma), hi + 2)
    lags = np.arange(lo, hi + 1)
    peaks = lags[(salience[lags] >= salience[lags - 1]) & (salience[lags] >= salience[lags + 1])]
    if not peaks.size:
        return TEMPO_PRIOR_BPM
    octaves = np.log2(60.0 * frames_per_s / peaks / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES
    lag = int(peaks[np.argmax(salience[peaks] * np.exp(-0.5 * octaves ** 2))])
    # Between frames: the vertex of the parabola through the peak and its neighbours.
    before, at, after = salience[lag - 1], salience[lag], salience[lag + 1]
    curve = before - 2.0 * at + after
    shift = 0.5 * (before - after) / curve if curve < 0 else 0.0
    return float(60.0 * frames_per_s / (lag + shift))


def periodicity(x: np.ndarray, lags: int) -> np.ndarray:
    """Autocorrelation of a feature curve after its slow trend (a 1 s moving average) and mean are taken out,
    1 at lag 0 and unbiased (each lag's sum over the overlap only).

    Parameters
    ----------
    x : numpy.ndarray
        [shape=(frames,)] at :data:`HOP` hops.
    lags : int
        Lags returned.

    Returns
    -------
    numpy.ndarray
        [shape=(lags,), dtype=float64] lags 0 to ``lags - 1`` frames (zero where the curve is flat or short).
    """
    x = np.asarray(x, np.float64)
    out = np.zeros(lags)
    n = x.shape[0]
    if n < 2 * lags:
        return out
    width = round(ANALYSIS_RATE / HOP)
    x = x - np.convolve(x, np.ones(width) / width, mode="same")
    x -= x.mean()
    energy = float(np.dot(x, x))
    if energy <= 1e-12:
        return out
    spectrum = np.fft.rfft(x, 2 * n)
    out[:] = np.fft.irfft(spectrum * np.conj(spectrum))[:lags] / energy
    return out * n / (n - np.arange(lags))


def chroma_flux(chroma: np.ndarray) -> np.ndarray:
    """How much the harmony rises at each frame: the positive part of the change from the mean chroma of the
    :data:`CHROMA_FLUX_FRAMES` frames before to that of as many from it on, summed over pitch classes.

    Parameters
    ----------
    chroma : numpy.ndarray
        [shape=(12, frames)]

    Returns
    -------
    numpy.ndarray
        [shape=(frames,), dtype=float64]
    """
    k = CHROMA_FLUX_FRAMES
    c = chroma / np.maximum(chroma.max(axis=0, keepdims=True), 1e-9)
    total = np.cumsum(np.pad(c, ((0, 0), (k, k)), mode="edge"), axis=1, dtype=np.float64)
    total = np.concatenate([np.zeros((12, 1)), total], axis=1)
    n = chroma.shape[1]
    start = np.arange(n) + k  # frame t's column in the padded curve
    before = total[:, start] - total[:, start - k]
    after = total[:, start + k] - total[:, start]
    return np.maximum(after - before, 0.0).sum(axis=0) / k


def _attack_lead(beats: np.ndarray, onset: np.ndarray) -> float:
    """How far, in frames, a song's tracked beats lie after the starts of the attacks they mark (the median
    over beats; see :data:`ATTACK_FLOOR`)."""
    if beats.shape[0] < 2:
        return 0.0
    search = max(1, int(ATTACK_SEARCH_BEATS * float(np.median(np.diff(beats)))))
    leads = []
    for beat in beats:
        lo = max(int(beat) - search, 0)
        window = onset[lo:int(beat) + 3]
        if window.shape[0] < 2:
            continue
        start = lo + int(np.argmax(window))
        floor = ATTACK_FLOOR * float(onset[start])
        peak = start
        while start > lo and onset[start - 1] > floor:
            start -= 1
        leads.append(float(beat) - start if onset[peak] > 0 else 0.0)
    return float(np.median(leads)) if leads else 0.0


def _beat_bounds_librosa(y: np.ndarray, onset: np.ndarray, clarity: float) -> tuple[np.ndarray | None, str, float]:
    """The beat segments as found before issue 21 (librosa's tempo estimate); for ``training downbeats`` only."""
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


def _meter_and_phase(beats: np.ndarray, chroma: np.ndarray, onset: np.ndarray
                     ) -> tuple[int, np.ndarray, np.ndarray]:
    """Beats per bar (2, 3 or 4), each beat's place in the bar, and the beats themselves, moved by half a beat
    where the tracker followed the off-beats.

    Bars begin where the harmony changes. On a grid of half beats (the tracked beats and the points midway),
    each point gets how far the mean chroma moves across it, over one beat and over four
    (:data:`DOWNBEAT_SPANS`); folded at the period of a bar of ``m`` beats, the downbeat is the half-beat phase
    where that change is largest. An odd phase means the chords change between the tracked beats: the tracker
    followed the off-beats (hats between kicks, a stride bass's chords) and the beats move to the midpoints.
    Triple if the 3-beat fold stands out more than the 2- and 4-beat ones (by :data:`TRIPLE_MARGIN`); duple
    bars are 4 beats long only where the middle beat is not marked (:data:`QUADRUPLE_RATIO`).

    Parameters
    ----------
    beats : numpy.ndarray
        [shape=(beats,), dtype=int64] tracked beats, onset frames, ascending.
    chroma : numpy.ndarray
        [shape=(12, frames)]
    onset : numpy.ndarray
        [shape=(frames,)]

    Returns
    -------
    meter : int
    phase : numpy.ndarray
        [shape=(beats',), dtype=int64] 0 on downbeats.
    beats : numpy.ndarray
        [shape=(beats',), dtype=float64] onset frames: the tracked beats, or the points midway between them
        (with one more half a beat before the first and after the last, where the memory has them; none before
        0).
    """
    frames = chroma.shape[1]
    half = np.median(np.diff(beats)) / 2.0
    units = np.empty(2 * beats.shape[0] - 1, np.float64)
    units[0::2], units[1::2] = beats, (beats[:-1] + beats[1:]) / 2.0
    cells = np.clip(np.round(units).astype(np.int64), 0, frames - 1)
    edges = np.append(cells, frames)
    total = np.concatenate([np.zeros((12, 1)), np.cumsum(chroma, axis=1, dtype=np.float64)], axis=1)
    unit_chroma = ((total[:, edges[1:]] - total[:, edges[:-1]]) / np.maximum(np.diff(edges), 1)).T
    unit_chroma /= np.maximum(unit_chroma.max(axis=1, keepdims=True), 1e-9)
    cue = np.zeros(units.shape[0])
    cumulative = np.concatenate([np.zeros((1, 12)), np.cumsum(unit_chroma, axis=0)])
    n, index = units.shape[0], np.arange(units.shape[0])
    for span in DOWNBEAT_SPANS:
        first, last = np.maximum(index - span, 0), np.minimum(index + span, n)
        before = (cumulative[index] - cumulative[first]) / np.maximum(index - first, 1)[:, None]
        after = (cumulative[last] - cumulative[index]) / np.maximum(last - index, 1)[:, None]
        change = np.linalg.norm(after - before, axis=1)
        cue += (change - change.mean()) / max(float(change.std()), 1e-9)

    def fold(meter: int) -> tuple[np.ndarray, int, float]:
        profile = np.array([cue[p::2 * meter].mean() if p < n else -np.inf for p in range(2 * meter)])
        best = int(np.argmax(profile))
        return profile, best, float(profile[best] - np.delete(profile, best).mean())

    folds = {m: fold(m) for m in (2, 3, 4)}
    if folds[3][2] > TRIPLE_MARGIN * max(folds[2][2], folds[4][2]):
        meter = 3
    else:
        profile, best, _ = folds[4]
        middle = profile[(best + 4) % 8]
        rest = np.delete(profile, [best, (best + 4) % 8]).mean()
        meter = 4 if profile[best] - middle > QUADRUPLE_RATIO * (profile[best] - rest) else 2
    downbeat = folds[meter][1]
    taken = np.arange(downbeat % 2, n, 2)
    beat_units = units[taken]
    if downbeat % 2:  # the midpoints are the beats: the half beats before the first and after the last join them
        # Up to a quarter beat before the memory's start: a first kick at 0 s peaks in the envelope a frame late.
        if units[0] - half >= -half / 2:
            beat_units, taken = np.append(max(units[0] - half, 0.0), beat_units), np.append(-1, taken)
        if units[-1] + half < onset.shape[0]:
            beat_units, taken = np.append(beat_units, units[-1] + half), np.append(taken, n)
    phase = ((taken - downbeat) // 2) % meter
    return meter, phase.astype(np.int64), beat_units
