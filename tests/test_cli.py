"""The ``engine`` command as a user meets it: real files in, real files out, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from engine.audio import load_audio, save_audio
from engine.bench import HOG_MARK
from engine.cli import main, parse_duration
from tests.conftest import bar_song, synthetic_song
from tests.onnx_models import make_model


def run_engine(*args: str) -> subprocess.CompletedProcess:
    """The command in a fresh process, exactly as a user runs it."""
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def song_mp3(tmp_path_factory):
    path = tmp_path_factory.mktemp("songs") / "song.mp3"
    soundfile.write(str(path), synthetic_song(22.0, 44100).samples, 44100, format="MP3",
                    subtype="MPEG_LAYER_III")
    return path


def test_extend_writes_song_and_continuation(tmp_path, song_mp3, repeat_model):
    out = tmp_path / "out.flac"
    result = run_engine("extend", str(song_mp3), "-o", str(out), "--duration", "0:30", "--model", str(repeat_model))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "generated 30.0 s" in summary and "real-time factor" in summary and str(out) in summary
    written = load_audio(out)
    song = load_audio(song_mp3)
    assert written.sample_rate == 44100 and written.channels == 2
    assert written.frames == song.frames + 30 * 44100


def test_only_extension(tmp_path, repeat_model):
    song = save_audio(tmp_path / "song.wav", synthetic_song(21.0, 8000, channels=1))
    out = tmp_path / "ext.wav"
    assert main(["extend", str(song), "-o", str(out), "--duration", "15s", "--only-extension",
                 "--model", str(repeat_model), "-q"]) == 0
    assert load_audio(out).frames == 15 * 8000


def test_info_prints_the_contract(repeat_model, capsys):
    assert main(["info", str(repeat_model)]) == 0
    text = capsys.readouterr().out
    for words in ("sample rate", "8000 Hz", "context", "20 s", "horizon", "10 s", "batch,chunk,sample"):
        assert words in text


def test_info_on_a_song_times_its_analysis_apart_from_librosas_load(tmp_path, capsys):
    """The real-time factor printed is the analysis's alone; librosa's one-time load is its own figure."""
    song = save_audio(tmp_path / "groove.wav", bar_song(24.0, 44100, bpm=120.0, meter=4))
    assert main(["info", "--song", str(song)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("jukebox (built in, no model file)"), "the default generator, and no contract to show"
    assert re.search(r"segmentation\s+beats: 1[12]\d bpm, 4/4", text), text
    assert re.search(r"structure\s+\d+ bars, ", text), text
    found = re.search(r"analysed in\s+([\d.]+) s \(real-time factor ([\d.]+)\), "
                      r"after librosa's one-time load of ([\d.]+) s", text)
    assert found, text
    seconds, factor, _ = (float(g) for g in found.groups())
    assert factor == pytest.approx(seconds / 24.0, abs=0.0006)


@pytest.mark.parametrize("duration", ["10m", "600", "600s", "0:10:00", "10:00"])
def test_durations(duration):
    assert parse_duration(duration) == 600.0


def test_hours_and_mixed_durations():
    assert parse_duration("1h30m") == 5400.0 and parse_duration("1.5m") == 90.0


def bad_inputs(tmp_path, repeat_model):
    """(name, argv, words in the error) for every user mistake the CLI must answer in one line."""
    song = save_audio(tmp_path / "song.wav", synthetic_song(21.0, 8000))
    silent = tmp_path / "silent.wav"
    soundfile.write(str(silent), np.zeros((8000 * 21, 2), np.float32), 8000)
    corrupt = tmp_path / "corrupt.ogg"
    corrupt.write_bytes(b"OggS" + b"\x00garbage" * 100)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_text("hello")
    mismatched = make_model(tmp_path / "mismatched.onnx", graph_context_chunks=12)
    model = ["--model", str(repeat_model)]
    out = ["-o", str(tmp_path / "out.wav")]
    return [
        ("missing file", ["extend", str(tmp_path / "nope.wav"), *out, *model], "no such file"),
        ("corrupt file", ["extend", str(corrupt), *out, *model], "cannot decode"),
        ("empty file", ["extend", str(empty), *out, *model], "the file is empty"),
        ("silence", ["extend", str(silent), *out, *model], "silent"),
        ("not a model", ["extend", str(song), *out, "--model", str(not_a_model)], "not a loadable ONNX model"),
        ("mismatched model", ["extend", str(song), *out, "--model", str(mismatched)], "does not match"),
        ("missing model", ["extend", str(song), *out, "--model", str(tmp_path / "x.onnx")], "no such model"),
        ("unwritable output", ["extend", str(song), "-o", str(tmp_path / "no" / "dir" / "o.wav"), *model],
         "does not exist"),
        ("wrong output format", ["extend", str(song), "-o", str(tmp_path / "o.mp4"), *model], ".wav or .flac"),
        ("bad crossfade", ["extend", str(song), *out, *model, "--crossfade", "3"], "crossfade"),
        ("info on a non-model", ["info", str(not_a_model)], "not a loadable ONNX model"),
        ("bench on a missing song", ["bench", "--song", str(tmp_path / "nope.ogg"), "--no-keras"], "no such file"),
    ]


def test_every_user_mistake_is_one_line_and_a_nonzero_exit(tmp_path, repeat_model, capsys):
    for name, argv, words in bad_inputs(tmp_path, repeat_model):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert len(err.splitlines()) == 1, (name, err)
        assert words in err, (name, err)
        assert err.startswith("engine "), (name, err)
        assert not (tmp_path / "out.wav").exists(), f"{name} left a file behind"


def test_a_bad_duration_is_an_argparse_error_without_traceback(tmp_path):
    result = run_engine("extend", "x.wav", "-o", str(tmp_path / "o.wav"), "--duration", "forever")
    assert result.returncode == 2
    assert "not a duration" in result.stderr and "Traceback" not in result.stderr


def test_a_user_mistake_in_a_fresh_process_has_no_traceback(tmp_path):
    result = run_engine("extend", str(tmp_path / "missing.flac"), "-o", str(tmp_path / "o.wav"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_damaged_mp3_is_one_line_even_where_the_decoder_itself_talks(tmp_path):
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(b"ID3" + bytes(1000))  # libmpg123 prints resync notes of its own on this
    result = run_engine("extend", str(damaged), "-o", str(tmp_path / "o.wav"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "cannot decode audio" in result.stderr and "pipe" not in result.stderr, result.stderr
    assert not (tmp_path / "o.wav").exists()


def test_bench_realtime_reports_every_figure_and_leaves_no_busy_loop():
    result = run_engine("bench", "--realtime", "--hours", "0.03")
    assert result.returncode == 0, result.stderr
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines()[2:])
    for name in ("real-time factor per chunk, median", "lead when a chunk lands, min", "late chunks per hour",
                 "underruns per hour (none on an offline clock)", "play() to first sound", "fresh process: imports"):
        assert name in rows, result.stdout
    assert int(rows["chunks generated (offline clock)"]) >= 6
    assert 0 < float(rows["real-time factor per chunk, median"]) < 1
    assert float(rows["late chunks per hour"]) == 0.0  # a 10 s lead against chunks that take milliseconds
    busy = subprocess.run(["pgrep", "-f", HOG_MARK], capture_output=True, text=True)
    assert busy.stdout.strip() == ""


def test_bench_times_each_generators_first_chunk_with_and_without_the_song_analysed_ahead(tmp_path):
    song = save_audio(tmp_path / "song.flac", synthetic_song(30.0, 44100))
    result = run_engine("bench", "--no-keras", "--repeats", "1", "--song", str(song))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("generators on one core, continuing song.flac"))
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 2:header + 5]}
    assert set(rows) == {"resynth", "jukebox", "seed"}, result.stdout
    for name, cells in rows.items():  # three times, each in ms and as a real-time factor
        assert cells[1::3] == ["ms"] * 3, (name, cells)
        figures = [float(c) for c in cells[0::3] + cells[2::3]]
        assert all(0 < f < 60_000 for f in figures[:3]) and all(0 < f < 6 for f in figures[3:]), (name, cells)
