"""The 10 s criteria of ``training evaluate``: each generator's medians over songs, the paired comparisons, and the
bar each model generator must clear, with how firmly each verdict stands when the songs are resampled."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .baselines import BASELINES
from .files import source_tracks
from .metrics.rhythm import SLIP_FAR_MS
from .metrics.seams import seam_summary
from .paired import PAIRED_STANDARD_ERRORS, SCORED, TRUE, paired_differences

#: The bar a generator must clear (see :func:`judge_bar`).
BAR_FLATNESS_TOLERANCE = 0.1
BAR_REAL_TIME_FACTOR = 0.01
#: Resamplings of the songs (with replacement) over which each criterion of the bar is judged again.
BAR_RESAMPLES = 1000


def judge(per_song: dict[str, dict], generators: Sequence[str], music: dict) -> dict:
    """Summaries, the bar (with how firmly each verdict stands) and the paired comparisons, from per-song scores.

    Parameters
    ----------
    per_song : dict
        Song name to generator name to that generator's scores on the song (``results["songs"]``).
    generators : sequence of str
        The generators run, in order.
    music : dict
        The songs' own beat boundaries scored as joins (:func:`seam_summary`).

    Returns
    -------
    dict
        ``summary``, ``bar`` and ``paired``, as in ``results.json``, and ``missing``: the scores of
        :data:`SCORED` that no song holds (an evaluation from before they existed), judged nowhere.
    """
    names = list(generators)
    summary = {name: summarise(name, per_song) for name in [TRUE] + names}
    paired = {name: paired_differences(name, per_song) for name in names if name not in BASELINES}
    bar = {name: judge_bar(name, summary, music, paired[name]) for name in names if name not in BASELINES}
    bar_stability(bar, per_song, music)
    rows = [row for song in per_song.values() for row in song.values()]
    return {"summary": summary, "bar": bar, "paired": paired,
            "missing": [key for key in SCORED if not any(key in row for row in rows)]}


def summarise(name: str, per_song: dict[str, dict]) -> dict:
    """Medians (and shares) over songs of one generator's metrics."""
    rows = [song[name] for song in per_song.values() if name in song]

    def median(values) -> float:
        values = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
        return float(np.median(values)) if values.size else math.nan

    seams = [s for row in rows for s in row["seams"] + row.get("seams_long", [])]
    repeats = [row["repetition"] for row in rows if "repetition" in row]
    slips = np.array([slip for row in rows for slip in row["beat"].get("join_slips_ms", [])], dtype=float)
    return {
        "songs": len(rows),
        "logmel_db": median(row["logmel_db"] for row in rows),
        # .get: results scored before the harmony criterion hold "chroma" instead (see rejudge)
        "harmony": median(row.get("harmony") for row in rows),
        "seams": seam_summary(seams),
        "tempo_held": float(np.mean([row["tempo"]["held"] for row in rows])) if rows else math.nan,
        "key_held": float(np.mean([row["key"]["held"] for row in rows])) if rows else math.nan,
        "beat_f": median(row["beat"]["f"] for row in rows),
        "join_slip_ms": median(slips),
        "join_slip_far_share": float(np.mean(slips > SLIP_FAR_MS)) if slips.size else math.nan,
        "loudness_step_lu": median(abs(row["loudness_step_lu"]) for row in rows),
        "flatness_ratio": median(row["flatness_ratio"] for row in rows),
        "longest_loop_s": max((r["longest_loop_s"] for r in repeats), default=math.nan),
        "repeated_share": float(np.mean([r["repeated_share"] for r in repeats])) if repeats else math.nan,
        "repetition_songs": len(repeats),
        "real_time_factor": median(row.get("real_time_factor", math.nan) for row in rows),
        "first_chunk_real_time_factor": median(row.get("first_chunk_real_time_factor", math.nan) for row in rows),
    }


def judge_bar(name: str, summary: dict[str, dict], music: dict, paired: dict | None = None) -> dict:
    """The bar a generator must clear, criterion by criterion (``pass`` is None where it cannot be judged).

    Issue 21's 10 s bar. Every criterion that compares two generators is judged on the paired per-song
    difference (from ``paired``, :func:`.paired.paired_differences`): "better" by more than
    :data:`.paired.PAIRED_STANDARD_ERRORS` standard errors, "not worse" by no more than that. Its log-mel distance
    is better than ``loop``'s and not worse than ``match``'s, its harmony distance not worse than either's; it
    holds tempo and key not worse than the true continuation does; its joins' 95th percentile is within the
    music's own beat boundaries' (jump and HF ratio); its median flatness ratio is within 10 % of 1; its median
    real-time factor per chunk, and for the first chunk with the analysis inside, is at most
    :data:`BAR_REAL_TIME_FACTOR`. The longest exact loop in 10 minutes is reported, not judged: runs of whole
    phrases from a 40 s clip repeat its stretches by design, and a continuation over minutes is judged on whole
    songs (``training longlisten``).
    """
    mine = summary[name]
    paired = paired or {}

    def check(ok, value, target) -> dict:
        ok = None if ok is None or (isinstance(value, float) and not np.isfinite(value)) else bool(ok)
        return {"pass": ok, "value": value, "target": target}

    def song_by_song(rival: str, key: str, verdict: str) -> dict:
        """``verdict`` ("better" or "not_worse") of the paired difference against ``rival`` on ``key``: the value
        is the mean difference, the target the margin of two standard errors."""
        found = paired.get(rival, {}).get(key)
        if found is None:
            return check(None, math.nan, math.nan)
        return check(found[verdict], found["mean_difference"], PAIRED_STANDARD_ERRORS * found["standard_error"])

    # The labels stay the same when a rival did not run (the criterion is n/a then): the resamplings of
    # bar_stability look criteria up by label.
    criteria = {
        "log-mel better than loop, song by song": song_by_song("loop", "logmel_db", "better"),
        "log-mel not worse than match, song by song": song_by_song("match", "logmel_db", "not_worse"),
        "harmony not worse than loop, song by song": song_by_song("loop", "harmony", "not_worse"),
        "harmony not worse than match, song by song": song_by_song("match", "harmony", "not_worse"),
    }
    for key, label in (("jump", "seam jump"), ("hf_ratio", "seam HF ratio")):
        criteria[f"{label} p95 within the music's own"] = check(
            mine["seams"][f"{key}_p95"] <= music[f"{key}_p95"], mine["seams"][f"{key}_p95"], music[f"{key}_p95"])
    for key, label in (("tempo", "tempo held"), ("key", "key held")):
        criteria[f"{label} not less often than the true continuation, song by song"] = song_by_song(
            TRUE, key, "not_worse")
    criteria["flatness within 10 % of the original"] = check(
        abs(mine["flatness_ratio"] - 1.0) <= BAR_FLATNESS_TOLERANCE, mine["flatness_ratio"], 1.0)
    criteria[f"real-time factor at most {BAR_REAL_TIME_FACTOR:g} per chunk"] = check(
        mine["real_time_factor"] <= BAR_REAL_TIME_FACTOR, mine["real_time_factor"], BAR_REAL_TIME_FACTOR)
    first = mine.get("first_chunk_real_time_factor", math.nan)
    criteria[f"real-time factor at most {BAR_REAL_TIME_FACTOR:g} for the first chunk, analysis included"] = check(
        first <= BAR_REAL_TIME_FACTOR, first, BAR_REAL_TIME_FACTOR)
    judged = [c["pass"] for c in criteria.values() if c["pass"] is not None]
    return {"pass": bool(judged) and all(judged), "criteria": criteria}


def bar_stability(bars: dict[str, dict], per_song: dict[str, dict], music: dict, *,
                  resamples: int = BAR_RESAMPLES, seed: int = 0) -> None:
    """Add to each bar (from :func:`judge_bar`, by generator) how firmly each verdict stands, as ``agreement`` (0 to 1).

    A few dozen songs are a sample: a median or a share held moves with a song or two, and a criterion whose
    gap is inside that noise flips with it. Each of ``resamples`` draws as many tracks as there are, with
    replacement (:func:`source_tracks`: clips cut from one track are drawn together, since they share its
    sound), summarises their songs again and judges every bar again (the music's own seam range stays as
    measured); ``agreement`` is the share of draws whose verdict is the one reported, for each criterion and
    for the whole bar. Near 0.5 the songs cannot tell; near 1 the verdict stands.
    """
    tracks = list(source_tracks(per_song).values())
    if len(tracks) < 2 or not bars:
        return
    rows = [TRUE] + list(dict.fromkeys([*bars, "loop", "jukebox", "match"]))  # every bar's rivals, once a draw
    rng = np.random.default_rng(seed)
    agree = {name: dict.fromkeys(bar["criteria"], 0) for name, bar in bars.items()}
    whole = dict.fromkeys(bars, 0)
    for _ in range(resamples):
        drawn = {f"{i}/{song}": per_song[song]
                 for i, k in enumerate(rng.integers(0, len(tracks), len(tracks))) for song in tracks[k]}
        summary = {r: summarise(r, drawn) for r in rows if any(r in row for row in drawn.values())}
        for name, bar in bars.items():
            # Only the paired comparisons a bar reads: the rest is slow.
            paired = paired_differences(name, drawn, rivals=("loop", "match"), distances=("logmel_db", "harmony"))
            again = judge_bar(name, summary, music, paired)
            for label, criterion in again["criteria"].items():
                agree[name][label] += criterion["pass"] == bar["criteria"][label]["pass"]
            whole[name] += again["pass"] == bar["pass"]
    for name, bar in bars.items():
        for label, count in agree[name].items():
            bar["criteria"][label]["agreement"] = count / resamples
        bar["agreement"] = whole[name] / resamples
        bar["resamples"] = resamples
        bar["resampled_tracks"] = len(tracks)
