"""The ring buffer: absolute positions across wrap-around, overflowing writes, honest range errors, no copies."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from engine.errors import EncoreError
from engine.ring import RingBuffer, RingRangeError


def positions(start: int, stop: int) -> np.ndarray:
    """Frames whose value is their own absolute position, so any read can be checked against where it came from."""
    return np.arange(start, stop, dtype=np.float32)


def test_wraps_around_keeping_absolute_positions():
    ring = RingBuffer(10)
    assert (ring.start, ring.end, len(ring)) == (0, 0, 0)
    written = 0
    for n in (4, 4, 4, 3, 7, 1):
        ring.write(positions(written, written + n))
        written += n
        assert ring.end == written and ring.start == max(0, written - 10)
        np.testing.assert_array_equal(ring.read(ring.start, ring.end), positions(ring.start, ring.end))
    # Ranges that straddle the wrap point come back in order.
    assert written == 23
    np.testing.assert_array_equal(ring.read(14, 22), positions(14, 22))
    np.testing.assert_array_equal(ring.latest(3), positions(20, 23))
    assert ring.read(17, 17).shape == (0,)


def test_a_write_larger_than_capacity_keeps_the_newest():
    ring = RingBuffer(10)
    ring.write(positions(0, 3))
    ring.write(positions(3, 28))
    assert (ring.start, ring.end) == (18, 28)
    np.testing.assert_array_equal(ring.read(18, 28), positions(18, 28))
    ring.write(positions(28, 38))  # exactly one capacity
    np.testing.assert_array_equal(ring.latest(10), positions(28, 38))


@pytest.mark.parametrize(("start", "stop"), [(4, 12), (12, 21), (14, 12), (-1, 3)])
def test_reading_what_is_not_held_raises_with_both_ranges(start, stop):
    ring = RingBuffer(8)
    ring.write(positions(0, 20))  # holds [12, 20)
    with pytest.raises(RingRangeError) as caught:
        ring.read(start, stop)
    message = str(caught.value)
    assert f"[{start}, {stop})" in message and "[12, 20)" in message
    # a caller's bug, not a user's mistake: never shown as one line and exit 2
    assert isinstance(caught.value, IndexError) and not isinstance(caught.value, EncoreError)
    with pytest.raises(RingRangeError):
        ring.latest(9)


def test_nothing_is_held_before_it_is_written():
    ring = RingBuffer(8)
    with pytest.raises(RingRangeError, match=r"holds \[0, 0\)"):
        ring.latest(1)
    ring.write(positions(0, 5))
    with pytest.raises(RingRangeError):
        ring.read(3, 6)


def test_views_alias_the_storage_and_split_at_the_wrap():
    ring = RingBuffer(10)
    ring.write(positions(0, 16))  # storage index of position p is p % 10
    (whole,) = ring.views(11, 15)
    first, second = ring.views(8, 13)
    assert first.shape == (2,) and second.shape == (3,)
    np.testing.assert_array_equal(np.concatenate([first, second]), positions(8, 13))
    for view in (whole, first, second):
        assert view.base is not None  # a view, not a copy
    ring.write(positions(16, 21))  # overwrites 6..10 in place: the views see it
    np.testing.assert_array_equal(first, positions(18, 20))


def test_read_into_out_returns_it_and_allocates_nothing():
    ring = RingBuffer(100_000, channels=2)
    block = np.ones((70_000, 2), np.float32)
    out = np.empty((60_000, 2), np.float32)
    ring.write(block)
    ring.write(block)  # wraps
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ring.write(block)
        result = ring.read(ring.end - 60_000 - 5_000, ring.end - 5_000, out=out)
        latest = ring.latest(60_000, out=out)
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert result is out and latest is out
    assert grown < 10_000, f"{grown} bytes allocated on the no-allocation path"
    with pytest.raises(ValueError, match="out must have shape"):
        ring.read(ring.end - 10, ring.end, out=np.empty((10,), np.float32))


def test_multichannel_frames_keep_their_layout(rng):
    ring = RingBuffer(50, channels=3)
    frames = rng.standard_normal((130, 3)).astype(np.float32)
    for lo in range(0, 130, 17):
        ring.write(frames[lo:lo + 17])
    got = ring.read(90, 130)
    assert got.shape == (40, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, frames[90:130])
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        ring.write(frames[:4, :2])
    with pytest.raises(ValueError):
        ring.write(frames[:4, 0])


def test_mono_takes_a_column_and_rejects_other_layouts():
    ring = RingBuffer(8)
    ring.write(positions(0, 4)[:, None])
    assert ring.latest(4).shape == (4,)
    with pytest.raises(ValueError, match=r"\(n,\)"):
        ring.write(np.zeros((4, 2), np.float32))


def test_writes_are_cast_to_the_ring_dtype():
    ring = RingBuffer(4, dtype=np.float64)
    ring.write(np.arange(3, dtype=np.int16))
    assert ring.latest(3).dtype == np.float64
    np.testing.assert_array_equal(ring.latest(3), [0.0, 1.0, 2.0])


def test_clear_starts_positions_again():
    ring = RingBuffer(8)
    ring.write(positions(0, 20))
    ring.clear()
    assert (ring.start, ring.end) == (0, 0)
    ring.write(positions(0, 3))
    np.testing.assert_array_equal(ring.read(0, 3), positions(0, 3))


@pytest.mark.parametrize(("capacity", "channels"), [(0, 1), (-3, 1), (4, 0), (2.5, 1), (True, 1)])
def test_bad_sizes_are_refused(capacity, channels):
    with pytest.raises(ValueError):
        RingBuffer(capacity, channels)


def test_a_ring_cleared_to_a_position_holds_only_what_was_written_after_it():
    ring = RingBuffer(10)
    ring.write(positions(0, 7))
    ring.clear(position=1000)
    assert (ring.start, ring.end, len(ring)) == (1000, 1000, 0)
    ring.write(positions(1000, 1004))
    np.testing.assert_array_equal(ring.read(1000, 1004), positions(1000, 1004))
    with pytest.raises(RingRangeError):
        ring.read(999, 1004)  # before the position it was cleared to: never written
    ring.write(positions(1004, 1015))
    assert (ring.start, ring.end) == (1005, 1015)
