"""How close a continuation's timbre and level come to the real one's (log-mel distance), and whether it is noisier
than the music it continues (spectral flatness)."""

from __future__ import annotations

import math

import numpy as np

from .signals import as_mono, cut_to_shorter, stft_sizes

#: Bands of the log-mel spectra, and their floor: this many dB under the louder of the two signals compared.
LOGMEL_BANDS = 64
LOGMEL_RANGE_DB = 80.0
#: Length of the windows whose mean spectra are compared, in seconds: the coarse time evolution.
FEATURE_WINDOW_S = 1.0


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

    generated, true = cut_to_shorter(generated, true)
    n_fft, hop = stft_sizes(sample_rate)
    db = [librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=sample_rate, n_fft=n_fft, hop_length=hop,
                                                             n_mels=LOGMEL_BANDS), ref=1.0, amin=1e-10, top_db=None)
          for x in (generated, true)]
    floor = max(float(db[0].max()), float(db[1].max())) - LOGMEL_RANGE_DB
    means = [_window_means(np.maximum(d, floor), generated.shape[0], sample_rate, hop) for d in db]
    return float(np.mean(np.abs(means[0] - means[1])))



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

    n_fft, hop = stft_sizes(sample_rate)
    # center=False: a centred first or last frame is half zero padding, and a waveform cut off mid-cycle there is
    # a click that is flat across the spectrum. For tonal music that one frame outweighs the rest (a steady tone
    # read 2.2 times flatter in 10 s than in 20 s of itself), so only whole frames of the signal count.
    flatness = [float(np.mean(librosa.feature.spectral_flatness(y=as_mono(x), n_fft=n_fft, hop_length=hop,
                                                                center=False)))
                for x in (generated, original)]
    return flatness[0] / flatness[1] if flatness[1] > 0 else math.nan


def _window_means(feature: np.ndarray, frames: int, sample_rate: int, hop: int) -> np.ndarray:
    """Mean of a [shape=(bands, stft_frames)] feature over each whole 1 s window: [shape=(windows, bands)]."""
    windows = max(1, int(frames / sample_rate // FEATURE_WINDOW_S))
    index = np.arange(feature.shape[1]) * hop // round(FEATURE_WINDOW_S * sample_rate)
    keep = index < windows
    sums = np.zeros((windows, feature.shape[0]))
    np.add.at(sums, index[keep], feature[:, keep].T)
    counts = np.bincount(index[keep], minlength=windows)[:, None]
    return sums / np.maximum(counts, 1)
