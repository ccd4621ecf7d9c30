"""The long listen (``training longlisten``): minutes of continuation per song, measured as a listener hears them
(issue 21, item 5).

A 10 s window (:mod:`.evaluate`) rewards a locally similar beat; a listener hears phrases. Here the whole song is
the memory and every generator plays ``minutes`` (10) of continuation after it, measured by
:func:`.listening.listen`: jumps per minute, the runs between joins in seconds, beats and bars, the jumps that
enter on a downbeat, the joins where the beat grid holds, the song's bars heard whole, and the longest verbatim
repeat. A figure per song and generator goes to ``OUT_DIR/figures/<song>/<generator>.png``, and the first song's
also to ``OUT_DIR/figures/<generator>.png``.

Over songs (:func:`judge`): medians of every measure; song by song, each generator against ``jukebox`` and
``match`` (mean difference ± standard error, :func:`.paired.paired_differences`); and the bar of issue 21, item
6, for resynth and jukebox: at most 8 jumps a minute, a median run of 16 beats or more, the beat grid kept at
95 % of joins or more, 60 % of a song's bars or more heard in 10 minutes (medians over songs).

Songs (:func:`song_listing`): whole tracks of the evaluation packages
(:data:`training.corpus.evalset.EVAL_PACKAGES`, never trained on), half from each, in the evaluation set's fixed
shuffle of each package's tracks (its seed, its variant filter), tracks under :data:`MIN_SONG_S` skipped; or every
song of a folder; or, to choose settings on, the training corpus's validation songs (``--dev-corpus``, the dev set's).

Outputs: ``OUT_DIR/longlisten.json`` (every measure per song and generator, the summaries, paired differences
and the bar) and ``OUT_DIR/longlisten.md`` (the table, with the 10 s medians of ``training evaluate`` beside it
when its ``results.json`` is given or lies in ``OUT_DIR/..``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio import load_audio
from engine.errors import ConfigError, EncoreError

from .baselines import make_generator
from .files import jsonable, song_files
from .listening import BAR_MINUTES, DOWNBEAT_TOLERANCE_S, GENERATORS, SongReference, listen
from .metrics.rhythm import SLIP_FAR_MS
from .paired import paired_differences, paired_word, verdict_word
from .workers import run_in_workers

#: Judged on the bar; the others are baselines.
JUDGED = ("resynth", "jukebox")
#: Each generator is compared song by song with these.
RIVALS = ("jukebox", "match")
DEFAULT_SONGS = 12
DEFAULT_MINUTES = 10.0
#: Tracks shorter than this are left out, in seconds.
MIN_SONG_S = 30.0

#: The bar (issue 21, item 6), on medians over songs.
BAR_JUMPS_PER_MINUTE = 8.0
BAR_RUN_BEATS = 16.0
BAR_GRID_KEPT = 0.95
BAR_BARS_HEARD = 0.60

#: Measures summarised over songs, and which way is better (+1 higher, -1 lower). Fewer jumps is better as
#: the bar reads it: the programs listeners like jump about once in 24 beats.
MEASURES: dict[str, int] = {
    "jumps_per_minute": -1,
    "median_run_s": +1,
    "median_run_beats": +1,
    "median_run_bars": +1,
    "downbeat_share": +1,
    "grid_kept_share": +1,
    "bars_heard_share": +1,
    "bars_heard_share_10min": +1,
    "longest_repeat_s": -1,
}
#: Compared song by song (the run in beats stands for the run in seconds and bars).
PAIRED = ("jumps_per_minute", "median_run_beats", "downbeat_share", "grid_kept_share", "bars_heard_share",
          "longest_repeat_s")
#: The 10 s medians of ``training evaluate`` shown beside, from its ``results.json`` summary.
TEN_SECONDS = {"logmel_db": "log-mel dB", "harmony": "harmony", "tempo_held": "tempo %", "key_held": "key %",
               "beat_f": "beat F"}


# ------------------------------------------------------------------------------------------------ songs


def song_listing(*, songs: int | None = None, songs_dir: str | os.PathLike | None = None,
                 dev_corpus: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The songs of a long listen, as ``(name, path)``.

    Parameters
    ----------
    songs : int, optional
        How many: from the packages or ``dev_corpus``, :data:`DEFAULT_SONGS` when None (from the packages, the
        first half, rounded down, from the first package and the rest from the second); from ``songs_dir``, all
        when None.
    songs_dir : str or os.PathLike, optional
        A folder of songs (sorted, not searched recursively) instead of the packages.
    dev_corpus : str or os.PathLike, optional
        The training corpus: its validation songs (the dev set's, :func:`training.corpus.devset.validation_songs`)
        instead of the packages, so that the long listen's settings are chosen where the evaluation never looks.

    Returns
    -------
    list of (str, pathlib.Path)
        From the packages, named ``<package>--<track>``, in the evaluation set's fixed shuffle of each
        package's tracks (variants left out); from ``dev_corpus``, named by their path in it (``/`` as
        ``--``), in the dev set's fixed shuffle. Tracks under :data:`MIN_SONG_S` by their header are skipped.

    Raises
    ------
    ConfigError
        A package is not installed, ``songs`` is under 1, both folders are given, or a folder holds no songs.
    """
    if songs is not None and songs < 1:
        raise ConfigError(f"songs must be 1 or more, got {songs}")
    if songs_dir is not None and dev_corpus is not None:
        raise ConfigError("give --songs-dir or --dev-corpus, not both")
    if songs_dir is not None:
        return [(path.stem, path) for path in song_files(songs_dir)[:songs]]
    from ..corpus.jobs import safe_name

    if dev_corpus is not None:
        from ..corpus.devset import validation_songs

        # Named by their place in the corpus: two packages may each hold a track1.
        named = ((safe_name("--".join(path.relative_to(dev_corpus).with_suffix("").parts)), path)
                 for path in validation_songs(dev_corpus) if _long_enough(path))
        return list(itertools.islice(named, DEFAULT_SONGS if songs is None else songs))

    from ..corpus import evalset
    from ..corpus.packages import dpkg_files

    packages = evalset.EVAL_PACKAGES
    count = DEFAULT_SONGS if songs is None else songs
    wanted = [count // len(packages)] * len(packages)
    wanted[-1] += count - sum(wanted)
    listing = []
    for package, take in zip(packages, wanted, strict=True):
        tracks = sorted(evalset.package_tracks(package, dpkg_files(package)))
        if not tracks:
            raise ConfigError(f"the long listen needs {package}: sudo apt-get install {package} (make apt-eval)")
        # The evaluation set's shuffle (training.corpus.evalset._choose): the same tracks first everywhere.
        random.Random(f"encore-evalset:{package}").shuffle(tracks)
        for origin in tracks:
            if take == 0:
                break
            if _long_enough(Path(origin)):
                listing.append((f"{package}--{safe_name(Path(origin).stem)}", Path(origin)))
                take -= 1
    return listing


def _long_enough(path: Path) -> bool:
    """Whether ``path``'s header says it lasts :data:`MIN_SONG_S` or more (True when it cannot say: the song is
    decoded later, and skipped then if it is too short)."""
    import soundfile

    try:
        return soundfile.info(str(path)).duration >= MIN_SONG_S
    except (RuntimeError, OSError):
        return True


# ------------------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class _ListenTask:
    """What measuring one song needs besides its generators (picklable, for workers)."""

    out_dir: Path
    minutes: float

    def run(self, name: str, path: Path, made: dict, say: Callable[[str], None]) -> dict | None:
        """Every generator's measures on one song, and its figures; None when the song is too short."""
        song = load_audio(path)
        if song.seconds < MIN_SONG_S:
            say(f"{name}: skipped, {song.seconds:.1f} s is under {MIN_SONG_S:g} s")
            return None
        started = time.monotonic()
        reference = SongReference.of(song)
        a = reference.analysis
        music = np.asarray(reference.music_slips_ms, float)
        entry = {"song": {"path": str(path), "seconds": round(song.seconds, 2), "sample_rate": song.sample_rate,
                          "mode": a.mode, "tempo_bpm": a.tempo_bpm, "meter": a.meter,
                          "bars": reference.structure.bars,
                          "music_grid_kept_share": float(np.mean(music <= SLIP_FAR_MS)) if music.size else math.nan,
                          "music_joins": int(music.size)}}
        say(f"{name}: {song.seconds:.0f} s, {a.describe()}, {reference.structure.bars} bars "
            f"({time.monotonic() - started:.1f} s)")
        for generator_name, generator in made.items():
            try:
                scores = listen(song, generator, minutes=self.minutes, reference=reference,
                                figure=self.out_dir / "figures" / name / f"{generator_name}.png",
                                title=f"{name}: {generator_name}")
            except EncoreError as e:
                raise EncoreError(f"{name}: {generator_name}: {e}") from e
            entry[generator_name] = scores
            say(f"{name}: {generator_name}: {_progress_line(scores)}")
        return entry


def _progress_line(scores: dict) -> str:
    def percent(value) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{100 * value:.0f} %"

    return (f"{scores['jumps_per_minute']:.1f} jumps/min, run {scores['median_run_s']:.1f} s "
            f"({scores['median_run_beats']:.1f} beats), downbeats {percent(scores['downbeat_share'])}, "
            f"grid kept {percent(scores['grid_kept_share'])}, bars heard {percent(scores['bars_heard_share'])}, "
            f"longest repeat {scores['longest_repeat_s']:.0f} s ({scores['seconds']:.1f} s)")


def _listen_in_worker(generators: dict, task: _ListenTask, name: str, path: Path) -> tuple[dict | None, list[str]]:
    lines: list[str] = []
    return task.run(name, path, generators, lines.append), lines


def longlisten(out_dir: str | os.PathLike, *, songs: int | None = None, minutes: float = DEFAULT_MINUTES,
               generators: Sequence[str] = GENERATORS, songs_dir: str | os.PathLike | None = None,
               ten_seconds: str | os.PathLike | None = None, jobs: int = 1,
               dev_corpus: str | os.PathLike | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Measure every generator over ``minutes`` of continuation of every song, judge them, write the results.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Where ``longlisten.json``, ``longlisten.md`` and ``figures/`` go (made if needed).
    songs : int, optional
        How many songs (:func:`song_listing`).
    minutes : float
        Continuation per song and generator.
    generators : sequence of str
        Names from :data:`GENERATORS`.
    songs_dir : str or os.PathLike, optional
        A folder of songs instead of the evaluation packages.
    dev_corpus : str or os.PathLike, optional
        The training corpus, whose validation songs are listened to instead of the evaluation packages
        (:func:`song_listing`): where the settings are chosen.
    ten_seconds : str or os.PathLike, optional
        A ``results.json`` of ``training evaluate`` whose 10 s medians go beside; ``out_dir/../results.json``
        when None and it exists.
    jobs : int
        Worker processes, each pinned to a core of its own (as ``training evaluate --jobs``); 1 runs here.
    progress : callable, optional
        Called with a line per song and generator (with workers, a song's lines when it is done).

    Returns
    -------
    dict
        What ``longlisten.json`` holds: ``settings``, ``songs`` (per song: the song's analysis, and each
        generator's measures from :func:`.listening.listen`), ``music`` (the tracker's own scatter), ``summary``,
        ``paired``, ``bar`` and ``ten_seconds`` (None without an evaluation).

    Raises
    ------
    ConfigError
        An unknown generator, bad settings, no song, or every song too short.
    """
    say = progress or (lambda line: None)
    names = list(dict.fromkeys(generators))
    unknown = [name for name in names if name not in GENERATORS]
    if unknown or not names:
        raise ConfigError(f"the long listen measures {', '.join(GENERATORS)}; got {', '.join(unknown) or 'none'}")
    if not 0 < minutes <= 120:
        raise ConfigError(f"minutes must be over 0 and at most 120, got {minutes}")
    cores = sorted(os.sched_getaffinity(0))
    if not 1 <= jobs <= len(cores):
        raise ConfigError(f"jobs must be 1 to {len(cores)} (the cores this process may use), got {jobs}")
    out_dir = Path(out_dir)
    ten_path = Path(ten_seconds) if ten_seconds is not None else out_dir.resolve().parent / "results.json"
    ten = read_ten_seconds(ten_path) if ten_seconds is not None or ten_path.is_file() else None
    listing = song_listing(songs=songs, songs_dir=songs_dir, dev_corpus=dev_corpus)
    if not listing:
        raise ConfigError("no songs to listen to")
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    task = _ListenTask(out_dir=out_dir, minutes=minutes)
    started = time.monotonic()
    if jobs == 1:
        made = {name: make_generator(name) for name in names}
        done = {name: task.run(name, path, made, say) for name, path in listing}
    else:
        done = _listen_in_workers(listing, task, names, cores[:jobs], say)
    per_song = {name: done[name] for name, _ in listing if done.get(name) is not None}
    if not per_song:
        raise ConfigError(f"every song is under {MIN_SONG_S:g} s")
    first = next(iter(per_song))
    for name in names:  # the first song's figures, where a reader looks first
        shutil.copyfile(out_dir / "figures" / first / f"{name}.png", out_dir / "figures" / f"{name}.png")
    results = {
        "settings": {"songs": len(per_song), "minutes": minutes, "generators": names,
                     "songs_dir": None if songs_dir is None else str(songs_dir),
                     "dev_corpus": None if dev_corpus is None else str(dev_corpus), "jobs": jobs,
                     "ten_seconds": None if ten is None else str(ten_path),
                     "seconds": round(time.monotonic() - started, 1)},
        **judge(per_song, names, minutes),
        "ten_seconds": ten,
        "songs": per_song,
    }
    (out_dir / "longlisten.json").write_text(json.dumps(jsonable(results), indent=1) + "\n")
    (out_dir / "longlisten.md").write_text(format_table(results, markdown=True) + "\n")
    return results


def _listen_in_workers(listing: list[tuple[str, Path]], task: _ListenTask, names: list[str], cores: list[int],
                       say: Callable[[str], None]) -> dict[str, dict | None]:
    """:meth:`_ListenTask.run` for every song on one spawned worker per core, set up as ``training evaluate``'s
    (:func:`.workers.run_in_workers`: its own core, librosa loaded, freed memory kept, its generators)."""
    jobs = {name: (task, name, path) for name, path in listing}
    return run_in_workers(_listen_in_worker, jobs, names=names, variety=None, threads=1, cores=cores, say=say)


def read_ten_seconds(path: str | os.PathLike) -> dict:
    """The 10 s medians (:data:`TEN_SECONDS`) per generator from a ``training evaluate`` ``results.json``.

    Raises
    ------
    ConfigError
        Not a readable results file of ``training evaluate``.
    """
    path = Path(path)
    try:
        summary = json.loads(path.read_text())["summary"]
        return {name: {key: row.get(key) for key in TEN_SECONDS} for name, row in summary.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: not the results of training evaluate ({e.__class__.__name__}: {e})") from None


# ------------------------------------------------------------------------------------------------ judge


def judge(per_song: dict[str, dict], generators: Sequence[str], minutes: float) -> dict:
    """Medians over songs, paired differences and the bar, from per-song measures.

    Parameters
    ----------
    per_song : dict
        Song name to ``{"song": ..., <generator>: listen()'s dict}``.
    generators : sequence of str
    minutes : float
        The continuation's length (the 10-minute criterion needs 10 or more).

    Returns
    -------
    dict
        ``summary`` (per generator, the median of each of :data:`MEASURES` and ``songs``), ``music`` (the
        median share of the songs' own downbeats where the grid holds), ``paired`` (per generator, per rival
        of :data:`RIVALS`, per measure of :data:`PAIRED`: :func:`.paired.paired_differences`'s entry, the mean
        difference in the measure's own direction) and ``bar`` (resynth and jukebox, :func:`bar`).
    """
    def median(values) -> float:
        values = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
        return float(np.median(values)) if values.size else math.nan

    summary = {}
    for name in generators:
        rows = [song[name] for song in per_song.values() if name in song]
        summary[name] = {"songs": len(rows), **{key: median(row.get(key) for row in rows) for key in MEASURES}}
    music = {"grid_kept_share": median(song["song"].get("music_grid_kept_share") for song in per_song.values())}
    generated = {song: {name: row for name, row in entry.items() if name in generators}
                 for song, entry in per_song.items()}
    paired = {}
    for name in generators:
        rivals = [r for r in RIVALS if r in generators and r != name]
        paired[name] = _paired_in_direction(name, generated, rivals, PAIRED) if rivals else {}
    bars = {name: bar(summary[name], minutes) for name in JUDGED if name in summary}
    return {"summary": summary, "music": music, "paired": paired, "bar": bars,
            "grid_against_music": grid_against_music(per_song, generators)}


def _paired_in_direction(name: str, per_song: dict[str, dict], rivals: Sequence[str], keys: Sequence[str]) -> dict:
    """:func:`.paired.paired_differences` of :data:`MEASURES`, each read in its own direction.

    ``paired_differences`` takes lower as better: a measure where higher is better goes in negated, and its mean
    difference comes out turned back (``name`` minus rival, in the measure's own units).
    """
    oriented = {song: {generator: {key: -MEASURES[key] * row[key] if row.get(key) is not None else None
                                   for key in keys}
                       for generator, row in entry.items()}
                for song, entry in per_song.items()}
    found = paired_differences(name, oriented, rivals=rivals, distances=keys, truth=False)
    for by_measure in found.values():
        for key, difference in by_measure.items():
            difference["mean_difference"] = -MEASURES[key] * difference["mean_difference"] + 0.0  # no -0
    return found


#: The songs' own downbeats, as a rival in :func:`grid_against_music`.
MUSIC = "(music)"


def grid_against_music(per_song: dict[str, dict], generators: Sequence[str]) -> dict:
    """Each generator's grid kept against the songs' own downbeats read the same way, song by song, on the songs
    with a steady beat.

    The measure reads a song's own downbeats as kept at about 90 %, not 100 % (the tracker's scatter), and a
    song without a steady beat has no grid to keep; so the bar's 95 % is not met by the music itself. Beside it,
    this says whether a generator's joins keep the grid as well as the music's own bar lines do.

    Returns
    -------
    dict
        Per generator: :func:`.paired.paired_differences`'s entry (``mean_difference``: the generator's share
        minus the music's, negative when fewer joins keep the grid), with ``generator_median`` and
        ``music_median`` over those songs; empty where fewer than two songs have a steady beat.
    """
    steady = {song: entry for song, entry in per_song.items()
              if entry["song"].get("mode") == "beats" and entry["song"].get("music_grid_kept_share") is not None
              and np.isfinite(entry["song"]["music_grid_kept_share"])}
    out: dict[str, dict] = {}
    for name in generators:
        rows = {song: {name: {"grid_kept_share": entry[name]["grid_kept_share"]},
                       MUSIC: {"grid_kept_share": entry["song"]["music_grid_kept_share"]}}
                for song, entry in steady.items() if name in entry
                and entry[name].get("grid_kept_share") is not None and np.isfinite(entry[name]["grid_kept_share"])}
        if len(rows) < 2:
            continue
        difference = _paired_in_direction(name, rows, (MUSIC,), ("grid_kept_share",))[MUSIC]["grid_kept_share"]
        difference["generator_median"] = float(np.median([row[name]["grid_kept_share"] for row in rows.values()]))
        difference["music_median"] = float(np.median([row[MUSIC]["grid_kept_share"] for row in rows.values()]))
        out[name] = difference
    return out


def bar(summary: dict, minutes: float) -> dict:
    """The long listen's bar (issue 21, item 6) on one generator's medians over songs.

    At most :data:`BAR_JUMPS_PER_MINUTE` jumps a minute, a median run of :data:`BAR_RUN_BEATS` beats or more,
    the beat grid kept at :data:`BAR_GRID_KEPT` of joins or more, :data:`BAR_BARS_HEARD` of a song's bars or
    more heard in :data:`BAR_MINUTES` minutes (not judged, ``pass`` None, in a shorter listen or where a median
    is NaN).

    Parameters
    ----------
    summary : dict
        One generator's ``summary`` entry (:func:`judge`).
    minutes : float

    Returns
    -------
    dict
        ``pass`` (every judged criterion passes, and one at least was judged) and ``criteria``: label to
        ``pass``, ``value`` and ``target``.
    """
    def check(ok: bool, value: float, target: float) -> dict:
        return {"pass": bool(ok) if np.isfinite(value) else None, "value": value, "target": target}

    heard = summary.get("bars_heard_share_10min", math.nan) if minutes >= BAR_MINUTES else math.nan
    criteria = {
        f"at most {BAR_JUMPS_PER_MINUTE:g} jumps a minute": check(
            summary["jumps_per_minute"] <= BAR_JUMPS_PER_MINUTE, summary["jumps_per_minute"], BAR_JUMPS_PER_MINUTE),
        f"median run of {BAR_RUN_BEATS:g} beats or more": check(
            summary["median_run_beats"] >= BAR_RUN_BEATS, summary["median_run_beats"], BAR_RUN_BEATS),
        f"beat grid kept at {BAR_GRID_KEPT * 100:g} % of joins or more": check(
            summary["grid_kept_share"] >= BAR_GRID_KEPT, summary["grid_kept_share"], BAR_GRID_KEPT),
        f"{BAR_BARS_HEARD * 100:g} % of a song's bars or more heard in {BAR_MINUTES:g} minutes": check(
            heard >= BAR_BARS_HEARD, heard, BAR_BARS_HEARD),
    }
    judged = [c["pass"] for c in criteria.values() if c["pass"] is not None]
    return {"pass": bool(judged) and all(judged), "criteria": criteria}


COLUMNS = ("generator", "jumps/min", "run s", "run beats", "run bars", "downbeat %", "grid kept %", "bars heard %",
           "in 10 min %", "repeat s")


def format_table(results: dict, *, markdown: bool = False) -> str:
    """The table: a row per generator (medians over songs) and the tracker's own scatter, the 10 s medians
    beside when there are any; then the paired differences and the bar."""
    def number(value, digits=1, scale=1.0) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{value * scale:.{digits}f}"

    ten = results.get("ten_seconds")
    columns = COLUMNS + (tuple(f"10 s {label}" for label in TEN_SECONDS.values()) if ten else ())
    rows = []
    for name, s in results["summary"].items():
        row = [name, number(s["jumps_per_minute"]), number(s["median_run_s"]), number(s["median_run_beats"]),
               number(s["median_run_bars"]), number(s["downbeat_share"], 0, 100),
               number(s["grid_kept_share"], 0, 100), number(s["bars_heard_share"], 0, 100),
               number(s["bars_heard_share_10min"], 0, 100), number(s["longest_repeat_s"], 0)]
        if ten:
            other = ten.get(name, {})
            row += [number(other.get("logmel_db")), number(other.get("harmony"), 2),
                    number(other.get("tempo_held"), 0, 100), number(other.get("key_held"), 0, 100),
                    number(other.get("beat_f"), 2)]
        rows.append(row)
    music = ["(music)", "", "", "", "", "", number(results["music"]["grid_kept_share"], 0, 100), "", "", ""]
    rows.append(music + ([""] * len(TEN_SECONDS) if ten else []))
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(str(row[i])) for row in [columns, *rows]) for i in range(len(columns))]
        lines = ["  ".join(str(cell).rjust(w) if i else str(cell).ljust(w)
                           for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in [columns, *rows]]
    settings = results["settings"]
    lines += ["", f"{settings['songs']} songs, the whole song as memory, {settings['minutes']:g} min of continuation "
              "each. Medians over songs of: jumps a minute (joins after the one at the song's end); the median run "
              "between joins in s, in the song's beats and bars; downbeat %: jumps entering within "
              f"{DOWNBEAT_TOLERANCE_S * 1000:g} ms of a downbeat of the song's analysis; grid kept %: joins whose "
              f"beats after it slip at most {SLIP_FAR_MS:g} ms against those before it ((music): the same at the "
              "songs' own downbeats, the tracker's own scatter); bars heard %: the song's whole bars played whole, "
              f"in the {settings['minutes']:g} min and in the first 10; repeat s: longest exact loop."
              + (f" 10 s: training evaluate's medians ({settings['ten_seconds']})." if ten else "")]
    for name, by_rival in results["paired"].items():
        for rival, by_measure in by_rival.items():
            parts = [f"{key} {d['mean_difference']:+.3g} ± {d['standard_error']:.2g} {paired_word(d)}"
                     for key, d in by_measure.items()]
            lines.append(f"{'- ' if markdown else '  '}{name} against {rival}, paired mean difference ± standard "
                         "error (better or worse: by over 2 of them): " + "; ".join(parts))
    for name, d in results.get("grid_against_music", {}).items():
        lines.append(f"{'- ' if markdown else '  '}{name}: grid kept against the songs' own downbeats, on the "
                     f"{d['songs']} songs with a steady beat (medians {number(d['generator_median'], 0, 100)} and "
                     f"{number(d['music_median'], 0, 100)} %), paired: {d['mean_difference']:+.3g} ± "
                     f"{d['standard_error']:.2g} {paired_word(d)}")
    for name, judged in results["bar"].items():
        lines.append("")
        lines.append(f"{'**' if markdown else ''}long-listen bar for {name}: {verdict_word(judged['pass'])}"
                     f"{'**' if markdown else ''}")
        for label, criterion in judged["criteria"].items():
            lines.append(f"{'- ' if markdown else '  '}{verdict_word(criterion['pass'])}  {label}: "
                         f"{number(criterion['value'], 3)} (target {number(criterion['target'], 3)})")
    return "\n".join(lines)
