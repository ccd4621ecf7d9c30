"""Real-time playback, one file per role: a song, then its continuation, generated ahead of the playhead, endlessly.

These activities share one output ring buffer (``RingBuffer``, absolute frame positions):

- **the audio callback** (PortAudio's thread, or the offline clock's) only copies: frames
  ``[playhead, playhead + n)`` out of the ring into ``outdata[:]``, then advances ``playhead``, scaling by the
  volume (ramped over a block on a change, a pause or a resume). No allocation of audio buffers, no inference,
  no logging, no lock. It counts true underruns from PortAudio's status flags, and frames it had to fill with
  silence because nothing was written yet (starved frames). While the lead is first written after a start or
  a seek (``buffering``) it plays silence and stands still.
- **the generator thread** writes ahead of the playhead: the song first, then chunk after chunk from the
  :class:`~engine.extend.Extender`, keeping ``lead_s`` seconds written ahead (at least one whole chunk).
- **the guard thread** watches the lead. When the generator falls behind (lead below ``guard_s``) it writes a
  crossfaded repeat of the last seconds, so the listener hears music, not a click or silence, and counts a
  late chunk. The generator's next chunk is crossfaded in after it. It also ends ``buffering`` once the lead
  is written, and notices a stream that stopped by itself (a lost device).
- **the live thread** (live input only, in place of the generator): the callback also copies ``indata`` into
  an input ring, and what Encore itself sent out into a ring of its own, frame for frame; this thread watches the
  input level, carries on from what was heard when the performer stops, generates while continuing, and asks
  the callback to fade out when the performer plays again, not when the input is only Encore heard back
  through speakers (:mod:`engine.echo`).
- **the controller** (:class:`Engine`'s public methods: the CLI, the desktop player) starts, pauses, seeks,
  stops and observes; observers poll :meth:`Engine.status` and read :attr:`Engine.events`, and may read the
  continuation written ahead (:meth:`Engine.continuation_since`) to draw it.

Positions are absolute frames of the timeline: the song starts at frame 0 and the continuation follows it, so
after :meth:`Engine.seek` the playhead still says where in the song (or its continuation) playback is.

Why sharing is safe: the two writers (generator or live thread, and guard) take ``_write_lock`` around each
append, and hold it only to copy; the callback never takes it. The callback reads only frames below ``ring.end``
and at or above ``playhead``; the writers never write past ``playhead + capacity``, so what the callback reads
is never being overwritten. ``playhead`` is written by the callback alone; an int assignment is atomic under the
GIL. Pause, volume and Endless are single attributes the controller sets and the other threads only read.
"""

from .devices import audio_devices, exit_if_device_lost, list_devices
from .transport import Engine
from .types import LIVE_STATES, AudioDevice, EngineConfig, EngineEvent, EngineState, EngineStatus, LiveConfig

__all__ = ["LIVE_STATES", "AudioDevice", "Engine", "EngineConfig", "EngineEvent", "EngineState", "EngineStatus",
           "LiveConfig", "audio_devices", "exit_if_device_lost", "list_devices"]
