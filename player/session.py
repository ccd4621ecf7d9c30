"""The player's one link to the engine: every call into :class:`engine.Engine`, every observation of it.

Threads: the engine's own threads generate and play (see :mod:`engine.playback`). This object lives on the GUI
thread and only looks, on a ``QTimer``: the engine's status, its events, and the continuation it has written
ahead of the playhead, turned into Qt signals for the widgets. It holds no audio logic; a user's mistake
(:class:`engine.EncoreError`) becomes a :attr:`PlayerSession.message`, never an exception in a slot.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from engine import AudioContentError, EncoreError, Engine, EngineConfig, ResynthConfig, Waveform, load_audio
from engine.generators import load_model
from engine.playback import LIVE_STATES, EngineStatus, LiveConfig, audio_devices

#: How often the view asks the engine how it is doing, in ms (20 frames a second).
POLL_MS = 50
_SAME = object()  # "keep the current value" where None is a meaningful choice (the default device)


class PlayerSession(QObject):
    """Owns the :class:`~engine.Engine` for the window and reports what it does.

    Parameters
    ----------
    model : str or Path, optional
        ONNX model (its contract says which generator it drives); the shipped resynth model when None.
    output_device : int or str, optional
        sounddevice's notation; the system default when None.
    poll_ms : int
        Interval of the observing timer, in ms.

    Raises
    ------
    EncoreError
        The model cannot be loaded (only here, at start; later model changes report a message instead).
    """

    songLoaded = pyqtSignal(object, str)           # Waveform, path
    statusChanged = pyqtSignal(object)             # EngineStatus
    continuationWritten = pyqtSignal(float, object, int)  # start in s, samples [frames, channels], sample rate
    seamsChanged = pyqtSignal(object)              # numpy array of seam positions in s
    timelineCleared = pyqtSignal()                 # new song, stop, new model: forget the drawn continuation
    timelineCut = pyqtSignal(float)                # seek: what was drawn from here on will be written again
    modelChanged = pyqtSignal(str)                 # the model's name
    endlessChanged = pyqtSignal(bool)
    message = pyqtSignal(str)                      # a non-modal error for the user: what did not happen, and why
    note = pyqtSignal(str)                         # something the user should know that is not an error

    def __init__(self, model=None, *, output_device=None, poll_ms: int = POLL_MS, parent: QObject | None = None):
        super().__init__(parent)
        self.model = load_model(model)
        self.output_device = output_device
        self.config = EngineConfig()
        self.resynth = ResynthConfig()
        self.song: Waveform | None = None
        self.song_path: str | None = None
        self.endless = True
        self.volume = 1.0
        self._start_s = 0.0  # where Play starts when nothing plays: 0, or where a stopped song was clicked
        self._drawn_until = 0
        self._seam_count = 0
        self._live_input: int | str | None = None  # the input device (sounddevice's notation) live() was given
        self._live_config: LiveConfig | None = None
        self._engine = self._new_engine()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._poll)
        self._timer.start(poll_ms)

    # --- songs and models --------------------------------------------------------------------------------------
    def open_song(self, path: str | Path) -> bool:
        """Load a song (playback stops); a file that cannot be read leaves everything as it was."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                song = load_audio(path)
        except EncoreError as e:
            self.message.emit(str(e))
            return False
        for warning in caught:  # a file cut short or repaired plays, and the window says how
            self.note.emit(str(warning.message))
        self._engine.stop()
        self.song, self.song_path, self._start_s = song, str(path), 0.0
        self._clear_timeline()
        self.songLoaded.emit(song, str(path))
        self._poll()
        return True

    def load_model(self, path: str | Path | None, *, generator: str | None = None) -> bool:
        """Switch to another ONNX model, or to ``generator``'s shipped one (None: resynth's); a file that does
        not fit changes nothing."""
        try:
            model = load_model(path, generator=generator)
        except EncoreError as e:
            self.message.emit(f"model not changed: {e}")
            return False
        if not self._restart_with(model=model):
            return False
        self.modelChanged.emit(model.name)
        return True

    def apply_settings(self, *, crossfade_s: float | None = None, lead_s: float | None = None,
                       variety: float | None = None) -> bool:
        """Change the generator's settings; playback goes on from where it is with them."""
        try:
            config = EngineConfig(lead_s=self.config.lead_s if lead_s is None else lead_s,
                                  guard_s=self.config.guard_s, filler_s=self.config.filler_s,
                                  blocksize=self.config.blocksize,
                                  crossfade_s=self.config.crossfade_s if crossfade_s is None else crossfade_s)
            resynth = self.resynth if variety is None else ResynthConfig(variety=variety)
        except EncoreError as e:
            self.message.emit(f"settings not changed: {e}")
            return False
        return (config == self.config and resynth == self.resynth) or self._restart_with(config=config,
                                                                                        resynth=resynth)

    def set_output_device(self, device) -> None:
        """Play through ``device`` (sounddevice's notation; None: the system default) from now on."""
        if device != self.output_device:
            self._restart_with(output_device=device)

    # --- transport ----------------------------------------------------------------------------------------------
    def play(self) -> None:
        """Play the song (or go on after a pause)."""
        state = self._engine.status().state
        if state in LIVE_STATES:
            self.message.emit("listening to live input: press Listen again to stop it first")
            return
        if state == "paused":
            self._engine.resume()
        elif state not in ("playing", "continuing"):
            if self.song is None:
                self.message.emit("open a song first (File > Open, or drop a file on the window)")
                return
            self._play_song(self._engine)
        self._poll()

    def pause(self) -> None:
        self._engine.pause()  # the engine does not pause live input
        self._poll()

    def toggle_play(self) -> None:
        """Space: play or pause a song."""
        if self._engine.status().state == "playing":
            self.pause()
        else:
            self.play()

    def stop(self) -> None:
        """Stop; the next Play starts from the beginning."""
        self._engine.stop()
        self._engine.resume()
        self._start_s = 0.0
        self._clear_timeline()
        self._poll()

    def seek(self, seconds: float) -> None:
        """Go to ``seconds`` on the timeline (song or continuation)."""
        seconds = max(0.0, float(seconds))
        if self._engine.status().state in ("playing", "continuing", "paused"):
            self.timelineCut.emit(seconds)
            self._drawn_until = 0
            self._guarded(self._engine.seek, seconds)
        elif self.song is not None:
            self._start_s = min(seconds, self.song.seconds)
        self._poll()

    def set_endless(self, endless: bool) -> None:
        """Endless on: the continuation follows the song's end; off: the song ends at its end."""
        if self._guarded(self._engine.set_endless, endless) is not False:
            self.endless = bool(endless)
        self.endlessChanged.emit(self.endless)

    def end_song(self) -> None:
        """Play on to the song's own ending from the next phrase line, then stop (the engine's ``end_song``)."""
        self._engine.end_song()
        self._poll()

    def set_volume(self, gain: float) -> None:
        """Output gain, 0 to 1."""
        self.volume = float(np.clip(gain, 0.0, 1.0))
        self._engine.set_volume(self.volume)

    @property
    def position_s(self) -> float:
        """Where playback is (or starts), in seconds on the timeline."""
        status = self._engine.status()
        return status.playhead_s if status.state not in ("idle", "stopped") else self._start_s

    def status(self) -> EngineStatus:
        return self._engine.status()

    # --- live input ---------------------------------------------------------------------------------------------
    def start_live(self, input_device=None, live_config: LiveConfig | None = None) -> bool:
        """Listen to ``input_device``; Encore carries on when the performer stops."""
        self._live_input, self._live_config = input_device, live_config
        self._engine.stop()
        self._clear_timeline()
        ok = self._guarded(self._engine.live, live_config, input_device=input_device) is not False
        self._poll()
        return ok

    def carry_on(self) -> None:
        """Carry on from what was heard, now."""
        if self._engine.status().state in LIVE_STATES:
            self._engine.carry_on()

    def input_level_db(self) -> float:
        """Input level of the last 50 ms in dBFS; -inf when not listening."""
        if self._engine.status().state not in LIVE_STATES:
            return -np.inf
        return self._engine.input_level_db()

    @staticmethod
    def devices(kind: str) -> list:
        """Audio devices with ``kind`` ('input' or 'output') channels; empty when there is no audio at all."""
        try:
            found = audio_devices()
        except EncoreError:
            return []
        return [d for d in found if (d.inputs if kind == "input" else d.outputs) > 0]

    def close(self) -> None:
        """Stop everything (the window is closing)."""
        self._timer.stop()
        self._engine.close()  # ends the generator's process, and frees native resampler state now

    # --- observing ----------------------------------------------------------------------------------------------
    def _poll(self) -> None:
        engine = self._engine
        while not engine.events.empty():
            event = engine.events.get_nowait()
            if event.kind in ("error", "restarted"):
                self.message.emit(event.detail)
        status = engine.status()
        if status.state not in ("idle", "stopped"):
            start, samples = engine.continuation_since(self._drawn_until)
            if samples.shape[0]:
                self._drawn_until = start + samples.shape[0]
                self.continuationWritten.emit(start / engine.sample_rate, samples, engine.sample_rate)
            seams = engine.seams()
            if seams.shape[0] != self._seam_count:
                self._seam_count = seams.shape[0]
                self.seamsChanged.emit(seams)
        self.statusChanged.emit(status)

    # --- helpers ------------------------------------------------------------------------------------------------
    def _new_engine(self, model=None, config: EngineConfig | None = None, device=_SAME,
                    resynth: ResynthConfig | None = None) -> Engine:
        engine = Engine(config or self.config, model=model or self.model, resynth=resynth or self.resynth,
                        device=self.output_device if device is _SAME else device)
        engine.set_volume(self.volume)
        return engine

    def _restart_with(self, *, model=None, config: EngineConfig | None = None, output_device=_SAME,
                      resynth: ResynthConfig | None = None) -> bool:
        """Swap in an engine with these changes, if one can be built; what was playing goes on where it was.

        A song goes on from its position (paused stays paused); live input listens again.
        """
        try:
            engine = self._new_engine(model, config, output_device, resynth)
        except EncoreError as e:
            self.message.emit(f"not changed: {e}")
            return False
        status = self._engine.status()
        live = status.state in LIVE_STATES
        song_playing = status.state in ("playing", "paused") and self.song is not None
        self._engine.close()
        self.model, self.config = model or self.model, config or self.config
        self.resynth = resynth or self.resynth
        if output_device is not _SAME:
            self.output_device = output_device
        self._engine = engine
        self._clear_timeline()
        if song_playing:
            self._start_s = status.playhead_s
            self._play_song(engine, paused=status.state == "paused")
        elif live:
            self.start_live(self._live_input, self._live_config)
        self._poll()
        return True

    def _clear_timeline(self) -> None:
        self._drawn_until = 0
        self._seam_count = 0
        self.timelineCleared.emit()

    def _play_song(self, engine: Engine, *, paused: bool = False) -> None:
        """Start the song on ``engine`` from ``_start_s``; a refused song says how it could still play."""
        hint = "; switch Endless off to play it as it is" if self.endless else ""
        self._guarded(engine.play, self.song, endless=self.endless, start_s=self._start_s, paused=paused,
                      content_hint=hint)

    def _guarded(self, call, *args, content_hint: str = "", **kwargs):
        """Run an engine call; a user's mistake becomes a message (and False) instead of an exception.

        ``content_hint`` is added to the message when the song itself was refused (silent, too short).
        """
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = call(*args, **kwargs)
            for warning in caught:
                self.note.emit(str(warning.message))
            return result
        except AudioContentError as e:
            self.message.emit(f"{e}{content_hint}")
            return False
        except EncoreError as e:
            self.message.emit(str(e))
            return False
