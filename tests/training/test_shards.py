"""Sharded TFRecord corpus and the streaming pipeline: round trip, split, windows, augmentation, the bench.

Songs here are ramps that carry their identity: song i holds ``i * 4096 + (n % 2048) - 16384`` (int16 units) at
frame n, so every sample of a window says which song it came from (``(v + 16384) // 4096``) and where (its
neighbours differ by one, modulo 2048). Rates are 1000-2000 Hz and windows 6 s, so the whole file runs in seconds
apart from the one bench run through the CLI.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile

tf = pytest.importorskip("tensorflow", reason="training needs the [train] extra")

from engine.audio import load_audio, to_model_input  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from training.cli import main as training_main  # noqa: E402
from training.corpus.split import DataConfig, list_audio_files, split_files  # noqa: E402
from training.seed.data import Augmentation, datasets_for, make_dataset, make_shard_dataset  # noqa: E402
from training.seed.model import ModelConfig  # noqa: E402
from training.seed.shards import read_manifest, write_shards  # noqa: E402

RATE = 1000
#: 4 s in, 2 s out, 1 s chunks: a 6000-sample window.
MODEL = ModelConfig(sample_rate=RATE, context_s=4.0, horizon_s=2.0, widths=(4, 4, 4, 4))
WINDOW = 6 * RATE
#: Song i lasts this many frames; song 7 is shorter than a window (looped to one) and a multiple of the ramp's
#: period, so its loop keeps the ramp whole.
LENGTHS = [7000 + 1000 * i for i in range(7)] + [4096]
PERIOD = 2048


def ramp_song(index: int, frames: int) -> np.ndarray:
    """[shape=(frames,), dtype=int16]: song ``index``'s identity ramp."""
    return (index * 4096 + np.arange(frames) % PERIOD - 16384).astype(np.int16)


def song_of(windows: np.ndarray) -> np.ndarray:
    """The song index of every sample of float windows."""
    return np.floor((np.round(windows * 32768) + 16384) / 4096).astype(int)


def is_contiguous(window: np.ndarray) -> bool:
    """True when a flattened float window is one unbroken stretch of a ramp song."""
    steps = np.diff(np.round(window.ravel() * 32768).astype(int))
    return bool(np.all(steps % PERIOD == 1))


def windows_of(dataset) -> tuple[np.ndarray, np.ndarray]:
    contexts, continuations = zip(*((c.numpy(), y.numpy()) for c, y in dataset), strict=True)
    return np.concatenate(contexts), np.concatenate(continuations)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Eight ramp songs (1000 Hz mono FLAC), a corrupt file and an empty one, sharded through the CLI."""
    root = tmp_path_factory.mktemp("shards")
    songs = root / "songs"
    songs.mkdir()
    for index, frames in enumerate(LENGTHS):
        soundfile.write(str(songs / f"song{index}.flac"), ramp_song(index, frames), RATE, subtype="PCM_16")
    (songs / "broken.flac").write_bytes(b"fLaC this is not audio")
    (songs / "empty.wav").write_bytes(b"")
    assert training_main(["shards", str(songs), "--sample-rate", str(RATE), "--songs-per-shard", "2", "-q"]) == 0
    return songs


@pytest.fixture(scope="module")
def manifest(corpus):
    return read_manifest(corpus / "shards", sample_rate=RATE)


def test_round_trip_and_manifest(corpus, manifest):
    stored = {}
    for shard in manifest.shards:
        for record in tf.data.TFRecordDataset(str(shard.path)):
            example = tf.train.Example.FromString(record.numpy()).features.feature
            name = example["path"].bytes_list.value[0].decode()
            pcm = np.frombuffer(example["audio"].bytes_list.value[0], "<i2")
            assert example["frames"].int64_list.value[0] == pcm.size
            assert example["sample_rate"].int64_list.value[0] == RATE
            stored[name] = (shard.split, pcm)
    assert sorted(stored) == [f"song{i}.flac" for i in range(8)]
    for index, frames in enumerate(LENGTHS):  # 16-bit mono at the shard rate: copied bit for bit
        np.testing.assert_array_equal(stored[f"song{index}.flac"][1], ramp_song(index, frames))

    raw = json.loads((corpus / "shards" / "manifest.json").read_text())
    assert raw["format"] == "encore-shards" and raw["version"] == 1 and raw["sample_rate"] == RATE
    assert raw["source"] == str(corpus.resolve())
    assert raw["summary"]["songs"] == 8 and raw["summary"]["skipped"] == 2
    assert raw["summary"]["hours"] == pytest.approx(sum(LENGTHS) / RATE / 3600, abs=1e-3)
    assert all(1 <= s["songs"] <= 2 and s["frames"] == sum(LENGTHS[int(f[4])] for f in s["files"])
               for s in raw["shards"])

    # The split is split_files's, by file: the same sides as the file pipeline, no song on both.
    train, validation = split_files(list_audio_files(corpus), DataConfig(files=0))
    train_names, validation_names = set(manifest.files("train")), set(manifest.files("validation"))
    assert not train_names & validation_names
    assert train_names <= {p.name for p in train} and validation_names <= {p.name for p in validation}
    assert all(stored[name][0] == "train" for name in train_names)
    assert manifest.songs("train") + manifest.songs("validation") == 8


def test_corrupt_files_are_skipped_and_listed(manifest):
    skipped = {entry["path"]: entry["reason"] for entry in manifest.skipped}
    assert sorted(skipped) == ["broken.flac", "empty.wav"]
    assert "cannot decode" in skipped["broken.flac"] and "empty" in skipped["empty.wav"]
    assert "2 files skipped" in manifest.summary()


def test_other_rates_and_channels_are_resampled_within_int16_precision(tmp_path):
    rng = np.random.default_rng(4)
    t = np.arange(3 * 2000) / 2000
    stereo = 0.5 * np.stack([np.sin(2 * np.pi * 110 * t), np.sin(2 * np.pi * 165 * t)], axis=1)
    stereo += 0.01 * rng.standard_normal(stereo.shape)
    soundfile.write(str(tmp_path / "a.wav"), stereo.astype(np.float32), 2000, subtype="FLOAT")
    soundfile.write(str(tmp_path / "b.wav"), stereo.astype(np.float32), 2000, subtype="FLOAT")
    write_shards(list_audio_files(tmp_path), tmp_path / "out", sample_rate=RATE)
    expected = to_model_input(load_audio(tmp_path / "a.wav"), RATE)
    [shard] = [s for s in read_manifest(tmp_path / "out").shards if s.files == ("a.wav",)]
    record = next(iter(tf.data.TFRecordDataset(str(shard.path))))
    audio = tf.train.Example.FromString(record.numpy()).features.feature["audio"].bytes_list.value[0]
    pcm = np.frombuffer(audio, "<i2") / 32768
    assert pcm.size == expected.size == 3 * RATE
    np.testing.assert_allclose(pcm, expected, atol=0.5 / 32768 + 1e-7)  # rounding to the nearest step


def test_writing_again_is_idempotent_and_resumes(corpus, tmp_path):
    out = tmp_path / "shards"
    files = list_audio_files(corpus)
    first = write_shards(files, out, sample_rate=RATE, songs_per_shard=3).read_bytes()
    shard_bytes = {p.name: p.read_bytes() for p in out.glob("*.tfrecord")}
    victim = sorted(shard_bytes)[0]
    (out / victim).unlink()  # as if interrupted before it was written
    lines = []
    assert write_shards(files, out, sample_rate=RATE, songs_per_shard=3, progress=lines.append).read_bytes() == first
    assert {p.name: p.read_bytes() for p in out.glob("*.tfrecord")} == shard_bytes
    rewritten = [line for line in lines if "tfrecord" in line and "already written" not in line]
    assert len(rewritten) == 1 and victim in rewritten[0]
    # Other settings: the shards of the earlier set are removed, not left to be read.
    write_shards(files, out, sample_rate=RATE, songs_per_shard=8)
    assert sorted(p.name for p in out.glob("*.tfrecord")) == ["train-00000-of-00001.tfrecord",
                                                               "validation-00000-of-00001.tfrecord"]


def test_pipeline_shapes_and_determinism(manifest):
    def batches(seed):
        dataset = make_shard_dataset(manifest.paths("train"), MODEL, batch_size=3, windows_per_song=2, shuffle=True,
                                     seed=seed)
        return dataset, [(c.numpy(), y.numpy()) for c, y in dataset]

    dataset, first = batches(7)
    context_spec, continuation_spec = dataset.element_spec
    assert context_spec.shape.as_list() == [None, 4, RATE] and context_spec.dtype == tf.float32
    assert continuation_spec.shape.as_list() == [None, 2, RATE] and continuation_spec.dtype == tf.float32
    assert all(c.shape[0] == 3 for c, _ in first[:-1]) and all(c.shape[0] == y.shape[0] for c, y in first)
    again = batches(7)[1]
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    other = batches(8)[1]
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=False))
    # A new epoch draws new windows.
    second_epoch = [c.numpy() for c, _ in dataset]
    assert not all(np.array_equal(a[0], b) for a, b in zip(first, second_epoch, strict=False))


def test_windows_come_whole_from_the_right_songs(manifest):
    dataset = make_shard_dataset(manifest.paths("train"), MODEL, batch_size=4, windows_per_song=3, shuffle=True,
                                 seed=1)
    contexts, continuations = windows_of(dataset)
    windows = np.concatenate([contexts.reshape(len(contexts), -1), continuations.reshape(len(contexts), -1)], 1)
    train_songs = {int(name[4]) for name in manifest.files("train")}
    songs = song_of(windows)
    assert np.all(songs == songs[:, :1])  # one song per window, context and continuation alike
    assert set(songs[:, 0]) == train_songs
    assert all(is_contiguous(w) for w in windows)
    # windows_per_song caps at what fits a horizon apart: 1 + (frames - window) // horizon, at least 1.
    looped = {i: LENGTHS[i] if LENGTHS[i] >= WINDOW else -(-WINDOW // LENGTHS[i]) * LENGTHS[i] for i in train_songs}
    expected = {i: max(1, min(3, 1 + (looped[i] - WINDOW) // 2000)) for i in train_songs}
    found = {i: int(np.sum(songs[:, 0] == i)) for i in train_songs}
    assert found == expected


def test_input_pipelines_read_disjoint_shards(manifest):
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker)
        dataset = make_shard_dataset(manifest.paths("train"), MODEL, batch_size=2, windows_per_song=1, shuffle=True,
                                     seed=0, input_context=context)
        seen.append(set(song_of(windows_of(dataset)[0])[:, 0, 0]))
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == {int(name[4]) for name in manifest.files("train")}


def test_validation_windows_equal_the_file_pipelines(corpus, manifest):
    shards = make_shard_dataset(manifest.paths("validation"), MODEL, batch_size=2, windows_per_song=2,
                                shuffle=False)
    files = [corpus / name for name in manifest.files("validation")]
    cached = make_dataset(files, MODEL, batch_size=2, windows_per_song=2, shuffle=False)

    def windows(dataset):
        contexts, continuations = windows_of(dataset)
        flat = np.concatenate([contexts.reshape(len(contexts), -1), continuations.reshape(len(contexts), -1)], 1)
        return flat[np.lexsort(flat[:, :4].T[::-1])]

    np.testing.assert_array_equal(windows(shards), windows(cached))


def test_augmentation_gain_and_polarity_within_bounds(manifest):
    def windows(augment):
        dataset = make_shard_dataset(manifest.paths("train"), MODEL, batch_size=4, windows_per_song=2, shuffle=True,
                                     seed=3, augment=augment)
        contexts, continuations = windows_of(dataset)
        return np.concatenate([contexts.reshape(len(contexts), -1), continuations.reshape(len(contexts), -1)], 1)

    plain = windows(False)
    augmented = windows(Augmentation(gain_db=6.0, polarity=True, speed=0.0))
    gains = np.sum(augmented * plain, axis=1) / np.sum(plain * plain, axis=1)
    np.testing.assert_allclose(augmented, plain * gains[:, None], rtol=1e-5, atol=1e-7)  # one gain per window
    assert np.all(np.abs(gains) >= 10 ** (-6 / 20) - 1e-6) and np.all(np.abs(gains) <= 10 ** (6 / 20) + 1e-6)
    assert (gains < 0).any() and (gains > 0).any()
    assert np.std(np.abs(gains)) > 0.05
    # A large gain stops at full scale instead of clipping.
    loud = windows(Augmentation(gain_db=24.0, polarity=False, speed=0.0))
    assert np.max(np.abs(loud)) <= 1.0 + 1e-6 and np.max(np.abs(loud)) > 0.99


def test_varispeed_reads_one_song_at_a_nearby_rate(manifest):
    dataset = make_shard_dataset(manifest.paths("train"), MODEL, batch_size=4, windows_per_song=2, shuffle=True,
                                 seed=2, augment=Augmentation(gain_db=0.0, polarity=False, speed=0.05))
    contexts, continuations = windows_of(dataset)
    windows = np.concatenate([contexts.reshape(len(contexts), -1), continuations.reshape(len(contexts), -1)], 1)
    songs = song_of(windows)
    assert np.all(songs == songs[:, :1])
    # Between the ramp's wraps a window rises by its rate per sample.
    steps = np.diff(windows * 32768, axis=1)
    rates = np.array([np.median(row[(row > 0) & (row < 2)]) for row in steps])
    assert np.all((rates >= 0.95 - 0.01) & (rates <= 1.05 + 0.01)) and np.ptp(rates) > 0.01


def test_datasets_for_picks_shards_when_present(corpus, manifest, tmp_path):
    config = DataConfig(files=0, windows_per_song=1)
    for folder in (corpus, corpus / "shards"):
        train, validation, description = datasets_for(folder, MODEL, config, batch_size=2, validation_batch_size=1)
        assert description.kind == "shards" and "shards" in str(description)
        assert sorted(description.train_files) == sorted(str(corpus.resolve() / n) for n in manifest.files("train"))
        context, continuation = next(iter(validation))
        assert context.shape == (1, 4, RATE) and continuation.shape == (1, 2, RATE)
    # A folder of audio alone goes through the file pipeline.
    for index in range(3):
        soundfile.write(str(tmp_path / f"s{index}.flac"), ramp_song(index, 7000), RATE, subtype="PCM_16")
    train, _, description = datasets_for(tmp_path, MODEL, config, batch_size=2, validation_batch_size=1)
    assert description.kind == "files" and len(description.train_files) == 2
    assert next(iter(train))[0].shape == (2, 4, RATE)


def test_mismatched_or_broken_manifests_are_refused(corpus, manifest, tmp_path):
    def refusal(path, **kwargs) -> str:
        with pytest.raises(ConfigError) as error:
            read_manifest(path, **kwargs)
        assert "\n" not in str(error.value)
        return str(error.value)

    assert "shards are at 1000 Hz but the model runs at 22050 Hz" in refusal(corpus / "shards", sample_rate=22050)
    with pytest.raises(ConfigError, match="1000 Hz but the model runs at 2000 Hz"):
        datasets_for(corpus, ModelConfig(sample_rate=2000), DataConfig(), batch_size=1, validation_batch_size=1)
    assert "no shard manifest" in refusal(tmp_path)

    (tmp_path / "manifest.json").write_text(json.dumps({"version": 1, "items": []}))
    assert "not a shard manifest (a corpus manifest)" in refusal(tmp_path)
    with pytest.raises(ConfigError, match="not a shard manifest"):  # and shards never overwrite it
        write_shards(list_audio_files(corpus), tmp_path, sample_rate=RATE)

    raw = json.loads((corpus / "shards" / "manifest.json").read_text())
    copy = tmp_path / "copy"
    copy.mkdir()
    for shard in manifest.shards:
        (copy / shard.path.name).write_bytes(shard.path.read_bytes())
    (copy / "manifest.json").write_text(json.dumps({**raw, "version": 99}))
    assert "version 99" in refusal(copy)
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "sample_rate"}))
    assert "missing 'sample_rate'" in refusal(copy)
    (copy / "manifest.json").write_text(json.dumps(raw))
    assert read_manifest(copy).songs() == 8
    victim = copy / raw["shards"][0]["path"]
    victim.write_bytes(victim.read_bytes()[:-10])
    assert "truncated" in refusal(copy)
    victim.unlink()
    assert "is missing" in refusal(copy)


@pytest.mark.slow
def test_bench_on_synthetic_shards_prints_three_figures_and_a_ratio(capsys):
    code = training_main(["bench", "--sample-rate", "2000", "--widths", "4,4,4,4", "--batch-size", "2",
                          "--batches", "3", "--warmup", "1", "--songs", "5", "--song-seconds", "31"])
    out = capsys.readouterr().out
    assert code == 0, out
    figures = {}
    for name, unit in (("pipeline", "examples/s"), ("step data", "ms"), ("step cached", "ms"), ("ratio", "")):
        match = re.search(rf"^{name}\s+([0-9.]+)\s*{unit}", out, re.MULTILINE)
        assert match, out
        figures[name] = float(match.group(1))
    assert all(value > 0 for value in figures.values())
    assert figures["ratio"] == pytest.approx(figures["step data"] / figures["step cached"], rel=0.01)


@pytest.mark.parametrize("no_shards", [False, True], ids=["shards", "no-shards"])
def test_corpus_command_also_writes_shards(tmp_path, monkeypatch, no_shards):
    def fake_build_corpus(out_dir, **kwargs):  # the corpus's layout, without rendering anything
        (out_dir := tmp_path / "corpus" / "audio" / "music21").mkdir(parents=True)
        for index in range(3):
            soundfile.write(str(out_dir / f"piece{index}.flac"), ramp_song(index, 7000), RATE, subtype="PCM_16")
        manifest = tmp_path / "corpus" / "manifest.json"
        manifest.write_text(json.dumps({"version": 1, "sample_rate": RATE, "items": [],
                                        "summary": {"by_source": {"music21": {"items": 3, "hours": 0.01}}}}))
        return manifest

    monkeypatch.setattr("training.corpus.build.build_corpus", fake_build_corpus)
    assert training_main(["corpus", str(tmp_path / "corpus"), *(["--no-shards"] if no_shards else [])]) == 0
    assert (tmp_path / "corpus" / "shards").exists() != no_shards
    if not no_shards:
        shards = read_manifest(tmp_path / "corpus" / "shards", sample_rate=RATE)
        assert shards.songs() == 3 and shards.files("train")[0].startswith("audio/music21/")
        assert json.loads((tmp_path / "corpus" / "shards" / "manifest.json").read_text())["corpus"] == \
            "music21: 3 pieces 0.0 h"


def test_bench_and_shards_mistakes_are_one_line(tmp_path, capsys):
    assert training_main(["bench", str(tmp_path)]) == 2
    assert "no shards" in capsys.readouterr().err
    assert training_main(["shards", str(tmp_path / "nothing")]) == 2
    assert "not a folder of audio files" in capsys.readouterr().err
