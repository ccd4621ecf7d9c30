"""Encore's shipped files, installed as the package ``encore_assets``: the default models and the demo song.

Read them with :mod:`engine.shipped` (``importlib.resources``), never by a path into the source tree. What each
file is, where it comes from and its licence: ``README.md`` beside this file.
"""
