"""The ``engine`` command as a user meets it: real files in, real files out, one-line errors."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from engine.audio import load_audio, save_audio
from engine.cli import main, parse_duration
from engine.cores import BUSY_LOOP_MARK
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
        ("the song as its own output", ["extend", str(song), "-o", str(tmp_path / "." / "song.wav"), *model],
         "that is the song itself"),
        ("a song as the model", ["extend", str(song), *out, "--model", str(song)], "that is a song, not a model"),
        ("bench on a missing song", ["bench", "--song", str(tmp_path / "nope.ogg")], "no such file"),
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


def test_info_on_a_song_says_it_is_a_song_and_shows_its_segmentation(tmp_path, capsys):
    song = save_audio(tmp_path / "song.flac", bar_song(40.0, 8000))
    assert main(["info", str(song)]) == 0
    text = capsys.readouterr().out
    assert f"{song} is a song, not a model" in text and "jukebox" in text
    assert "segmentation" in text and " bpm, 4/4" in text and "structure" in text


def test_a_song_cut_short_is_extended_with_a_one_line_warning(tmp_path):
    whole = tmp_path / "whole.ogg"
    soundfile.write(str(whole), synthetic_song(30.0, 22050).samples, 22050, format="OGG", subtype="VORBIS")
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])  # a download that stopped half-way
    out = tmp_path / "out.wav"
    result = run_engine("extend", str(cut), "-o", str(out), "--duration", "10s", "--generator", "jukebox")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "no end-of-stream mark" in warning[0] and "going on with the" in warning[0]
    assert "Traceback" not in result.stderr and soundfile.info(str(out)).duration > 10.0
    clean = run_engine("extend", str(whole), "-o", str(out), "--duration", "10s", "--generator", "jukebox")
    assert clean.returncode == 0 and "warning" not in clean.stderr, clean.stderr


def test_nan_and_samples_beyond_full_scale_are_repaired_with_a_line_never_clipped(tmp_path):
    samples = synthetic_song(21.0, 8000).samples * 8.0  # +14 dB over full scale: a float file can hold it
    samples[1000:1010, 0] = np.nan
    hot = tmp_path / "hot.wav"
    soundfile.write(str(hot), samples, 8000, subtype="FLOAT")
    out = tmp_path / "out.wav"
    result = run_engine("extend", str(hot), "-o", str(out), "--duration", "10s", "--generator", "jukebox")
    assert result.returncode == 0, result.stderr
    assert "10 samples were NaN or infinite; set to silence" in result.stderr
    over_db = 20 * np.log10(np.nanmax(np.abs(samples)))
    assert f"peaks at +{over_db:.1f} dBFS, beyond full scale; it was scaled down by {over_db:.1f} dB" in result.stderr
    written, _ = soundfile.read(str(out), dtype="float32", always_2d=True)
    song = written[:8000 * 20]
    expected = np.nan_to_num(samples[:8000 * 20], nan=0.0) / np.nanmax(np.abs(samples))
    np.testing.assert_allclose(song, expected, atol=2e-4)  # scaled, not clipped: the waveform's shape is kept
    assert np.isfinite(written).all()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_during_a_long_render_finishes_the_file_and_keeps_the_one_before_until_then(tmp_path, stop):
    song = save_audio(tmp_path / "song.wav", bar_song(40.0, 8000))
    out = tmp_path / "out.wav"
    save_audio(out, synthetic_song(3.0, 8000))
    before = out.read_bytes()
    # A shell's background job (`make test &`) ignores SIGINT, and Python keeps an ignored SIGINT ignored: the
    # command gets Ctrl-C's default back, as from a terminal.
    process = subprocess.Popen([sys.executable, "-m", "engine", "extend", str(song), "-o", str(out),
                                "--duration", "1000h", "--generator", "jukebox"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.wav.*")) and time.monotonic() < deadline:  # the render has begun
            time.sleep(0.05)
        assert out.read_bytes() == before  # the previous file stays whole while the new one is written
        time.sleep(1.0)
        process.send_signal(stop)  # SIGTERM (kill, timeout) ends it as Ctrl-C does
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # never left rendering 1000 h into the disk
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted:" in err and "faded out" in err, err
    held = float(re.search(r"holds the ([\d.]+) s rendered", err).group(1))
    info = soundfile.info(str(out))
    assert info.frames / info.samplerate == pytest.approx(held, abs=0.05) and held > 16.0
    tail, _ = soundfile.read(str(out), start=info.frames - 40, dtype="float32")
    assert np.abs(tail).max() < 0.01 and not list(tmp_path.glob(".out.wav.*"))


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


@pytest.mark.slow
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
    busy = subprocess.run(["pgrep", "-f", BUSY_LOOP_MARK], capture_output=True, text=True)
    assert busy.stdout.strip() == ""


@pytest.mark.slow
def test_bench_echo_measures_the_canceller_on_every_room():
    """``bench --echo``: every simulated room's delay is found to a few ms and its echo taken 20 dB down or more
    (the bar of live input through speakers), and the canceller's cost is a few per cent of a core."""
    from engine.bench import ECHO_ROOMS

    result = run_engine("bench", "--echo")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if re.match(r"\s*\d+ ms ", line)]
    assert len(rows) == len(ECHO_ROOMS), result.stdout
    for row, (delay_s, _) in zip(rows, ECHO_ROOMS, strict=True):
        assert abs(float(row[4]) - 1000 * delay_s) <= 12, row  # found
        assert float(row[6]) >= 20.0 and float(row[12].lstrip("+")) >= 12.0, row  # ERLE; performer over the rest
    costs = [float(m) for m in re.findall(r"one core: ([0-9.]+) s per second", result.stdout)]
    assert len(costs) == 2 and all(0 < cost < 0.5 for cost in costs), result.stdout


@pytest.mark.slow
def test_bench_times_each_generators_first_chunk_with_and_without_the_song_analysed_ahead(tmp_path):
    song = save_audio(tmp_path / "song.flac", synthetic_song(30.0, 44100))
    result = run_engine("bench", "--repeats", "1", "--song", str(song))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("generators on one core, continuing song.flac"))
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 2:header + 5]}
    assert set(rows) == {"resynth", "jukebox", "seed"}, result.stdout
    for name, cells in rows.items():  # three times, each in ms and as a real-time factor
        assert cells[1::3] == ["ms"] * 3, (name, cells)
        figures = [float(c) for c in cells[0::3] + cells[2::3]]
        assert all(0 < f < 60_000 for f in figures[:3]) and all(0 < f < 6 for f in figures[3:]), (name, cells)


def test_every_commands_help_reads_as_written():
    """argparse %-formats argument help but prints descriptions as they are: a "%%" there reaches the user."""
    import argparse

    from engine.cli import build_parser as engine_parser
    from training.cli import build_parser as training_parser

    for parser in (engine_parser(), training_parser()):
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for name, command in commands.choices.items():
            assert "%%" not in command.format_help(), name
