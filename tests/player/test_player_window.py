"""A real window on a real X server (Xvfb): the demo song played past its end, judged from the screen's pixels.

``make screenshot`` runs this test with ENCORE_SCREENSHOT set, to refresh the README's picture from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PyQt6.QtGui import QImage

from player.waveform import BACKGROUND, CONTINUATION_COLOUR, PLAYHEAD_COLOUR, SEAM_COLOUR, SONG_COLOUR
from tests.x_server import start_xvfb


@pytest.fixture(scope="module")
def display():
    process, name = start_xvfb()
    yield name
    process.terminate()
    process.wait(timeout=10)


def rgb(path) -> np.ndarray:
    """[shape=(height, width, 3), dtype=uint8] pixels of a PNG."""
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    data = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
    return data.reshape(image.height(), image.bytesPerLine())[:, :image.width() * 3].reshape(
        image.height(), image.width(), 3)


def near(pixels: np.ndarray, colour, tolerance: int = 30) -> np.ndarray:
    return np.abs(pixels.astype(int) - np.array(colour)).max(axis=2) <= tolerance


def test_the_window_plays_the_demo_song_past_its_end_and_shows_it(sd, display, tmp_path):
    picture = tmp_path / "player.png"
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    result = subprocess.run([sys.executable, "-m", "player.screenshot", str(picture), "--before-end", "5",
                             "--past-end", "7"], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["state"] == "playing" and summary["playhead_s"] > summary["song_s"] + 7
    assert summary["seams"][0] == pytest.approx(summary["song_s"], abs=0.1)

    window = rgb(picture)
    assert window.shape[:2] == tuple(summary["size"][::-1])
    rows, columns = np.nonzero(near(window, BACKGROUND, 3))  # the plot is the dark part of the window
    pixels = window[rows.min():rows.max() + 1, columns.min():columns.max() + 1]
    assert pixels.shape[0] > 150 and pixels.shape[1] > 600, pixels.shape
    song, continuation = near(pixels, SONG_COLOUR), near(pixels, CONTINUATION_COLOUR)
    assert song.sum() > 5000 and continuation.sum() > 1000, (song.sum(), continuation.sum())
    song_x, continuation_x = np.nonzero(song)[1], np.nonzero(continuation)[1]
    assert np.median(continuation_x) > np.median(song_x)  # the continuation is drawn after the song
    # A seam marker: a column of the seam colour most of the waveform's height, where the song's colour stops.
    tall = np.nonzero(near(pixels, SEAM_COLOUR, 40).sum(axis=0) > 0.5 * (np.ptp(np.nonzero(song)[0]) + 1))[0]
    assert tall.size, "no seam marker drawn"
    assert abs(tall.min() - song_x.max()) <= 4
    assert near(pixels, PLAYHEAD_COLOUR, 12).sum(axis=0).max() > 100  # the playhead line

    if os.environ.get("ENCORE_SCREENSHOT"):
        shutil.copyfile(picture, os.environ["ENCORE_SCREENSHOT"])
