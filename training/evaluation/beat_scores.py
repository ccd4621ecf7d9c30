"""How one beat analysis of a labelled render is scored, and the analyses compared (before and after issue 21).

The F-measures are mir_eval's (:func:`f_measure`, :data:`F_WINDOW_S`); a tempo or a bar is right within
:data:`TEMPO_TOLERANCE`. :func:`evaluate_set` scores every render of :mod:`training.evaluation.labelled_renders`
with each of :func:`compared_methods`; :func:`summarise` gives the means the table prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engine.analysis import ANALYSIS_RATE, Analysis
from engine.audio import load_audio, to_model_input

from .labelled_renders import LabelledRender

#: mir_eval's F-measure window, in seconds (its default, the usual one for beats and downbeats).
F_WINDOW_S = 0.07
#: A tempo or a bar length counts as right within this ratio of the labelled one.
TEMPO_TOLERANCE = 0.04


def evaluate_render(render: LabelledRender, analysis: Analysis) -> dict:
    """How well one analysis of a render found its beats, meter and downbeats.

    Parameters
    ----------
    render : LabelledRender
    analysis : Analysis
        Of the render's audio at :data:`engine.analysis.ANALYSIS_RATE`.

    Returns
    -------
    dict
        ``downbeat_f`` and ``beat_f`` (:func:`mir_eval.beat.f_measure`, :data:`F_WINDOW_S`; 0 without a beat),
        ``meter_right`` (the bar found, meter beats at the tempo found, is the score's within
        :data:`TEMPO_TOLERANCE`: 4/4 is right as 4 quarters, 6/8 as 2 dotted quarters or 3 quarters),
        ``tempo_right`` (within :data:`TEMPO_TOLERANCE` of the score's beat or its quarter note), ``beats``
        (the analysis tracked a beat), and the ``meter`` and ``tempo_bpm`` found.
    """
    estimated = analysis.bounds[:-1] / analysis.sample_rate if analysis.mode == "beats" else np.zeros(0)
    downbeats = estimated[analysis.phase == 0] if analysis.mode == "beats" else np.zeros(0)
    beat_f, downbeat_f = (f_measure(np.asarray(reference), found)
                          for reference, found in ((render.beats, estimated), (render.downbeats, downbeats)))
    tempo = analysis.tempo_bpm
    tempo_right = tempo > 0 and min(abs(tempo / render.beat_bpm - 1), abs(tempo / render.qpm - 1)) <= TEMPO_TOLERANCE
    bar_right = tempo > 0 and abs(analysis.meter * 60.0 / tempo / render.bar_s - 1) <= TEMPO_TOLERANCE
    return {"downbeat_f": downbeat_f, "beat_f": beat_f, "meter_right": bool(bar_right),
            "tempo_right": bool(tempo_right), "beats": analysis.mode == "beats", "meter": analysis.meter,
            "tempo_bpm": round(tempo, 2)}


def f_measure(reference: np.ndarray, estimated: np.ndarray) -> float:
    """:func:`mir_eval.beat.f_measure` with its default window (:data:`F_WINDOW_S`), 0 where either is empty.

    Parameters
    ----------
    reference, estimated : numpy.ndarray
        [shape=(events,)] times in seconds.
    """
    import mir_eval

    reference, estimated = np.sort(np.asarray(reference, np.float64)), np.sort(np.asarray(estimated, np.float64))
    if not reference.size or not estimated.size:
        return 0.0
    return float(mir_eval.beat.f_measure(reference, estimated, f_measure_threshold=F_WINDOW_S))


def compared_methods() -> dict[str, Callable[[np.ndarray], Analysis]]:
    """The analyses compared: ``before`` (as on main before issue 21) and ``after``
    (:func:`engine.analysis.analyse`)."""
    from engine.analysis import _analyse, analyse

    return {"before": lambda mono: _analyse(mono, legacy=True), "after": analyse}


def summarise(rows: Sequence[dict]) -> dict:
    """Means over renders (or tracks) of each score (F-measures, and shares for the yes/no ones); a score that
    is None for a row (no repeat to judge) leaves that row out of its mean."""
    keys = [k for k in (rows[0] if rows else {})
            if any(isinstance(r[k], (bool, float)) for r in rows) and k != "tempo_bpm"]
    summary: dict = {"n": len(rows)}
    for key in keys:
        values = [float(r[key]) for r in rows if r[key] is not None]
        summary[key] = round(float(np.mean(values)), 3) if values else None
        if len(values) < len(rows):
            summary[f"{key}_n"] = len(values)
    return summary


def evaluate_set(renders: Sequence[LabelledRender], progress: Callable[[str], None] | None = None) -> dict:
    """Every render analysed before and after issue 21, each scored by :func:`evaluate_render`.

    Returns
    -------
    dict
        ``{"renders": [per render: name, origin, labels' meter and tempo, and {method: scores}],
        "summary": {method: means over all renders}, "summary_where_both_beat": {method: means over the
        renders both methods tracked a beat in}}``.
    """
    say = progress or (lambda line: None)
    methods = compared_methods()
    rows = []
    for render in renders:
        mono = to_model_input(load_audio(render.path), ANALYSIS_RATE)
        row = {"name": render.name, "origin": render.origin, "time_signature": render.time_signature,
               "meter": render.meter, "beat_bpm": round(render.beat_bpm, 2)}
        for method, analyse in methods.items():
            row[method] = evaluate_render(render, analyse(mono))
        say(f"{render.name}: {render.time_signature} at {render.beat_bpm:.0f} bpm; "
            + "; ".join(f"{m} {row[m]['tempo_bpm']:.0f} bpm {row[m]['meter']}, downbeat F {row[m]['downbeat_f']:.2f}"
                        for m in methods))
        rows.append(row)
    both = [r for r in rows if all(r[m]["beats"] for m in methods)]
    return {"renders": rows,
            "summary": {m: summarise([r[m] for r in rows]) for m in methods},
            "summary_where_both_beat": {m: summarise([r[m] for r in both]) for m in methods}}
