"""``training evaluate``: the baselines, the results it writes, and its errors."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest
import soundfile

from engine.analysis import ANALYSIS_RATE, HARMONY, TIMBRE, analyse
from engine.audio import Waveform, load_audio
from engine.errors import ConfigError, EncoreError
from engine.seam import click_score
from tests.conftest import bar_song, synthetic_song
from training.cli import main as training_main
from training.evaluation import evaluate as ev
from training.evaluation.baselines import LoopGenerator, MatchGenerator, SilenceGenerator, make_generator
from training.evaluation.criteria import BAR_RESAMPLES, judge, judge_bar
from training.evaluation.files import jsonable, source_tracks
from training.evaluation.metrics.spectra import logmel_distance
from training.evaluation.paired import paired_differences

RATE = 22050


@pytest.fixture(scope="module")
def songs_dir(tmp_path_factory):
    """Two 40 s "songs" (a chord over a 120 bpm beat), stereo at 22050 Hz, and a stray text file."""
    folder = tmp_path_factory.mktemp("songs")
    for seed in (0, 1):
        soundfile.write(str(folder / f"song{seed}.flac"), synthetic_song(40.0, RATE, seed=seed).samples, RATE)
    (folder / "notes.txt").write_text("not audio")
    return folder


@pytest.fixture(scope="module")
def results(songs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    lines: list[str] = []
    return out, lines, ev.evaluate(songs_dir, out, generators=["loop", "match", "silence"], repetition_minutes=0.5,
                                   progress=lines.append)


def test_the_loop_baseline_is_periodic_from_the_song_end_and_seamless():
    song = synthetic_song(15.0, RATE, seed=3)
    loop = LoopGenerator()
    continuation = loop.extend(song, 25.0, only_extension=True)
    assert continuation.frames == 25 * RATE and continuation.channels == 2
    period = 10 * RATE - round(0.05 * RATE)
    np.testing.assert_array_equal(continuation.samples[period:], continuation.samples[:-period])
    whole = loop.extend(song, 25.0)
    assert whole.frames == song.frames + 25 * RATE
    np.testing.assert_array_equal(whole.samples[song.frames:], continuation.samples)
    assert loop.joins[0] == 0 and len(loop.joins) == 3 and loop.stats.seconds_generated == 25.0
    mono = whole.mono()
    for join in loop.joins:
        assert click_score(mono, song.frames + join, RATE)["jump"] < 10.0  # a click scores in the hundreds

    silence = SilenceGenerator()
    quiet = silence.extend(song, 12.0, only_extension=True)
    assert quiet.frames == 12 * RATE and not quiet.samples.any() and silence.stats.chunks == 2


def _bar_memory(cut_s: float = 31.13) -> tuple[Waveform, Waveform]:
    """A 45 s bar song (chords C, Am, F, G, 2 s a bar: the progression repeats every 8 s) and its first
    ``cut_s`` as the memory, cut 0.13 s into a beat."""
    song = bar_song(45.0, RATE, seed=2)
    return song, Waveform(song.samples[:round(cut_s * RATE)], RATE)


def test_match_goes_on_from_the_beat_whose_last_8_beats_best_match_the_memory_end():
    song, memory = _bar_memory()
    match = MatchGenerator()
    continuation = match.extend(memory, 10.0, only_extension=True)
    found = match.match(memory)
    assert continuation.frames == 10 * RATE and continuation.channels == 2 and continuation.sample_rate == RATE
    assert np.isfinite(continuation.samples).all() and found.mode == "beats" and match.segmentation == "beats"
    # Its first second after the cut is the song's own audio from the matched point on.
    np.testing.assert_array_equal(continuation.samples[:RATE], memory.samples[found.start:found.start + RATE])

    # The matched point, found again by brute force from the same analysis: the earlier beat at the memory
    # end's bar phase, outside the last 8 beats, whose 8 beats before it are nearest (harmony weighted 2).
    analysis = analyse(memory.mono())  # already at the analysis rate
    assert memory.sample_rate == ANALYSIS_RATE
    last = analysis.segments - 1
    look = np.concatenate([analysis.features[:, TIMBRE], 2.0 * analysis.features[:, HARMONY]], axis=1)
    candidates = [j for j in range(8, last - 8) if analysis.phase[j] == analysis.phase[last]]
    best = min(candidates, key=lambda j: float(np.linalg.norm(look[j - 8:j] - look[last - 8:last])))
    assert found.segment == best and found.beats == 8 and found.segment <= last - 9
    offset = memory.frames - int(analysis.bounds[last])
    assert found.start == int(analysis.bounds[best]) + offset and found.period == memory.frames - found.start
    # And it is the point musicians would pick: a whole number of the song's 8 s progressions back (to within
    # the beat tracker's few frames), where the loop of the last 10 s lands 2 s off the chords.
    back = found.period / RATE
    assert back >= 8.0 - 0.1 and abs(back - 8.0 * round(back / 8.0)) < 0.1
    true = song.mono()[memory.frames:memory.frames + 10 * RATE]
    loop = LoopGenerator().extend(memory, 10.0, only_extension=True)
    assert (logmel_distance(continuation.mono(), true, sample_rate=RATE)
            < 0.5 * logmel_distance(loop.mono(), true, sample_rate=RATE))


def test_match_jumps_back_only_when_its_run_reaches_the_memory_end():
    _, memory = _bar_memory()
    match = MatchGenerator()
    long = match.extend(memory, 40.0, only_extension=True)
    found, fade = match.match(memory), round(0.05 * RATE)
    cycle = found.period
    # The run plays the song in order up to the crossfade before the memory's end, then the same again.
    np.testing.assert_array_equal(long.samples[:cycle - fade], memory.samples[found.start:memory.frames - fade])
    np.testing.assert_array_equal(long.samples[cycle:], long.samples[:-cycle])
    repeats = -(-(40 * RATE) // cycle)
    assert match.joins == [0] + [k * cycle + cycle - fade + fade // 2 for k in range(repeats)
                                 if k * cycle + cycle - fade + fade // 2 < 40 * RATE]
    assert len(match.joins) == 1 + 40 * RATE // cycle and match.stats.chunks == repeats
    whole = match.extend(memory, 40.0)
    assert whole.frames == memory.frames + 40 * RATE
    np.testing.assert_array_equal(whole.samples[memory.frames:], long.samples)
    mono = whole.mono()
    for join in match.joins:
        assert click_score(mono, memory.frames + join, RATE)["jump"] < 10.0  # a click scores in the hundreds
    # The analysis is the first chunk's cost and is kept for the same memory; a new one is analysed afresh.
    assert match.stats.first_chunk_seconds >= match.stats.chunk_seconds[0]
    assert make_generator("match").match(Waveform(memory.samples[:-RATE].copy(), RATE)).start != found.start


def test_match_works_at_onsets_or_grid_cells_without_a_beat(rng):
    # A slowly swelling chord with no attack: no steady beat, so no bar phase to keep.
    t = np.arange(30 * RATE) / RATE
    pad = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip((220.0, 277.18, 329.63), (0.0, 1.0, 2.0), strict=True))
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * t / 7.0) * np.sin(2 * np.pi * t / 3.0)
    mono = (0.2 * pad * swell + 1e-3 * rng.standard_normal(t.size)).astype(np.float32)
    memory = Waveform(np.stack([mono, 0.8 * mono], axis=1), RATE)
    match = MatchGenerator()
    continuation = match.extend(memory, 12.0, only_extension=True)
    found = match.match(memory)
    assert found.mode in ("onsets", "grid") and found.beats == 8
    assert continuation.frames == 12 * RATE and continuation.channels == 2 and np.isfinite(continuation.samples).all()
    np.testing.assert_array_equal(continuation.samples[:RATE], memory.samples[found.start:found.start + RATE])
    assert match.joins[0] == 0 and all(j == found.period - round(0.05 * RATE) + round(0.05 * RATE) // 2
                                       for j in match.joins[1:2])


def test_match_takes_what_a_short_memory_has_and_refuses_less_than_the_analysis_needs():
    # A second of silence: a grid of 8 cells, 3 compared on each side of the jump.
    short, memory = MatchGenerator(), Waveform(np.zeros((RATE, 2), np.float32), RATE)
    quiet = short.extend(memory, 5.0, only_extension=True)
    assert quiet.frames == 5 * RATE and not quiet.samples.any() and short.match(memory).beats == 3
    with pytest.raises(EncoreError, match="too short"):
        MatchGenerator().extend(Waveform(np.zeros((RATE // 3, 2), np.float32), RATE), 5.0)
    with pytest.raises(ConfigError, match="beats >= 1"):
        MatchGenerator(beats=0)


@pytest.mark.parametrize("name", ["jukebox", "loop"])
def test_the_long_run_is_downmixed_block_by_block_to_the_same_samples(name):
    song = synthetic_song(25.0, RATE, seed=4)
    generator = make_generator(name)
    whole = generator.extend(song, 35.0).mono()
    joins = list(generator.joins)
    by_block = ev._long_mono(generator, song, 35.0)
    assert by_block.dtype == np.float32
    np.testing.assert_array_equal(by_block, whole)  # the same draw: the seed restarts with every render
    assert generator.joins == joins


@pytest.mark.slow
def test_evaluate_writes_results_a_table_and_spectrograms(results):
    out, lines, result = results
    assert json.loads((out / "results.json").read_text())["settings"]["songs"] == 2
    assert (out / "spectrograms" / "song0.png").stat().st_size > 1000
    assert (out / "spectrograms" / "song1.png").is_file()
    table = (out / "results.md").read_text()
    assert table.startswith("| generator |") and "| loop |" in table and "| silence |" in table
    assert "| match |" in table and table.startswith("| generator | log-mel dB | harmony |")
    assert any(line.startswith("song0.flac: loop:") for line in lines)

    summary = result["summary"]
    assert list(summary) == ["true", "loop", "match", "silence"]
    assert summary["true"]["logmel_db"] == 0.0 and summary["true"]["harmony"] == 0.0
    loop, silence = summary["loop"], summary["silence"]
    assert silence["logmel_db"] > loop["logmel_db"] + 10
    assert silence["harmony"] == 1.0 > 0.5 > loop["harmony"]
    assert summary["match"]["harmony"] < 0.5 and summary["match"]["logmel_db"] < silence["logmel_db"] - 10
    # 30 s of loop repeat with a period of 9.95 s: the last 20 s copy the first 10.
    assert loop["longest_loop_s"] == pytest.approx(30.0 - 9.95, abs=0.2)
    assert silence["longest_loop_s"] == 0.0
    assert loop["tempo_held"] == 1.0 and silence["tempo_held"] == 0.0
    # A join into silence is a click; the loop's crossfades are not.
    assert silence["seams"]["jump_median"] > 50 > loop["seams"]["jump_p95"]
    assert result["bar"] == {} and result["missing"] == []  # only model generators are held to the bar
    song = result["songs"]["song0.flac"]["loop"]
    assert {"logmel_db", "harmony", "seams", "tempo", "key", "beat", "loudness_step_lu", "flatness_ratio",
            "real_time_factor", "repetition", "seams_long"} <= set(song)


def test_bad_input_is_one_config_error(tmp_path, songs_dir):
    with pytest.raises(ConfigError, match="unknown generator 'tape'"):
        ev.evaluate(songs_dir, tmp_path / "out", generators=["loop", "tape"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no audio files"):
        ev.evaluate(tmp_path / "empty", tmp_path / "out", generators=["loop"])
    with pytest.raises(ConfigError, match="unknown generator"):
        make_generator("tape")


def test_the_command_line_reports_a_bad_generator_on_one_line(songs_dir, tmp_path, capsys):
    code = training_main(["evaluate", str(songs_dir), "--generators", "loop,tape", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "unknown generator 'tape'" in err


def _paired_songs(gaps, rival: str = "match", key: str = "logmel_db") -> dict[str, dict]:
    """Per-song rows of resynth and a rival whose ``key`` differs by ``gaps`` (resynth minus rival), song by song."""
    return {f"song{i}.flac": {"resynth": {key: 4.0 + gap}, rival: {key: 4.0}} for i, gap in enumerate(gaps)}


def test_paired_words_are_judged_against_two_standard_errors():
    def words(gaps, key="logmel_db"):
        d = paired_differences("resynth", _paired_songs(gaps, key=key), distances=(key,), truth=False)["match"][key]
        return d["better"], d["not_worse"]

    spread = np.array([-0.1, 0.1, -0.1, 0.1, 0.0, 0.0])  # standard error 0.037
    assert words(spread - 0.2) == (True, True)  # 5.5 standard errors closer
    assert words(spread - 0.03) == (False, True)  # closer, by under one standard error: neither better nor worse
    assert words(spread + 0.03) == (False, True)  # further, by under one: still within the noise
    assert words(spread + 0.2) == (False, False)  # 5.5 standard errors further: worse
    d = paired_differences("resynth", _paired_songs(spread - 0.03), distances=("logmel_db",), truth=False)
    assert d["match"]["logmel_db"]["songs_better"] == 4 and d["match"]["logmel_db"]["songs"] == 6
    one = paired_differences("resynth", _paired_songs([-1.0]), distances=("logmel_db",),
                             truth=False)["match"]["logmel_db"]
    assert one["better"] is None and one["not_worse"] is None  # one song: no standard error, no verdict
    # An evaluation from before a score has none of it: nothing to compare, nothing left in.
    assert paired_differences("resynth", _paired_songs(spread, key="chroma"), truth=False) == {}


def bar_songs(logmel_vs_loop, logmel_vs_match, harmony_gap=0.0, tempo_lost=0) -> dict[str, dict]:
    """Six songs of resynth, loop, match and the truth: resynth's log-mel distance this far from loop's and from
    match's, song by song, its harmony ``harmony_gap`` from both, and tempo held on all but ``tempo_lost``."""
    spread = np.array([-0.1, 0.1, -0.1, 0.1, 0.0, 0.0])  # standard error 0.037
    songs = {}
    for i in range(6):
        held = {"held": float(i >= tempo_lost)}
        songs[f"song{i}.flac"] = {
            "true": {"tempo": {"held": 1.0}, "key": {"held": 1.0}},
            "resynth": {"logmel_db": 4.0 + spread[i], "harmony": 0.2 + harmony_gap + 0.5 * spread[i], "tempo": held,
                        "key": {"held": 1.0}},
            "loop": {"logmel_db": 4.0 - logmel_vs_loop, "harmony": 0.2},
            "match": {"logmel_db": 4.0 - logmel_vs_match, "harmony": 0.2}}
    return songs


def test_the_bar_judges_each_criterion_song_by_song():
    def row(**overrides):
        base = {"logmel_db": 5.0, "harmony": 0.2, "seams": {"jump_p95": 3.0, "hf_ratio_p95": 2.0},
                "tempo_held": 0.9, "key_held": 0.9, "flatness_ratio": 1.05, "longest_loop_s": 120.0,
                "real_time_factor": 0.005, "first_chunk_real_time_factor": 0.008}
        return {**base, **overrides}

    music = {"jump_p95": 4.0, "hf_ratio_p95": 3.0}
    summary = {"true": row(), "loop": row(), "match": row(), "resynth": row()}

    def verdicts(songs, mine=None):
        bar = judge_bar("resynth", {**summary, "resynth": mine or row()}, music, paired_differences("resynth", songs))
        return bar["pass"], {label: c["pass"] for label, c in bar["criteria"].items()}

    # 0.2 dB closer than loop (5.5 standard errors), even with match: every criterion passes; loops are not judged.
    passed, each = verdicts(bar_songs(-0.2, 0.0))
    assert passed and all(each.values()) and not any("loop over" in label for label in each)
    # Closer than loop by under two standard errors: not better, so the bar fails on that alone.
    passed, each = verdicts(bar_songs(-0.05, 0.0))
    assert not passed and [k for k, v in each.items() if not v] == ["log-mel better than loop, song by song"]
    # Further than match by 5 standard errors, or harmony worse than both: fails those.
    _, each = verdicts(bar_songs(-0.4, 0.2))
    assert each["log-mel not worse than match, song by song"] is False
    _, each = verdicts(bar_songs(-0.4, 0.0, harmony_gap=0.2))
    assert each["harmony not worse than loop, song by song"] is False
    assert each["harmony not worse than match, song by song"] is False
    # Tempo lost on 3 songs of 6 where the truth held it: worse than the true continuation beyond the noise.
    _, each = verdicts(bar_songs(-0.4, 0.0, tempo_lost=3))
    assert each["tempo held not less often than the true continuation, song by song"] is False
    # Without match the criteria against it are n/a, and keep their labels (the resamplings look them up).
    songs = {k: {g: v for g, v in song.items() if g != "match"} for k, song in bar_songs(-0.2, 0.0).items()}
    passed, each = verdicts(songs)
    assert each["log-mel not worse than match, song by song"] is None and passed
    # The real-time bar is 0.01, for the first chunk (analysis included) too.
    passed, each = verdicts(bar_songs(-0.2, 0.0), row(first_chunk_real_time_factor=0.015))
    assert not passed and not each["real-time factor at most 0.01 for the first chunk, analysis included"]


@pytest.mark.slow
def test_generators_that_draw_at_random_are_scored_over_several_draws(songs_dir, tmp_path):
    result = ev.evaluate(songs_dir, tmp_path / "out", generators=["jukebox", "loop"], songs=1,
                         repetition_minutes=0, draws=3)
    row = result["songs"]["song0.flac"]["jukebox"]
    assert row["draws"] == 3 and "draws" not in result["songs"]["song0.flac"]["loop"]
    # The same three continuations made one by one: the row holds their mean.
    song = load_audio(songs_dir / "song0.flac")
    memory, rate = Waveform(song.samples[:30 * RATE], RATE), RATE
    true = song.mono()[30 * RATE:40 * RATE]
    generator = make_generator("jukebox")
    distances = []
    for seed in range(3):
        generator.resynth = replace(generator.resynth, seed=seed)
        generated = generator.extend(memory, 10.0, only_extension=True).mono()[:10 * RATE]
        distances.append(logmel_distance(generated, true, sample_rate=rate))
    assert row["logmel_db"] == pytest.approx(np.mean(distances), rel=1e-6)
    assert 0.0 <= row["tempo"]["held"] <= 1.0 and 0.0 <= row["key"]["held"] <= 1.0
    # Every draw's joins are measured for slips, and the summary pools them.
    slips = row["beat"]["join_slips_ms"]
    assert len(slips) >= 3 and result["summary"]["jukebox"]["join_slip_ms"] == pytest.approx(np.median(slips))
    paired = result["paired"]["jukebox"]["loop"]["logmel_db"]
    loop = result["songs"]["song0.flac"]["loop"]["logmel_db"]
    assert paired["songs"] == 1 and paired["mean_difference"] == pytest.approx(row["logmel_db"] - loop)
    assert "harmony" in result["paired"]["jukebox"]["loop"]
    # Held shares are compared with the truth's own, song by song: a tracker's flips are noise on both sides.
    truth = result["songs"]["song0.flac"]["true"]
    for key in ("tempo", "key"):
        against_truth = result["paired"]["jukebox"]["true"][key]
        assert against_truth["mean_difference"] == pytest.approx(row[key]["held"] - float(truth[key]["held"]))
    assert "paired against the true continuation" in (tmp_path / "out" / "results.md").read_text()
    assert "averaged over 3 draws" in (tmp_path / "out" / "results.md").read_text()
    with pytest.raises(ConfigError, match="draws must be 1 to 64"):
        ev.evaluate(songs_dir, tmp_path / "out", generators=["loop"], draws=0)


def _judged_songs(results, count: int = 24, seed: int = 0) -> dict[str, dict]:
    """Per-song scores where resynth is far closer than match on log-mel in every song, and closer than loop by
    just under two standard errors of the paired difference: a verdict the songs cannot settle."""
    rng = np.random.default_rng(seed)
    template = results[2]["songs"]["song0.flac"]
    mine = 3.0 + rng.uniform(size=count)
    z = rng.standard_normal(count)
    z = (z - z.mean()) / z.std(ddof=1)
    spread = 0.2 * np.sqrt(count) / 2.0  # so that a mean gap of 0.2 is two standard errors; 0.19 is a little under
    harmony = rng.uniform(0.05, 0.3, count)
    shuffled = rng.permutation(harmony)  # jukebox's harmony, song for song another's: the same median
    songs = {}
    for i in range(count):
        def row(**scores):
            return {**template["loop"], **scores}

        songs[f"song{i}.flac"] = {
            "true": template["true"],
            "loop": row(logmel_db=float(mine[i] + 0.19 - spread * z[i]), harmony=0.4),
            "match": row(logmel_db=float(mine[i] + 1.0 + 0.1 * rng.uniform()), harmony=0.4),
            "jukebox": row(logmel_db=5.0 + rng.uniform(), harmony=float(harmony[i])),
            "resynth": row(logmel_db=float(mine[i]), harmony=float(shuffled[i]))}
    return songs


@pytest.mark.slow
def test_each_verdict_of_the_bar_says_how_firmly_the_songs_hold_it(results):
    songs = _judged_songs(results)
    judged = judge(songs, ["resynth", "jukebox", "loop", "match"], results[2]["reference_seams"])
    criteria = judged["bar"]["resynth"]["criteria"]
    match, loop = (criteria[f"log-mel {w}, song by song"] for w in ("not worse than match", "better than loop"))
    assert match["pass"] is True and match["agreement"] == 1.0  # closer in every song: every resampling agrees
    assert loop["pass"] is False and 0.2 < loop["agreement"] < 0.8  # just under two standard errors: a coin flip
    assert all(0.0 <= c["agreement"] <= 1.0 for c in criteria.values())
    assert judged["bar"]["resynth"]["resamples"] == BAR_RESAMPLES
    again = judge(songs, ["resynth", "jukebox", "loop", "match"], results[2]["reference_seams"])
    assert again["bar"] == judged["bar"], "the resamplings are seeded: the same scores, the same shares"


@pytest.mark.slow
def test_clips_of_one_track_are_resampled_together(results):
    songs = _judged_songs(results, count=12)
    # Each song cut twice from its track, as the evaluation set's builder names clips; the copies score alike.
    twice = {f"pkg--track{i}--{start}.flac": row for i, row in enumerate(songs.values()) for start in (10, 60)}
    tracks = source_tracks([*twice, "notes.wav"])
    assert len(tracks) == 13 and tracks["pkg--track3"] == ["pkg--track3--10.flac", "pkg--track3--60.flac"]
    assert tracks["notes.wav"] == ["notes.wav"]

    def shares(per_song):
        bar = judge(per_song, ["resynth", "jukebox", "loop", "match"],
                    results[2]["reference_seams"])["bar"]["resynth"]
        return bar, {label: c["agreement"] for label, c in bar["criteria"].items()}

    grouped, once = shares(twice), shares(songs)
    assert grouped[0]["resampled_tracks"] == 12 and once[0]["resampled_tracks"] == 12
    assert grouped[1] == once[1]  # two copies of a track tell no more than one
    apart = shares({name.replace("--", "-"): row for name, row in twice.items()})
    assert apart[0]["resampled_tracks"] == 24
    assert apart[1] != once[1]  # counted as 24 tracks, the same songs look surer than they are


@pytest.mark.slow
def test_rejudge_summarises_an_evaluation_again_without_running_it(results, tmp_path, capsys):
    _, _, result = results
    songs = _judged_songs(results)
    stored = {**result, "settings": {**result["settings"], "generators": ["resynth", "jukebox", "loop", "match"]},
              "songs": songs, "summary": {}, "bar": {}, "paired": {}}
    (tmp_path / "results.json").write_text(json.dumps(jsonable(stored)))
    assert training_main(["rejudge", str(tmp_path)]) == 0
    assert "bar for resynth: FAIL" in capsys.readouterr().out
    rewritten = json.loads((tmp_path / "results.json").read_text())
    assert rewritten["songs"] == json.loads(json.dumps(jsonable(songs)))
    assert rewritten["summary"]["resynth"]["harmony"] == pytest.approx(rewritten["summary"]["jukebox"]["harmony"])
    assert "of song resamplings" in (tmp_path / "results.md").read_text() and rewritten["missing"] == []

    # Results scored before the harmony criterion hold "chroma": judged again, harmony is reported missing.
    old = {song: {name: {("chroma" if key == "harmony" else key): value for key, value in row.items()}
                  for name, row in rows.items()} for song, rows in songs.items()}
    (tmp_path / "results.json").write_text(json.dumps(jsonable({**stored, "songs": old})))
    assert training_main(["rejudge", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Not in these per-song scores, so not judged: harmony" in out
    rewritten = json.loads((tmp_path / "results.json").read_text())
    assert rewritten["missing"] == ["harmony"] and rewritten["summary"]["resynth"]["harmony"] is None
    assert rewritten["bar"]["resynth"]["criteria"]["harmony not worse than loop, song by song"]["pass"] is None
    assert rewritten["bar"]["resynth"]["criteria"]["log-mel not worse than match, song by song"]["pass"] is True
    assert list(rewritten["paired"]["resynth"]["jukebox"]) == ["logmel_db"]

    (tmp_path / "results.json").write_text("{}")
    assert training_main(["rejudge", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not the results of training evaluate" in err


def test_the_command_line_gives_its_caller_its_cores_back(songs_dir, tmp_path):
    cores = os.sched_getaffinity(0)
    assert training_main(["evaluate", str(songs_dir), "--generators", "silence", "--songs", "1", "--draws", "1",
                          "--repetition-minutes", "0", "--out", str(tmp_path / "o")]) == 0
    assert os.sched_getaffinity(0) == cores  # it ran pinned to one core, and let go of it


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to run two workers")
def test_workers_score_every_song_as_one_process_does(songs_dir, results, tmp_path):
    out, _, alone = results
    lines: list[str] = []
    side_by_side = ev.evaluate(songs_dir, tmp_path / "out", generators=["loop", "match", "silence"],
                               repetition_minutes=0.5, jobs=2, progress=lines.append)

    def scores(result: dict) -> dict:  # every score by its path, but the timings, which no two runs share
        flat = {}

        def walk(value, path):
            if isinstance(value, dict):
                for key, item in value.items():
                    if key not in ("real_time_factor", "first_chunk_real_time_factor"):
                        walk(item, f"{path}/{key}")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    walk(item, f"{path}/{i}")
            else:
                flat[path] = value

        walk(jsonable(result["songs"]), "")
        return flat

    assert list(side_by_side["songs"]) == list(alone["songs"]) == ["song0.flac", "song1.flac"]
    two, one = scores(side_by_side), scores(alone)
    assert len(one) > 100 and two.keys() == one.keys()
    numbers = [path for path, value in one.items() if isinstance(value, float)]
    assert len(numbers) > 50 and {path: two[path] for path in one if path not in numbers} == {
        path: one[path] for path in one if path not in numbers}
    # The same computation; BLAS pools of another size may round the last digits differently.
    assert [two[path] for path in numbers] == pytest.approx([one[path] for path in numbers], rel=1e-6, abs=1e-9,
                                                            nan_ok=True)
    assert side_by_side["reference_seams"] == alone["reference_seams"]
    assert side_by_side["settings"]["jobs"] == 2 and alone["settings"]["jobs"] == 1
    assert (tmp_path / "out" / "spectrograms" / "song1.png").stat().st_size > 1000
    assert sorted(line.split(":")[0] for line in lines) == ["song0.flac"] * 3 + ["song1.flac"] * 3
    with pytest.raises(ConfigError, match="jobs must be 1 to"):
        ev.evaluate(songs_dir, tmp_path / "out", generators=["loop"], jobs=len(os.sched_getaffinity(0)) + 1)
