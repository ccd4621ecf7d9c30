"""A :class:`~engine.ring.RingBuffer` whose frames and positions live in shared memory, for two processes.

The generator's process (:mod:`engine.process`) writes each block it generates into this ring and the engine's
process copies it out: numpy over :class:`multiprocessing.shared_memory.SharedMemory`, so audio never goes through
a pipe and is never pickled. One process writes, the other reads; the reader says how far it has read
(:attr:`SharedRing.read_to`), and the writer waits rather than overwrite frames not read yet
(:meth:`SharedRing.room`).
"""

from __future__ import annotations

from multiprocessing import resource_tracker, shared_memory

import numpy as np

from .ring import RingBuffer

#: The header before the frames: end, origin and the reader's position, as int64.
_HEADER = 3
_HEADER_BYTES = 8 * _HEADER


class _HeaderField:
    """One int64 of a :class:`SharedRing`'s shared header, read and written as an attribute."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __get__(self, ring, owner=None) -> int:
        return int(ring._header[self.index])

    def __set__(self, ring, value: int) -> None:
        ring._header[self.index] = value


class SharedRing(RingBuffer):
    """A ring of float32 frames in a shared-memory segment, addressed by absolute frame positions.

    The process that creates it owns the segment and unlinks it in :meth:`close`; the other attaches by
    :attr:`name` and only closes its mapping. Everything else is :class:`~engine.ring.RingBuffer`'s.

    Parameters
    ----------
    capacity : int
        Frames held, > 0.
    channels : int
        Channels per frame, > 0.
    name : str, optional
        Attach to this existing segment (made by another process with the same capacity and channels); a new
        segment when None.

    Raises
    ------
    ValueError
        Capacity or channels not a positive integer, or a segment smaller than they need.
    FileNotFoundError
        No segment of that name.
    """

    def __init__(self, capacity: int, channels: int = 1, *, name: str | None = None):
        self._name = name
        self.owner = name is None
        self._memory: shared_memory.SharedMemory | None = None
        self._header = np.zeros(_HEADER, np.int64)  # the segment's header once _allocate has mapped it
        super().__init__(capacity, channels, np.float32)

    def _allocate(self, shape: tuple[int, ...]) -> np.ndarray:
        size = _HEADER_BYTES + int(np.prod(shape)) * self.dtype.itemsize
        if self.owner:
            self._memory = shared_memory.SharedMemory(create=True, size=size)
        else:
            self._memory = shared_memory.SharedMemory(name=self._name)
            # Python 3.11's resource tracker takes an attached segment for one this process made and unlinks it
            # when this process ends, under the owner's feet: the owner alone unlinks it.
            resource_tracker.unregister(self._memory._name, "shared_memory")  # type: ignore[attr-defined]
            if self._memory.size < size:
                self._memory.close()
                raise ValueError(f"shared ring {self._name!r} holds {self._memory.size} bytes, {size} needed")
        buffer = self._memory.buf
        self._header = np.ndarray((_HEADER,), np.int64, buffer=buffer)
        storage = np.ndarray(shape, self.dtype, buffer=buffer, offset=_HEADER_BYTES)
        del buffer  # only the arrays may point into the mapping, so that close() can unmap it
        if self.owner:
            self._header[:] = 0
        return storage

    def _starts_empty(self) -> bool:
        return self.owner  # an attached ring holds what the owner wrote, at the owner's positions

    @property
    def name(self) -> str:
        """The segment's name, for :class:`SharedRing` ``(capacity, channels, name=...)`` in the other process."""
        if self._memory is None:
            raise ValueError("the shared ring is closed")
        return self._memory.name

    # RingBuffer keeps its positions in _end and _origin: here they are the shared header's, so both sides see them;
    # read_to is the absolute position up to which the reader has copied frames out (the writer may overwrite
    # before it).
    _end = _HeaderField(0)  # type: ignore[assignment]
    _origin = _HeaderField(1)  # type: ignore[assignment]
    read_to = _HeaderField(2)

    def room(self) -> int:
        """Frames the writer may write now without overwriting any the reader has not copied out yet."""
        return self.capacity - (self.end - max(self.read_to, self.start))

    def close(self) -> None:
        """Unmap the segment; the owner also unlinks it (safe to call twice)."""
        if self._memory is None:
            return
        memory, self._memory = self._memory, None
        del self._header, self._buffer  # the mapping cannot close while arrays still point into it
        memory.close()
        if self.owner:
            try:
                memory.unlink()
            except FileNotFoundError:
                pass

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit, modules may be gone already
            pass


def share_array(samples: np.ndarray) -> shared_memory.SharedMemory:
    """A new shared-memory segment holding a copy of ``samples`` (the caller closes and unlinks it)."""
    memory = shared_memory.SharedMemory(create=True, size=max(1, samples.nbytes))
    np.ndarray(samples.shape, samples.dtype, buffer=memory.buf)[...] = samples
    return memory


def copy_shared_array(name: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A private copy of the array another process shared as segment ``name`` (:func:`share_array`)."""
    memory = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(memory._name, "shared_memory")  # type: ignore[attr-defined]
    try:
        view = np.ndarray(shape, np.dtype(dtype), buffer=memory.buf)
        copy = view.copy()
        del view
    finally:
        memory.close()
    return copy
