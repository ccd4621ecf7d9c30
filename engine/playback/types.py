"""What the playback engine is told and what it tells: its settings, its states, its status and its events."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from ..errors import ConfigError


@dataclass(frozen=True)
class EngineConfig:
    """Real-time settings; lengths in seconds.

    Parameters
    ----------
    lead_s : float
        Audio the generator keeps written ahead of the playhead (at least one chunk is always asked for).
    guard_s : float
        When less than this is written ahead, the guard plays a crossfaded repeat of recent audio.
    filler_s : float
        Length of each repeat the guard writes.
    blocksize : int
        Frames per audio callback.
    crossfade_s : float
        Crossfade at every join (chunks, song end, late repeats).
    generator_process : bool
        With the ``device`` clock, run the generator in a process of its own (:mod:`engine.process`), so its
        work never holds the interpreter lock the audio callback needs; a process that dies is restarted. A
        generator given already loaded (a model object), and the ``offline`` clock, run in the engine's process.
    """

    lead_s: float = 10.0
    guard_s: float = 0.5
    filler_s: float = 1.0
    blocksize: int = 1024
    crossfade_s: float = 0.05
    generator_process: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.guard_s < self.lead_s:
            raise ConfigError(f"guard ({self.guard_s} s) must be positive and below the lead ({self.lead_s} s)")
        if not self.filler_s > 2 * self.crossfade_s:
            raise ConfigError(f"filler ({self.filler_s} s) must be longer than two crossfades")
        if not 16 <= self.blocksize <= 65536:
            raise ConfigError(f"blocksize must be 16 to 65536 frames, got {self.blocksize}")


@dataclass(frozen=True)
class LiveConfig:
    """When live-input extension carries on and when it gives the stage back; times in seconds.

    Parameters
    ----------
    silence_s : float
        The performer has stopped once the input stays below ``threshold_db`` this long.
    threshold_db : float
        Input level (RMS of 50 ms, dBFS) that counts as playing.
    min_heard_s : float
        Music that must have been heard before Encore carries on by itself (Enter carries on at once). After a
        fade, what made Encore fade counts as enough: a short fill, then silence, and Encore carries on again.
    resume_s : float
        The performer plays again once the input stays above the threshold this long; Encore fades out.
    fade_s : float
        Length of that fade-out.
    monitor : bool
        Pass the input through to the output while listening.
    cancel_echo : bool
        Cancel Encore's own echo from the input with SpeexDSP's echo canceller (:mod:`engine.aec`) where
        libspeexdsp is installed; False, or without it, the level gate alone tells the performer from the echo.
    analyse_every_s : float
        While the performer plays, what was heard so far is analysed ahead this often, so that a stop after
        minutes of playing finds all but its last seconds analysed (:mod:`engine.growing`).
    """

    silence_s: float = 1.5
    threshold_db: float = -40.0
    min_heard_s: float = 2.0
    resume_s: float = 0.2
    fade_s: float = 0.5
    monitor: bool = False
    cancel_echo: bool = True
    analyse_every_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("silence_s", "resume_s", "fade_s", "analyse_every_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not -90 <= self.threshold_db <= 0:
            raise ConfigError(f"threshold must be -90 to 0 dBFS, got {self.threshold_db}")


class EngineState(StrEnum):
    """Where the transport is (:attr:`EngineStatus.state`). A ``StrEnum``: each state equals its name's string
    (``EngineState.PLAYING == "playing"``), so observers may compare with either.

    idle -> playing (the song, then its continuation) -> finished (its own ending, or the song's end without
    Endless) or stopped; live: listening -> continuing (Encore carries on) -> fading (the performer plays again)
    -> listening. ``paused`` is what :meth:`Engine.status` reports while a playing transport is paused; ``error``
    ends either, with :attr:`EngineStatus.error` saying why.
    """

    IDLE = "idle"
    PLAYING = "playing"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    LISTENING = "listening"
    CONTINUING = "continuing"
    FADING = "fading"
    ERROR = "error"


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot for observers (CLI, GUI); times in seconds."""

    state: EngineState
    playhead_s: float
    ahead_s: float
    song_s: float
    chunks: int
    late_chunks: int
    underruns: int
    starved_s: float
    model: str
    real_time_factor: float
    continuations: int = 0
    #: The last minute's median chunk (``ExtendStats.recent_real_time_factor``); ``real_time_factor`` is the
    #: whole run's.
    recent_real_time_factor: float = math.nan
    endless: bool = True
    volume: float = 1.0
    buffering: bool = False
    generator: str = ""
    segmentation: str = ""
    #: Live input: how far below Encore's output the input hears Encore (speakers), in dB; inf when it does not
    #: (headphones, a line input); nan until a continuation's first second has measured it, or not live.
    echo_db: float = math.nan
    #: Live input: what keeps Encore's echo out of the input: ``"speexdsp"`` (cancelled) or ``"level gate"``
    #: (ignored); "" when not live.
    echo_canceller: str = ""
    #: Live input: how much quieter the echo is after cancelling (echo return loss enhancement), in dB, over the
    #: last seconds that Encore sounded alone; nan before it is measured, or without a canceller.
    echo_reduction_db: float = math.nan
    #: :meth:`Engine.end_song` was asked: the song is heading for its own ending.
    ending: bool = False
    #: Why playback stopped, in one line, when ``state`` is ``"error"`` (a bug's traceback is in the log).
    error: str = ""
    #: Where the generator runs: ``"own process"`` or ``"engine's process"``.
    generator_runs: str = ""
    #: Times the generator's process died and was restarted (the stream played on meanwhile).
    generator_restarts: int = 0


@dataclass(frozen=True)
class AudioDevice:
    """An audio device as PortAudio sees it; ``index`` is valid only until devices change, ``name`` is stable."""

    index: int
    name: str
    host_api: str
    inputs: int
    outputs: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool


@dataclass(frozen=True)
class EngineEvent:
    """Something observers may react to: ``chunk``, ``song_end``, ``late``, ``ending`` (the song's own ending is
    on its way), ``finished``, ``error``, ``restarted`` (the generator's process died and a new one took over),
    and in live mode ``continuing`` (the performer stopped; Encore carries on) and ``listening`` (the performer
    is back)."""

    kind: str
    playhead_s: float
    detail: str = ""


LIVE_STATES = (EngineState.LISTENING, EngineState.CONTINUING, EngineState.FADING)
