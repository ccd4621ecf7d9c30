"""The settings of the generators, as frozen dataclasses: checked when made, shared by every module that reads them.

They live apart from the generators so that the sequencer, the stream and the command line can read them without
importing the generators that use them (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class ExtendConfig:
    """How chunks are joined and levelled; lengths in seconds.

    Parameters
    ----------
    crossfade_s : float
        Equal-power crossfade at every join (the song's end and between chunks), 5 ms to 1 s.
    loudness_reference_s : float
        The song's last seconds whose RMS level every generated chunk is matched to.
    max_gain_db : float
        Clamp of the loudness-matching gain, both ways, in dB.
    limiter_ceiling_db : float
        Peak ceiling of the output limiter, in dBFS.
    dc_cutoff_hz : float
        Corner of the DC blocker, in Hz.
    """

    crossfade_s: float = 0.05
    loudness_reference_s: float = 10.0
    max_gain_db: float = 12.0
    limiter_ceiling_db: float = -1.0
    dc_cutoff_hz: float = 10.0

    def __post_init__(self) -> None:
        if not 0.005 <= self.crossfade_s <= 1.0:
            raise ConfigError(f"crossfade must be 5 ms to 1 s, got {self.crossfade_s} s")
        if self.loudness_reference_s <= 0:
            raise ConfigError(f"loudness reference must be positive, got {self.loudness_reference_s} s")
        if not 0 <= self.max_gain_db <= 40:
            raise ConfigError(f"max gain must be 0 to 40 dB, got {self.max_gain_db}")
        if not -20 <= self.limiter_ceiling_db <= 0:
            raise ConfigError(f"limiter ceiling must be -20 to 0 dBFS, got {self.limiter_ceiling_db}")
        if not 0 < self.dc_cutoff_hz <= 100:
            raise ConfigError(f"DC blocker cutoff must be above 0 and at most 100 Hz, got {self.dc_cutoff_hz}")

    def crossfade_samples(self, sample_rate: int) -> int:
        """Crossfade length in frames at ``sample_rate``."""
        return max(1, round(self.crossfade_s * sample_rate))


@dataclass(frozen=True)
class ResynthConfig:
    """How the resynth generator sequences and renders; lengths in seconds.

    Parameters
    ----------
    variety : float
        0 plays long runs, mostly in the song's own order (32 bars between jumps, at 8-bar lines); 0.5 runs of
        about 8 bars between phrase lines; 1 short runs of about 2 bars, still whole bars.
    crossfade_s : float
        Equal-power crossfade at every cut, 20-40 ms.
    candidate_percentile : float
        How good a jump must be before a run leaves at a phrase line: this percentile of the song's own
        transition costs into phrase starts (0-100); each run that waits past its length asks less.
    max_gain_db : float
        Clamp of the loudness-matching gain at a jump, both ways, in dB.
    snap_s : float
        How far a cut may move to reach a rising zero crossing.
    recency_s : float
        Time over which a bar that was heard counts against entering it again.
    memory_s : float
        The memory's length: the last ``memory_s`` of a song or of live input are analysed.
    seed : int
        Seed of the variety noise.
    """

    variety: float = 0.5
    crossfade_s: float = 0.03
    candidate_percentile: float = 25.0
    max_gain_db: float = 6.0
    snap_s: float = 0.002
    recency_s: float = 180.0
    memory_s: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.variety <= 1.0:
            raise ConfigError(f"variety must be 0 to 1, got {self.variety}")
        if not 0.02 <= self.crossfade_s <= 0.04:
            raise ConfigError(f"resynth crossfade must be 20 to 40 ms, got {self.crossfade_s * 1000:g} ms")
        if not 0 < self.candidate_percentile <= 100:
            raise ConfigError(f"candidate percentile must be in (0, 100], got {self.candidate_percentile}")
        if not 0 <= self.max_gain_db <= 20:
            raise ConfigError(f"max gain must be 0 to 20 dB, got {self.max_gain_db}")
        if not 10.0 <= self.memory_s <= 3600.0:
            raise ConfigError(f"memory must be 10 s to 1 h, got {self.memory_s} s")
        if not self.recency_s > 0:
            raise ConfigError(f"recency must be positive, got {self.recency_s} s")
