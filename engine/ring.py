"""A preallocated ring buffer addressed by absolute frame positions.

Positions count every frame ever written (frame 0 is the first one), so a reader asks for ``[start, stop)`` of
the stream and never for an index into the storage; the ring says plainly when that part of the stream has
already been overwritten or not been written yet.
"""

from __future__ import annotations

import operator

import numpy as np
from numpy.typing import DTypeLike


class RingRangeError(IndexError):
    """A range of frames that the ring does not hold (already overwritten, or not yet written)."""


class RingBuffer:
    """Preallocated ring of the most recent ``capacity`` frames, addressed by absolute frame positions.

    Arrays are [shape=(frames,)] when ``channels == 1``, else [shape=(frames, channels)], in the ring's dtype.
    Writing and reading into a caller's ``out`` never allocate: the storage is allocated once, here.

    Thread safety: there is no lock. One writer only; readers may run in other threads but must not read a
    range the writer may overwrite while they read it, i.e. a reader of ``[start, stop)`` must finish before
    the writer has written past ``start + capacity``. Views from :meth:`views` alias the storage and are only
    valid until then too; copy (:meth:`read`) what must outlive it.

    Parameters
    ----------
    capacity : int
        Frames held, > 0.
    channels : int
        Channels per frame, > 0.
    dtype : numpy dtype
        Sample type of the storage; written frames are cast to it.

    Raises
    ------
    ValueError
        Capacity or channels not a positive integer.
    """

    def __init__(self, capacity: int, channels: int = 1, dtype: DTypeLike = np.float32):
        self.capacity = _positive_int(capacity, "capacity")
        self.channels = _positive_int(channels, "channels")
        self.dtype = np.dtype(dtype)
        shape = (self.capacity,) if self.channels == 1 else (self.capacity, self.channels)
        self._buffer = self._allocate(shape)
        if self._starts_empty():
            self._end = 0
            self._origin = 0  # the first position written since the last clear()

    def _allocate(self, shape: tuple[int, ...]) -> np.ndarray:
        """The storage, zeroed (a subclass may place it elsewhere: :class:`~engine.shared_ring.SharedRing`)."""
        return np.zeros(shape, dtype=self.dtype)

    def _starts_empty(self) -> bool:
        """Whether a new ring holds nothing yet (one attached to frames another process wrote does)."""
        return True

    @property
    def end(self) -> int:
        """Absolute position one past the newest frame (the number of frames ever written)."""
        return self._end

    @property
    def start(self) -> int:
        """Absolute position of the oldest frame still held."""
        return max(self._origin, self._end - self.capacity)

    def __len__(self) -> int:
        """Frames held now, at most ``capacity``."""
        return self._end - self.start

    def write(self, frames: np.ndarray) -> None:
        """Append frames; the oldest ones beyond ``capacity`` are dropped.

        Parameters
        ----------
        frames : numpy.ndarray
            [shape=(n,) or (n, 1) when mono, else (n, channels)]; any ``n``, also more than ``capacity``
            (then only the newest ``capacity`` frames are kept, but ``end`` still advances by ``n``).

        Raises
        ------
        ValueError
            Frames of the wrong shape.
        """
        frames = np.asarray(frames)
        if self.channels == 1 and frames.ndim == 2 and frames.shape[1] == 1:
            frames = frames[:, 0]
        if frames.shape[1:] != self._buffer.shape[1:]:
            raise ValueError(f"ring of {self.channels} channel(s) takes frames of shape "
                              f"{self._frame_shape('n')}, got {frames.shape}")
        n = frames.shape[0]
        if n == 0:
            return
        if n > self.capacity:
            frames = frames[n - self.capacity:]
        # Where the kept frames land: the storage index of absolute position end + n - len(frames).
        begin = (self._end + n - frames.shape[0]) % self.capacity
        first = min(frames.shape[0], self.capacity - begin)
        self._buffer[begin:begin + first] = frames[:first]
        self._buffer[:frames.shape[0] - first] = frames[first:]
        self._end += n

    def views(self, start: int, stop: int) -> tuple[np.ndarray, ...]:
        """One or two views of the storage (no copy) that, concatenated, are frames ``[start, stop)``.

        Returns
        -------
        tuple of numpy.ndarray
            One view when the range does not wrap (also when it is empty), else two, oldest first.

        Raises
        ------
        RingRangeError
            Part of the range is no longer or not yet held.
        """
        start, stop = self._check_range(start, stop)
        begin = start % self.capacity
        length = stop - start
        if begin + length <= self.capacity:
            return (self._buffer[begin:begin + length],)
        return self._buffer[begin:], self._buffer[:begin + length - self.capacity]

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """A contiguous copy of frames ``[start, stop)``.

        Parameters
        ----------
        start, stop : int
            Absolute frame positions, ``self.start <= start <= stop <= self.end``.
        out : numpy.ndarray, optional
            [shape=(stop - start,) or (stop - start, channels)] written in place and returned (no allocation).

        Returns
        -------
        numpy.ndarray
            ``out`` when given, else a new array in the ring's dtype.

        Raises
        ------
        RingRangeError
            Part of the range is no longer or not yet held.
        ValueError
            ``out`` of the wrong shape.
        """
        parts = self.views(start, stop)
        length = sum(part.shape[0] for part in parts)
        if out is None:
            out = np.empty((length, *self._buffer.shape[1:]), dtype=self.dtype)
        elif out.shape != (length, *self._buffer.shape[1:]):
            raise ValueError(f"out must have shape {self._frame_shape(length)}, got {out.shape}")
        first = parts[0].shape[0]
        out[:first] = parts[0]
        if len(parts) == 2:
            out[first:] = parts[1]
        return out

    def latest(self, frames: int, out: np.ndarray | None = None) -> np.ndarray:
        """A copy of the newest ``frames`` frames; see :meth:`read`.

        Raises
        ------
        RingRangeError
            Fewer than ``frames`` frames are held.
        """
        frames = _index(frames, "frames")
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        return self.read(self._end - frames, self._end, out=out)

    def clear(self, position: int = 0) -> None:
        """Forget everything: the next frame written is at absolute ``position`` (0 unless told)."""
        position = _index(position, "position")
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        self._buffer.fill(0)
        self._end = self._origin = position

    def __repr__(self) -> str:
        return (f"RingBuffer(capacity={self.capacity}, channels={self.channels}, dtype={self.dtype}, "
                f"holds=[{self.start}, {self.end}))")

    def _check_range(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = _index(start, "start"), _index(stop, "stop")
        if not self.start <= start <= stop <= self._end:
            raise RingRangeError(f"frames [{start}, {stop}) are not in the ring: it holds [{self.start}, {self._end})"
                                 + (" (stop before start)" if stop < start else ""))
        return start, stop

    def _frame_shape(self, n: int | str) -> str:
        return f"({n},)" if self.channels == 1 else f"({n}, {self.channels})"


def _index(value: int, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer frame position, got {value!r}") from None


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or _index(value, name) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return _index(value, name)
