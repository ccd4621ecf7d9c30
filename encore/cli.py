"""``encore COMMAND``: the engine's commands, ``encore player`` and ``encore train COMMAND``.

A command whose optional extra is not installed (the player's Qt, training's TensorFlow) says so on one line and
exits with status 2, as any other user mistake does.
"""

from __future__ import annotations

import sys

from engine.cli import EXIT_USER_ERROR, console

PROG = "encore"
OTHER_COMMANDS = {
    "player": "the desktop player: encore player [SONG] (needs the player extra)",
    "train": "training, export and evaluation: encore train COMMAND (needs the train extra; "
             "encore train --help lists its commands)",
}


def _missing_extra(command: str, extra: str, error: ImportError) -> int:
    print(f"{PROG} {command}: error: {error.name or error} is not installed; it comes with the {extra} extra: "
          f"pip install 'encore[{extra}]' (in a checkout: pip install -e '.[{extra}]')", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: list[str] | None = None) -> int:
    """Run one ``encore`` command line; returns the exit status (2 for a user's mistake)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command == "player":
        try:
            import PyQt6.QtWidgets  # noqa: F401  (the player imports Qt inside main: find out here)

            from player.app import main as player_main
        except ImportError as e:
            return _missing_extra(command, "player", e)
        return player_main(argv[1:], prog=f"{PROG} player")
    if command in ("train", "training"):
        from training.cli import main as training_main

        return training_main(argv[1:], prog=f"{PROG} {command}")
    return console(argv, prog=PROG, other_commands=OTHER_COMMANDS)
