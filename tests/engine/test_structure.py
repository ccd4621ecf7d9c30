"""Bars, phrase lines, sections and transition costs of a memory (engine.structure)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis import ANALYSIS_RATE, analyse
from engine.audio import to_model_input
from engine.structure import find_structure, recurrence
from tests.conftest import bar_song, phrase_song


def structure_of(song):
    analysis = analyse(to_model_input(song, ANALYSIS_RATE))
    return analysis, find_structure(analysis)


def song_bars(analysis, structure, bar_s: float = 2.0) -> np.ndarray:
    """[shape=(bars,)] which bar of the synthetic song (from 0 s) each whole bar of the structure is."""
    return np.round(analysis.bounds[structure.bar_starts[:-1]] / ANALYSIS_RATE / bar_s).astype(int)


def test_bars_are_whole_bars_from_each_downbeat():
    analysis, s = structure_of(bar_song(40.0, 22050))
    assert s.beats_per_bar == 4 and s.bar_seconds == pytest.approx(2.0, rel=0.02)
    assert np.all(np.diff(s.bar_starts) == 4)
    assert np.all(analysis.phase[s.bar_starts[:-1]] == 0), "every bar starts on a downbeat"
    assert s.bar_starts[-1] <= analysis.segments - 1, "the memory's last, cut-short segment is in no bar"
    bar_of = s.bar_of_segment(analysis.segments)
    assert np.all(bar_of[s.bar_starts[0]:s.bar_starts[-1]] >= 0) and np.all(bar_of[s.bar_starts[-1]:] == -1)
    assert s.transition.shape == (s.bars, s.bars)
    assert np.all(s.transition[np.arange(s.bars - 1), np.arange(1, s.bars)] == 0), "going on in order is free"


def test_music_without_a_beat_is_grouped_into_pseudo_bars_of_about_two_seconds():
    t = np.arange(30 * 22050) / 22050
    pad = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 0.1 * t))).astype(np.float32)
    analysis = analyse(pad)
    s = find_structure(analysis)
    assert analysis.mode == "grid" and s.bars >= 10
    assert s.bar_seconds == pytest.approx(2.0, rel=0.3)


@pytest.mark.parametrize("sections", ["ABAC", "AABBACCA"])
def test_phrase_lines_fall_every_four_bars_and_sections_where_the_music_changes(sections):
    analysis, s = structure_of(phrase_song(sections))
    bars = song_bars(analysis, s)
    # The song's first bar (at 0 s) is a whole bar of the memory, and starts the first phrase and section.
    assert set(bars[s.level >= 1]) == set(range(0, len(sections) * 8, 4)), "a phrase line every 4 bars"
    assert set(bars[s.level >= 2]) == set(range(0, len(sections) * 8, 8)), "an 8-bar line at every section"
    changes = {8 * k for k in range(1, len(sections)) if sections[k] != sections[k - 1]}
    found = set(bars[s.level >= 3])
    assert found <= set(range(0, len(sections) * 8, 8)), "sections start on 8-bar lines"
    assert len(found & changes) >= len(changes) - 1, f"sections found at {sorted(found)}, changes at {changes}"
    assert s.describe().startswith(f"{s.bars} bars, {np.count_nonzero(s.level >= 1)} phrases of 4 bars")


def test_a_jump_costs_least_into_a_bar_that_follows_what_was_just_played_elsewhere():
    """ABAC, leaving the second A after its 4th bar: the cheapest entry is the first A's 5th bar, whose two bars
    before it are the ones just played, and which is the bar that would have come next."""
    analysis, s = structure_of(phrase_song("ABAC"))
    bars = song_bars(analysis, s)
    index = {int(b): k for k, b in enumerate(bars)}
    # Leaving the second A after its 4th bar (song bar 19): the first A's 5th bar (song bar 4) continues it.
    left = index[19]
    costs = s.transition[left].copy()
    costs[index[20]] = np.inf  # going on in order is not a jump
    assert bars[int(np.argmin(costs))] == 4
    assert s.transition[left, index[4]] < 0.3 * np.median(s.transition[left][np.isfinite(s.transition[left])])


def test_recurrence_is_each_bars_mutual_nearest_neighbours_outside_the_diagonal(rng):
    points = rng.standard_normal((40, 6))
    points[20:30] = points[2:12] + 0.01 * rng.standard_normal((10, 6))  # a passage repeated
    distance = np.sqrt(((points[:, None] - points[None]) ** 2).sum(axis=2))
    found = recurrence(distance, width=2)
    k = int(np.ceil(np.sqrt(40)))
    expected = np.zeros((40, 40), bool)
    for i in range(40):
        order = [j for j in np.argsort(distance[i]) if abs(j - i) >= 2][:k]
        expected[i, order] = True
    np.testing.assert_array_equal(found, expected & expected.T)
    assert all(found[i, i + 18] for i in range(2, 12)), "the repeat recurs with what it repeats"


def test_a_short_memory_still_has_bars_and_phrase_lines():
    analysis, s = structure_of(bar_song(6.0, 22050))
    assert 1 <= s.bars <= 3 and s.level.shape == (s.bars,)
    assert np.isfinite(s.transition[np.arange(s.bars - 1), np.arange(1, s.bars)]).all()
