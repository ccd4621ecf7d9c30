"""The resynth scorer end to end: segment a synthetic corpus, train two epochs, export, load with the engine's
SegmentScorer, and the checks that make the engine refuse a file that is not a resynth scorer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="training needs the [train] extra")
onnx = pytest.importorskip("onnx")

from engine.analysis import (  # noqa: E402
    ANALYSIS_RATE,
    FEATURE_DIM,
    FEATURE_NAMES,
    FEATURE_SPEC,
    HARMONY,
    TIMBRE,
    Analysis,
    candidate_dim,
    candidate_rows,
)
from engine.audio import Waveform, save_audio  # noqa: E402
from engine.continuator import DEFAULT_MODEL, DEFAULT_RESYNTH_MODEL, Continuator  # noqa: E402
from engine.errors import ConfigError, ModelContractError  # noqa: E402
from engine.resynth import Sequencer  # noqa: E402
from engine.scorer import SegmentScorer  # noqa: E402
from training.cli import main as training_main  # noqa: E402
from training.scorer.examples import ExampleConfig, continuation_costs, draw_examples  # noqa: E402
from training.scorer.model import ScorerConfig, build_scorer  # noqa: E402
from training.scorer.report import engine_scores, most_similar_scores, rank_metrics  # noqa: E402
from training.scorer.run import load_resynth_run  # noqa: E402
from training.scorer.segments import segment_files  # noqa: E402

#: Largest |Keras - ONNX Runtime| seen on the same inputs (float32 sums reassociated by ONNX Runtime's kernels):
#: queries, which carry the logit scale (elements up to about 8), 1.9e-6 here and for the shipped model on 2592
#: validation examples; keys, whose run-match part ends with a squared norm (elements up to 26 here, 89 for the
#: shipped model), 3.8e-6 here and 7.6e-6 for the shipped model over the 35,497 validation segments. The bound
#: leaves a margin of about 2.5x here and 1.3x on the shipped model's largest keys (1e-7 of their size).
PARITY_ATOL = 1e-5
TEMPI = (90, 100, 110, 120, 130, 140)


def beat_song(seconds: float, bpm: float, seed: int) -> Waveform:
    """A click track in 4/4 (the downbeat higher and louder) over a chord that changes every bar, at 22050 Hz.

    Returns
    -------
    Waveform
        [shape=(frames, 1), dtype=float32], peak under 1.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * ANALYSIS_RATE)) / ANALYSIS_RATE
    beat = np.floor(t * bpm / 60).astype(int)
    since_beat = t - beat * 60 / bpm
    roots = np.array([220.0, 329.63, 369.99, 293.66]) * 2 ** (rng.integers(-3, 4) / 12)  # I V vi IV, transposed
    root = roots[(beat // 4) % 4]
    chord = sum(np.sin(2 * np.pi * root * ratio * t) for ratio in (1.0, 1.26, 1.5)) / 3
    downbeat = beat % 4 == 0
    click = np.sin(2 * np.pi * np.where(downbeat, 2000.0, 1000.0) * since_beat) * np.exp(-60 * since_beat)
    mono = 0.35 * chord * np.exp(-4 * since_beat) + 0.4 * click * np.where(downbeat, 1.0, 0.5)
    mono += 0.01 * rng.standard_normal(t.size)
    return Waveform(mono[:, None].astype(np.float32), ANALYSIS_RATE)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    songs = tmp_path_factory.mktemp("resynth") / "songs"
    songs.mkdir()
    for i, bpm in enumerate(TEMPI):
        save_audio(songs / f"song{i}.flac", beat_song(40.0, bpm, seed=i))
    return songs


@pytest.fixture(scope="module")
def run(corpus) -> Path:
    """Two epochs on the six songs (4 train, 2 validation), through the CLI, on stand-ins with a candidate
    window of 3 and a lookahead of 4 (the defaults are the true next segment, a window of 1, no lookahead)."""
    run = corpus.parent / "run"
    code = training_main(["fit", "--model", "resynth", str(corpus), "--run-dir", str(run), "--epochs", "2",
                          "--examples-per-song", "16", "--batch-size", "32", "--target", "standin",
                          "--candidate-window", "3", "--candidate-lookahead", "4", "--segments-dir",
                          str(corpus.parent / "segments")])
    assert code == 0
    return run


@pytest.fixture(scope="module")
def exported(run) -> Path:
    out = run.parent / "scorer.onnx"
    assert training_main(["export", str(run), "-o", str(out)]) == 0
    return out


def with_metadata(source: Path, target: Path, **changes: str) -> Path:
    """A copy of an ONNX file with some ``encore.*`` metadata values changed."""
    proto = onnx.load(str(source))
    for prop in proto.metadata_props:
        prop.value = changes.get(prop.key.removeprefix("encore."), prop.value)
    onnx.save(proto, str(target))
    return target


@pytest.mark.slow
def test_fit_reports_the_learned_scorer_beside_the_baselines(run):
    report = json.loads((run / "report.json").read_text())
    assert report["target"] == "standin" and list(report["validation"]) == ["standin", "next"]
    for task in report["validation"].values():
        scorers = task["scorers"]
        assert set(scorers) == {"learned", "most_similar", "learned_and_similar", "chance"}
        assert 0 < task["examples"] <= 32 and task["candidates"] == 32
        for name in ("learned", "most_similar", "learned_and_similar"):
            assert 0.0 <= scorers[name]["top1"] <= scorers[name]["top5"] <= 1.0
            assert 1.0 <= scorers[name]["mean_rank"] <= 32.0
            # No scorer picks better than the best candidate, and none worse than the worst.
            assert task["best_cost"] <= scorers[name]["pick_cost"]
        assert scorers["chance"]["top1"] == pytest.approx(1 / 32)
    assert report["validation"]["next"]["best_cost"] == 0.0
    settings = json.loads((run / "config.json").read_text())
    assert settings["kind"] == "resynth" and len(settings["train_files"]) == 4
    assert settings["model"]["candidate_window"] == 3 and settings["examples"]["target"] == "standin"
    assert settings["model"]["candidate_lookahead"] == 4
    assert not set(settings["train_files"]) & set(settings["validation_files"])
    assert len(json.loads((run / "history.json").read_text())) == 2


@pytest.mark.slow
def test_the_analysis_is_cached_until_a_file_changes(corpus, run):
    files = sorted(corpus.glob("*.flac"))
    cached = segment_files(files, corpus.parent / "segments", workers=1)
    assert cached.analysed == 0 and len(cached.analyses) == len(TEMPI)
    assert all(a.mode == "beats" and a.meter == 4 for a in cached.analyses.values())
    # Rewriting a song (new modification time) analyses that one again.
    changed = corpus.parent / "changed"
    changed.mkdir()
    shutil.copy(files[0], changed / files[0].name)
    again = segment_files([changed / files[0].name], corpus.parent / "segments", workers=1)
    assert again.analysed == 1
    np.testing.assert_array_equal(again.analyses[changed / files[0].name].features,
                                  cached.analyses[files[0]].features)


def test_examples_put_the_next_segment_first_and_negatives_of_its_phase():
    n = 200
    features = np.zeros((n, FEATURE_DIM), np.float32)
    features[:, 0] = np.arange(n)  # each segment says which it is
    analysis = Analysis(bounds=np.arange(n + 1) * 11025, features=features, phase=np.arange(n) % 4, meter=4,
                        mode="beats", tempo_bpm=120.0, pulse_clarity=0.8, frames=n * 11025)
    examples = draw_examples([analysis], ScorerConfig(), ExampleConfig(examples_per_song=50, target="next"),
                             np.random.default_rng(0))
    current = examples.current[:, 0].astype(int)
    chosen = examples.candidates[:, :, 0].astype(int)
    assert len(examples) == 50 and np.all(chosen[:, 0] == current + 1)
    assert np.all(current >= 4) and np.all(current + 1 < n - 1)
    negatives = chosen[:, 1:]
    assert np.all(negatives % 4 == (current[:, None] + 1) % 4) and examples.same_phase.all()
    assert not np.any((negatives == chosen[:, :1]) | (negatives == current[:, None]))
    assert all(len(set(row)) == len(row) for row in negatives)
    # The "most similar" baseline compares each candidate's own features, whatever else its row holds: the same
    # draws with a lookahead score the same.
    np.testing.assert_array_equal(examples.own[:, :, 0], chosen)
    ahead = draw_examples([analysis], ScorerConfig(candidate_lookahead=16),
                          ExampleConfig(examples_per_song=50, target="next"), np.random.default_rng(0))
    np.testing.assert_array_equal(most_similar_scores(ahead, target="next"),
                                  most_similar_scores(examples, target="next"))
    # The context is the song in its original order up to t, newest last (32 segments of 0.5 s fit in 20 s);
    # rows before the song's start are missing (all zero).
    present = examples.context[:, :, FEATURE_DIM] > 0
    expected = current[:, None] - np.arange(31, -1, -1)[None, :]
    np.testing.assert_array_equal(present, expected >= 0)
    np.testing.assert_array_equal(examples.context[:, :, 0], np.where(present, expected, 0))


def test_stand_in_examples_rank_the_memory_by_how_its_continuation_matches_the_truth():
    # A song whose 8-segment phrase repeats with a slow drift in timbre: the best stand-in for what follows t is
    # a segment heard whole phrases earlier at t + 1's place in the phrase, the most recent one (least drift).
    n, period, which = 160, 8, FEATURE_NAMES.index("onset")  # the onset column is not in the cost
    features = np.zeros((n, FEATURE_DIM), np.float32)
    features[:, which] = np.arange(n)  # each segment says which it is
    pattern = np.random.default_rng(3).normal(size=(period, 32)).astype(np.float32)
    features[:, TIMBRE] = pattern[np.arange(n) % period] + 0.002 * np.arange(n)[:, None]
    analysis = Analysis(bounds=np.arange(n + 1) * 11025, features=features, phase=np.arange(n) % 4, meter=4,
                        mode="beats", tempo_bpm=120.0, pulse_clarity=0.8, frames=n * 11025)
    config = ExampleConfig(examples_per_song=40, target="standin", standin_segments=16)  # t from 32 to 142
    examples = draw_examples([analysis], ScorerConfig(), config, np.random.default_rng(0))
    assert len(examples) == 40
    chosen = examples.candidates[:, :, which].astype(int)
    current = examples.current[:, which].astype(int)
    # Candidates come from the memory before t less its last 8 segments, and keep the bar phase of t + 1.
    assert np.all(current >= 32) and np.all(chosen <= current[:, None] - 8) and np.all(chosen >= 1)
    # When the memory holds 32 of them; a shorter memory tops up with other phases.
    full = examples.same_phase
    assert 0 < full.sum() < len(examples) and np.all(current[full] - 8 >= 4 * 32)
    assert np.all(chosen[full] % 4 == (current[full, None] + 1) % 4)
    # Sorted by cost, the cheapest first; the target is a distribution that puts the most weight there.
    assert np.all(np.diff(examples.costs, axis=1) >= 0)
    np.testing.assert_allclose(examples.targets.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(np.argmax(examples.targets, axis=1) == 0) and np.all(np.diff(examples.targets, axis=1) <= 1e-7)
    # The cheapest candidate sits where t + 1 sits in the phrase, whenever one was drawn.
    in_phrase = (chosen - (current[:, None] + 1)) % period == 0
    drawn = in_phrase.any(axis=1)
    assert drawn.sum() > 20 and np.all(in_phrase[drawn, 0])
    # The cost is the continuation's mean distance: a whole phrase earlier is off by the drift only.
    t = 100
    costs = continuation_costs(analysis, np.array([t + 1 - period, t + 2 - period]), t, 16)
    assert costs[0] == pytest.approx(10 * 0.002 * period, rel=1e-3) and costs[1] > 10 * costs[0]
    # Each candidate carries the segment before it, for the jukebox-style baseline.
    np.testing.assert_array_equal(examples.previous[:, :, which], chosen - 1)


def test_candidate_rows_hold_the_segments_leading_into_each_candidate():
    n = 10
    features = np.tile(np.arange(n, dtype=np.float32)[:, None], (1, FEATURE_DIM))
    analysis = Analysis(bounds=np.arange(n + 1) * 100, features=features, phase=np.zeros(n, int), meter=1,
                        mode="grid", tempo_bpm=0.0, pulse_clarity=0.0, frames=n * 100)
    rows = candidate_rows(analysis, np.array([0, 1, 5]), 3)
    assert rows.shape == (3, 3 * FEATURE_DIM) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:, ::FEATURE_DIM], [[0, 0, 0], [0, 0, 1], [3, 4, 5]])
    np.testing.assert_array_equal(candidate_rows(analysis, np.arange(n), 1), features)
    # A lookahead adds the mean of the segments from the candidate on, stopping at the memory's end (the
    # candidate itself at least).
    ahead = candidate_rows(analysis, np.array([0, 5, 8, 9]), 1, 3)
    assert ahead.shape == (4, 2 * FEATURE_DIM) == (4, candidate_dim(1, 3))
    np.testing.assert_allclose(ahead[:, FEATURE_DIM], [1, 6, 8.5, 9])
    np.testing.assert_allclose(candidate_rows(analysis, np.array([0, 5, 8]), 2, 3, memory_end=6)[:, -1],
                               [1, 5.5, 8])


def test_stand_in_lookahead_never_reads_past_the_segment_just_heard():
    n = 120
    features = np.zeros((n, FEATURE_DIM), np.float32)
    features[:, 0] = np.arange(n)
    analysis = Analysis(bounds=np.arange(n + 1) * 11025, features=features, phase=np.arange(n) % 4, meter=4,
                        mode="beats", tempo_bpm=120.0, pulse_clarity=0.8, frames=n * 11025)
    examples = draw_examples([analysis], ScorerConfig(candidate_lookahead=16),
                             ExampleConfig(examples_per_song=30, target="standin"), np.random.default_rng(0))
    chosen = examples.candidates[:, :, 0].astype(int)
    current = examples.current[:, 0].astype(int)
    last = np.minimum(chosen + 15, current[:, None])
    np.testing.assert_allclose(examples.candidates[:, :, FEATURE_DIM], (chosen + last) / 2)
    assert np.any(chosen + 15 > current[:, None])  # some candidates' runs were cut at t


@pytest.mark.parametrize("only", [False, True])
def test_the_run_match_scores_minus_a_scaled_squared_distance(only):
    # Untrained, the projection weights timbre 1 and harmony 2: candidates whose lookahead is nearer the mean of
    # the last 8 segments score higher by s |w (u - v)|^2, the same for every query up to a per-query constant.
    scorer = build_scorer(ScorerConfig(candidate_lookahead=16, run_match_only=only))
    rng = np.random.default_rng(0)
    context = rng.standard_normal((2, 32, FEATURE_DIM + 1)).astype(np.float32)
    context[..., FEATURE_DIM] = 1.0
    context[1, :28, :] = 0.0  # a short history: 4 rows present
    candidates = rng.standard_normal((2, 6, 2 * FEATURE_DIM)).astype(np.float32)
    query, keys = (np.asarray(x) for x in scorer([context, candidates]))
    cosine = 0 if only else 64
    assert query.shape == (2, cosine + FEATURE_DIM + 1) and keys.shape == (2, 6, cosine + FEATURE_DIM + 1)
    match = np.einsum("bd,bmd->bm", query[:, cosine:], keys[:, :, cosine:])
    recent = np.stack([context[0, -8:, :FEATURE_DIM].mean(axis=0), context[1, -4:, :FEATURE_DIM].mean(axis=0)])
    weight = np.zeros(FEATURE_DIM)
    weight[TIMBRE], weight[HARMONY] = 1.0, 2.0
    distance = np.sum((weight * (candidates[:, :, FEATURE_DIM:] - recent[:, None, :])) ** 2, axis=2)
    scale = -query[:, -1:]
    assert np.all(scale > 0)
    constant = scale * np.sum((weight * recent) ** 2, axis=1, keepdims=True)
    np.testing.assert_allclose(match, -scale * distance + constant, rtol=1e-4, atol=1e-3)
    with pytest.raises(ConfigError, match="needs a candidate lookahead"):
        ScorerConfig(run_match_only=True)


def test_the_report_adds_learned_and_rule_scores_as_the_beam_search_does():
    similar = -np.array([[1.0, 2.0, 4.0], [3.0, 1.0, 2.0]])  # minus distances; medians 2 and 2
    flat = engine_scores(np.zeros((2, 3)), similar)
    np.testing.assert_allclose(flat - flat[:, :1], -Sequencer.WEIGHT_JOIN * (-similar - -similar[:, :1]) / 2.0)
    # Logits count through their softmax: a constant per row changes nothing, a sharp favourite wins.
    np.testing.assert_allclose(engine_scores(np.full((2, 3), 7.0), similar), flat)
    sharp = engine_scores(np.array([[0.0, 0.0, 50.0], [0.0, 0.0, 0.0]]), similar)
    assert list(np.argmax(sharp, axis=1)) == [2, 1]


def test_rank_metrics_break_ties_at_random_in_expectation():
    scores = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    metrics = rank_metrics(scores)
    assert metrics["top1"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert metrics["mean_rank"] == pytest.approx((1 + 2.5 + 1.5) / 3)  # 1 above and 1 tied: rank 2 or 3


@pytest.mark.slow
def test_keras_and_onnx_runtime_agree(corpus, run, exported):
    scorer_keras, config, _ = load_resynth_run(run)
    analyses = list(segment_files(sorted(corpus.glob("*.flac")), corpus.parent / "segments").analyses.values())
    examples = draw_examples(analyses, config, ExampleConfig(examples_per_song=11), np.random.default_rng(1))
    query, keys = scorer_keras.predict([examples.context, examples.candidates], verbose=0)
    scorer = SegmentScorer(exported)
    np.testing.assert_allclose(scorer.queries(examples.context), query, atol=PARITY_ATOL, rtol=0)
    assert examples.candidates.shape[2] == 4 * FEATURE_DIM == scorer.candidate_dim
    every = np.concatenate([candidate_rows(a, np.arange(a.segments), 3, 4) for a in analyses])
    (_, every_key) = scorer_keras.predict([examples.context[:1], every[None]], verbose=0)
    np.testing.assert_allclose(scorer.keys(every), every_key[0], atol=PARITY_ATOL, rtol=0)


@pytest.mark.slow
def test_the_scorer_answers_queries_and_keys(exported):
    scorer = SegmentScorer(exported)
    c = scorer.contract
    assert (c.generator, c.context_segments, c.feature_spec, c.sample_rate) == ("resynth", 32, FEATURE_SPEC, 22050)
    assert (c.chunk_s, c.horizon_s, c.context_s) == (10.0, 10.0, 20.0)
    assert scorer.embedding == 64 + FEATURE_DIM + 1  # the cosine's 64, the run match's projection and its norm
    assert c.candidate_window == 3 and c.candidate_lookahead == 4 and scorer.candidate_dim == 4 * FEATURE_DIM
    assert scorer.name == "scorer" and scorer.load_seconds > 0
    rng = np.random.default_rng(0)
    queries = scorer.queries(rng.standard_normal((3, 32, FEATURE_DIM + 1)).astype(np.float32))
    keys = scorer.keys(rng.standard_normal((700, 4 * FEATURE_DIM)).astype(np.float32))
    assert queries.shape == (3, 112) and keys.shape == (700, 112) and queries.dtype == keys.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(keys[:, :64], axis=1), 1.0, atol=1e-4)
    with pytest.raises(ModelContractError, match=r"contexts must be \(batch, 32, 48\)"):
        scorer.queries(np.zeros((32, 48), np.float32))
    with pytest.raises(ModelContractError, match=r"features must be \(segments, 188\)"):
        scorer.keys(np.zeros((5, FEATURE_DIM), np.float32))


@pytest.mark.slow
def test_the_scorer_refuses_what_is_not_a_resynth_scorer(exported, tmp_path, monkeypatch):
    with pytest.raises(ModelContractError, match="generator 'seed', expected 'resynth'"):
        SegmentScorer(DEFAULT_MODEL)
    with pytest.raises(ModelContractError, match="feature_spec 'segment-features-v0'"):
        SegmentScorer(with_metadata(exported, tmp_path / "old.onnx", feature_spec="segment-features-v0"))
    with pytest.raises(ModelContractError, match=r"graph does not match its contract: input 'context' should be "
                                                 r"\(batch, 16, 48\), graph \('unk__\d+', 32, 48\)"):
        SegmentScorer(with_metadata(exported, tmp_path / "short.onnx", context_segments="16"))
    with pytest.raises(ModelContractError, match=r"input 'candidates' should be \(batch, segments, 94\)"):
        SegmentScorer(with_metadata(exported, tmp_path / "window.onnx", candidate_window="1"))
    with pytest.raises(ModelContractError, match=r"input 'candidates' should be \(batch, segments, 141\)"):
        SegmentScorer(with_metadata(exported, tmp_path / "nolookahead.onnx", candidate_lookahead="0"))
    with pytest.raises(ModelContractError, match=r"candidate_lookahead 65 \(0 to 64\)"):
        SegmentScorer(with_metadata(exported, tmp_path / "farahead.onnx", candidate_lookahead="65"))
    with pytest.raises(ModelContractError, match=r"candidate_window 0 \(1 to 16\)"):
        SegmentScorer(with_metadata(exported, tmp_path / "nowindow.onnx", candidate_window="0"))
    with pytest.raises(ModelContractError, match="contract output 'embedding'"):
        SegmentScorer(with_metadata(exported, tmp_path / "renamed.onnx", output_name="embedding"))
    with pytest.raises(ModelContractError, match="a resynth model, not a seed generator"):
        Continuator(exported)
    monkeypatch.setenv("ENCORE_RESYNTH_MODEL", str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelContractError, match="missing.onnx: no such model file .*ENCORE_RESYNTH_MODEL"):
        SegmentScorer()


@pytest.mark.slow
def test_report_scores_a_resynth_run_again_on_both_tasks(run, capsys):
    before = json.loads((run / "report.json").read_text())
    assert training_main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "validation, standin (trained on: standin)" in out and "validation, next" in out
    after = json.loads((run / "report.json").read_text())
    assert after["epochs"] == before["epochs"] and list(after["validation"]) == list(before["validation"])
    for task, scored in after["validation"].items():
        for scorer, metrics in scored["scorers"].items():
            assert metrics == pytest.approx(before["validation"][task]["scorers"][scorer], rel=1e-5)


def test_the_shipped_scorer_is_small_and_loads():
    assert DEFAULT_RESYNTH_MODEL.stat().st_size < 5e6
    scorer = SegmentScorer(DEFAULT_RESYNTH_MODEL)
    assert scorer.contract.generator == "resynth" and "music21" in scorer.contract.corpus
    keys = scorer.keys(np.zeros((5, scorer.candidate_dim), np.float32))
    assert keys.shape == (5, scorer.embedding)
