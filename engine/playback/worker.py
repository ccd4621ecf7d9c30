"""The generation worker and the guard: they write ahead of the playhead, so the callback always has audio.

The worker writes the song first, then chunk after chunk from the generator, keeping ``lead_s`` seconds written
ahead. The guard watches the lead: when the worker falls behind it writes a crossfaded repeat of the last
seconds (a late chunk) so the listener hears music, not silence; it also ends buffering once the lead is written
and notices a stream that stopped by itself (a lost device). Both write under ``_write_lock`` and hold it only
to copy; the callback never takes it.
"""

from __future__ import annotations

import logging
from typing import cast

import numpy as np

from ..errors import EncoreError
from ..process import GenerationInterrupted
from ..rendering import EndsOnPhrases
from ..seam import crossfade
from .devices import mark_device_lost
from .state import PlaybackState
from .types import EngineState

#: Failures on the engine's threads are logged here, traceback and all; the user gets one line (an ``error``
#: event and :attr:`EngineStatus.error`).
log = logging.getLogger(__name__)


class GenerationWorker(PlaybackState):
    """The :class:`~engine.playback.Engine`'s writing roles (their state is
    :class:`~engine.playback.state.PlaybackState`)."""

    def _generate(self) -> None:
        try:
            song, start, ring = self._playing_song(), self._start_position, self._output_ring()
            written = min(start, song.frames)
            while written < song.frames and not self._stop.is_set():
                if self._room() < self.config.blocksize:
                    self._wake.wait(0.01)
                    self._wake.clear()
                    continue
                n = min(self._room(), song.frames - written, self.sample_rate)
                with self._write_lock:
                    self._append(song.samples[written:written + n], join=False)
                written += n
            # The song's last crossfade is held back (pending) until here: Endless decides what follows it, and
            # may still be switched on until the song's last guard_s are playing.
            if not self._wait_for_endless_or_end():
                return
            self._song_written = True
            self._emit("song_end", f"continuation follows at {self._continuation_from / self.sample_rate:.2f} s")
            self._seams.append(self._continuation_from)
            position, first = self._continuation_from, True  # timeline frame where the next block begins
            told_to_end = False
            while not self._stop.is_set():
                if not self._endless and not self._wait_for_endless_or_end():
                    return  # switched off, and played out; switched on again in time goes on below
                # The generator is this thread's alone: it is told here. Only one that ends on phrases is: for the
                # seed model end_song() is Endless off, and it may ask before it has switched Endless off.
                if self._ending and not told_to_end and self.extender.ends_on_phrases:
                    cast(EndsOnPhrases, self.extender).end()
                    told_to_end = True
                    self._emit("ending", f"the song's own ending follows what is written up to "
                                         f"{ring.end / self.sample_rate:.1f} s")
                if ring.end - self._playhead >= self._lead_frames:
                    self._wake.wait(0.01)
                    self._wake.clear()
                    continue
                block = self.extender.next_block()
                begins = position - self._continuation_from  # the block's first frame, in generator frames
                skip, position = max(0, start - position), position + block.shape[0]
                if skip < block.shape[0]:  # else regenerating up to a seek position inside the continuation
                    while self._room() < block.shape[0] - skip and not self._stop.is_set():
                        self._wake.wait(0.01)
                        self._wake.clear()
                    self._write_generated(block[skip:], after_song=first, begins=begins + skip)
                    first = False
                if self.extender.finished:
                    self._play_out()
                    return
        except GenerationInterrupted:
            return  # the engine stopped while the generator's process was working: nothing failed
        except Exception as e:  # noqa: BLE001 - whatever it is, playback stops cleanly and the controller hears
            self._fail("generator", e)

    def _wait_for_endless_or_end(self) -> bool:
        """With Endless off, at the song's end or during the continuation: True to go on generating (Endless
        is on again, and a chunk is due); False once what was written has played out (or playback stopped)."""
        # Play out while twice the guard is left: well before the guard would take the end for a late chunk.
        play_out_at = round(2 * self.config.guard_s * self.sample_rate)
        ring = self._output_ring()
        while not self._stop.is_set():
            ahead = ring.end - self._playhead
            if self._endless and self._cannot_extend is None and ahead < self._lead_frames:
                return True  # decided only when the continuation is due, so Endless can change until then
            if not self._endless and ahead <= play_out_at:
                self._play_out()
                return False
            self._wake.wait(0.01)
            self._wake.clear()
        return False

    def _play_out(self) -> None:
        """Write what is held back, wait until the callback has played everything, then say ``finished``."""
        with self._write_lock:
            if self._song_written and self._pending is not None:
                # The continuation stops mid-music: its held-back crossfade becomes a fade-out, not a cut.
                self._pending = self._pending * np.cos(np.linspace(0, np.pi / 2, self._pending.shape[0],
                                                                   dtype=np.float32))[:, None] ** 2
            self._flush_pending()
            self._written_all = True
        ring = self._output_ring()
        while self._playhead < ring.end and not self._stop.is_set():
            self._stop.wait(0.01)
        if not self._stop.is_set():
            self._state = EngineState.FINISHED
            self._emit("finished")

    def _write_generated(self, block: np.ndarray, *, after_song: bool = False, begins: int | None = None) -> None:
        """Append a generated chunk (crossfaded in if the guard wrote a repeat before it) and announce it.

        With ``after_song`` the block is the continuation's first: it begins with its own crossfade over the song's
        last frames, so the song's held-back tail is dropped instead of written. ``begins`` is where the block
        starts in the generator's own frames (0 at the continuation's first): the generator's joins inside it
        are marked as seams where they are written (a resynth chunk boundary is no join; its cuts are). Without
        it (live input), each chunk boundary is marked.
        """
        ring = self._output_ring()
        with self._write_lock:
            if self._state in (EngineState.PLAYING, EngineState.CONTINUING):  # not after a fade-out or a stop
                at = ring.end + (0 if self._pending is None else self._pending.shape[0])
                if after_song:
                    self._pending = None
                    at = ring.end
                if begins is None:
                    if not after_song:
                        self._seams.append(at)
                else:
                    self._mark_joins(at, begins, block.shape[0])
                self._append(block, join=self._after_filler)
                self._after_filler = False
        self._emit("chunk", f"{self.extender.stats.chunks}")

    def _mark_joins(self, at: int, begins: int, frames: int) -> None:
        """Seams at the generator's joins that fall in the block written at timeline frame ``at``, which holds
        its frames ``begins`` to ``begins + frames`` (the song's end is already marked)."""
        joins = self.extender.joins
        overlap = self._overlap  # a join is counted from the song's end; the first block starts this before it
        k = len(joins)
        while k > 0 and joins[k - 1] + overlap >= begins:
            k -= 1
        for join in joins[k:]:
            inside = join + overlap - begins
            if inside >= frames:
                break
            if join > 0:
                self._seams.append(at + inside)

    def _fail(self, what: str, error: Exception) -> None:
        """Stop generating and tell the controller: a user's error in its words, a bug with its type."""
        if isinstance(error, EncoreError):
            detail = str(error)
            log.warning("%s: %s", what, detail)
        else:
            detail = f"{what} failed: {type(error).__name__}: {error}"
            log.error("%s failed", what, exc_info=error)  # a bug: its traceback goes to the log
            from ..logs import log_path

            detail += f" (a bug: its traceback is in {log_path()})"
        self._error = detail
        self._state = EngineState.ERROR
        self._stop.set()  # every thread ends; the controller's stop() closes the stream
        self._emit("error", detail)

    # --- the guard thread ---------------------------------------------------------------------------------
    def _guard(self) -> None:
        guard = round(self.config.guard_s * self.sample_rate)
        filler = round(self.config.filler_s * self.sample_rate)
        ring = self._output_ring()
        while not self._stop.wait(0.02):
            stream = self._stream
            if stream is not None and not stream.active and not self._stop.is_set():
                # PortAudio stopped calling back: the device went away (unplugged, or its server quit).
                self.device_lost = True
                mark_device_lost()
                self._fail("audio device", EncoreError("the audio device stopped: it was disconnected or its "
                                                       "server quit; choose another device"))
                return
            # Only a running stream can be late: before it opens (a seek regenerating the continuation up to its
            # position) the playhead stands still and nobody is waiting.
            if self._holding and (ring.end - self._playhead >= self._hold_for or self._written_all
                                  or self._state != EngineState.PLAYING):
                self._holding = False
            # A song that ends (Endless off) plays out: nothing is late then.
            playing = stream is not None and not self._holding and not self._written_all and (
                self._state == EngineState.CONTINUING or (self._state == EngineState.PLAYING and self._song_written))
            if not playing or ring.end - self._playhead >= guard or self._play_from is not None:
                continue
            with self._write_lock:
                if ring.end - self._playhead >= guard or len(ring) < filler + self._x or self._written_all:
                    continue
                # Repeat the last second, joined to what precedes it on both sides by crossfades.
                recent = ring.read(ring.end - filler, ring.end)
                recent = recent if recent.ndim == 2 else recent[:, None]
                self._seams.append(ring.end + (0 if self._pending is None else self._pending.shape[0]))
                self._append(recent, join=True)
                self._after_filler = True
                self._late_chunks += 1
            self._emit("late", f"generator behind; repeated the last {self.config.filler_s:g} s")

    # --- writing (generator and guard, under the lock where both may write) ----------------------------------
    def _room(self) -> int:
        """Frames that may be written without reaching what the callback has not played yet."""
        ring = self._output_ring()
        return ring.capacity - (ring.end - self._playhead) - 2 * self._x

    def _append(self, block: np.ndarray, *, join: bool) -> None:
        """Write ``block`` after what was written, holding its last crossfade back for the next join.

        With ``join`` the held-back tail and the block's head are crossfaded (the block does not continue the
        tail); otherwise the tail simply precedes the block.
        """
        block = block if block.ndim == 2 else block[:, None]
        x = self._x
        if self._pending is None:
            head, body = block[:0], block
        elif join and block.shape[0] > 2 * x:
            head, body = crossfade(self._pending, block[:x]), block[x:]
        else:
            head, body = self._pending, block
        out = np.concatenate([head, body[:-x]]) if body.shape[0] > x else head
        self._pending = body[-x:].copy() if body.shape[0] > x else body.copy()
        self._write(out)

    def _flush_pending(self) -> None:
        if self._pending is not None and self._pending.shape[0]:
            self._write(self._pending)
            self._pending = None

    def _write(self, frames: np.ndarray) -> None:
        if frames.shape[0]:
            ring = self._output_ring()
            ring.write(frames[:, 0] if ring.channels == 1 else frames)
