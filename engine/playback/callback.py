"""The audio callback: PortAudio's thread (or the offline clock's) calls it for every block.

Its real-time contract: it only copies. Frames ``[playhead, playhead + n)`` go out of the output ring into
``outdata[:]`` (and, live, ``indata`` into the input ring and what was played into a ring of its own), scaled by
the volume, ramped over a block on a change, a pause or a resume. It allocates no audio buffer, runs no
inference, logs nothing, takes no lock and waits for nothing; it reads only frames below ``ring.end`` and at or
above ``playhead``, which no writer touches, and it alone writes ``playhead``. It counts true underruns from
PortAudio's status flags, and the frames it had to fill with silence because nothing was written yet.
"""

from __future__ import annotations

import numpy as np

from .state import PlaybackState
from .types import EngineState


class AudioCallback(PlaybackState):
    """The :class:`~engine.playback.Engine`'s callback role (its state is
    :class:`~engine.playback.state.PlaybackState`)."""

    def _callback(self, outdata, frames, time_info, status) -> None:
        if status is not None and status.output_underflow:
            self._underruns += 1
        if self._holding or (self._paused and self._ramp_gain == 0.0):
            outdata.fill(0)  # buffering after a start or a seek, or paused (after the fade below)
            return
        self._copy_out(outdata, frames)
        # Pausing fades out over this block and resuming fades in over the next: no click either way.
        self._apply_volume(outdata, frames, 0.0 if self._paused else self._volume)

    def _copy_out(self, outdata, frames: int) -> None:
        """Copy the next ``frames`` of the ring into ``outdata`` and advance the playhead; silence if starved."""
        ring = self._ring  # a local, so the check below holds for the whole block (no call, no allocation)
        if ring is None:  # no stream opens before _prepare_output has made it: this would be a bug
            raise RuntimeError("the audio callback ran before the output ring was made")
        start = self._playhead
        n = min(frames, ring.end - start)
        if n > 0:
            offset = 0
            for view in ring.views(start, start + n):
                length = view.shape[0]
                if view.ndim == 1:
                    outdata[offset:offset + length, 0] = view
                else:
                    outdata[offset:offset + length] = view
                offset += length
        else:
            n = 0
        if n < frames:
            outdata[n:] = 0
            # else the silence is the end
            if self._state in (EngineState.PLAYING, EngineState.CONTINUING) and not self._written_all:
                self._starved_frames += frames - n
        self._playhead = start + n

    def _duplex_callback(self, indata, outdata, frames, time_info, status) -> None:
        """Live mode: keep the input in its ring, then play the continuation, the input (monitor) or silence."""
        if status.input_overflow or status.output_underflow:
            self._underruns += 1
        heard, played = self._input, self._played  # locals, as in _copy_out
        if heard is None or played is None:  # live() makes both before its stream opens
            raise RuntimeError("the live callback ran before the input rings were made")
        heard.write(indata if self._in_channels > 1 else indata[:, 0])
        state = self._state
        if state in ("continuing", "fading"):
            if self._play_from is not None:
                self._playhead, self._play_from = self._play_from, None
            self._copy_out(outdata, frames)
            if state == "fading":
                pos = self._fade_pos
                n = min(frames, self._fade.shape[0] - pos)
                outdata[:n] *= self._fade[pos:pos + n]
                outdata[n:] = 0
                self._fade_pos = pos + n
                if self._fade_pos >= self._fade.shape[0]:
                    self._state = EngineState.LISTENING
        elif self._live.monitor:
            channels = min(indata.shape[1], outdata.shape[1])
            outdata[:, :channels] = indata[:, :channels]
            outdata[:, channels:] = 0
        else:
            outdata.fill(0)
        self._apply_volume(outdata, frames, self._volume)
        # Only Encore's own continuation counts as what the room may echo (the monitored input is the performer).
        if state in ("continuing", "fading"):
            played.write(outdata[:, 0])
        else:
            # Silence from the preallocated block, in pieces when a block is longer than it: nothing allocated here.
            silence = self._played_silence
            for start in range(0, frames, silence.shape[0]):
                played.write(silence[:min(silence.shape[0], frames - start)])

    def _apply_volume(self, outdata, frames: int, target: float) -> None:
        """Scale by ``target`` in place, ramping linearly across the block when it changed (no zipper click)."""
        current = self._ramp_gain
        if target == current:
            if current != 1.0:
                outdata *= current
            return
        frames = min(frames, self._unit_ramp.shape[0])
        ramp = self._ramp_scratch[:frames]
        np.multiply(self._unit_ramp[:frames], target - current, out=ramp)
        ramp += current
        outdata[:frames] *= ramp
        outdata[frames:] *= target
        # A block shorter than the ramp ends part of the way; the next block goes on from there.
        self._ramp_gain = target if frames == self._unit_ramp.shape[0] else float(ramp[-1, 0])
