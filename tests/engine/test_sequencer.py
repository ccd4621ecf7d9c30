"""The phrase-level sequencer: runs of whole bars, jumps from bar line to bar line that prefer phrase lines, the
first jump where the song's last bars are best matched, recency, variety, and the song's own ending
(engine.sequencer, through the jukebox generator, which needs no trained model)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Waveform
from engine.analysis import ANALYSIS_RATE
from engine.config import ResynthConfig
from engine.playback import Engine
from engine.resynth import Resynthesizer
from tests.conftest import bar_song, phrase_song

#: 12 sections of 8 bars at 120 bpm: 96 bars, 3 min 12 s, 24 phrases.
LONG_SECTIONS = "ABACABDBADCB"


@pytest.fixture(scope="module")
def long_song() -> Waveform:
    return phrase_song(LONG_SECTIONS)


@pytest.fixture(scope="module")
def ten_minutes(long_song):
    """Ten minutes of continuation of the long song at variety 0, 0.5 (the default) and 1."""
    made = {}
    for variety in (0.0, 0.5, 1.0):
        generator = Resynthesizer("jukebox", resynth=ResynthConfig(variety=variety))
        generator.extend(long_song, 600.0, only_extension=True)
        made[variety] = generator
    return made


def continuation_of(generator) -> np.ndarray:
    """[shape=(played,)] the segments the continuation played, in order (not the memory's own)."""
    return np.array(generator.sequencer.history[generator.analysis.segments - 1:])


def runs_of(played: np.ndarray) -> list[np.ndarray]:
    """The continuation cut at its jumps: each run's segments."""
    cuts = np.flatnonzero(np.diff(played) != 1) + 1
    return np.split(played, cuts)


def test_runs_are_whole_bars_and_every_jump_goes_from_a_bar_line_to_a_bar_line(ten_minutes):
    for generator in ten_minutes.values():
        s = generator.structure
        starts, ends = set(s.bar_starts[:-1].tolist()), set((s.bar_starts[1:] - 1).tolist())
        runs = runs_of(continuation_of(generator))
        assert len(runs) >= 4
        for run in runs[1:]:
            assert int(run[0]) in starts, "a jump enters at a bar line"
        for run in runs[:-1]:
            assert int(run[-1]) in ends, "a jump leaves at a bar line"
        for run in runs[1:-1]:
            assert run.shape[0] % s.beats_per_bar == 0, "a run is whole bars"


def test_the_default_plays_runs_of_four_bars_or_more_and_jumps_at_most_eight_times_a_minute(ten_minutes):
    generator = ten_minutes[0.5]
    runs = runs_of(continuation_of(generator))
    bars = np.array([run.shape[0] for run in runs[1:-1]]) / generator.structure.beats_per_bar
    assert np.median(bars) >= 4
    assert generator.sequencer.jumps / 10.0 <= 8
    # and they prefer phrase lines: entries at a phrase start (4, 8, 16 bars), exits at a phrase line
    s = generator.structure
    entries = np.array([s.level[int(generator.sequencer.bar_of[run[0]])] for run in runs[1:]])
    assert np.mean(entries >= 1) >= 0.9


def test_variety_sets_the_run_lengths(ten_minutes):
    def median_bars(generator):
        runs = runs_of(continuation_of(generator))
        return float(np.median([run.shape[0] for run in runs[1:-1]])) / generator.structure.beats_per_bar

    low, middle, high = (median_bars(ten_minutes[v]) for v in (0.0, 0.5, 1.0))
    assert low > middle > high >= 1
    assert low >= 16, "variety 0: long runs, mostly in order"
    with pytest.raises(Exception, match="variety"):
        ResynthConfig(variety=1.5)


def test_in_ten_minutes_most_of_the_songs_bars_are_heard_not_a_loop_of_two(ten_minutes):
    generator = ten_minutes[0.5]
    s, sequencer = generator.structure, generator.sequencer
    heard = {int(sequencer.bar_of[k]) for k in continuation_of(generator) if sequencer.bar_of[k] >= 0}
    assert len(heard) / s.bars >= 0.6
    entries = {int(run[0]) for run in runs_of(continuation_of(generator))[1:]}
    assert len(entries) >= s.phrase_starts.shape[0] // 2


def test_the_first_jump_carries_on_where_a_repeat_of_the_songs_last_bars_would():
    """ABA cut 6.5 bars into its second A: the song's last bars are the first A's bars 5 and 6, so the
    continuation carries on from the first A's bar 6, at the same position in the bar, 16 bars (32 s) earlier."""
    song = phrase_song("ABA")
    memory = Waveform(song.samples[:round((16 + 6.5) * 2.0 * song.sample_rate)], song.sample_rate)
    generator = Resynthesizer("jukebox")
    generator.start(memory)
    generator.next_block()
    a = generator.analysis
    first = generator.entries[0]
    moved_back_s = (a.bounds[a.segments - 1] - a.bounds[first]) / ANALYSIS_RATE
    assert moved_back_s == pytest.approx(32.0, abs=0.1)
    assert a.phase[first] == a.phase[a.segments - 1]


def test_a_first_run_that_reaches_the_memorys_end_early_plays_the_matched_passage_once_more():
    """ABCC cut 6.5 bars into the second C: the first jump goes back 16 s, to the first C's bar 6, and the run
    from there reaches the memory's end (its last whole bar) after under 8 bars, before it is due to jump. It goes
    back again to the bar line 16 s before that end, the first C's bar 6 (44 s), as a repeat of the passage would;
    then on to other phrases, not a third time."""
    song = phrase_song("ABCC")
    memory = Waveform(song.samples[:round((24 + 6.5) * 2.0 * song.sample_rate)], song.sample_rate)
    generator = Resynthesizer("jukebox")
    generator.extend(memory, 60.0, only_extension=True)
    a, s = generator.analysis, generator.structure
    runs = runs_of(continuation_of(generator))
    starts_s = [float(a.bounds[run[0]]) / ANALYSIS_RATE for run in runs]
    assert starts_s[0] == pytest.approx(44.5, abs=0.1)  # the first jump: 16 s back, mid-bar
    assert int(runs[0][-1]) == int(s.bar_starts[-1]) - 1, "the first run plays to the end of the last whole bar"
    assert starts_s[1] == pytest.approx(44.0, abs=0.05), "then the matched passage again, from its bar line"
    assert int(runs[1][0]) in set(s.bar_starts[:-1].tolist())
    assert all(abs(start - 44.0) > 0.5 for start in starts_s[2:]), "once, not a loop"


def test_ten_minutes_from_a_short_memory_mix_its_phrases_and_do_not_settle_into_a_loop():
    generator = Resynthesizer("jukebox")
    generator.extend(bar_song(30.0, 22050), 600.0, only_extension=True)
    played = continuation_of(generator)
    seconds = generator.analysis.durations[played] / ANALYSIS_RATE
    assert seconds.sum() >= 590
    # 15 bars in 30 s, runs of a few bars: some stretches come round again, but not the whole ten minutes.
    assert longest_repeat_s(played, seconds) <= 120.0
    transitions = {(int(run[0]), int(run[-1])) for run in runs_of(played)}
    assert len(transitions) >= 6


def test_endless_runs_leave_the_songs_cadence_and_a_faded_intro_alone_and_an_ending_still_plays_them():
    """Leaving a song's last bar (its cadence, a ritardando, a decay) for an earlier bar broke the beat at most
    of the long listen's broken joins: an endless run jumps one bar line before it, and never enters a faded-in
    intro; an ending plays to the song's end all the same."""
    song = phrase_song("ABACAB", ending=True)
    samples = song.samples.copy()
    faded = round(2 * 2.0 * song.sample_rate)  # the first two bars fade in from -40 dB
    samples[:faded] *= np.geomspace(0.01, 1.0, faded, dtype=np.float32)[:, None]
    song = Waveform(samples, song.sample_rate)
    generator = Resynthesizer("jukebox")
    generator.extend(song, 300.0, only_extension=True)
    s, sequencer = generator.structure, generator.sequencer
    assert (sequencer.steady_first, sequencer.steady_stop) == (1, s.bars - 1)
    runs = runs_of(continuation_of(generator))
    assert len(runs) >= 10
    cadence = int(s.bar_starts[s.bars - 1])
    for run in runs[1:]:
        assert run[0] >= s.bar_starts[1], "no jump enters the faded intro"
        assert run[-1] < cadence, "no run plays the last bar"

    ending = Resynthesizer("jukebox")
    ending.extend(song, 60.0, only_extension=True, ending=True)
    assert ending.finished and ending.sequencer.history[-1] == ending.analysis.segments - 1
    assert cadence in continuation_of(ending), "the ending plays the last bar"


def test_a_jump_whose_rhythm_lines_up_only_at_the_edge_of_reach_is_not_taken_while_another_fits(monkeypatch):
    """In the long listen, 5 of 6 joins whose onsets lined up only at the aligner's farthest lag broke the beat
    grid: such an entry loses to any other that fits."""
    from engine.rhythm import RhythmAligner

    song = phrase_song("ABACAB")
    aligned = RhythmAligner.align
    in_reach = {0, 2}  # entries into even sections line up; the others only at the edge

    def align(self, source, targets):
        lags, costs, _ = aligned(self, source, targets)
        section = np.asarray(targets) // round(16.0 * ANALYSIS_RATE)  # 8 bars of 2 s
        return lags, costs, ~np.isin(section % 4, list(in_reach))

    monkeypatch.setattr(RhythmAligner, "align", align)
    generator = Resynthesizer("jukebox")
    generator.extend(song, 300.0, only_extension=True)
    a = generator.analysis
    runs = runs_of(continuation_of(generator))
    assert len(runs) >= 10
    sections = [int(a.bounds[run[0]] // round(16.0 * ANALYSIS_RATE)) % 4 for run in runs[1:]]
    assert all(section in in_reach for section in sections), str(sections)


def longest_repeat_s(sequence: np.ndarray, seconds: np.ndarray) -> float:
    """Longest stretch of ``sequence`` that already occurred earlier, segment for segment, in seconds."""
    best = 0.0
    for lag in range(1, sequence.shape[0]):
        same = sequence[lag:] == sequence[:-lag]
        if not same.any():
            continue
        total = np.cumsum(np.where(same, seconds[lag:], 0.0))
        before_run = np.maximum.accumulate(np.where(same, 0.0, total))  # the total where each run began
        best = max(best, float((total - before_run).max()))
    return best


# --- the song's own ending ----------------------------------------------------------------------------------

def test_an_extension_ends_on_the_songs_own_ending_at_the_phrase_line_nearest_the_duration():
    song = phrase_song("ABAC", ending=True)  # closes on a chord that dies away
    generator = Resynthesizer("jukebox")
    out = generator.extend(song, 120.0, only_extension=True, ending=True)
    assert generator.finished and generator.next_block().shape[0] == 0
    assert out.seconds == pytest.approx(120.0, abs=4.0), "within half a phrase (4 bars of 2 s) of the duration"
    rate = song.sample_rate
    last, own = out.mono()[-3 * rate:], song.mono()[-3 * rate:]
    gain = np.dot(last, own) / np.dot(own, own)
    assert np.corrcoef(last, own)[0, 1] > 0.99 and 0.5 < gain < 2.0, "its last 3 s are the song's own last 3 s"
    assert not generator.sequencer.fade_segment >= 0, "a song that dies away is not faded"


def test_a_song_cut_off_mid_music_ends_with_its_last_bar_faded_to_the_bar_line():
    song = phrase_song("ABAC")
    memory = Waveform(song.samples[:song.frames - round(0.7 * song.sample_rate)], song.sample_rate)
    generator = Resynthesizer("jukebox")
    out = generator.extend(memory, 60.0, only_extension=True, ending=True).mono()
    sequencer, s = generator.sequencer, generator.structure
    assert sequencer.abrupt_end and generator.finished
    assert sequencer.history[-1] + 1 == s.bar_starts[-1], "it ends where the last whole bar ends"
    bar = round(s.bar_seconds * memory.sample_rate)
    level = [np.sqrt(np.mean(out[k - bar // 4:k] ** 2)) for k in range(out.shape[0] - 3 * bar // 4, out.shape[0] + 1,
                                                                   bar // 4)]
    assert level[0] > level[1] > level[2] > level[3], "the last bar fades out"
    assert np.abs(out[-round(0.005 * memory.sample_rate):]).max() < 1e-3, "to silence"


def test_end_takes_a_stream_to_the_songs_ending_from_the_next_phrase_line():
    song = phrase_song("ABAC", ending=True)
    generator = Resynthesizer("jukebox")
    generator.start(song)
    before = sum(generator.next_block().shape[0] for _ in range(3))
    generator.end()
    blocks = []
    while not generator.finished:
        blocks.append(generator.next_block())
        assert len(blocks) < 20
    after = sum(b.shape[0] for b in blocks) / song.sample_rate
    bound = generator.sequencer.ending_seconds() + 8.0 + 10.0  # a phrase to its line, and the block rendered ahead
    assert after <= bound and blocks[-1].shape[0] < 10 * song.sample_rate
    assert before == 30 * song.sample_rate


def test_the_engine_ends_the_song_and_finishes_when_asked():
    song = phrase_song("ABAC", ending=True)
    with Engine(generator="jukebox", clock="offline") as eng:
        eng.play(song, endless=True)
        eng.render(song.seconds + 20.0)
        eng.end_song()
        assert eng.status().ending
        rendered = 0.0
        while eng.status().state != "finished" and rendered < 120.0:
            eng.render(5.0)
            rendered += 5.0
        kinds = [eng.events.get_nowait().kind for _ in range(eng.events.qsize())]
        seams = eng.seams()
    assert eng.status().state == "finished"
    assert "ending" in kinds and kinds[-1] == "finished"
    assert seams[0] == pytest.approx(song.seconds, abs=0.1), "the song's end, then the generator's own joins"
    assert np.all(np.diff(seams) > 0)
