"""How well the engine finds the beat, the meter and the downbeats (``training downbeats``).

Two measures of :func:`engine.analysis.analyse`:

* **Held-out renders with labels** (:mod:`training.evaluation.labelled_renders`): music21 corpus scores that no
  default corpus build renders, rendered as the corpus renders them, with their exact beat and downbeat times,
  and the demo song; scored by downbeat and beat F-measure, meter and tempo
  (:mod:`training.evaluation.beat_scores`).
* **Agreement on recordings**, which have no labels (:mod:`training.evaluation.recorded_agreement`): the
  downbeats of a passage a track plays again, moved onto its repeat, should fall on the repeat's downbeats; and
  the two halves of a track, analysed apart, should get the same meter.

Each is reported for the analysis as it is and as it was before issue 21 (:func:`engine.analysis._analyse` with
``legacy=True``), side by side. :func:`run` builds the renders (kept under ``OUT_DIR/renders``, reused while
their settings match), judges them, and writes the results to ``OUT_DIR/downbeats.json``; :func:`format_table`
prints their summary.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..common.files import write_atomically
from .beat_scores import F_WINDOW_S, TEMPO_TOLERANCE, evaluate_set
from .labelled_renders import CORPUS_SCORES, DEFAULT_SCORES, build_set
from .recorded_agreement import RECORDED_PER_PACKAGE, evaluate_recorded, recorded_tracks


def run(out_dir: str | os.PathLike, *, scores: int = DEFAULT_SCORES, recorded: bool = False,
        recorded_per_package: int = RECORDED_PER_PACKAGE, workers: int = 2,
        progress: Callable[[str], None] | None = None) -> dict:
    """Build the labelled set if needed, judge the analysis before and after issue 21 on it (and, with
    ``recorded``, on recorded tracks), and write ``out_dir/downbeats.json``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Where the renders are kept and the results written.
    scores : int
        Renders in the set, the demo song included.
    recorded : bool
        Also judge agreement on :func:`training.evaluation.recorded_agreement.recorded_tracks`.
    recorded_per_package : int
        Tracks of each recorded package.
    workers : int
        Rendering processes.
    progress : callable, optional
        Called with one line per render, analysis and track.

    Returns
    -------
    dict
        What ``downbeats.json`` holds: ``renders`` (:func:`training.evaluation.beat_scores.evaluate_set`),
        ``recorded`` (:func:`training.evaluation.recorded_agreement.evaluate_recorded`, with ``recorded``),
        the settings and the seconds taken.

    Raises
    ------
    ConfigError
        See :func:`training.evaluation.labelled_renders.build_set` and
        :func:`training.evaluation.recorded_agreement.recorded_tracks`.
    """
    started = time.monotonic()
    renders = build_set(out_dir, scores=scores, workers=workers, progress=progress)
    results: dict = {"created_by": "training downbeats", "f_window_s": F_WINDOW_S,
                     "tempo_tolerance": TEMPO_TOLERANCE, "corpus_scores_skipped": CORPUS_SCORES,
                     "renders": evaluate_set(renders, progress)}
    if recorded:
        results["recorded"] = evaluate_recorded(recorded_tracks(recorded_per_package), progress)
    results["seconds"] = round(time.monotonic() - started, 1)
    path = Path(out_dir) / "downbeats.json"
    write_atomically(path, (json.dumps(results, indent=1) + "\n").encode())
    return results


def format_table(results: dict) -> str:
    """The summary of :func:`run`'s results as a plain-text table, before and after side by side."""
    lines = []
    renders = results["renders"]
    columns = (("downbeat_f", "downbeat F"), ("beat_f", "beat F"), ("meter_right", "meter"),
               ("tempo_right", "tempo"), ("beats", "beats"))
    for key, title in (("summary", "all renders"), ("summary_where_both_beat", "renders both track")):
        summary = renders[key]
        n = summary[next(iter(summary))].get("n", 0) if summary else 0
        lines.append(f"{title} ({n}) " + "".join(f"{name:>12}" for _, name in columns))
        for method, figures in summary.items():
            lines.append(f"  {method:<{len(title) + len(str(n)) + 1}}"
                         + "".join(f"{_cell(figures.get(k)):>12}" for k, _ in columns))
    if "recorded" in results:
        summary = results["recorded"]["summary"]
        columns = (("repeat_f", "repeat F"), ("halves_meter", "same meter"), ("halves_tempo", "same tempo"),
                   ("beats", "beats"))
        n = summary[next(iter(summary))].get("n", 0) if summary else 0
        title = f"recorded ({n})"
        lines.append(title + "".join(f"{name:>12}" for _, name in columns))
        for method, figures in summary.items():
            cells = []
            for key, _ in columns:
                judged = figures.get(f"{key}_n")
                cells.append(_cell(figures.get(key)) + (f" ({judged})" if judged is not None else ""))
            lines.append(f"  {method:<{len(title) - 2}}" + "".join(f"{cell:>12}" for cell in cells))
    lines.append("F: mir_eval F-measure, +-70 ms; meter: the bar found is the score's (4 %); tempo: the score's beat "
                 "or quarter (4 %); beats: share tracked with a beat (the rest fall back to onsets or a grid and "
                 "score 0); repeat F: downbeats of a passage moved onto its repeat; same meter / tempo: the two "
                 "halves of a track analysed apart; (n): tracks judged, where not all (with repeats and a beat; "
                 "both halves with a beat).")
    return "\n".join(lines)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"
