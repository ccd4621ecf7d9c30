"""The desktop player's controls, each against a real Engine on a real audio server (JACK, dummy driver).

The widgets run on Qt's offscreen platform; the test of a real window under an X server is test_player_window.py.
File dialogs are the one thing answered for the user (they are modal and wait for a person).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt starts: pytest-qt creates the app lazily

import numpy as np
import pytest
import soundfile
from PyQt6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PyQt6.QtGui import QDropEvent
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QFileDialog

from engine.audio import save_audio
from engine.jack import connect, disconnect_capture, jack_device, jack_ports, new_ports
from player import MainWindow, PlayerSession, peak_envelope
from player.window import DEMO_SONG
from tests.conftest import bar_song, synthetic_song
from tests.jack_server import JACK_RATE
from tests.onnx_models import make_model

pytestmark = pytest.mark.filterwarnings("ignore::engine.extend.ShortSongWarning")


@pytest.fixture
def make_window(qtbot, sd, repeat_model, tmp_path):
    """Windows with their own settings file, playing through JACK with the repeat model."""
    windows = []

    def make(demo_song=None, settings_name="player.ini"):
        settings = QSettings(str(tmp_path / settings_name), QSettings.Format.IniFormat)
        session = PlayerSession(repeat_model, output_device=jack_device(sd, "output"), poll_ms=20)
        window = MainWindow(session, settings=settings, demo_song=demo_song)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def song_file(tmp_path):
    """A 4 s song: its continuation starts 4 s after Play."""
    return save_audio(tmp_path / "song.wav", synthetic_song(4.0, JACK_RATE))


def wait_for_position(qtbot, window, seconds: float, timeout_ms: int = 15000) -> None:
    qtbot.waitUntil(lambda: window.session.position_s >= seconds, timeout=timeout_ms)


# --- songs -------------------------------------------------------------------------------------------------------

def test_the_demo_song_is_offered_on_first_start_only(make_window):
    first = make_window(demo_song=DEMO_SONG)
    assert first.session.song_path == str(DEMO_SONG) and "demo-song.ogg" in first.title.text()
    assert "Welcome" in first.last_message and first.banner.isVisible()
    again = make_window(demo_song=DEMO_SONG)  # same settings file: not the first start any more
    assert again.session.song is None


def test_recent_files_remember_the_last_songs_first(window, tmp_path):
    paths = [save_audio(tmp_path / f"song{i}.flac", synthetic_song(3.0, 22050, seed=i)) for i in range(3)]
    for path in paths:
        assert window.open_song(path)
    names = [action.text() for action in window.recent_menu.actions()]
    assert names == ["song2.flac", "song1.flac", "song0.flac"]
    window.recent_menu.actions()[2].trigger()
    assert window.session.song_path == str(paths[0].resolve())


def drop(window, path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


def test_a_corrupt_file_dropped_on_the_window_changes_nothing_but_says_why(qtbot, window, song_file, tmp_path):
    drop(window, song_file)
    assert window.session.song_path == str(song_file)
    window.play_button.click()
    wait_for_position(qtbot, window, 0.3)
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3\x03\x00\x00\x00" + bytes(range(256)) * 40)
    drop(window, broken)
    assert "broken.mp3" in window.last_message and window.banner.isVisible()
    assert window.session.song_path == str(song_file)  # the song that was playing is still there ...
    assert window.session.status().state == "playing"  # ... and still playing


# --- transport ----------------------------------------------------------------------------------------------------

def test_play_pause_with_space_and_stop(qtbot, window, song_file):
    window.open_song(song_file)
    window.play_button.click()
    wait_for_position(qtbot, window, 0.5)
    assert window.play_button.text() == "Pause"
    QTest.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.session.status().state == "paused")
    held = window.session.position_s
    qtbot.wait(400)
    assert window.session.position_s == pytest.approx(held, abs=0.05) and window.play_button.text() == "Play"
    QTest.keyClick(window, Qt.Key.Key_Space)
    wait_for_position(qtbot, window, held + 0.3)
    window.stop_button.click()
    assert window.session.status().state == "stopped" and window.session.position_s == 0.0
    qtbot.waitUntil(lambda: window.position_label.text().startswith("0:00 / 0:04"))


def click_waveform_at(window, seconds: float) -> None:
    view = window.waveform
    scene_point = view.getPlotItem().vb.mapViewToScene(QPointF(seconds, 0.0))
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.mapFromScene(scene_point))


def test_clicking_the_waveform_seeks_in_the_song_and_in_its_continuation(qtbot, window, tmp_path):
    song = save_audio(tmp_path / "long.wav", synthetic_song(30.0, JACK_RATE))
    window.open_song(song)
    window.play_button.click()
    wait_for_position(qtbot, window, 0.2)
    click_waveform_at(window, 20.0)
    qtbot.waitUntil(lambda: 20.0 <= window.session.position_s < 22.0)
    click_waveform_at(window, 45.0)  # beyond the song's end: the continuation is generated up to there
    qtbot.waitUntil(lambda: 45.0 <= window.session.position_s < 47.0)
    assert window.session.status().state == "playing"
    qtbot.waitUntil(lambda: "continuing" in window.position_label.text())


def test_endless_plays_past_the_end_and_draws_the_continuation_with_its_seams(qtbot, window, song_file):
    window.open_song(song_file)
    assert window.endless_check.isChecked()  # on by default
    window.play_button.click()
    wait_for_position(qtbot, window, 6.0)
    status = window.session.status()
    assert status.state == "playing" and status.chunks >= 1 and status.starved_s == 0
    x, _ = window.waveform.continuation_curve.getData()
    assert x is not None and x.size and x.min() >= 3.9 and x.max() > 10.0  # drawn ahead of the playhead
    seams = window.waveform.seams_s
    assert seams[0] == pytest.approx(4.0, abs=0.1)  # the song's end, marked
    low, high = window.waveform.ahead_region.getRegion()
    assert low == pytest.approx(window.session.position_s, abs=0.5) and high - low > 3.0  # the lead, shaded
    assert "continuing" in window.position_label.text()
    assert "looped" in window.last_message  # a 4 s song fills the 20 s context by looping: the user is told


def test_endless_off_stops_at_the_song_end(qtbot, window, song_file):
    window.open_song(song_file)
    window.endless_check.setChecked(False)
    window.play_button.click()
    qtbot.waitUntil(lambda: window.session.status().state == "finished", timeout=10000)
    assert window.session.position_s == pytest.approx(4.0, abs=0.05)
    assert window.session.status().chunks == 0


def test_the_volume_slider_sets_the_engine_gain(qtbot, window, song_file):
    window.open_song(song_file)
    window.play_button.click()
    window.volume_slider.setValue(50)
    assert window.session.status().volume == pytest.approx(0.25)
    window.volume_slider.setValue(0)
    assert window.session.status().volume == 0.0


# --- generator settings and models --------------------------------------------------------------------------------

def test_generator_settings_apply_and_playback_goes_on_from_where_it_was(qtbot, window, song_file):
    window.open_song(song_file)
    window.play_button.click()
    wait_for_position(qtbot, window, 1.0)
    window.crossfade_spin.setValue(120)
    window.crossfade_spin.editingFinished.emit()
    window.lead_spin.setValue(4.0)
    window.lead_spin.editingFinished.emit()
    assert window.session.config.crossfade_s == pytest.approx(0.12) and window.session.config.lead_s == 4.0
    assert window.session.position_s >= 1.0 and window.session.status().state == "playing"
    wait_for_position(qtbot, window, 5.0)
    assert window.session.status().ahead_s <= 4.0 + 10.0  # a 4 s lead: at most one chunk more


def choose_model(window, monkeypatch, path) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), "ONNX models (*.onnx)"))
    window.choose_model()


def test_the_model_picker_loads_a_model_and_refuses_files_that_do_not_fit(qtbot, window, song_file, tmp_path,
                                                                          monkeypatch):
    window.open_song(song_file)
    window.play_button.click()
    wait_for_position(qtbot, window, 0.3)
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("this is not a model")
    choose_model(window, monkeypatch, not_onnx)
    assert "model not changed" in window.last_message and "not a loadable ONNX model" in window.last_message
    assert window.model_label.text() == "repeat" and window.session.status().state == "playing"

    mismatched = make_model(tmp_path / "mismatched.onnx", "repeat", graph_context_chunks=12)
    choose_model(window, monkeypatch, mismatched)
    assert "does not match its contract" in window.last_message and window.model_label.text() == "repeat"

    loud = make_model(tmp_path / "loud.onnx", "loud", gain=0.5)
    choose_model(window, monkeypatch, loud)
    assert window.model_label.text() == "loud"
    qtbot.waitUntil(lambda: "model loud" in window.status_label.text())
    assert window.session.status().state == "playing"  # goes on, with the new model


def test_the_model_menu_switches_generator_and_variety_applies_to_resynth(qtbot, window, tmp_path):
    window.open_song(save_audio(tmp_path / "bars.wav", bar_song(8.0, JACK_RATE)))
    from engine.generators import GENERATORS

    menu = next(action.menu() for action in window.menuBar().actions() if action.text() == "&Model")
    entries = [action for action in menu.actions() if not action.isSeparator()]
    assert [entry.text().split()[0].strip("&").lower() for entry in entries[:3]] == list(GENERATORS)
    entries[GENERATORS.index("resynth")].trigger()  # the menu, as a user picks it
    assert window.session._engine.extender.generator == "resynth"
    window.session.load_model(None, generator="jukebox")
    assert window.model_label.text() == "jukebox"
    window.variety_spin.setValue(0.8)
    window.variety_spin.editingFinished.emit()
    assert window.session.resynth.variety == pytest.approx(0.8)
    assert window.session._engine.extender.resynth.variety == pytest.approx(0.8)
    window.play_button.click()
    wait_for_position(qtbot, window, 9.0)  # past the song's end: its continuation plays
    qtbot.waitUntil(lambda: "jukebox" in window.status_label.text() and "beats" in window.status_label.text())
    status = window.session.status()
    assert status.state == "playing" and status.starved_s == 0
    assert re.match(r"beats: 1(19|20|21) bpm, 4/4", status.segmentation), status.segmentation


def test_the_status_bar_shows_model_lead_speed_and_underruns(qtbot, window, song_file):
    window.open_song(song_file)
    window.play_button.click()
    wait_for_position(qtbot, window, 4.5)
    text = window.status_label.text()
    for part in ("model repeat", "s ahead", "playing"):
        assert part in text, text
    # The figures themselves depend on the machine's load (JACK tests hold the engine to no underruns).
    assert re.search(r"real-time factor \d\.\d{4}  ·  \d+ underruns  ·  \d+ late chunks", text), text


# --- render ---------------------------------------------------------------------------------------------------

def test_render_writes_minutes_of_the_endless_song_and_cancel_keeps_what_was_rendered(qtbot, window, song_file,
                                                                                      tmp_path):
    window.open_song(song_file)
    window.open_render()
    dialog = window.render_dialog
    out = tmp_path / "endless.flac"
    dialog.minutes.setValue(0.5)
    dialog.path_edit.setText(str(out))
    dialog.render_button.click()
    qtbot.waitUntil(lambda: dialog.result_label.text().startswith("wrote"), timeout=30000)
    assert dialog.progress.value() == dialog.progress.maximum()
    info = soundfile.info(str(out))
    assert info.frames == round((4.0 + 30.0) * JACK_RATE) and info.channels == 2

    long = tmp_path / "hour.flac"
    dialog.minutes.setValue(600.0)
    dialog.path_edit.setText(str(long))
    dialog.render_button.click()
    qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=30000)
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: dialog.result_label.text().startswith("cancelled"), timeout=30000)
    assert dialog.render_button.isEnabled()
    kept = soundfile.info(str(long)).frames / JACK_RATE  # a complete file: what was rendered until Cancel
    assert 4.0 < kept < 4.0 + 600 * 60 and f"holds the {kept / 60:.1f} min" in dialog.result_label.text()

    dialog.path_edit.setText(str(song_file))  # the song itself is never written over
    dialog.render_button.click()
    assert "that is the song itself" in dialog.result_label.text() and dialog.thread_.isFinished()


# --- live input ---------------------------------------------------------------------------------------------------

def select_device(combo, index) -> None:
    combo.setCurrentIndex(combo.findData(index))


def test_live_mode_meters_the_input_and_carries_on_when_the_performer_stops(qtbot, window, sd):
    phrase = synthetic_song(4.0, JACK_RATE).samples
    position = {"frame": 0}

    def performer(outdata, frames, time_info, status):  # 4 s of phrase, then silence
        start = position["frame"]
        chunk = phrase[start:start + frames]
        outdata[:chunk.shape[0]] = chunk
        outdata[chunk.shape[0]:] = 0
        position["frame"] += frames

    select_device(window.input_combo, jack_device(sd, "input"))
    before = set(jack_ports())
    window.live_button.click()
    assert window.live_button.isChecked()
    qtbot.waitUntil(lambda: window.live_state.text() == "listening")
    engine_inputs = new_ports(before, ":in")
    disconnect_capture(engine_inputs)  # Encore hears the performer alone, not the dummy capture
    before = set(jack_ports())
    player = sd.OutputStream(samplerate=JACK_RATE, channels=2, dtype="float32", device=jack_device(sd, "output"),
                             callback=performer)
    player.start()
    try:
        for source, destination in zip(new_ports(before, ":out"), engine_inputs, strict=True):
            connect(source, destination)
        qtbot.waitUntil(lambda: window.level_meter.value() > -30, timeout=5000)  # the meter moves
        qtbot.waitUntil(lambda: window.live_state.text() == "carrying on", timeout=12000)
        x, _ = window.waveform.continuation_curve.getData()
        assert x is not None and x.size  # what Encore plays is drawn
        # Its first second tells whether the input hears Encore: this performer is wired in alone, so not.
        qtbot.waitUntil(lambda: "no echo of Encore" in window.level_meter.format(), timeout=5000)
    finally:
        player.stop()
        player.close()
    window.live_button.click()
    assert window.session.status().state == "stopped" and window.live_state.text() == ""


def test_carry_on_now_continues_what_was_heard_at_once(qtbot, window, sd):
    select_device(window.input_combo, jack_device(sd, "input"))
    window.live_button.click()
    qtbot.waitUntil(lambda: window.live_state.text() == "listening")
    window.carry_on_button.click()  # the dummy capture is digital silence: nothing heard, nothing to carry on
    qtbot.wait(300)
    assert window.live_state.text() == "listening"
    window.live_button.click()


def test_an_input_device_that_is_gone_is_a_message_not_a_crash(qtbot, window):
    window.input_combo.addItem("USB interface (unplugged)", 4242)
    window.input_combo.setCurrentIndex(window.input_combo.count() - 1)
    window.live_button.click()
    assert "no audio input device 4242" in window.last_message
    assert not window.live_button.isChecked() and window.session.status().state in ("idle", "stopped")


# --- drawing ------------------------------------------------------------------------------------------------------

def test_peaks_keep_the_loudest_sample_of_every_bin():
    rate = 1000
    samples = np.zeros((95, 2), np.float32)
    samples[7, 1] = -0.9  # bin 0, right channel
    samples[93, 0] = 0.4  # the last, shorter bin
    x, y = peak_envelope(samples, rate, start_s=2.0, bin_s=0.02)
    assert x.shape == y.shape == (10,)  # 5 bins, 2 points each
    np.testing.assert_allclose(y[[0, 1, 8, 9]], [-0.9, 0.9, -0.4, 0.4])
    assert x[0] == pytest.approx(2.01) and np.all(y[2:8] == 0)


def test_a_silent_song_with_endless_on_says_how_to_play_it(qtbot, window, tmp_path):
    silent = tmp_path / "silence.wav"
    soundfile.write(str(silent), np.zeros((JACK_RATE * 3, 2), np.float32), JACK_RATE)
    window.open_song(silent)
    window.play_button.click()
    assert "silent" in window.last_message and "switch Endless off" in window.last_message
    window.endless_check.setChecked(False)
    window.play_button.click()
    window.endless_check.setChecked(True)  # while it plays: refused, this song cannot be continued, and the box
    assert not window.endless_check.isChecked() and "cannot be continued" in window.last_message  # says so
    qtbot.waitUntil(lambda: window.session.status().state == "finished", timeout=10000)


def test_space_does_not_pause_live_input_and_settings_keep_it_listening(qtbot, window, sd):
    select_device(window.input_combo, jack_device(sd, "input"))
    window.live_button.click()
    qtbot.waitUntil(lambda: window.live_state.text() == "listening")
    QTest.keyClick(window, Qt.Key.Key_Space)
    assert "listening to live input" in window.last_message
    window.crossfade_spin.setValue(80)
    window.crossfade_spin.editingFinished.emit()  # a new engine: it listens again, and plays no song
    qtbot.waitUntil(lambda: window.live_state.text() == "listening")
    assert window.live_button.isChecked() and window.session.config.crossfade_s == pytest.approx(0.08)
    window.live_button.click()


def test_endless_refused_for_one_song_is_not_refused_for_the_next(qtbot, window, song_file, tmp_path):
    silent = tmp_path / "silence.wav"
    soundfile.write(str(silent), np.zeros((JACK_RATE * 3, 2), np.float32), JACK_RATE)
    window.open_song(silent)
    window.endless_check.setChecked(False)
    window.play_button.click()
    window.open_song(song_file)
    window.endless_check.setChecked(True)
    assert window.endless_check.isChecked()
    window.play_button.click()
    wait_for_position(qtbot, window, 5.0)
    assert window.session.status().chunks >= 1


def test_an_unchanged_setting_does_not_restart_playback(qtbot, window, song_file):
    window.open_song(song_file)
    window.play_button.click()
    wait_for_position(qtbot, window, 0.5)
    engine = window.session._engine
    window.lead_spin.editingFinished.emit()  # focus left the box, value unchanged
    assert window.session._engine is engine


def test_the_live_meter_says_how_loud_encores_echo_is_and_what_keeps_it_out():
    from engine.playback import EngineState, EngineStatus
    from player.window import echo_summary

    base = EngineStatus(state=EngineState.CONTINUING, playhead_s=3.0, ahead_s=9.0, song_s=0.0, chunks=1,
                        late_chunks=0, underruns=0, starved_s=0.0, model="jukebox", real_time_factor=0.01)
    assert echo_summary(base) == ""  # not live
    assert echo_summary(replace(base, echo_canceller="speexdsp")) == "  ·  speexdsp"  # not measured yet
    cancelled = replace(base, echo_canceller="speexdsp", echo_db=9.2, echo_reduction_db=28.4)
    assert echo_summary(cancelled) == "  ·  Encore's echo 9 dB down, cancelled by 28 dB (speexdsp)"
    louder = replace(cancelled, echo_db=-2.0)
    assert echo_summary(louder) == "  ·  Encore's echo 2 dB louder, cancelled by 28 dB (speexdsp)"
    gate = replace(base, echo_canceller="level gate", echo_db=10.4)
    assert echo_summary(gate) == "  ·  Encore's echo 10 dB down, ignored (level gate)"
    assert echo_summary(replace(gate, echo_db=float("inf"))) == "  ·  no echo of Encore"
