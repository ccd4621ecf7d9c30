"""Small constructors for the widgets the window and the Render dialog build: Qt's setters, in one call each.

PyQt6 also takes a widget's properties and signals as keyword arguments of its constructor
(``QSpinBox(minimum=5, ...)``, ``QAction(text, parent, triggered=...)``), but its type stubs do not know them;
these say the same with the setters and ``connect``, so a type checker sees every call.
"""

from __future__ import annotations

from collections.abc import Callable

from PyQt6.QtCore import QObject
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import QDoubleSpinBox, QProgressBar, QSpinBox


def action(text: str, parent: QObject, triggered: Callable[..., object], *,
           shortcut: QKeySequence | QKeySequence.StandardKey | None = None, tool_tip: str | None = None) -> QAction:
    """A menu entry that calls ``triggered`` (with the ``checked`` flag, where it takes one)."""
    item = QAction(text, parent)
    if shortcut is not None:
        item.setShortcut(shortcut)
    if tool_tip is not None:
        item.setToolTip(tool_tip)
    item.triggered.connect(triggered)
    return item


def spin_box(minimum: int, maximum: int, value: int, *, suffix: str = "") -> QSpinBox:
    """An integer spin box over ``[minimum, maximum]`` showing ``value``."""
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


def double_spin_box(minimum: float, maximum: float, value: float, *, decimals: int, single_step: float = 1.0,
                    suffix: str = "") -> QDoubleSpinBox:
    """A spin box of ``decimals`` decimals over ``[minimum, maximum]`` showing ``value`` (the decimals first:
    Qt rounds the range and the value to them)."""
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(minimum, maximum)
    box.setValue(value)
    box.setSingleStep(single_step)
    box.setSuffix(suffix)
    return box


def progress_bar(minimum: int, maximum: int, value: int) -> QProgressBar:
    """A progress bar (or meter) over ``[minimum, maximum]`` at ``value``."""
    bar = QProgressBar()
    bar.setRange(minimum, maximum)
    bar.setValue(value)
    return bar
