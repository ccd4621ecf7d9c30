"""The training side: the paper's model as specified, and the whole path from audio folder to a song extended
through ONNX by the engine."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

keras = pytest.importorskip("keras", reason="training needs the [train] extra")

from engine.audio import load_audio, save_audio  # noqa: E402
from engine.cli import main as engine_main  # noqa: E402
from engine.continuator import Continuator  # noqa: E402
from tests.conftest import synthetic_song  # noqa: E402
from training.cli import main as training_main  # noqa: E402
from training.seed.fit import load_run  # noqa: E402
from training.seed.model import HistoryMix, ModelConfig, Unit, build_model, parameter_count  # noqa: E402

#: Largest |Keras - ONNX Runtime| seen on the same input: 2.3e-8 on the compact preset at 22050 Hz (float32
#: sums over 22050 inputs reassociated by a different kernel). The bound leaves a 40x margin.
PARITY_ATOL = 1e-6


def test_paper_preset_counts():
    paper = ModelConfig(preset="paper")
    # 31 units of 12,899,682 parameters (hidden stack at 512/256/128/64) plus 316 in the history mixers.
    assert parameter_count(paper) == 399_890_458
    small = ModelConfig(preset="paper", sample_rate=1000, widths=(6, 5, 4, 3))
    model = build_model(small)
    assert model.count_params() == parameter_count(small)
    units = [layer for layer in model.layers if isinstance(layer, Unit)]
    assert len(units) == 31
    assert [u.steps for u in units] == [*range(1, 21), 20, *range(1, 11)]


def test_compact_preset_shares_units_and_ships_under_50_mb():
    compact = ModelConfig(preset="compact")
    assert parameter_count(compact) * 4 < 50e6
    small = ModelConfig(preset="compact", sample_rate=1000, widths=(6, 5, 4, 3))
    model = build_model(small)
    units = [layer for layer in model.layers if isinstance(layer, Unit)]
    assert sorted(u.name for u in units) == ["context_block", "decoder", "encoder"]
    assert model.count_params() == parameter_count(small)


def test_history_mix_is_per_sample_across_the_history():
    mix = HistoryMix(3)
    history = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) - 10
    mix.build(history.shape)
    mix.mix.set_weights([np.array([[1.0], [10.0], [100.0]], np.float32), np.zeros(1, np.float32)])
    out = np.asarray(mix(history))
    weighted = history[:, 0] + 10 * history[:, 1] + 100 * history[:, 2]
    expected = np.where(weighted > 0, weighted, 0.3 * weighted)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny compact model trained two epochs on synthetic songs, through the CLI."""
    root = tmp_path_factory.mktemp("training")
    songs = root / "songs"
    songs.mkdir()
    for i in range(7):
        save_audio(songs / f"song{i}.flac", synthetic_song(32.0, 8000, channels=1, seed=i))
    run = root / "run"
    code = training_main(["fit", str(songs), "--run-dir", str(run), "--preset", "compact", "--widths", "8,8,4,4",
                          "--sample-rate", "8000", "--epochs", "2", "--files", "0", "--windows-per-song", "2"])
    assert code == 0
    return run


@pytest.mark.slow
def test_fit_writes_a_run(trained_run):
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history) == 2 and all(np.isfinite(row["loss"]) and np.isfinite(row["val_loss"]) for row in history)
    settings = json.loads((trained_run / "config.json").read_text())
    assert len(settings["train_files"]) == 5 and len(settings["validation_files"]) == 2
    assert not set(settings["train_files"]) & set(settings["validation_files"])


@pytest.mark.slow
@pytest.mark.parametrize("large", [False, True], ids=["onnx", "onnx+external-data"])
def test_export_parity_and_contract(trained_run, tmp_path, large):
    from training.seed.export import export

    path = export(trained_run, tmp_path / "tiny.onnx", large_model=large)
    assert (tmp_path / "tiny.onnx.data").exists() == large
    model, config, _ = load_run(trained_run)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (0.2 * np.random.default_rng(3).standard_normal((2, *Continuator(path).contract.input_shape))).astype("f4")
    onnx_out = session.run(["continuation"], {"context": x})[0]
    keras_out = model.predict(x, verbose=0)
    np.testing.assert_allclose(onnx_out, keras_out, atol=PARITY_ATOL, rtol=0)
    contract = Continuator(path).contract
    assert (contract.sample_rate, contract.context_s, contract.horizon_s) == (8000, 20.0, 10.0)
    assert contract.preset == "compact" and contract.generator == "seed"
    assert contract.corpus == "songs: 7 audio files, no manifest"


@pytest.mark.slow
def test_the_whole_path_trained_model_extends_a_song_through_the_cli(trained_run, tmp_path):
    model_path = tmp_path / "tiny.onnx"
    assert training_main(["export", str(trained_run), "-o", str(model_path)]) == 0
    song = save_audio(tmp_path / "song.wav", synthetic_song(25.0, 44100, seed=11))
    out = tmp_path / "endless.flac"
    assert engine_main(["extend", str(song), "-o", str(out), "--duration", "25s", "--model", str(model_path),
                        "-q"]) == 0
    result = load_audio(out)
    assert result.frames == 50 * 44100 and result.channels == 2
    assert np.all(np.isfinite(result.samples)) and np.max(np.abs(result.samples)) <= 1.0


@pytest.mark.slow
def test_report_writes_the_papers_figures(trained_run):
    from matplotlib.image import imread

    assert training_main(["report", str(trained_run)]) == 0
    for name in ("loss.png", "spectrograms.png"):
        image = imread(trained_run / name)
        assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 0.01
    figures = json.loads((trained_run / "report.json").read_text())
    for key in ("model_mse", "silence_mse", "repeat_last_mse", "best_val_loss"):
        assert np.isfinite(figures[key])


def test_training_mistakes_are_one_line(tmp_path, capsys):
    assert training_main(["fit", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "not a folder of audio files" in capsys.readouterr().err
    assert training_main(["export", str(tmp_path), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "not a training run" in capsys.readouterr().err
    assert training_main(["fit", str(tmp_path), "--run-dir", str(tmp_path / "r"), "--sample-rate", "500"]) == 2
    assert "unsupported model contract: sample_rate 500 Hz" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_runtimes_times_keras_beside_onnx_runtime_on_the_same_weights(capsys):
    # the shipped seed model's architecture, rebuilt in Keras: what `engine bench` no longer imports training for
    code = training_main(["bench", "--runtimes", "--repeats", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {line[:58].strip(): line[58:].split() for line in out.splitlines()
            if line.startswith(("onnxruntime", "keras model", "keras compiled"))}
    assert {"onnxruntime encore-compact.onnx, 1 thread", "onnxruntime encore-compact.onnx, 2 threads",
            "keras model.predict", "keras compiled tf.function", "onnxruntime, same weights as keras, 1 thread",
            "onnxruntime, same weights as keras, 2 threads"} <= set(rows), out
    for cells in rows.values():
        assert float(cells[0]) > 0 and float(cells[1]) > 0  # ms per chunk, real-time factor
    difference = float(out.split("max |difference| ")[1].split()[0])
    assert difference < 1e-3, out
