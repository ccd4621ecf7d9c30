"""The main window: open a song, play it, and hear it go on; or listen to live input and carry on from it.

Widgets only call :class:`~player.session.PlayerSession` and draw what it reports; none of them touches audio.
Errors arrive as non-modal messages in a banner and the status bar, never as dialogs that block playback.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QSettings, Qt, QTimer
from PyQt6.QtGui import QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMenuBar,
    QPushButton,
    QSlider,
    QStatusBar,
    QVBoxLayout,
    QWidget,
)

from engine.generators import REGISTRY
from engine.playback import LIVE_STATES, EngineStatus
from engine.shipped import DEMO_SONG

from .render import RenderDialog
from .session import PlayerSession
from .waveform import CONTINUATION_COLOUR, SONG_COLOUR, WaveformView
from .widgets import action, double_spin_box, progress_bar, spin_box

AUDIO_FILTER = "Audio (*.mp3 *.ogg *.oga *.flac *.wav *.aiff *.aif);;All files (*)"
MAX_RECENT = 8
MESSAGE_MS = 12000
METER_FLOOR_DB = -60
#: The live state in the words of the live panel.
LIVE_STATE_WORDS = {"listening": "listening", "continuing": "carrying on", "fading": "fading out"}


def echo_summary(status: EngineStatus) -> str:
    """The live meter's words on Encore's echo: how loud the input hears it, and what keeps it out (the echo
    canceller and by how much, or the level gate); "" before anything is known."""
    if np.isnan(status.echo_db):
        return f"  ·  {status.echo_canceller}" if status.echo_canceller else ""
    if np.isinf(status.echo_db):
        return "  ·  no echo of Encore"
    level = f"{status.echo_db:.0f} dB down" if status.echo_db >= 0 else f"{-status.echo_db:.0f} dB louder"
    if status.echo_canceller != "level gate" and np.isfinite(status.echo_reduction_db):
        return f"  ·  Encore's echo {level}, cancelled by {status.echo_reduction_db:.0f} dB ({status.echo_canceller})"
    return f"  ·  Encore's echo {level}, ignored (level gate)"


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a position in seconds."""
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class MainWindow(QMainWindow):
    """Encore's player window.

    Parameters
    ----------
    session : PlayerSession
        The link to the engine.
    settings : QSettings, optional
        Where recent files and first-start live; the user's Encore settings when None.
    demo_song : Path, optional
        Offered (opened) on first start.
    """

    def __init__(self, session: PlayerSession, settings: QSettings | None = None, demo_song: Path | None = DEMO_SONG):
        super().__init__()
        self.session = session
        self.settings = settings or QSettings("Encore", "player")
        self.demo_song = demo_song
        self.render_dialog: RenderDialog | None = None
        self.last_message = ""
        self.setWindowTitle("Encore")
        self.setAcceptDrops(True)
        self.resize(1100, 620)

        self._build_menus()
        central = QWidget()
        layout = QVBoxLayout(central)
        self.banner = QLabel("")
        self.banner.setWordWrap(True)

        self.banner.hide()
        self._banner_timer = QTimer(self)
        self._banner_timer.setSingleShot(True)
        self._banner_timer.setInterval(MESSAGE_MS)
        self._banner_timer.timeout.connect(self.banner.hide)
        layout.addWidget(self.banner)
        self.title = QLabel("No song: open one (Ctrl+O) or drop a file here")
        self.title.setStyleSheet("font-size:15px;font-weight:600;")
        layout.addWidget(self.title)
        self.waveform = WaveformView()
        self.waveform.seekRequested.connect(self.session.seek)
        layout.addWidget(self.waveform, stretch=1)
        layout.addLayout(self._build_transport())
        controls = QHBoxLayout()
        controls.addWidget(self._build_generator_box(), stretch=1)
        controls.addWidget(self._build_live_box(), stretch=1)
        layout.addLayout(controls)
        self.setCentralWidget(central)
        self.status_label = QLabel("")
        self.status_bar = QStatusBar()  # what statusBar() would make on first use, held with its type
        self.setStatusBar(self.status_bar)
        self.status_bar.addPermanentWidget(self.status_label, stretch=1)

        play_pause = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        play_pause.activated.connect(self.session.toggle_play)
        self._connect_session()
        self._refresh_devices()
        self._rebuild_recent_menu()
        self.model_label.setText(self.session.model.name)
        self._first_start()

    # --- layout -------------------------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        # The menus are made here, as menuBar().addMenu() would make them, and held with their types.
        menu_bar = QMenuBar(self)
        self.setMenuBar(menu_bar)
        file_menu = QMenu("&File", menu_bar)
        menu_bar.addMenu(file_menu)
        self.open_action = action("&Open…", self, self.choose_song, shortcut=QKeySequence.StandardKey.Open)
        file_menu.addAction(self.open_action)
        file_menu.addAction(action("Open the &demo song", self, self.open_demo))
        self.recent_menu = QMenu("Open &recent", file_menu)
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        self.render_action = action("&Render…", self, self.open_render, shortcut=QKeySequence("Ctrl+R"))
        file_menu.addAction(self.render_action)
        file_menu.addSeparator()
        file_menu.addAction(action("&Quit", self, self.close, shortcut=QKeySequence.StandardKey.Quit))
        model_menu = QMenu("&Model", menu_bar)
        menu_bar.addMenu(model_menu)
        for kind in REGISTRY.values():  # one entry per generator, as the engine lists them
            model_menu.addAction(action(f"&{kind.name.capitalize()} ({kind.summary})", self,
                                        lambda _=False, name=kind.name: self.session.load_model(
                                            None, generator=name)))
        model_menu.addAction(action("Choose an ONNX &file…", self, self.choose_model))

    def _build_transport(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.clicked.connect(self.session.toggle_play)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.session.stop)
        for button in (self.play_button, self.stop_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space belongs to play/pause, not to a focused button
        self.position_label = QLabel("0:00 / 0:00")
        self.position_label.setMinimumWidth(190)
        self.endless_check = QCheckBox("Endless")
        self.endless_check.setChecked(True)
        self.endless_check.setToolTip("When the song ends, its continuation plays on")
        self.endless_check.toggled.connect(self.session.set_endless)
        self.end_button = QPushButton("End the song")
        self.end_button.setToolTip("Play on to the song's own ending from the next phrase line, then stop")
        self.end_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.end_button.clicked.connect(self.session.end_song)
        self.volume_slider = QSlider(Qt.Orientation.Horizontal)
        self.volume_slider.setRange(0, 100)
        self.volume_slider.setValue(100)
        self.volume_slider.setMaximumWidth(160)
        self.volume_slider.valueChanged.connect(lambda v: self.session.set_volume((v / 100) ** 2))  # loudness-like
        legend = QLabel(f"<span style='color:rgb{SONG_COLOUR}'>■</span> song &nbsp; "
                        f"<span style='color:rgb{CONTINUATION_COLOUR}'>■</span> continuation")
        for widget in (self.play_button, self.stop_button, self.position_label, self.endless_check, self.end_button):
            row.addWidget(widget)
        row.addStretch(1)
        row.addWidget(legend)
        row.addWidget(QLabel("Volume"))
        row.addWidget(self.volume_slider)
        return row

    def _build_generator_box(self) -> QGroupBox:
        box = QGroupBox("Generator")
        layout = QVBoxLayout(box)
        self.model_label = QLabel("")
        layout.addLayout(_labelled_row("Model", self.model_label, _button("Choose…", self.choose_model)))
        settings_row = QHBoxLayout()
        self.crossfade_spin = spin_box(5, 1000, round(self.session.config.crossfade_s * 1000), suffix=" ms")
        self.crossfade_spin.setToolTip("Crossfade at every join")
        self.crossfade_spin.editingFinished.connect(
            lambda: self.session.apply_settings(crossfade_s=self.crossfade_spin.value() / 1000))
        self.lead_spin = double_spin_box(2.0, 60.0, self.session.config.lead_s, decimals=1, suffix=" s")
        self.lead_spin.setToolTip("Audio generated ahead of the playhead")
        self.lead_spin.editingFinished.connect(lambda: self.session.apply_settings(lead_s=self.lead_spin.value()))
        settings_row.addWidget(QLabel("Crossfade"))
        settings_row.addWidget(self.crossfade_spin)
        settings_row.addWidget(QLabel("Lead"))
        settings_row.addWidget(self.lead_spin)
        self.variety_spin = double_spin_box(0.0, 1.0, self.session.resynth.variety, decimals=2, single_step=0.1)
        self.variety_spin.setToolTip("resynth and jukebox: 0 keeps close to the song's own order, 1 wanders")
        self.variety_spin.editingFinished.connect(
            lambda: self.session.apply_settings(variety=self.variety_spin.value()))
        settings_row.addWidget(QLabel("Variety"))
        settings_row.addWidget(self.variety_spin)
        layout.addLayout(settings_row)
        self.output_combo = QComboBox()
        self.output_combo.activated.connect(
            lambda _: self.session.set_output_device(self.output_combo.currentData()))
        layout.addLayout(_labelled_row("Output", self.output_combo))
        return box

    def _build_live_box(self) -> QGroupBox:
        box = QGroupBox("Live input")
        layout = QVBoxLayout(box)
        self.input_combo = QComboBox()
        layout.addLayout(_labelled_row("Input", self.input_combo, _button("Refresh", self._refresh_devices)))
        self.level_meter = progress_bar(METER_FLOOR_DB, 0, METER_FLOOR_DB)
        self.level_meter.setFormat("input %v dBFS")
        layout.addWidget(self.level_meter)
        buttons = QHBoxLayout()
        self.live_button = QPushButton("Listen")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Listen; when you stop playing, Encore carries on (through speakers it cancels "
                                    "its own echo where libspeexdsp is installed, else ignores it; headphones hear "
                                    "you best)")
        self.live_button.toggled.connect(self._live_toggled)
        self.carry_on_button = QPushButton("Carry on now")
        self.carry_on_button.clicked.connect(self.session.carry_on)
        self.live_state = QLabel("")
        for widget in (self.live_button, self.carry_on_button):
            widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(widget)
        buttons.addWidget(self.live_state, stretch=1)
        layout.addLayout(buttons)
        return box

    def _connect_session(self) -> None:
        s = self.session
        s.songLoaded.connect(self._song_loaded)
        s.statusChanged.connect(self._status_changed)
        s.continuationWritten.connect(self.waveform.add_continuation)
        s.seamsChanged.connect(self.waveform.set_seams)
        s.timelineCleared.connect(self.waveform.clear_continuation)
        s.timelineCut.connect(self.waveform.cut_continuation)
        s.modelChanged.connect(self.model_label.setText)
        s.message.connect(self.show_message)
        s.note.connect(lambda text: self.show_message(text, error=False))
        s.endlessChanged.connect(self._endless_changed)

    # --- actions ------------------------------------------------------------------------------------------------
    def open_song(self, path: str | Path) -> bool:
        """Open a song (a file that cannot be read changes nothing but says why)."""
        return self.session.open_song(path)

    def choose_song(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a song", self._last_folder(), AUDIO_FILTER)
        if path:
            self.open_song(path)

    def open_demo(self) -> None:
        if self.demo_song is None or not self.demo_song.exists():
            self.show_message("the demo song is not installed here (assets/demo/demo-song.ogg)")
            return
        self.open_song(self.demo_song)

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", self._last_folder(), "ONNX models (*.onnx)")
        if path:
            self.session.load_model(path)

    def open_render(self) -> None:
        """Render...: the dialog that writes N minutes of the endless song to a file."""
        song, song_path = self.session.song, self.session.song_path  # opened together
        if song is None or song_path is None:
            self.show_message("open a song first: Render writes it and its continuation to a file")
            return
        if self.render_dialog is not None and self.render_dialog.running:
            self.render_dialog.show()  # one render at a time: show the one that runs
            self.render_dialog.raise_()
            return
        self.render_dialog = RenderDialog(self.session.model, song, song_path, self.session.config.crossfade_s,
                                          parent=self)
        self.render_dialog.show()

    def show_message(self, text: str, *, error: bool = True) -> None:
        """Show an error (or, with ``error=False``, a note) without blocking anything."""
        self.last_message = text
        self.banner.setStyleSheet(f"background:{'#6b1f26' if error else '#2f3b52'};color:#fff;padding:6px;"
                                  "border-radius:4px;")
        self.banner.setText(text)
        self.banner.show()
        self._banner_timer.start()
        self.status_bar.showMessage(text, MESSAGE_MS)

    # --- session observers --------------------------------------------------------------------------------------
    def _song_loaded(self, song, path: str) -> None:
        self.waveform.set_song(song.samples, song.sample_rate)
        self.title.setText(f"{Path(path).name}  ·  {clock(song.seconds)}  ·  {song.sample_rate} Hz, "
                           f"{song.channels} ch")
        self.setWindowTitle(f"Encore: {Path(path).name}")
        self._remember(path)

    def _status_changed(self, status: EngineStatus) -> None:
        live = status.state in LIVE_STATES
        playing = status.state in ("playing", "continuing", "paused") or live
        position = self.session.position_s
        self.waveform.set_playhead(position, status.ahead_s if playing else 0.0)
        song = self.session.song
        total = clock(song.seconds) if song is not None else "0:00"
        beyond = song is not None and playing and not live and position > status.song_s > 0
        where = ("  · buffering" if status.buffering else "  · ending" if status.ending and playing
                 else "  · continuing" if beyond else "")
        self.position_label.setText(f"{clock(position)} / {total}{where}")
        self.end_button.setEnabled(status.state == "playing" and status.endless and not status.ending)
        self.play_button.setText("Pause" if status.state in ("playing", "continuing") and not live else "Play")
        rtf = f"{status.recent_real_time_factor:.4f}" if np.isfinite(status.recent_real_time_factor) else "–"
        segmentation = f"  ·  {re.sub(r' [(]pulse clarity [^)]*[)]', '', status.segmentation)}" \
            if status.segmentation else ""
        self.status_label.setText(f"{status.generator} · model {status.model}{segmentation}  ·  {status.ahead_s:.1f} s "
                                  f"ahead  ·  real-time factor {rtf}  ·  {status.underruns} underruns  ·  "
                                  f"{status.late_chunks} late chunks  ·  {status.state}")
        level = self.session.input_level_db()
        self.level_meter.setValue(int(max(METER_FLOOR_DB, level)) if np.isfinite(level) else METER_FLOOR_DB)
        self.level_meter.setFormat(f"input %v dBFS{echo_summary(status)}" if live else "input: not listening")
        self.live_state.setText(LIVE_STATE_WORDS.get(status.state, status.state) if live else "")
        if self.live_button.isChecked() and not live:  # an error or a stop ended listening
            self.live_button.blockSignals(True)
            self.live_button.setChecked(False)
            self.live_button.blockSignals(False)

    def _endless_changed(self, endless: bool) -> None:
        self.endless_check.blockSignals(True)
        self.endless_check.setChecked(endless)
        self.endless_check.blockSignals(False)

    def _live_toggled(self, on: bool) -> None:
        if on:
            if not self.session.start_live(self.input_combo.currentData()):
                self.live_button.blockSignals(True)
                self.live_button.setChecked(False)
                self.live_button.blockSignals(False)
        else:
            self.session.stop()

    # --- devices, recent files, first start ---------------------------------------------------------------------
    def _refresh_devices(self) -> None:
        for combo, kind in ((self.input_combo, "input"), (self.output_combo, "output")):
            current = combo.currentText()
            combo.clear()
            combo.addItem("System default", None)
            for device in self.session.devices(kind):
                combo.addItem(f"{device.name} ({device.host_api})", device.index)
            index = combo.findText(current)
            combo.setCurrentIndex(max(0, index))

    def _remember(self, path: str) -> None:
        path = str(Path(path).resolve())
        recent = [p for p in self._recent() if p != path]
        self.settings.setValue("recent", [path, *recent][:MAX_RECENT])
        self._rebuild_recent_menu()

    def _recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self._recent():
            self.recent_menu.addAction(action(Path(path).name, self, lambda _=False, p=path: self.open_song(p),
                                              tool_tip=path))
        self.recent_menu.setEnabled(bool(self._recent()))

    def _last_folder(self) -> str:
        recent = self._recent()
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def _first_start(self) -> None:
        if self.settings.value("started", False, type=bool):
            return
        self.settings.setValue("started", True)
        if self.demo_song is not None and self.demo_song.exists() and self.session.song is None:
            self.open_song(self.demo_song)
            self.show_message("Welcome to Encore: the demo song is open. Press Space to play; with Endless on, "
                              "it goes on after its end.", error=False)

    # --- Qt events ----------------------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls() and any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_song(files[0])

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self.render_dialog is not None:
            self.render_dialog.close()
        self.session.close()
        super().closeEvent(event)


def _button(text: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(slot)
    return button


def _labelled_row(label: str, widget: QWidget, *extra: QWidget) -> QHBoxLayout:
    """``label  widget (stretching)  extra...`` in one row."""
    row = QHBoxLayout()
    row.addWidget(QLabel(label))
    row.addWidget(widget, stretch=1)
    for item in extra:
        row.addWidget(item)
    return row
