"""``encore player [SONG]`` (``python -m player``): start the desktop player.

An exception that escapes a Qt slot would abort PyQt6; the player instead shows it as a message and goes on,
and a user's mistake on the command line ends in one line on stderr, as in the ``engine`` command.
"""

from __future__ import annotations

import argparse
import logging
import sys

from engine.cli import device_argument
from engine.errors import EncoreError
from engine.logs import configure as configure_logging
from engine.logs import log_path
from engine.playback import exit_if_device_lost

EXIT_USER_ERROR = 2


def build_parser(prog: str = "player") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Encore's desktop player: play a song and, when it ends, hear it carry on in its own style. "
                    "Open songs with Ctrl+O or by dropping files on the window; Space plays and pauses; clicking "
                    "the waveform seeks; File > Render writes minutes of the endless song to a file.")
    parser.add_argument("song", nargs="?", help="a song to open (mp3, ogg, flac, wav); the demo song on first start")
    parser.add_argument("--model", help="an ONNX model with Encore's contract (default: the shipped model)")
    parser.add_argument("--output", help="output device: a number or part of a name from `encore devices`")
    return parser


def main(argv: list[str] | None = None, prog: str = "player") -> int:
    args = build_parser(prog).parse_args(argv)
    configure_logging()
    from PyQt6.QtWidgets import QApplication

    from .session import PlayerSession
    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Encore")
    try:
        session = PlayerSession(args.model, output_device=device_argument(args.output))
    except EncoreError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    window = MainWindow(session)

    def show_instead_of_abort(kind, value, tb) -> None:
        logging.getLogger("player").error("unexpected error in the player", exc_info=(kind, value, tb))
        window.show_message(f"unexpected error (the player goes on): {kind.__name__}: {value} "
                            f"(its traceback is in {log_path()})")

    sys.excepthook = show_instead_of_abort
    if args.song and not window.open_song(args.song):
        print(f"{prog}: error: {window.last_message}", file=sys.stderr)
    window.show()
    code = app.exec()
    exit_if_device_lost(code)
    return code

