"""Render...: N minutes of the endless song into a wav or flac file, with a progress bar and Cancel.

The render runs on its own ``QThread`` through the generator's :meth:`~engine.Extender.write` (the same path as
``engine extend``), so the window and any playback go on meanwhile; the thread reports progress by queued signals only.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from PyQt6.QtCore import QThread, pyqtSignal
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine import EncoreError, ExtendConfig, Waveform
from engine.audio import check_not_the_source
from engine.generators import open_generator
from engine.logs import log_path

from .widgets import double_spin_box, progress_bar

PROGRESS_STEPS = 1000


class RenderThread(QThread):
    """Writes the song and ``seconds`` of its continuation to ``path``; cancel with ``requestInterruption()``."""

    progressed = pyqtSignal(float, float)  # seconds done, seconds in all
    succeeded = pyqtSignal(float, str)     # seconds written, path
    cancelled = pyqtSignal(float, str)     # seconds the file holds (0: nothing written), path
    failed = pyqtSignal(str)               # one line for the user

    def __init__(self, model, song: Waveform, path: str, seconds: float, crossfade_s: float,
                 parent=None):
        super().__init__(parent)
        self.model, self.song, self.path, self.seconds, self.crossfade_s = model, song, path, seconds, crossfade_s

    def run(self) -> None:
        try:
            extender = open_generator(self.model, ExtendConfig(crossfade_s=self.crossfade_s))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a short song is looped: the window has said so when it played
                written = extender.write(self.song, self.path, self.seconds, progress=self.progressed.emit,
                                         cancelled=self.isInterruptionRequested)
        except EncoreError as e:
            self.failed.emit(str(e))
        except Exception as e:  # noqa: BLE001 - a thread must not die silently; the user hears what happened
            logging.getLogger(__name__).error("render failed", exc_info=e)
            self.failed.emit(f"render failed: {type(e).__name__}: {e} (a bug: its traceback is in {log_path()})")
        else:
            if self.isInterruptionRequested():
                self.cancelled.emit(written, self.path)
            else:
                self.succeeded.emit(written, self.path)


class RenderDialog(QDialog):
    """Choose minutes and a file, render with progress, Cancel at any time.

    Parameters
    ----------
    model : Continuator or SegmentScorer or SimilarityScorer
        The generator's model (the one the window plays with).
    song : Waveform
    song_path : str
        Suggests the output's name.
    crossfade_s : float
    """

    def __init__(self, model, song: Waveform, song_path: str, crossfade_s: float,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Render the endless song")
        self.model, self.song, self.song_path, self.crossfade_s = model, song, song_path, crossfade_s
        self.thread_: RenderThread | None = None

        self.minutes = double_spin_box(0.1, 600.0, 10.0, decimals=1, single_step=1.0, suffix=" min")
        self.path_edit = QLineEdit(str(Path(song_path).with_name(Path(song_path).stem + "-endless.flac")))
        choose = QPushButton("Choose…")
        choose.clicked.connect(self._choose)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit)
        path_row.addWidget(choose)
        form = QFormLayout()
        form.addRow("Continuation", self.minutes)
        form.addRow("File (.wav or .flac)", path_row)

        self.progress = progress_bar(0, PROGRESS_STEPS, 0)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.buttons = QDialogButtonBox()
        self.render_button = QPushButton("Render")  # what addButton("Render", role) would make, held with its type
        self.buttons.addButton(self.render_button, QDialogButtonBox.ButtonRole.AcceptRole)
        cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        if cancel_button is None:  # Qt makes every standard button but NoButton
            raise RuntimeError("QDialogButtonBox made no Cancel button")
        self.cancel_button = cancel_button
        self.render_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.result_label)
        layout.addWidget(self.buttons)

    def start(self) -> None:
        """Start rendering to the chosen file."""
        path = self.path_edit.text().strip()
        if Path(path).suffix.lower() not in (".wav", ".flac"):
            self.result_label.setText(f"{path or 'the file name'}: must end in .wav or .flac")
            return
        try:
            check_not_the_source(path, self.song_path)
        except EncoreError as e:
            self.result_label.setText(str(e))
            return
        self.render_button.setEnabled(False)
        self.progress.setValue(0)
        self.result_label.setText("rendering…")
        self.thread_ = RenderThread(self.model, self.song, path, self.minutes.value() * 60.0, self.crossfade_s,
                                    parent=self)
        self.thread_.progressed.connect(self._progressed)
        self.thread_.succeeded.connect(self._succeeded)
        self.thread_.cancelled.connect(self._cancelled)
        self.thread_.failed.connect(self._ended)
        self.thread_.start()

    def cancel(self) -> None:
        """Cancel a render that runs (the file keeps what was rendered, faded out), or close the dialog."""
        if self.thread_ is not None and self.thread_.isRunning():
            self.result_label.setText("cancelling…")
            self.thread_.requestInterruption()
        else:
            self.reject()

    def reject(self) -> None:
        """Esc or Close: a render that runs is cancelled first (a thread must not outlive its dialog)."""
        self._cancel_and_wait()
        super().reject()

    @property
    def running(self) -> bool:
        return self.thread_ is not None and self.thread_.isRunning()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._cancel_and_wait()
        super().closeEvent(event)

    def _cancel_and_wait(self) -> None:
        thread = self.thread_
        if thread is not None and thread.isRunning():
            thread.requestInterruption()
            thread.wait()  # the render checks between blocks: this is one block at most

    def _choose(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Render to", self.path_edit.text(), "Audio (*.flac *.wav)")
        if path:
            self.path_edit.setText(path)

    def _progressed(self, done: float, total: float) -> None:
        self.progress.setValue(round(PROGRESS_STEPS * done / total) if total else PROGRESS_STEPS)

    def _succeeded(self, seconds: float, path: str) -> None:
        self.progress.setValue(PROGRESS_STEPS)
        self._ended(f"wrote {path} ({seconds / 60:.1f} min)")

    def _cancelled(self, seconds: float, path: str) -> None:
        if seconds:
            self._ended(f"cancelled; {path} holds the {seconds / 60:.1f} min rendered until then, faded out")
        else:
            self._ended(f"cancelled before anything was rendered; {path} was not written")

    def _ended(self, text: str) -> None:
        self.result_label.setText(text)
        self.render_button.setEnabled(True)
