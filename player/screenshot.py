"""``python -m player.screenshot OUT.png``: the window playing a song past its end, captured from the screen.

It opens the song (the demo song unless told), seeks to a few seconds before its end, plays with Endless on until
the continuation has played for ``--past-end`` seconds, and saves what the display server shows of the window:
the pixels a user would see, not an offscreen rendering. Needs a display (Xvfb will do) and an audio output.
Prints one JSON line: playhead, song length, seams drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m player.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="PNG to write")
    parser.add_argument("--song", help="song to open (default: the demo song)")
    parser.add_argument("--model", help="ONNX model (default: the shipped one)")
    parser.add_argument("--output-device", help="output device: a number or part of a name")
    parser.add_argument("--before-end", type=float, default=6.0, help="seek to this many seconds before the end")
    parser.add_argument("--past-end", type=float, default=8.0, help="seconds of continuation to play first")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    from PyQt6.QtCore import QSettings
    from PyQt6.QtWidgets import QApplication

    from engine.cli import device_argument

    from .session import PlayerSession
    from .window import DEMO_SONG, MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "player.ini"), QSettings.Format.IniFormat)
    settings.setValue("started", True)  # no welcome banner over the picture
    session = PlayerSession(args.model, output_device=device_argument(args.output_device))
    window = MainWindow(session, settings=settings)
    window.resize(1100, 620)
    window.show()
    song = session.song if window.open_song(args.song or DEMO_SONG) else None
    if song is None:
        print(f"player.screenshot: error: {window.last_message}", file=sys.stderr)
        return 2
    app.processEvents()
    ready_s = time.perf_counter() - started  # imports, model load, window, song decoded and drawn
    updates: list[float] = []  # when the window heard from the engine: gaps here are a frozen view
    session.statusChanged.connect(lambda _: updates.append(time.perf_counter()))
    song_s = song.seconds
    clicked = time.perf_counter()
    session.seek(max(0.0, song_s - args.before_end))
    session.play()
    playing_from = time.perf_counter()  # Play returns once the stream runs, the lead already written
    deadline = time.monotonic() + args.before_end + args.past_end + 30
    while session.position_s < song_s + args.past_end:
        app.processEvents()
        if time.monotonic() > deadline or session.status().state == "error":
            print(f"player.screenshot: error: playback did not get past the end ({window.last_message})",
                  file=sys.stderr)
            return 1
        time.sleep(0.01)
    for _ in range(10):  # let the last status reach the widgets and be painted
        app.processEvents()
        time.sleep(0.02)
    geometry, screen = window.frameGeometry(), window.screen()
    if screen is None:
        print("player.screenshot: error: the window is on no screen", file=sys.stderr)
        return 1
    # The screen's pixels where the window is (its default ``window``, 0, is the whole screen).
    picture = screen.grabWindow(x=geometry.x(), y=geometry.y(), width=geometry.width(), height=geometry.height())
    if picture.isNull() or not picture.save(args.output):
        print(f"player.screenshot: error: could not save {args.output}", file=sys.stderr)
        return 1
    status = session.status()
    steady = np.array([t for t in updates if t > playing_from + 1.0])  # after Play's own work on the GUI thread
    gaps_ms = np.diff(steady) * 1000 if steady.size > 1 else np.zeros(1)
    print(json.dumps({"playhead_s": session.position_s, "song_s": song_s, "seams": window.waveform.seams_s,
                      "state": status.state, "size": [picture.width(), picture.height()],
                      "window_ready_s": round(ready_s, 3), "view_updates": len(updates),
                      "seek_and_play_s": round(playing_from - clicked, 3),
                      "view_update_gap_ms": {"median": round(float(np.median(gaps_ms)), 1),
                                             "max": round(float(gaps_ms.max()), 1)},
                      "chunks": status.chunks, "underruns": status.underruns, "late_chunks": status.late_chunks}))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
