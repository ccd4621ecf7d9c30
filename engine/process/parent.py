"""The engine's side: :class:`GeneratorProcess`, the generator's stand-in, which starts the process, talks to it
and restarts it (:mod:`engine.process`)."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import warnings
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import Waveform
from ..config import ExtendConfig, ResynthConfig
from ..errors import EncoreError
from ..rendering import ExtendStats, Renderer, check_song
from ..shared_ring import SharedRing, share_array
from .protocol import (
    KEPT_SONGS,
    MAX_RESTARTS,
    RING_S,
    GenerationInterrupted,
    GeneratorProcessError,
    GeneratorSpec,
    ModelInfo,
)

log = logging.getLogger(__name__)


class GeneratorProcess(Renderer):
    """A generator run in a process of its own, with the :class:`~engine.rendering.Generator` protocol.

    The model is loaded here too, once, to refuse a file that is not an Encore model with the same one line as
    in-process (and to know its contract), then dropped; the process loads its own.

    Parameters
    ----------
    model : str or os.PathLike, optional
        An ONNX file, or None for the generator's shipped default.
    config : ExtendConfig, optional
    generator : {"jukebox", "resynth", "seed"}, optional
    resynth : ResynthConfig, optional
    threads : int
        ONNX Runtime intra-op threads in the process.
    interrupted : callable, optional
        Checked while a call waits: when it returns True the call raises :class:`GenerationInterrupted`.
    notify : callable, optional
        Told one line when the process died and was restarted.

    Raises
    ------
    ModelContractError
        As :func:`engine.generators.load_model`.
    """

    def __init__(self, model=None, config: ExtendConfig | None = None, *, generator: str | None = None,
                 resynth: ResynthConfig | None = None, threads: int = 1, interrupted=None, notify=None):
        from ..generators import load_model
        from ..resynth import SimilarityScorer

        loaded = load_model(model, generator=generator, threads=threads)
        self.model = ModelInfo(loaded.name, loaded.contract)
        self.generator = "seed" if loaded.contract.generator == "seed" else (
            "jukebox" if isinstance(loaded, SimilarityScorer) else "resynth")
        del loaded
        self.config = config or ExtendConfig()
        self.resynth = resynth or ResynthConfig()
        self.anticipates = self.generator != "seed"
        self.ends_on_phrases = self.generator != "seed"
        self._spec = GeneratorSpec(None if model is None else str(model), self.generator, self.config, resynth,
                                   threads)
        self._interrupted = interrupted or (lambda: False)
        self._notify = notify or (lambda line: None)
        self.restarts = 0
        # The mirror of the child's state, as of the last answer read.
        self.stats = ExtendStats()
        self.joins: list[int] = []
        self._segmentation = ""
        self._finished = False
        self._song: Waveform | None = None
        # What a restart replays: the started song's token, and the calls since ("next" runs counted).
        self._started_token: int | None = None
        self._history: list[tuple] = []
        self._songs: dict[int, Waveform] = {}  # token -> the song itself, so its id is not reused while kept
        self._lock = threading.RLock()  # one caller at a time talks to the child (the worker, the controller)
        self._numbers = itertools.count(1)
        self._ring: SharedRing | None = None
        self._transfers: dict[int, Any] = {}  # command number -> shared segment to unlink once it is answered
        self._failures_in_a_row = 0
        self._needs_restart = False
        self._needs_replay = False  # a new process has not been brought to where the dead one was yet
        self._current_from = 0  # answers to commands numbered before this (the last start or reset) are stale
        self._deferred: Exception | None = None  # a failure read while nobody waited; the next call raises it
        self._process: Any = None
        self._conn: Any = None
        self._sent_tokens: deque[int] = deque(maxlen=KEPT_SONGS)  # the songs the process keeps, oldest first
        self._spawn()

    # --- the Generator protocol ----------------------------------------------------------------------------
    @property
    def memory_s(self) -> float:
        """Seconds of a song or of live input the generator reads."""
        if self.generator == "seed":
            return self.model.contract.context_s + 1.0
        return self.resynth.memory_s

    @property
    def finished(self) -> bool:
        """The generator's own ending has been returned to its last frame."""
        return self._finished

    @property
    def segmentation(self) -> str:
        """How the memory was segmented (beats, meter, bars, phrases), once the process has analysed it."""
        if self._lock.acquire(blocking=False):  # nobody waits on the process: read what it said meanwhile
            try:
                self._drain()
            finally:
                self._lock.release()
        return self._segmentation

    @property
    def process(self):
        """The :class:`subprocess.Popen` that runs the generator now (a new one after a restart)."""
        return self._process

    def start(self, song: Waveform) -> None:
        """Prime with a song; refuses silence and crumbs here, at once, as the generators themselves do.

        Raises
        ------
        AudioContentError
            The song is shorter than 0.5 s or silent.
        """
        check_song(song)
        if self.generator == "seed" and song.seconds < self.model.contract.context_s + self.config.crossfade_s:
            # Said here, where the caller's warning filters apply (the process's own warning would come later,
            # on whichever thread reads its answer).
            from ..extend import ShortSongWarning, short_song_note

            warnings.warn(short_song_note(song.seconds, self.model.contract.context_s), ShortSongWarning,
                          stacklevel=2)
        with self._lock:
            token = self._keep(song)
            self._song, self._started_token, self._history = song, token, []
            self._ensure_ring(song)
            self._forget(self._send_or_restart(("start", token)))

    def anticipate(self, song: Waveform | None = None) -> None:
        """Have the process analyse ``song`` (the started one when None) ahead; returns at once (None)."""
        with self._lock:
            token = None if song is None else self._keep(song)
            self._send_or_restart(("anticipate", token))

    def next_block(self) -> np.ndarray:
        """The next block, [shape=(frames, channels), dtype=float32] at the song's rate.

        Raises
        ------
        GenerationInterrupted
            ``interrupted()`` became True while waiting.
        GeneratorProcessError
            The process died :data:`MAX_RESTARTS` times in a row.
        """
        with self._lock:
            while True:
                try:
                    if self._needs_restart:
                        self._restart()
                    if self._needs_replay:
                        self._replay()
                    block = self._call(("next",))
                except _Died:
                    self._needs_restart = True
                    continue
                self._failures_in_a_row = 0
                if self._history and self._history[-1][0] == "next":
                    self._history[-1] = ("next", self._history[-1][1] + 1)
                else:
                    self._history.append(("next", 1))
                return block

    def end(self) -> None:
        """Play on into the song's own ending from the next phrase line, then stop."""
        self._tell(("end",))

    def end_at(self, seconds: float) -> None:
        """End on the song's own ending at the phrase line nearest ``seconds`` of continuation."""
        self._tell(("end_at", float(seconds)))

    def reset(self) -> None:
        """Forget the song and every piece of streaming state (the process stays, ready for the next)."""
        with self._lock:
            self._song, self._started_token, self._history = None, None, []
            self._forget(self._send_or_restart(("reset",)))

    def close(self) -> None:
        """End the process and free the shared memory (safe to call twice)."""
        with self._lock:
            process, conn = self._process, self._conn
            self._process = self._conn = None
            if conn is not None:
                try:
                    conn.send((0, "close", ()))
                except OSError:
                    pass
            if process is not None:
                try:
                    process.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if conn is not None:
                conn.close()
            for segment in self._transfers.values():
                _free(segment)
            self._transfers.clear()
            if self._ring is not None:
                self._ring.close()
                self._ring = None

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit, modules may be gone already
            pass

    # --- talking to the child -----------------------------------------------------------------------------
    def _tell(self, command: tuple) -> None:
        with self._lock:
            self._history.append(command)
            self._send_or_restart(command)

    def _send_or_restart(self, command: tuple) -> int:
        """Send ``command`` without waiting for its answer, and return its number; a dead child is replaced
        later, by the next call that waits (the replay includes this command)."""
        try:
            return self._send(command)
        except _Died:
            self._needs_restart = True
            return next(self._numbers)

    def _forget(self, number: int) -> None:
        """A start or a reset (command ``number``): the mirror starts again, and earlier answers are stale."""
        self._current_from = number
        self.stats, self.joins, self._finished, self._segmentation = ExtendStats(), [], False, ""
        self._deferred = None
        self._needs_replay = False  # what a new process was to replay is superseded

    def _drain(self) -> None:
        """Read what the process has said while nobody waited (answers to commands sent without waiting, a block
        nobody waits for any more, an analysis done ahead); a failure among them is raised by the next call."""
        conn = self._conn
        try:
            while conn is not None and conn.poll(0):
                message = conn.recv()
                if message[0] == "piece":
                    self._take_piece(*message[2:])
                    continue
                try:
                    self._settle(message)
                except Exception as e:  # noqa: BLE001 - raised where a caller waits, see _call
                    self._deferred = e
        except (EOFError, OSError):
            self._needs_restart = True

    def _send(self, command: tuple) -> int:
        """Send ``command`` (the song it names first, if the process does not keep it); returns its number."""
        name, *args = command
        if name in ("start", "anticipate") and args[0] is not None and args[0] not in self._sent_tokens:
            token = args[0]
            song = self._songs[token]
            samples = np.ascontiguousarray(song.samples, dtype=np.float32)
            segment = share_array(samples)
            try:
                number = self._post("song", (token, segment.name, samples.shape, song.sample_rate))
            except _Died:
                _free(segment)
                raise
            self._transfers[number] = segment  # unlinked once the process has answered (it copied it by then)
            self._sent_tokens.append(token)
        return self._post(name, tuple(args))

    def _post(self, name: str, args: tuple) -> int:
        number = next(self._numbers)
        try:
            self._conn.send((number, name, args))
        except (OSError, ValueError, AttributeError) as e:
            raise _Died(str(e)) from e
        return number

    def _call(self, command: tuple):
        """Send ``command`` and wait for its answer: the block for "next", else None."""
        if self._deferred is not None:
            error, self._deferred = self._deferred, None
            raise error
        number = self._send(command)
        pieces: list[np.ndarray] = []
        while True:
            message = self._receive()
            kind, answered = message[0], message[1]
            if kind == "piece":
                if answered == number:
                    pieces.append(self._take_piece(*message[2:]))
                else:
                    self._take_piece(*message[2:])  # an answer nobody waits for any more: read past it
                continue
            self._settle(message)
            if answered == number:
                if command[0] != "next":
                    return None
                if not pieces:
                    return np.zeros((0, self._ring.channels if self._ring else 1), np.float32)
                block = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                return block if block.ndim == 2 else block[:, None]

    def _receive(self) -> tuple:
        """The child's next message; raises :class:`_Died` when it is gone, :class:`GenerationInterrupted`
        when the engine stops meanwhile."""
        conn = self._conn
        if conn is None:
            raise _Died("closed")
        while True:
            if self._interrupted():  # checked first: a stopping engine takes no more answers, ready or not
                raise GenerationInterrupted("the engine is stopping")
            try:
                if conn.poll(0.05):
                    return conn.recv()
            except (EOFError, OSError) as e:
                raise _Died(f"the pipe broke: {e}") from e
            if self._process is None or self._process.poll() is not None:
                # Whatever it sent before dying is still in the pipe: read that first.
                try:
                    if conn.poll(0):
                        return conn.recv()
                except (EOFError, OSError):
                    pass
                code = None if self._process is None else self._process.returncode
                raise _Died(f"exit code {code}")

    def _take_piece(self, begin: int, end: int) -> np.ndarray:
        ring = self._ring
        if ring is None:
            raise RuntimeError("a block arrived before the shared ring was made")
        piece = ring.read(begin, end)
        ring.read_to = end
        return piece

    def _settle(self, message: tuple) -> None:
        """Apply an answer: unlink what it was sent with, mirror the child's state, raise its failure."""
        kind, number = message[0], message[1]
        segment = self._transfers.pop(number, None)
        if segment is not None:
            _free(segment)
        if kind == "error":
            error, text = message[2], message[3]
            if not isinstance(error, Exception) or not _is_user_error(error):
                log.error("the generator's process failed:\n%s", text)
            raise error if isinstance(error, Exception) else RuntimeError(text)
        state, caught = message[2], message[3]
        if state and (number >= self._current_from or number == -1):
            self.stats = state["stats"]
            self.joins.extend(state["joins"])
            self._finished = state["finished"]
            self._segmentation = state["segmentation"]
        for category, text in caught:
            if category.__name__ != "ShortSongWarning":  # start() has said it already, where it was called
                warnings.warn(text, category, stacklevel=3)

    # --- songs, the ring, the process -----------------------------------------------------------------------
    def _keep(self, song: Waveform) -> int:
        token = id(song.samples)
        if token not in self._songs:
            self._songs[token] = song
            while len(self._songs) > KEPT_SONGS + 1:  # the oldest goes, never the started one
                del self._songs[next(t for t in self._songs if t != self._started_token)]
        return token

    def _ensure_ring(self, song: Waveform) -> None:
        capacity = round(RING_S * song.sample_rate)
        ring = self._ring
        if ring is not None and ring.capacity == capacity and ring.channels == song.channels:
            return
        if ring is not None:
            ring.close()
        self._ring = SharedRing(capacity, song.channels)
        self._send_or_restart(("ring", self._ring.name, capacity, song.channels))

    def _spawn(self) -> None:
        """Start a process for the generator; it opens the generator, then reads the pipe (what is sent
        meanwhile waits there)."""
        # A fresh interpreter, not multiprocessing's spawn: that re-imports the caller's __main__, and a user's
        # script without an ``if __name__ == "__main__"`` guard would then run again in the child.
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        try:
            self._process = subprocess.Popen(self._spawn_command(theirs.fileno()), pass_fds=[theirs.fileno()],
                                             stdin=subprocess.DEVNULL, env=env)
        except OSError as e:
            ours.close()
            raise GeneratorProcessError(f"cannot start the generator's process: {e}") from e
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(self._spec)
        self._sent_tokens.clear()

    @staticmethod
    def _spawn_command(fd: int) -> list[str]:
        """The generator's process: this interpreter, serving on file descriptor ``fd``."""
        return [sys.executable, "-c", f"from engine.process.child import main; main({fd})"]

    def _restart(self) -> None:
        """Replace a dead process and bring the new one to where the old one was (see the module's doc)."""
        self._failures_in_a_row += 1
        old = self._process
        if old is not None:
            if old.poll() is None:  # alive, but its pipe broke: it is of no use any more
                old.kill()
            old.wait()
        code = None if old is None else old.returncode
        if self._failures_in_a_row > MAX_RESTARTS:
            raise GeneratorProcessError(f"the generator's process died {MAX_RESTARTS + 1} times in a row "
                                        f"(exit code {code}); playback cannot go on")
        self.restarts += 1
        line = f"the generator's process died (exit code {code}); restarted it"
        log.warning(line)
        self._notify(line)
        if self._conn is not None:
            self._conn.close()
        for segment in self._transfers.values():
            _free(segment)
        self._transfers.clear()
        self._spawn()
        self._needs_restart = False
        self._needs_replay = self._started_token is not None
        ring = self._ring
        if ring is not None:
            ring.clear()
            ring.read_to = 0
            self._send(("ring", ring.name, ring.capacity, ring.channels))

    def _replay(self) -> None:
        """Bring a new process to where the dead one was: the started song, then the same calls since."""
        if self._started_token is None:
            self._needs_replay = False
            return
        mirror = self.stats, list(self.joins), self._finished, self._segmentation
        try:
            self._call(("start", self._started_token))
            for name, *args in self._history:
                self._call(("skip", args[0]) if name == "next" else (name, *args))
            self._needs_replay = False
        finally:
            # What was returned stays as it was: the replay's own answers describe blocks nobody receives.
            self.stats, self.joins, self._finished, self._segmentation = mirror


class _Died(Exception):
    """The child is gone (internal: the caller restarts it)."""


def _free(segment) -> None:
    segment.close()
    try:
        segment.unlink()
    except FileNotFoundError:
        pass


def _is_user_error(error: Exception) -> bool:
    return isinstance(error, EncoreError)
