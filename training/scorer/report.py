"""How well a scorer ranks the candidates, against two baselines; a run's report.json and its table.

Baselines (``report.json``, printed after training, for both tasks whichever was trained):

"Most similar": minus the euclidean distance of timbre and harmony to segment ``t``: of the candidate itself
for ``"next"`` ("the next beat sounds like the current one"), of the segment before it for ``"standin"``
("jump where the music sounds like where we are", the jukebox rule); and chance, ``1 / candidates``. Each
scorer's "pick cost" is the mean cost of the candidate it ranks first.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from engine.analysis import HARMONY, TIMBRE
from engine.errors import ConfigError

from .examples import ExampleConfig, Examples, validation_tasks
from .model import build_training_model
from .run import load_resynth_run
from .segments import default_cache_dir, segment_files

# === Evaluation ===


def most_similar_scores(examples: Examples, *, target: str) -> np.ndarray:
    """The trivial scorer: minus a timbre-and-harmony distance to segment ``t``, the one just played.

    For ``"next"`` the candidate itself is compared ("the next beat sounds like the current one"); for
    ``"standin"`` the segment before it ("jump where the music sounds like where we are": the jukebox rule,
    and what the engine's join cost starts from).

    Returns
    -------
    numpy.ndarray
        [shape=(examples, M)]
    """
    look = np.r_[TIMBRE, HARMONY]
    compared = examples.own if target == "next" else examples.previous
    difference = compared[:, :, look] - examples.current[:, None, look]
    return -np.sqrt(np.sum(difference.astype(np.float64) ** 2, axis=-1))


def rank_metrics(scores: np.ndarray, costs: np.ndarray | None = None) -> dict[str, float]:
    """Top-1 and top-5 accuracy and mean rank of candidate 0, ties broken at random (in expectation).

    Parameters
    ----------
    scores : numpy.ndarray
        [shape=(examples, M)], higher is better; candidate 0 is the one to find.
    costs : numpy.ndarray, optional
        [shape=(examples, M)] :attr:`Examples.costs`: adds ``pick_cost``, the mean cost of each example's
        top-scored candidate.
    """
    true = scores[:, :1]
    above = np.sum(scores[:, 1:] > true, axis=1)
    tied = np.sum(scores[:, 1:] == true, axis=1)

    def top(k: int) -> float:
        return float(np.mean(np.clip((k - above) / (tied + 1), 0.0, 1.0)))

    metrics = {"top1": top(1), "top5": top(5), "mean_rank": float(np.mean(1 + above + tied / 2))}
    if costs is not None:
        metrics["pick_cost"] = float(np.mean(np.take_along_axis(costs, np.argmax(scores, axis=1)[:, None], 1)))
    return metrics


def chance_metrics(examples: Examples) -> dict[str, float]:
    m = examples.candidates.shape[1]
    return {"top1": 1 / m, "top5": min(5, m) / m, "mean_rank": (m + 1) / 2,
            "pick_cost": float(np.mean(examples.costs))}


def evaluate(model: keras.Model, tasks: dict[str, Examples], *, batch_size: int = 256) -> dict:
    """The learned scorer, the most-similar scorer, the two added as the engine adds them, and chance on the same
    examples, per task, overall and per mode.

    Parameters
    ----------
    tasks : dict
        ``{"next": Examples, "standin": Examples}`` (either may be missing).
    """
    report = {}
    for target, examples in tasks.items():
        learned = np.asarray(model.predict([examples.context, examples.candidates], batch_size=batch_size,
                                           verbose=0))
        similar = most_similar_scores(examples, target=target)
        together = engine_scores(learned, similar)
        by_mode = {}
        for mode in ("beats", "onsets", "grid"):
            rows = examples.mode == mode
            if rows.any():
                by_mode[mode] = {"examples": int(rows.sum()),
                                 "learned": rank_metrics(learned[rows], examples.costs[rows]),
                                 "most_similar": rank_metrics(similar[rows], examples.costs[rows])}
        report[target] = {
            "examples": len(examples), "candidates": int(examples.candidates.shape[1]),
            "same_phase_share": float(np.mean(examples.same_phase)),
            "best_cost": float(np.mean(examples.costs[:, 0])),
            "scorers": {"learned": rank_metrics(learned, examples.costs),
                        "most_similar": rank_metrics(similar, examples.costs),
                        "learned_and_similar": rank_metrics(together, examples.costs),
                        "chance": chance_metrics(examples)},
            "by_mode": by_mode}
    return report


def engine_scores(learned: np.ndarray, similar: np.ndarray) -> np.ndarray:
    """The learned scores and the most-similar rule added as the engine's beam search adds its learned term and
    join cost: ``WEIGHT_LEARNED * log softmax(learned) - WEIGHT_JOIN * distance / median distance``.

    Parameters
    ----------
    learned, similar : numpy.ndarray
        [shape=(examples, M)]: the scorer's logits and :func:`most_similar_scores` (minus a distance).

    Returns
    -------
    numpy.ndarray
        [shape=(examples, M)], higher is better.
    """
    from engine.resynth import Sequencer

    logits = learned.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    distance = -similar
    scale = np.maximum(np.median(distance, axis=1, keepdims=True), 1e-9)
    return Sequencer.WEIGHT_LEARNED * log_probabilities - Sequencer.WEIGHT_JOIN * distance / scale


TASK_TITLES = {
    "next": "find the true next segment among {others} other segments of the song",
    "standin": "find the memory's best stand-in for the true continuation among {m} segments heard before it "
               "(pick cost: how far the chosen segment's own continuation is from the true one, dB)",
}


def format_table(report: dict) -> str:
    """The validation tables of ``report.json``, one per task, as printed after training."""
    lines = []
    for target, v in report["validation"].items():
        lines += [f"validation, {target} (trained on: {report.get('target', 'next')}): "
                  + TASK_TITLES[target].format(others=v["candidates"] - 1, m=v["candidates"])
                  + f"; {v['examples']} examples from {report['validation_songs']} songs, all candidates of the "
                  f"right bar phase in {100 * v['same_phase_share']:.0f} %",
                  f"{'scorer':<38}{'top-1':>8}{'top-5':>8}{'mean rank':>11}{'pick cost':>11}"]
        names = {"learned": "learned (query . key)", "most_similar": "most similar to the current segment",
                 "learned_and_similar": "both, added as the beam search does",
                 "chance": f"chance (1/{v['candidates']})"}
        for key, label in names.items():
            if key not in v["scorers"]:  # a report written before that scorer was added
                continue
            s = v["scorers"][key]
            lines.append(f"{label:<38}{100 * s['top1']:>7.1f}%{100 * s['top5']:>7.1f}%{s['mean_rank']:>11.2f}"
                         f"{s['pick_cost']:>11.3f}")
        lines.append(f"{'best possible':<38}{'':>8}{'':>8}{'':>11}{v['best_cost']:>11.3f}")
        for mode, row in v["by_mode"].items():
            lines.append(f"  {mode} ({row['examples']} examples): learned {100 * row['learned']['top1']:.1f}% / "
                         f"most similar {100 * row['most_similar']['top1']:.1f}% top-1")
    return "\n".join(lines)


# === Run reports ===


def report_resynth(run_dir: str | Path, *, segments_dir: str | Path | None = None) -> dict:
    """Score a resynth run's best weights again on its validation songs, both tasks, and update its report.json.

    For a run trained before the stand-in task existed, or to see a scorer on the task it was not trained on.

    Returns
    -------
    dict
        The updated contents of report.json.
    """
    run_dir = Path(run_dir)
    scorer, config, settings = load_resynth_run(run_dir)
    files = [Path(p) for p in settings["validation_files"]]
    missing = [p for p in files if not p.exists()]
    if missing:
        raise ConfigError(f"{run_dir}: {len(missing)} validation songs are gone (first: {missing[0]})")
    corpus = segment_files(files, segments_dir or default_cache_dir(settings["data_dir"]), workers=2)
    validation = [corpus.analyses[p] for p in files if p in corpus.analyses]
    examples = ExampleConfig(**{**asdict(ExampleConfig()), **settings.get("examples", {})})
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report.update(target=examples.target, validation_songs=len(validation),
                  validation=evaluate(build_training_model(scorer),
                                      validation_tasks(validation, config, examples, settings["data"]["seed"])))
    report_path.write_text(json.dumps(report, indent=2))
    return report


def training_summary(run_dir: Path) -> str:
    """One line on how a run trained and how its scorer ranks on validation (from report.json)."""
    path = run_dir / "report.json"
    if not path.exists():
        return ""
    report = json.loads(path.read_text())
    target = report.get("target", "next")
    v = report["validation"][target]
    s = v["scorers"]
    return (f"{report['epochs']} epochs (best {report['best_epoch']}), trained to find the {target} segment; "
            f"validation top-1 {100 * s['learned']['top1']:.1f} % vs most-similar "
            f"{100 * s['most_similar']['top1']:.1f} % and chance {100 * s['chance']['top1']:.1f} %, pick cost "
            f"{s['learned']['pick_cost']:.2f} vs {s['most_similar']['pick_cost']:.2f} dB over {v['examples']} "
            "examples")
