"""The generator's side: the process that opens the generator and answers the engine's commands
(:mod:`engine.process`)."""

from __future__ import annotations

import pickle
import signal
import threading
import time
import traceback
import warnings
from multiprocessing.connection import Connection

import numpy as np

from ..audio import Waveform
from ..shared_ring import SharedRing, copy_shared_array
from .protocol import KEPT_SONGS, GeneratorSpec


def main(fd: int) -> None:
    """The generator's process, started by :class:`GeneratorProcess` with its end of a socket pair as ``fd``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to handle; it closes this process
    from ..logs import configure

    configure()  # failures go to Encore's log, as the engine's own do
    conn = Connection(fd)
    try:
        spec = conn.recv()
    except (EOFError, OSError):
        return
    serve(conn, spec)


def serve(conn, spec: GeneratorSpec) -> None:
    """Open the generator ``spec`` describes, then answer commands on ``conn`` until "close" or the pipe ends."""
    from ..generators import open_generator

    generator = open_generator(spec.model, spec.config, generator=spec.generator, resynth=spec.resynth,
                               threads=spec.threads)
    server = _Server(conn, generator)
    try:
        server.run()
    finally:
        generator.reset()
        if server.ring is not None:
            server.ring.close()


class _Server:
    def __init__(self, conn, generator) -> None:
        self.conn = conn
        self.generator = generator
        self.songs: dict[int, Waveform] = {}
        self.ring: SharedRing | None = None
        self.sent_joins = 0
        self.ahead: threading.Thread | None = None  # an analysis started by anticipate(), not reported yet

    def run(self) -> None:
        while True:
            try:
                if not self.conn.poll(0.05):
                    self._report_analysis_done()
                    continue
                number, name, args = self.conn.recv()
            except (EOFError, OSError):
                return  # the engine's process is gone
            if name == "close":
                return
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    self._do(number, name, args)
                    answer: tuple = ("ok", number, self._state(), [(w.category, str(w.message)) for w in caught])
                except Exception as e:  # noqa: BLE001 - every failure goes back to the engine, which decides
                    answer = ("error", number, _picklable(e), traceback.format_exc())
            self.conn.send(answer)

    def _do(self, number: int, name: str, args: tuple) -> None:
        generator = self.generator
        if name == "song":
            token, segment, shape, rate = args
            self.songs[token] = Waveform(copy_shared_array(segment, shape, "float32"), rate)
            while len(self.songs) > KEPT_SONGS:
                del self.songs[next(iter(self.songs))]
        elif name == "ring":
            if self.ring is not None:
                self.ring.close()
            segment, capacity, channels = args
            self.ring = SharedRing(capacity, channels, name=segment)
        elif name == "start":
            generator.start(self.songs[args[0]])
            self.sent_joins = 0
        elif name == "anticipate":
            self.ahead = generator.anticipate(None if args[0] is None else self.songs[args[0]])
        elif name == "next":
            self._write(number, generator.next_block())
        elif name == "skip":
            for _ in range(args[0]):
                generator.next_block()
        elif name == "end":
            generator.end()
        elif name == "end_at":
            generator.end_at(args[0])
        elif name == "reset":
            generator.reset()
            self.sent_joins = 0
        else:
            raise ValueError(f"unknown command {name!r}")

    def _write(self, number: int, block: np.ndarray) -> None:
        """Put ``block`` through the ring in pieces the reader has room for, each announced on the pipe."""
        ring = self.ring
        if ring is None:
            raise RuntimeError("no shared ring to write the block into")
        step = ring.capacity // 2
        for begin in range(0, block.shape[0], step):
            piece = block[begin:begin + step]
            while ring.room() < piece.shape[0]:
                time.sleep(0.001)  # the engine is copying the previous piece out
            at = ring.end
            ring.write(piece[:, 0] if ring.channels == 1 else piece)
            self.conn.send(("piece", number, at, ring.end))

    def _state(self, *, joins: bool = True) -> dict:
        """The generator's state for the engine's mirror; with ``joins``, the joins it has not been sent yet."""
        generator = self.generator
        new = generator.joins[self.sent_joins:] if joins else []
        self.sent_joins += len(new)
        return {"stats": generator.stats, "joins": new, "finished": bool(generator.finished),
                "segmentation": generator.segmentation}

    def _report_analysis_done(self) -> None:
        """An analysis done ahead has finished: the engine can show the segmentation before the first block."""
        ahead = self.ahead
        if ahead is not None and not ahead.is_alive():
            self.ahead = None
            self.conn.send(("state", -1, self._state(joins=False), []))


def _picklable(error: Exception) -> Exception:
    """``error`` itself when it survives pickling (Encore's errors do), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}")
