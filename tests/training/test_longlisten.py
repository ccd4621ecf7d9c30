"""The long listen: its measures on constructed cases, the bar's logic, the song listing and the command."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import soundfile

from engine.audio import Waveform, save_audio
from engine.errors import ConfigError
from tests.conftest import phrase_song
from training.cli import main
from training.corpus import evalset
from training.corpus.devset import validation_songs
from training.corpus.split import DataConfig, list_audio_files, split_files
from training.evaluation import listening
from training.evaluation import longlisten as ll
from training.evaluation.baselines import make_generator
from training.evaluation.metrics.rhythm import SLIP_FAR_MS

RATE = 22050
MINUTES = 2.0


@pytest.fixture(scope="module")
def song() -> Waveform:
    """32 bars of 4/4 at 120 bpm (64 s, 2 s a bar): sections A B A C, 8 bars each, bar 0 at 0 s."""
    return phrase_song("ABAC", RATE, channels=2)


@pytest.fixture(scope="module")
def reference(song) -> listening.SongReference:
    return listening.SongReference.of(song)


@pytest.fixture(scope="module")
def listened(song, reference, tmp_path_factory) -> dict:
    """Each generator's measures over 2 minutes, with the generator (its state is that of this render)."""
    figures = tmp_path_factory.mktemp("figures")
    out = {}
    for name in ("loop", "match", "jukebox"):
        generator = make_generator(name)
        scores = listening.listen(song, generator, minutes=MINUTES, reference=reference, figure=figures / f"{name}.png",
                                  title=name)
        out[name] = (scores, generator, figures / f"{name}.png")
    return out


def test_the_song_is_read_as_120_bpm_in_4_4(reference):
    assert reference.analysis.mode == "beats" and reference.analysis.meter == 4
    assert reference.beat_s == pytest.approx(0.5, rel=0.01)
    assert reference.structure.bars >= 28
    # A steady synthetic beat: at its own downbeats the grid holds.
    assert reference.music_slips_ms and max(reference.music_slips_ms) < 15.0


def test_the_loop_jumps_every_10_s_into_its_last_5_bars_and_slips_by_its_crossfade(listened, reference, song):
    scores, loop, _ = listened["loop"]
    # The last 10 s repeated, each return 50 ms (the crossfade) short of 10 s: 12 returns in 2 minutes.
    assert scores["jumps"] == 12 and scores["jumps_per_minute"] == 6.0
    assert scores["median_run_s"] == pytest.approx(10.0 - loop.crossfade_s, abs=1e-3)
    assert scores["median_run_beats"] == pytest.approx(20.0, abs=0.3)
    assert scores["median_run_bars"] == pytest.approx(5.0, abs=0.1)
    # It enters 50 ms after the downbeat at 54 s, inside the tolerance; the song's end enters there too.
    assert scores["song_end"]["entry_s"] == pytest.approx(54.05, abs=1e-3) and scores["downbeat_share"] == 1.0
    # Each return comes a crossfade early, so the beat slips by 50 ms every time (measured to the tracker's 23 ms
    # frames: 30 to 65 ms), against a few ms at the song's own downbeats.
    slips = [s for s in scores["join_slips_ms"][1:] if s is not None]
    assert len(slips) >= 10 and all(30.0 < s < 65.0 for s in slips)
    assert np.median(slips) == pytest.approx(50.0, abs=8.0) and scores["grid_kept_share"] <= 0.5
    # Only the bars wholly inside 54.05..64 s: those at 56, 58 and 60 s (the memory's last bar is never whole).
    a, s = reference.analysis, reference.structure
    inside = [k for k in range(s.bars) if a.bounds[s.bar_starts[k]] / RATE >= 54.05]
    assert len(inside) == 3 and scores["bars"] == s.bars
    assert scores["bars_heard_share"] == pytest.approx(3 / s.bars)
    assert "bars_heard_share_10min" not in scores  # a 2-minute listen says nothing of 10 minutes
    assert scores["longest_repeat_s"] > 100.0  # everything after the first period copies it


def test_match_goes_back_once_to_its_point_and_keeps_the_beat(listened, song, reference):
    scores, match, _ = listened["match"]
    start = match.match(song).start
    assert scores["song_end"]["entry_s"] == pytest.approx(start / RATE)
    assert scores["jumps"] == sum(j < MINUTES * 60 * RATE for j in match.joins) - 1 >= 1
    # It enters in the phase the song ends in (here a bar line), so the beat goes on and the bars after it are heard.
    assert scores["downbeat_share"] == 1.0 and scores["grid_kept_share"] == 1.0
    a, s = reference.analysis, reference.structure
    whole = sum(a.bounds[s.bar_starts[k]] >= start * a.sample_rate / RATE - 1 for k in range(s.bars))
    assert scores["bars_heard_share"] == pytest.approx(whole / s.bars)
    assert scores["longest_repeat_s"] > MINUTES * 60 - (song.frames - start) / RATE - 5


def test_the_jukebox_measures_agree_with_its_sequencers_history(listened, reference):
    scores, jukebox, _ = listened["jukebox"]
    a, s = jukebox.analysis, jukebox.structure
    played = np.asarray(jukebox.sequencer.history[a.segments - 1:])
    jumps = np.flatnonzero(np.diff(played) != 1) + 1  # where the history leaves the song's order
    # Every jump in the history is a join, and those inside the render are the ones counted.
    assert len(jukebox.joins) - 1 == jumps.size
    assert scores["jumps"] == sum(j < MINUTES * 60 * RATE for j in jukebox.joins) - 1 >= 2
    # Runs of whole bars: every jump leaves at a bar's end and enters at a bar's start (a downbeat).
    bar_starts = set(s.bar_starts.tolist())
    assert all(int(played[i]) in bar_starts and int(played[i - 1]) + 1 in bar_starts for i in jumps)
    assert scores["downbeat_share"] == 1.0
    # The runs' median in bars, from the rendered joins, is the history's, counted in whole bars of segments.
    runs = np.diff(np.concatenate([[0], jumps]))[:scores["jumps"]]
    assert scores["median_run_bars"] == pytest.approx(np.median(runs) / s.beats_per_bar, abs=0.1)
    assert scores["median_run_beats"] >= 16  # 8-bar runs at its default variety
    assert scores["song_end"]["slip_ms"] < SLIP_FAR_MS
    # Every bar played whole by the render's end counts: the history played through it, from a bar start to its
    # end (the first segment is entered part-way), on the continuation's clock (it plans ahead of the render).
    offset = a.frames - a.bounds[a.segments - 1]
    ends = (np.cumsum(a.durations[played]) - offset) / RATE
    m = s.beats_per_bar
    whole = {k for k in range(s.bars) for i in range(1, played.size - m)
             if played[i] == s.bar_starts[k] and np.array_equal(played[i:i + m], played[i] + np.arange(m))
             and ends[i + m - 1] <= MINUTES * 60}
    assert ends[-1] > MINUTES * 60 and scores["bars_heard_share"] == pytest.approx(len(whole) / s.bars)


def test_bars_count_when_played_whole_from_their_first_segment(reference):
    a, s = reference.analysis, reference.structure
    b = s.bar_starts
    first, second, third = (list(range(b[k], b[k + 1])) for k in (0, 1, 2))
    # Entered part-way into bar 0 (offset > 0): that bar is not whole; then bar 1 whole, bar 0 whole, half bar 2.
    played = first[1:] + second + first + third[:2]
    heard = listening._bars_heard_from_history(played, a, s, offset=100)
    durations = a.durations[played] / RATE
    ends = np.cumsum(durations) - 100 / RATE
    assert heard[1] == pytest.approx(ends[len(first) - 1 + len(second) - 1])
    assert heard[0] == pytest.approx(ends[len(first) - 1 + len(second) + len(first) - 1])
    assert np.isinf(heard[2]) and np.isinf(heard[3:]).all()
    # Entered right at its start (offset 0), the first bar played counts.
    assert np.isfinite(listening._bars_heard_from_history(first, a, s, offset=0)[0])


def test_a_beat_that_comes_100_ms_late_slips_at_its_join_only(song):
    # A steady beat, its second half 100 ms late: only the join in the middle slips, and by those 100 ms; a join
    # with under a second before it is not measured.
    mono = song.mono()[:round(40 * RATE)]
    late = np.concatenate([mono[:round(20 * RATE)], np.zeros(round(0.1 * RATE), np.float32), mono[round(20 * RATE):]])
    slips = listening.beat_slips(late, [10.0, 20.05, 30.0, 0.5], sample_rate=RATE, apart=False)
    assert slips[0] < 15 and slips[2] < 15 and slips[1] == pytest.approx(100.0, abs=15.0) and slips[3] is None
    # As joins of one render, each is read between its neighbours: the same slip, from 10 s on only.
    apart = listening.beat_slips(late, [30.0, 20.05, 10.0], sample_rate=RATE)
    assert apart[1] == pytest.approx(slips[1], abs=15.0) and apart[0] < 15 and apart[2] < 15
    assert listening.beat_slips(np.zeros(RATE * 5, np.float32), [2.0], sample_rate=RATE) == [None]


def test_entries_on_downbeats_are_within_70_ms(reference):
    a = reference.analysis
    downbeat = int(a.bounds[np.flatnonzero(a.phase == 0)[3]])
    off = [downbeat, downbeat + 0.06 * RATE, downbeat - 0.06 * RATE, downbeat + 0.08 * RATE, downbeat + 0.5 * RATE]
    np.testing.assert_array_equal(listening._on_downbeat(np.array(off), a), [True, True, True, False, False])


def test_a_shortened_history_is_taken_up_where_it_was_left():
    seen = list(range(100, 200)) + [5, 6, 7]
    history = seen[-40:] + [50, 51, 52]  # the oldest dropped, three played since
    assert listening._appended_since(seen, history, tail=16) == 3
    assert listening._appended_since(seen, seen[-20:], tail=16) == 0


def test_the_figure_is_a_png_per_generator(listened):
    for _, _, path in listened.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def _summary(**changes) -> dict:
    passing = {"jumps_per_minute": 8.0, "median_run_beats": 16.0, "grid_kept_share": 0.95,
               "bars_heard_share_10min": 0.6}
    return {**passing, **changes}


def test_the_bar_passes_at_its_limits_and_fails_on_each_criterion():
    assert ll.bar(_summary(), 10.0)["pass"] is True
    labels = list(ll.bar(_summary(), 10.0)["criteria"])
    for key, value, label in (("jumps_per_minute", 8.1, labels[0]), ("median_run_beats", 15.9, labels[1]),
                              ("grid_kept_share", 0.94, labels[2]), ("bars_heard_share_10min", 0.59, labels[3])):
        judged = ll.bar(_summary(**{key: value}), 10.0)
        assert judged["pass"] is False
        assert [lab for lab, c in judged["criteria"].items() if c["pass"] is False] == [label]
    # A shorter listen cannot judge 10 minutes, and a NaN median (no song with a beat grid) is not judged.
    short = ll.bar(_summary(bars_heard_share_10min=0.1), 5.0)
    assert short["criteria"][labels[3]]["pass"] is None and short["pass"] is True
    assert ll.bar(_summary(grid_kept_share=math.nan), 10.0)["criteria"][labels[2]]["pass"] is None
    assert ll.bar(_summary(jumps_per_minute=math.nan, median_run_beats=math.nan, grid_kept_share=math.nan,
                           bars_heard_share_10min=math.nan), 10.0)["pass"] is False  # nothing judged


def test_paired_differences_read_each_measure_in_its_own_direction():
    per_song = {}
    for k in range(4):
        per_song[f"s{k}"] = {
            "song": {"music_grid_kept_share": 1.0},
            "resynth": {"jumps_per_minute": 7.0 + k * 0.1, "bars_heard_share": 0.8 + 0.01 * k, "grid_kept_share": 1.0},
            "jukebox": {"jumps_per_minute": 5.0, "bars_heard_share": 0.5, "grid_kept_share": 1.0},
        }
    judged = ll.judge(per_song, ["resynth", "jukebox"], 10.0)
    against = judged["paired"]["resynth"]["jukebox"]
    # More bars heard is better, more jumps a minute worse; the differences keep their signs.
    assert against["bars_heard_share"]["mean_difference"] == pytest.approx(0.315)
    assert against["bars_heard_share"]["better"] is True
    assert against["jumps_per_minute"]["mean_difference"] == pytest.approx(2.15)
    assert against["jumps_per_minute"]["better"] is False and against["jumps_per_minute"]["not_worse"] is False
    assert against["grid_kept_share"]["mean_difference"] == 0.0 and against["grid_kept_share"]["not_worse"] is True
    assert judged["summary"]["resynth"]["jumps_per_minute"] == pytest.approx(7.15)
    assert set(judged["bar"]) == {"resynth", "jukebox"} and "match" not in judged["paired"]["resynth"]


def test_the_grid_is_also_judged_against_the_songs_own_downbeats_on_songs_with_a_steady_beat():
    per_song = {f"s{k}": {"song": {"mode": "beats", "music_grid_kept_share": 0.9 + 0.02 * k},
                          "resynth": {"grid_kept_share": 0.9 + 0.02 * k - 0.01},
                          "jukebox": {"grid_kept_share": 0.6 + 0.01 * k}} for k in range(4)}
    # No steady beat: no grid to keep, left out however its joins read.
    per_song["free"] = {"song": {"mode": "onsets", "music_grid_kept_share": 0.5},
                        "resynth": {"grid_kept_share": 0.0}, "jukebox": {"grid_kept_share": 0.0}}
    against = ll.judge(per_song, ["resynth", "jukebox"], 10.0)["grid_against_music"]
    assert against["resynth"]["songs"] == 4
    assert against["resynth"]["mean_difference"] == pytest.approx(-0.01)
    assert against["resynth"]["standard_error"] == pytest.approx(0.0, abs=1e-12)
    assert against["jukebox"]["mean_difference"] == pytest.approx(-0.315)
    assert against["jukebox"]["not_worse"] is False and against["jukebox"]["songs_better"] == 0
    assert against["jukebox"]["music_median"] == pytest.approx(0.93)
    assert against["jukebox"]["generator_median"] == pytest.approx(0.615)
    one = {"s0": per_song["s0"], "free": per_song["free"]}
    assert ll.judge(one, ["resynth"], 10.0)["grid_against_music"] == {}, "one song is no comparison"


def test_the_packages_songs_come_in_the_evaluation_sets_fixed_order(tmp_path, monkeypatch):
    files = {}
    for package, tracks in (("pkg-a", {"one": 60, "two": 40, "short": 20, "two_fast": 40}),
                            ("pkg-b", {"three": 35, "four": 31, "five": 33})):
        folder = tmp_path / package / "music"
        folder.mkdir(parents=True)
        for name, seconds in tracks.items():
            soundfile.write(str(folder / f"{name}.flac"), np.zeros(seconds * 8000, np.float32), 8000)
        files[package] = sorted(str(p) for p in folder.iterdir())
    monkeypatch.setattr(evalset, "EVAL_PACKAGES", ("pkg-a", "pkg-b"))
    monkeypatch.setattr("training.corpus.packages.dpkg_files", lambda package: files[package])
    listing = ll.song_listing(songs=5)
    # Half from each (the odd one from the second), the variant and the track under 30 s left out.
    long_enough = {"pkg-a": ["one", "two"], "pkg-b": ["five", "four", "three"]}
    expected = []
    for package, take in (("pkg-a", 2), ("pkg-b", 3)):
        order = sorted(p for p in files[package] if not p.endswith("_fast.flac"))
        random.Random(f"encore-evalset:{package}").shuffle(order)
        names = [p.rsplit("/", 1)[1][:-5] for p in order]
        expected += [f"{package}--{n}" for n in names if n in long_enough[package]][:take]
    assert [name for name, _ in listing] == expected
    assert ll.song_listing(songs=2)[0][0].startswith("pkg-a--") and ll.song_listing(songs=2)[1][0].startswith("pkg-b")
    with pytest.raises(ConfigError):
        ll.song_listing(songs=0)


def test_the_dev_corpus_gives_its_validation_songs_whole_and_never_a_training_song(tmp_path):
    corpus = tmp_path / "corpus"
    seconds = {}
    for package in ("wz", "blupi"):
        (corpus / package).mkdir(parents=True)
        for index in range(8):  # the same file names in both packages
            seconds[f"{package}--track{index}"] = 20 if index == 3 else 31 + index
            soundfile.write(str(corpus / package / f"track{index}.flac"),
                            np.zeros(seconds[f"{package}--track{index}"] * 8000, np.float32), 8000)
    training_songs, validation = split_files(list_audio_files(corpus), DataConfig(files=0, seed=0))
    named = {path: f"{path.parent.name}--{path.stem}" for path in training_songs + validation}

    listing = ll.song_listing(dev_corpus=corpus, songs=16)
    names = [name for name, _ in listing]
    # The dev set's order of the held-out songs, those under 30 s left out; none of them is trained on.
    assert names == [named[path] for path in validation_songs(corpus) if seconds[named[path]] >= ll.MIN_SONG_S]
    assert 0 < len(names) < len(validation) + 1 and len(set(names)) == len(names)
    assert not {path for _, path in listing} & set(training_songs)
    assert ll.song_listing(dev_corpus=corpus, songs=2) == listing[:2]
    with pytest.raises(ConfigError, match="not both"):
        ll.song_listing(dev_corpus=corpus, songs_dir=corpus)
    with pytest.raises(ConfigError, match="not a folder"):
        ll.song_listing(dev_corpus=tmp_path / "nowhere")


@pytest.mark.slow
def test_the_command_writes_the_table_the_figures_and_the_10_s_columns(tmp_path, capsys):
    songs = tmp_path / "songs"
    songs.mkdir()
    save_audio(songs / "tune.wav", phrase_song("AB", RATE, channels=2))
    save_audio(songs / "jingle.wav", phrase_song("A", RATE, channels=2, bars_per_section=6))  # 12 s: skipped
    ten = {"summary": {"loop": {"logmel_db": 4.25, "harmony": 0.19, "tempo_held": 0.8, "key_held": 0.9,
                                "beat_f": 0.72}}}
    (tmp_path / "results.json").write_text(json.dumps(ten))
    out = tmp_path / "long"
    assert main(["longlisten", str(out), "--songs-dir", str(songs), "--minutes", "1",
                 "--generators", "loop,match"]) == 0
    printed = capsys.readouterr()
    assert "jingle: skipped" in printed.err and "10 s log-mel dB" in printed.out and "4.2" in printed.out
    results = json.loads((out / "longlisten.json").read_text())
    assert list(results["songs"]) == ["tune"] and results["settings"]["minutes"] == 1.0
    assert results["summary"]["loop"]["jumps_per_minute"] == 6.0
    assert results["bar"] == {} and set(results["paired"]["loop"]) == {"match"}
    assert "| generator |" in (out / "longlisten.md").read_text()
    for name in ("loop", "match"):
        assert (out / "figures" / f"{name}.png").read_bytes() == (out / "figures" / "tune" / f"{name}.png").read_bytes()
    assert main(["longlisten", str(out), "--songs-dir", str(songs), "--generators", "seed"]) == 2
    assert "measures resynth, jukebox, match, loop; got seed" in capsys.readouterr().err

    # Two worker processes, each on a core of its own, measure each song as one process does.
    save_audio(songs / "tune2.wav", phrase_song("BA", RATE, channels=2))
    apart = tmp_path / "apart"
    assert main(["longlisten", str(apart), "--songs-dir", str(songs), "--minutes", "1", "--generators", "loop,match",
                 "--jobs", "2"]) == 0
    both = json.loads((apart / "longlisten.json").read_text())
    assert list(both["songs"]) == ["tune", "tune2"] and both["settings"]["jobs"] == 2
    def measured(song: dict) -> dict:  # every measure but the compute time
        return {name: {k: v for k, v in scores.items() if k != "seconds"} for name, scores in song.items()}

    assert measured(both["songs"]["tune"]) == measured(results["songs"]["tune"])
