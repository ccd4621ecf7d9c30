"""Song-by-song comparisons of two generators: the mean difference of a score, its standard error, and whether
one is better or not worse than the other beyond the song-to-song noise; and the words a table prints for a
verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .files import source_tracks

#: What each model generator is compared with song by song (:func:`paired_differences`), and on which distances.
PAIRED_RIVALS = ("jukebox", "loop", "match")
#: A paired difference is "better" (or "worse") when it is more than this many standard errors from 0.
PAIRED_STANDARD_ERRORS = 2.0
#: The distances to the true continuation every generator is scored on and compared on song by song (a results
#: file may lack newer ones).
SCORED = ("logmel_db", "harmony")
#: The row of the real continuation.
TRUE = "true"


def paired_differences(name: str, per_song: dict[str, dict], *, rivals: Sequence[str] = PAIRED_RIVALS,
                       distances: Sequence[str] = SCORED, truth: bool = True) -> dict:
    """Song by song, ``name`` against each rival: mean difference (``name`` minus rival), its standard error, and
    whether ``name`` is better or not worse beyond the song-to-song noise.

    Against ``rivals`` (:data:`PAIRED_RIVALS`) on the distances to the true continuation (negative is closer),
    and, when ``truth``, against the true continuation itself on tempo and key held (the share of draws minus
    the truth's 0 or 1; positive is held more often). Each entry: ``mean_difference``, ``standard_error``,
    ``better`` (the mean is better than 0 by more than :data:`PAIRED_STANDARD_ERRORS` standard errors),
    ``not_worse`` (it is not worse than 0 by more than that; None for both with fewer than two songs),
    ``songs_better`` (songs where ``name`` does better) and ``songs``. A rival or score no song has is left out.
    Clips of one track (:func:`.files.source_tracks`) are averaged into one difference first, and counted as one song.

    A median over a few dozen songs moves with a single song, and a share held by a beat tracker flips with
    it; the paired difference says whether a gap is larger than the song-to-song noise.
    """
    tracks = source_tracks(per_song)

    def compare(rival: str, keys: Sequence[str], value, sign: float) -> dict:
        out = {}
        for key in keys:
            # Clips cut from one track share its sound: each track's differences are averaged, so that two
            # clips of a track count as one sample of the song-to-song noise, not two.
            per_track = []
            for clips in tracks.values():
                found = [value(per_song[c][name], key) - value(per_song[c][rival], key) for c in clips
                         if name in per_song[c] and rival in per_song[c]]
                found = [d for d in found if np.isfinite(d)]
                if found:
                    per_track.append(float(np.mean(found)))
            difference = np.array(per_track, dtype=float)
            if not difference.size:
                continue
            mean = float(difference.mean())
            error = float(difference.std(ddof=1) / np.sqrt(difference.size)) if difference.size > 1 else math.nan
            margin = PAIRED_STANDARD_ERRORS * error
            judged = np.isfinite(error)
            out[key] = {"mean_difference": mean, "standard_error": error,
                        "better": bool(sign * mean > margin) if judged else None,
                        "not_worse": bool(sign * mean >= -margin) if judged else None,
                        "songs_better": int(np.sum(sign * difference > 0)), "songs": int(difference.size)}
        return out

    def distance(row: dict, key: str) -> float:
        value = row.get(key)  # an evaluation from before a criterion has none of it
        return math.nan if value is None else float(value)

    out = {}
    for rival in rivals:
        if rival != name and (found := compare(rival, distances, distance, -1.0)):
            out[rival] = found
    if truth and (found := compare(TRUE, ("tempo", "key"), lambda row, key: float(row[key]["held"]), 1.0)):
        out[TRUE] = found
    return out


def paired_word(difference: dict) -> str:
    """"better", "not worse" (within the noise) or "worse", from a :func:`paired_differences` entry; "n/a" for one
    song."""
    if difference["better"] is None:
        return "n/a"
    return "better" if difference["better"] else "not worse" if difference["not_worse"] else "worse"


def verdict_word(ok: bool | None) -> str:
    """A bar's or a criterion's verdict as a table prints it: "PASS", "FAIL", or "n/a " where it was not judged."""
    return "n/a " if ok is None else "PASS" if ok else "FAIL"
