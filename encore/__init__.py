"""Encore's one command, ``encore``: the front door to the engine, the player and training.

It only dispatches; the work is in :mod:`engine` (``python -m engine``), :mod:`player` (``python -m player``) and
:mod:`training` (``python -m training``), which never import this package.
"""
