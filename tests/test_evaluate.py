"""``training evaluate``: the baselines, the results it writes, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from engine.errors import ConfigError
from engine.seam import click_score
from tests.conftest import synthetic_song
from training import evaluate as ev
from training.cli import main as training_main

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
    return out, lines, ev.evaluate(songs_dir, out, generators=["loop", "silence"], repetition_minutes=0.5,
                                   progress=lines.append)


def test_the_loop_baseline_is_periodic_from_the_song_end_and_seamless():
    song = synthetic_song(15.0, RATE, seed=3)
    loop = ev.LoopGenerator()
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

    silence = ev.SilenceGenerator()
    quiet = silence.extend(song, 12.0, only_extension=True)
    assert quiet.frames == 12 * RATE and not quiet.samples.any() and silence.stats.chunks == 2


@pytest.mark.parametrize("name", ["jukebox", "loop"])
def test_the_long_run_is_downmixed_block_by_block_to_the_same_samples(name):
    song = synthetic_song(25.0, RATE, seed=4)
    generator = ev.make_generator(name)
    whole = generator.extend(song, 35.0).mono()
    joins = list(generator.joins)
    by_block = ev._long_mono(generator, song, 35.0)
    assert by_block.dtype == np.float32
    np.testing.assert_array_equal(by_block, whole)  # the same draw: the seed restarts with every render
    assert generator.joins == joins


def test_evaluate_writes_results_a_table_and_spectrograms(results):
    out, lines, result = results
    assert json.loads((out / "results.json").read_text())["settings"]["songs"] == 2
    assert (out / "spectrograms" / "song0.png").stat().st_size > 1000
    assert (out / "spectrograms" / "song1.png").is_file()
    table = (out / "results.md").read_text()
    assert table.startswith("| generator |") and "| loop |" in table and "| silence |" in table
    assert any(line.startswith("song0.flac: loop:") for line in lines)

    summary = result["summary"]
    assert list(summary) == ["true", "loop", "silence"]
    assert summary["true"]["logmel_db"] == 0.0 and summary["true"]["chroma"] == pytest.approx(0.0, abs=1e-9)
    loop, silence = summary["loop"], summary["silence"]
    assert silence["logmel_db"] > loop["logmel_db"] + 10
    assert silence["chroma"] > loop["chroma"]
    # 30 s of loop repeat with a period of 9.95 s: the last 20 s copy the first 10.
    assert loop["longest_loop_s"] == pytest.approx(30.0 - 9.95, abs=0.2)
    assert silence["longest_loop_s"] == 0.0
    assert loop["tempo_held"] == 1.0 and silence["tempo_held"] == 0.0
    # A join into silence is a click; the loop's crossfades are not.
    assert silence["seams"]["jump_median"] > 50 > loop["seams"]["jump_p95"]
    assert result["bar"] == {}  # only model generators are held to the bar
    song = result["songs"]["song0.flac"]["loop"]
    assert {"logmel_db", "chroma", "seams", "tempo", "key", "beat", "loudness_step_lu", "flatness_ratio",
            "real_time_factor", "repetition", "seams_long"} <= set(song)


def test_bad_input_is_one_config_error(tmp_path, songs_dir):
    with pytest.raises(ConfigError, match="unknown generator 'tape'"):
        ev.evaluate(songs_dir, tmp_path / "out", generators=["loop", "tape"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no audio files"):
        ev.evaluate(tmp_path / "empty", tmp_path / "out", generators=["loop"])
    with pytest.raises(ConfigError, match="unknown generator"):
        ev.make_generator("tape")


def test_the_command_line_reports_a_bad_generator_on_one_line(songs_dir, tmp_path, capsys):
    code = training_main(["evaluate", str(songs_dir), "--generators", "loop,tape", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "unknown generator 'tape'" in err


def test_the_bar_judges_each_criterion():
    def row(**overrides):
        base = {"logmel_db": 5.0, "chroma": 0.2, "seams": {"jump_p95": 3.0, "hf_ratio_p95": 2.0},
                "tempo_held": 0.9, "key_held": 0.9, "flatness_ratio": 1.05, "longest_loop_s": 12.0,
                "real_time_factor": 0.01, "first_chunk_real_time_factor": 0.015}
        return {**base, **overrides}

    summary = {"true": row(tempo_held=0.8, key_held=0.95), "loop": row(logmel_db=6.0, chroma=0.3),
               "resynth": row()}
    bar = ev._bar("resynth", summary, {"jump_p95": 4.0, "hf_ratio_p95": 3.0})
    verdicts = {label: c["pass"] for label, c in bar["criteria"].items()}
    assert verdicts["key held as often as the true continuation"] is False and bar["pass"] is False
    assert sum(v is True for v in verdicts.values()) == len(verdicts) - 1
    assert ev._bar("resynth", {**summary, "true": row(key_held=0.5)}, {"jump_p95": 4.0, "hf_ratio_p95": 3.0})["pass"]
    slow_start = ev._bar("resynth", {**summary, "true": row(key_held=0.5),
                                     "resynth": row(first_chunk_real_time_factor=0.05)}, {"jump_p95": 4.0,
                                                                                          "hf_ratio_p95": 3.0})
    assert not slow_start["pass"], "the first chunk, analysis included, is held to the real-time bar too"


def test_generators_that_draw_at_random_are_scored_over_several_draws(songs_dir, tmp_path):
    result = ev.evaluate(songs_dir, tmp_path / "out", generators=["jukebox", "loop"], songs=1,
                         repetition_minutes=0, draws=3)
    row = result["songs"]["song0.flac"]["jukebox"]
    assert row["draws"] == 3 and "draws" not in result["songs"]["song0.flac"]["loop"]
    # The same three continuations made one by one: the row holds their mean.
    song = ev.load_audio(songs_dir / "song0.flac")
    memory, rate = ev.Waveform(song.samples[:30 * RATE], RATE), RATE
    true = song.mono()[30 * RATE:40 * RATE]
    generator = ev.make_generator("jukebox")
    distances = []
    for seed in range(3):
        generator.resynth = ev.replace(generator.resynth, seed=seed)
        generated = generator.extend(memory, 10.0, only_extension=True).mono()[:10 * RATE]
        distances.append(ev.metrics.logmel_distance(generated, true, sample_rate=rate))
    assert row["logmel_db"] == pytest.approx(np.mean(distances), rel=1e-6)
    assert 0.0 <= row["tempo"]["held"] <= 1.0 and 0.0 <= row["key"]["held"] <= 1.0
    # Every draw's joins are measured for slips, and the summary pools them.
    slips = row["beat"]["join_slips_ms"]
    assert len(slips) >= 3 and result["summary"]["jukebox"]["join_slip_ms"] == pytest.approx(np.median(slips))
    paired = result["paired"]["jukebox"]["loop"]["logmel_db"]
    loop = result["songs"]["song0.flac"]["loop"]["logmel_db"]
    assert paired["songs"] == 1 and paired["mean_difference"] == pytest.approx(row["logmel_db"] - loop)
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
    """Per-song scores where resynth is closer than loop and jukebox on log-mel in every song, and on chroma
    its distances are jukebox's own, shuffled: the same median, so a verdict the songs cannot settle."""
    rng = np.random.default_rng(seed)
    template = results[2]["songs"]["song0.flac"]
    chroma = rng.uniform(0.05, 0.3, count)
    shuffled = rng.permutation(chroma)
    songs = {}
    for i in range(count):
        def row(**scores):
            return {**template["loop"], **scores}

        songs[f"song{i}.flac"] = {"true": template["true"], "loop": row(logmel_db=6.0, chroma=0.4),
                                  "jukebox": row(logmel_db=5.0 + rng.uniform(), chroma=float(chroma[i])),
                                  "resynth": row(logmel_db=3.0 + rng.uniform(), chroma=float(shuffled[i]))}
    return songs


def test_each_verdict_of_the_bar_says_how_firmly_the_songs_hold_it(results):
    songs = _judged_songs(results)
    judged = ev.judge(songs, ["resynth", "jukebox", "loop"], results[2]["reference_seams"])
    criteria = judged["bar"]["resynth"]["criteria"]
    logmel, chroma = criteria["log-mel beats loop/jukebox"], criteria["chroma beats loop/jukebox"]
    assert logmel["pass"] is True and logmel["agreement"] == 1.0  # closer in every song: every resampling agrees
    assert chroma["pass"] is False and 0.2 < chroma["agreement"] < 0.8  # equal medians: a coin flip
    assert all(0.0 <= c["agreement"] <= 1.0 for c in criteria.values())
    assert judged["bar"]["resynth"]["resamples"] == ev.BAR_RESAMPLES
    again = ev.judge(songs, ["resynth", "jukebox", "loop"], results[2]["reference_seams"])
    assert again["bar"] == judged["bar"], "the resamplings are seeded: the same scores, the same shares"


def test_clips_of_one_track_are_resampled_together(results):
    songs = _judged_songs(results, count=12)
    # Each song cut twice from its track, as the evaluation set's builder names clips; the copies score alike.
    twice = {f"pkg--track{i}--{start}.flac": row for i, row in enumerate(songs.values()) for start in (10, 60)}
    tracks = ev.source_tracks([*twice, "notes.wav"])
    assert len(tracks) == 13 and tracks["pkg--track3"] == ["pkg--track3--10.flac", "pkg--track3--60.flac"]
    assert tracks["notes.wav"] == ["notes.wav"]

    def shares(per_song):
        bar = ev.judge(per_song, ["resynth", "jukebox", "loop"], results[2]["reference_seams"])["bar"]["resynth"]
        return bar, {label: c["agreement"] for label, c in bar["criteria"].items()}

    grouped, once = shares(twice), shares(songs)
    assert grouped[0]["resampled_tracks"] == 12 and once[0]["resampled_tracks"] == 12
    assert grouped[1] == once[1]  # two copies of a track tell no more than one
    apart = shares({name.replace("--", "-"): row for name, row in twice.items()})
    assert apart[0]["resampled_tracks"] == 24
    assert apart[1] != once[1]  # counted as 24 tracks, the same songs look surer than they are


def test_rejudge_summarises_an_evaluation_again_without_running_it(results, tmp_path, capsys):
    _, _, result = results
    songs = _judged_songs(results)
    stored = {**result, "settings": {**result["settings"], "generators": ["resynth", "jukebox", "loop"]},
              "songs": songs, "summary": {}, "bar": {}, "paired": {}}
    (tmp_path / "results.json").write_text(json.dumps(ev._jsonable(stored)))
    assert training_main(["rejudge", str(tmp_path)]) == 0
    assert "bar for resynth: FAIL" in capsys.readouterr().out
    rewritten = json.loads((tmp_path / "results.json").read_text())
    assert rewritten["songs"] == json.loads(json.dumps(ev._jsonable(songs)))
    assert rewritten["summary"]["resynth"]["chroma"] == pytest.approx(rewritten["summary"]["jukebox"]["chroma"])
    assert "of song resamplings" in (tmp_path / "results.md").read_text()

    (tmp_path / "results.json").write_text("{}")
    assert training_main(["rejudge", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not the results of training evaluate" in err


def test_the_command_line_gives_its_caller_its_cores_back(songs_dir, tmp_path):
    cores = ev.os.sched_getaffinity(0)
    assert training_main(["evaluate", str(songs_dir), "--generators", "silence", "--songs", "1", "--draws", "1",
                          "--repetition-minutes", "0", "--out", str(tmp_path / "o")]) == 0
    assert ev.os.sched_getaffinity(0) == cores  # it ran pinned to one core, and let go of it


@pytest.mark.skipif(len(ev.os.sched_getaffinity(0)) < 2, reason="needs two cores to run two workers")
def test_workers_score_every_song_as_one_process_does(songs_dir, results, tmp_path):
    out, _, alone = results
    lines: list[str] = []
    side_by_side = ev.evaluate(songs_dir, tmp_path / "out", generators=["loop", "silence"], repetition_minutes=0.5,
                               jobs=2, progress=lines.append)

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

        walk(ev._jsonable(result["songs"]), "")
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
    assert sorted(line.split(":")[0] for line in lines) == ["song0.flac"] * 2 + ["song1.flac"] * 2
    with pytest.raises(ConfigError, match="jobs must be 1 to"):
        ev.evaluate(songs_dir, tmp_path / "out", generators=["loop"], jobs=len(ev.os.sched_getaffinity(0)) + 1)
