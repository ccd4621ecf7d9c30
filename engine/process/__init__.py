"""The generator in a process of its own: :class:`GeneratorProcess`, a :class:`~engine.rendering.Generator` that the
engine calls as it calls one in its own process, while the generator's Python and numpy work runs elsewhere.

Why: an audio callback needs the interpreter lock for a moment every block; a generator holds it for tens of
milliseconds at a time (the analysis, the sequencer, the scorer's Python). In one process, under load, the
callback waits for it and the stream underruns. Here the engine's threads only send a command down a pipe and
wait (the lock is free meanwhile), then copy the block out of a shared-memory ring (:class:`~engine.shared_ring.
SharedRing`); the song or the live memory goes the other way through a shared segment of its own.

A generator is deterministic: the same song, the same calls, the same blocks. So when its process dies, a new one
is started, given the same song, told the same calls (``end()`` where it was told) and made to generate and drop
the blocks already returned; the next block is then the one the dead process would have returned, bit for bit.
Meanwhile the engine plays what it has written ahead and, should that run low, its guard's repeats (the
fallback): no silence, no crash. After :data:`MAX_RESTARTS` deaths without a block in between, the failure is
the engine's (:class:`GeneratorProcessError`).

Pipe protocol (the parent sends, the child answers each command once, in order, tagged with its number):
``("song", token, segment, shape, rate)`` keeps a copy of a song under ``token``; ``("start", token)``,
``("anticipate", token or None)``, ``("next",)``, ``("skip", n)``, ``("end",)``, ``("end_at", s)``, ``("reset",)``,
``("ring", name, capacity, channels)``, ``("close",)``. A block's frames go into the ring in pieces, each announced by
``("piece", n, begin, end)`` before the command's ``("ok", n, state, warnings)``; a failure is ``("error", n,
exception, traceback)``. ``("state", -1, state, [])`` comes unasked when an analysis done ahead has finished.
"""

from .parent import GeneratorProcess
from .protocol import GenerationInterrupted, GeneratorProcessError, GeneratorSpec, ModelInfo

__all__ = ["GenerationInterrupted", "GeneratorProcess", "GeneratorProcessError", "GeneratorSpec", "ModelInfo"]
