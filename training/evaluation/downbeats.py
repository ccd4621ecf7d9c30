"""How well the engine finds the beat, the meter and the downbeats: labelled renders, and agreement on recordings.

Two measures of :func:`engine.analysis.analyse`:

* **Held-out renders with labels.** music21 corpus scores rendered with FluidSynth exactly as the training
  corpus renders them (:mod:`training.corpus`: the same parser, repeat expansion, arrangement seeded by the
  corpus path, MIDI writer and synthesiser), each with its exact beat and downbeat times: the expanded score's
  measure offsets and time signatures at the arrangement's single tempo, less the leading silence that the
  render's trim cut off. Which scores: those the corpus selection (:func:`training.corpus._select_scores`)
  puts after the first :data:`CORPUS_SCORES`, i.e. scores a default ``training corpus`` build (``--max-scores
  160``) never renders, so no model trained on that corpus has heard them; taken in the selection's order
  (collections in turn), skipping any that fail to render, change time signature within the render, or last
  under :data:`MIN_RENDER_S`. Each is cut at :data:`RENDER_S`. The demo song joins them: its score is never in
  the corpus, and its labels are 2/4 at :data:`training.corpus.DEMO_TEMPO_QPM` from
  :func:`training.corpus.render_demo_song`'s own render.
* **Agreement on recordings**, which have no labels: where a track repeats a passage (found from its own
  chroma and mel recurrence, independently of the analysis judged), the downbeats found in the first
  occurrence, moved by the repeat's lag, should fall on the downbeats found in the repeat; and the two halves
  of a track, analysed apart, should get the same meter. Tracks: Debian's ``wesnoth-1.16-music`` and
  ``supertuxkart-data`` (the evaluation set's packages, never trained on), whole.

Each is reported for the analysis as it is and as it was before issue 21 (:func:`engine.analysis._analyse` with
``legacy=True``), side by side. Renders land in ``OUT_DIR/renders/<name>.flac`` (mono 16-bit FLAC at
:data:`engine.analysis.ANALYSIS_RATE`) with ``<name>.json`` beside each holding its labels and how it was
made; a render whose record matches the settings is reused, so a second run renders nothing. Results go to
``OUT_DIR/downbeats.json``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

from engine.analysis import ANALYSIS_RATE, HOP, Analysis
from engine.audio import load_audio, resample, to_model_input
from engine.errors import AudioContentError, AudioFileError, ConfigError

from ..common.files import first_line, write_atomically
from ..corpus.arrangement import arrange
from ..corpus.demo import DEMO_TEMPO_QPM, render_demo_song
from ..corpus.jobs import OverBudget, Skip, audible_span, executor, safe_name, time_budget
from ..corpus.packages import dpkg_files
from ..corpus.scores import (
    DEMO_SCORE,
    PEAK_DBFS,
    SCORE_TIME_BUDGET_S,
    check_renderer,
    drop_measures_after,
    expand_repeats,
    music21_corpus,
    parse_score,
    render_midi,
    select_scores,
    write_midi,
)

#: Bump when rendering or labelling changes: every stored render then stops matching and is made again.
RECIPE_VERSION = 1
#: Scores a default corpus build renders (``training corpus --max-scores``): the held-out set starts after them.
CORPUS_SCORES = 160
#: Renders in the set by default, the demo song included (a first run renders them in about 2 min on 2 cores;
#: with --recorded the whole run took 155 s here, a second 25-45 s).
DEFAULT_SCORES = 36
#: Each render is cut here, and one shorter than MIN_RENDER_S is skipped, in seconds.
RENDER_S = 60.0
MIN_RENDER_S = 40.0
#: mir_eval's F-measure window, in seconds (its default, the usual one for beats and downbeats).
F_WINDOW_S = 0.07
#: A tempo or a bar length counts as right within this ratio of the labelled one.
TEMPO_TOLERANCE = 0.04
#: Recorded packages (never corpus sources) and how many tracks of each are judged.
RECORDED_PACKAGES: tuple[str, ...] = ("wesnoth-1.16-music", "supertuxkart-data")
RECORDED_PER_PACKAGE = 6
#: Shortest recorded track judged, in seconds: two halves of 30 s at least.
MIN_RECORDED_S = 60.0


# --------------------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelledRender:
    """One render of a score and where its beats and bar lines fall.

    Attributes
    ----------
    name : str
        File stem under ``OUT_DIR/renders``.
    origin : str
        The music21 corpus path of the score.
    path : str
        The render: mono FLAC at :data:`engine.analysis.ANALYSIS_RATE`.
    seconds : float
        Its length.
    time_signature : str
        E.g. ``"3/4"``.
    meter : int
        Beats per bar: the time signature's beat count (2 for 2/4 and for 6/8, 4 for 4/4), or its numerator where
        music21 counts one beat a bar (3/8 is 3 eighths, not one dotted quarter: a bar is no beat).
    qpm : float
        The render's tempo, quarter notes per minute.
    beat_bpm : float
        Beats per minute at the time signature's beat (``qpm`` for x/4, two thirds of it for 6/8).
    beats, downbeats : tuple of float
        Times in the render, in seconds (a downbeat is also a beat).
    """

    name: str
    origin: str
    path: str
    seconds: float
    time_signature: str
    meter: int
    qpm: float
    beat_bpm: float
    beats: tuple[float, ...]
    downbeats: tuple[float, ...]

    @property
    def bar_s(self) -> float:
        return self.meter * 60.0 / self.beat_bpm


def bar_lines(score) -> list[tuple[float, float, float, int, str]]:
    """Where each measure of a score starts and how its bar divides.

    Parameters
    ----------
    score : music21.stream.Score
        With repeats written out; its first part's measures are taken (every part has the same bar lines).

    Returns
    -------
    list of tuple
        ``(offset, length, beat, beats, signature)`` per measure, in quarter notes: where it starts, how long it
        lasts as written, the beat's length and the beats in a full bar of its time signature (see
        :attr:`LabelledRender.meter`), and that signature as text (``"6/8"``).
    """
    from music21 import meter, stream

    part = score.parts[0]
    signature = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
    measures = []
    for measure in part.getElementsByClass(stream.Measure):
        if measure.timeSignature is not None:
            signature = measure.timeSignature
        if signature is None:
            signature = meter.TimeSignature("4/4")  # music21's own default for a score that states none
        beat, count = float(signature.beatDuration.quarterLength), int(signature.beatCount)
        if count == 1:
            beat, count = 4.0 / signature.denominator, int(signature.numerator)
        measures.append((float(measure.offset), float(measure.duration.quarterLength), beat, count,
                         signature.ratioString))
    return measures


def beat_labels(measures: Sequence[tuple[float, float, float, int, str]], qpm: float, *, shift_s: float,
                seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Beat and downbeat times of measures played at one tempo.

    A full measure has a downbeat where it starts and a beat every beat's length after. The first measure, when
    short, is a pickup: its beats are counted back from its end and it has no downbeat. A later short measure
    (the first half of a bar split at a repeat sign) starts a bar, and its beats run on from its start.

    Parameters
    ----------
    measures : sequence of tuple
        :func:`bar_lines`.
    qpm : float
        Quarter notes per minute.
    shift_s : float
        Added to every time: the render's trimmed leading silence, negated (seconds).
    seconds : float
        Length of the render: later times are dropped, as are negative ones.

    Returns
    -------
    beats, downbeats : numpy.ndarray
        [shape=(beats,)], [shape=(downbeats,)] seconds, ascending.
    """
    quarter_s = 60.0 / qpm
    beats: list[float] = []
    downbeats: list[float] = []
    for index, (offset, length, beat, count, _) in enumerate(measures):
        full = count * beat
        end = offset + length
        if index == 0 and length < full - 1e-6:
            starts = [end - (count - k) * beat for k in range(count)]
            beats += [q for q in starts if q >= offset - 1e-6]
            continue
        downbeats.append(offset)
        beats += [offset + k * beat for k in range(count) if offset + k * beat < end - 1e-6]
    times = [np.asarray(q, np.float64) * quarter_s + shift_s for q in (beats, downbeats)]
    keep = [(t >= 0.0) & (t < seconds) for t in times]
    return times[0][keep[0]], times[1][keep[1]]


# ------------------------------------------------------------------------------------------ the renders


def build_set(out_dir: str | os.PathLike, *, scores: int = DEFAULT_SCORES, workers: int = 2,
              progress: Callable[[str], None] | None = None) -> list[LabelledRender]:
    """Render the labelled set into ``out_dir/renders`` (what is there already with the same settings is kept).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to fill (created if needed).
    scores : int
        Renders wanted, the demo song first; fewer if the held-out scores run out.
    workers : int
        Rendering processes; 1 renders in this process.
    progress : callable, optional
        Called with one line per finished or skipped render.

    Returns
    -------
    list of LabelledRender
        The demo song, then the held-out scores in selection order.

    Raises
    ------
    ConfigError
        ``scores`` under 1 or ``workers`` under 1; FluidSynth, its soundfont or music21 missing.
    """
    if scores < 1:
        raise ConfigError(f"the set needs 1 render or more, got {scores}")
    if workers < 1:
        raise ConfigError(f"workers must be 1 or more, got {workers}")
    say = progress or (lambda line: None)
    check_renderer()
    music21_version, corpus_root = music21_corpus()
    folder = Path(out_dir) / "renders"
    folder.mkdir(parents=True, exist_ok=True)
    renders = [_demo_render(folder, music21_version, say)]
    candidates = select_scores(corpus_root)[0][CORPUS_SCORES:]
    taken = 0
    with executor(workers) as pool:
        while len(renders) < scores and taken < len(candidates):
            batch = candidates[taken:taken + scores - len(renders)]
            taken += len(batch)
            records: dict[str, dict | None] = {}
            futures = {}
            for origin in batch:
                record = _stored(folder, origin, music21_version)
                if record is not None:
                    records[origin] = record
                else:
                    futures[pool.submit(_render_score, origin, str(corpus_root), str(folder),
                                        _key(origin, music21_version))] = origin
            for future in concurrent.futures.as_completed(futures):
                record = future.result()
                records[futures[future]] = record
                say(f"{futures[future]}: " + (f"{record['seconds']:.0f} s, {record['time_signature']} at "
                                              f"{record['qpm']:g} qpm" if record["status"] == "ok"
                                              else f"skipped, {record['reason']}"))
            renders += [_as_render(folder, records[o]) for o in batch if records[o]["status"] == "ok"]
    return renders


def _key(origin: str, music21_version: str) -> str:
    settings = {"recipe": RECIPE_VERSION, "origin": origin, "music21": music21_version, "seconds": RENDER_S,
                "min_seconds": MIN_RENDER_S, "rate": ANALYSIS_RATE}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def _name(origin: str) -> str:
    return safe_name(str(Path(origin).with_suffix("")).replace("/", "-"))


def _stored(folder: Path, origin: str, music21_version: str) -> dict | None:
    """The record of an earlier render of ``origin`` with these settings, if its audio is still there."""
    try:
        record = json.loads((folder / f"{_name(origin)}.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("key") != _key(origin, music21_version):
        return None
    if record["status"] == "ok" and not (folder / f"{record['name']}.flac").is_file():
        return None
    return record


def _as_render(folder: Path, record: dict) -> LabelledRender:
    return LabelledRender(name=record["name"], origin=record["origin"], path=str(folder / f"{record['name']}.flac"),
                          seconds=record["seconds"], time_signature=record["time_signature"],
                          meter=record["meter"], qpm=record["qpm"], beat_bpm=record["beat_bpm"],
                          beats=tuple(record["beats"]), downbeats=tuple(record["downbeats"]))


def _store(folder: Path, record: dict, samples: np.ndarray | None) -> dict:
    if samples is not None:
        audio = folder / f"{record['name']}.flac"
        partial = audio.with_name(f".{audio.name}.partial")
        soundfile.write(str(partial), np.clip(samples, -1.0, 1.0), ANALYSIS_RATE, format="FLAC", subtype="PCM_16")
        os.replace(partial, audio)
    write_atomically(folder / f"{record['name']}.json", (json.dumps(record, indent=1) + "\n").encode())
    return record


def _render_score(origin: str, corpus_root: str, folder: str, key: str) -> dict:
    """Worker entry: render one held-out score at :data:`ANALYSIS_RATE`, label it, store both, return the record."""
    name = _name(origin)
    base = {"key": key, "name": name, "origin": origin}
    try:
        record, samples = _render_labelled(origin, Path(corpus_root))
    except Skip as skip:
        return _store(Path(folder), {**base, "status": "skipped", "reason": str(skip)}, None)
    return _store(Path(folder), {**base, "status": "ok", **record}, samples)


def _render_labelled(origin: str, corpus_root: Path) -> tuple[dict, np.ndarray]:
    """The corpus's render of one score (:func:`training.corpus._render_score_job`'s steps: parse, write out the
    repeats, arrange with the corpus's seed), cut at :data:`RENDER_S`, with its labels (:func:`render_score`)."""
    rng = random.Random(hashlib.sha256(origin.encode()).hexdigest())  # the corpus's seed: the same arrangement
    try:
        with time_budget(SCORE_TIME_BUDGET_S):
            score = parse_score(corpus_root / origin)
            score, _ = expand_repeats(score)
            arrangement = arrange(score, rng)
    except OverBudget:
        raise Skip(f"parsing took over {SCORE_TIME_BUDGET_S:.0f} s") from None
    except Skip:
        raise
    except Exception as e:  # music21 raises all sorts on odd files, as in the corpus build
        raise Skip(f"music21 cannot parse or arrange it ({type(e).__name__}: {first_line(e)})") from None
    record, samples = render_score(score, float(arrangement["tempo_qpm"]))
    record.update(arrangement=arrangement["arrangement"], instruments=[i["name"] for i in arrangement["instruments"]])
    return record, samples


def render_score(score, qpm: float, *, min_seconds: float = MIN_RENDER_S) -> tuple[dict, np.ndarray]:
    """Render an arranged score with FluidSynth at :data:`engine.analysis.ANALYSIS_RATE`, trimmed and cut as
    the corpus does, with where its beats and bar lines fall in the render.

    Parameters
    ----------
    score : music21.stream.Score
        Repeats written out, instruments and one tempo set (:func:`training.corpus._arrange`); measures past
        :data:`RENDER_S` are dropped from it.
    qpm : float
        Its tempo, quarter notes per minute.
    min_seconds : float
        A render shorter than this (after the trim) is skipped.

    Returns
    -------
    record : dict
        ``seconds``, ``time_signature``, ``meter``, ``qpm``, ``beat_bpm``, ``beats``, ``downbeats`` (as
        :class:`LabelledRender`; times in seconds).
    samples : numpy.ndarray
        [shape=(frames,), dtype=float32] peak at :data:`training.corpus.PEAK_DBFS`, the last second faded out.

    Raises
    ------
    training.corpus._Skip
        Unwritable as MIDI, no measures, a change of time signature, silent, or too short.
    """
    with tempfile.TemporaryDirectory(prefix="encore-downbeats-") as tmp:
        midi_path = Path(tmp) / "score.mid"
        try:
            drop_measures_after(score, (RENDER_S + 5.0) * qpm / 60.0)
            measures = bar_lines(score)
            write_midi(score, midi_path)
        except Exception as e:  # music21's MIDI writer fails on odd scores, as in the corpus build
            raise Skip(f"music21 cannot write it ({type(e).__name__}: {first_line(e)})") from None
        if not measures:
            raise Skip("has no measures")
        signatures = {m[4] for m in measures}
        if len(signatures) > 1:
            raise Skip(f"changes time signature ({', '.join(sorted(signatures))})")
        mono = render_midi([midi_path], ANALYSIS_RATE, Path(tmp) / "render.wav", RENDER_S + 60.0).mean(axis=1)
    start, end = audible_span(mono, ANALYSIS_RATE)
    if end - start < min_seconds * ANALYSIS_RATE:
        raise Skip(f"lasts {max(end - start, 0) / ANALYSIS_RATE:.1f} s, under {min_seconds:g} s")
    mono = mono[start:min(end, start + round(RENDER_S * ANALYSIS_RATE))]
    fade = ANALYSIS_RATE  # 1 s, as the corpus fades a cut score
    mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    mono *= 10 ** (PEAK_DBFS / 20) / float(np.max(np.abs(mono)))
    seconds = mono.shape[0] / ANALYSIS_RATE
    _, _, beat, count, signature = measures[0]
    # MIDI time 0 is the render's first sample (FluidSynth adds no latency: a piano note written at 0.600 s
    # first passes -50 dB re. the peak at 0.605 s), so score time maps to the trimmed render less its start.
    beats, downbeats = beat_labels(measures, qpm, shift_s=-start / ANALYSIS_RATE, seconds=seconds)
    record = {"seconds": round(seconds, 3), "time_signature": signature, "meter": count, "qpm": qpm,
              "beat_bpm": qpm / beat, "beats": [round(float(t), 5) for t in beats],
              "downbeats": [round(float(t), 5) for t in downbeats]}
    return record, mono.astype(np.float32)


def demo_labels(seconds: float = 45.0) -> tuple[np.ndarray, np.ndarray, str, int, float]:
    """Beats and downbeats of the demo song (:func:`training.corpus.render_demo_song`), from its score alone.

    ``render_demo_song`` keeps no record of the silence it trimmed; its score's first note (an eighth-note
    pickup) is at time 0, so the song starts where that note sounds (the shipped song first passes -50 dB at
    3.6 ms, well under the trim's 50 ms pad: nothing was trimmed).

    Returns
    -------
    beats, downbeats : numpy.ndarray
        [shape=(beats,)], [shape=(downbeats,)] seconds.
    time_signature : str
    meter : int
        Beats per bar.
    beat_bpm : float
        Beats per minute.
    """
    _, corpus_root = music21_corpus()
    score, _ = expand_repeats(parse_score(corpus_root / DEMO_SCORE))
    measures = bar_lines(score)
    first_note = float(score.flatten().notes[0].offset) * 60.0 / DEMO_TEMPO_QPM
    beats, downbeats = beat_labels(measures, DEMO_TEMPO_QPM, shift_s=-first_note, seconds=seconds)
    _, _, beat, meter, signature = measures[0]
    return beats, downbeats, signature, meter, DEMO_TEMPO_QPM / beat


def _demo_render(folder: Path, music21_version: str, say: Callable[[str], None]) -> LabelledRender:
    """The demo song as :func:`training.corpus.render_demo_song` makes it, with its labels (:func:`demo_labels`)."""
    origin = DEMO_SCORE
    stored = _stored(folder, origin, music21_version)
    if stored is not None:
        return _as_render(folder, stored)
    with tempfile.TemporaryDirectory(prefix="encore-downbeats-") as tmp:
        song = load_audio(render_demo_song(Path(tmp) / "demo.wav"))
    mono = resample(song.mono(), song.sample_rate, ANALYSIS_RATE)
    beats, downbeats, signature, meter, beat_bpm = demo_labels(song.seconds)
    record = {"key": _key(origin, music21_version), "name": "demo-song", "origin": origin, "status": "ok",
              "seconds": round(song.seconds, 3), "time_signature": signature, "meter": meter,
              "qpm": DEMO_TEMPO_QPM, "beat_bpm": beat_bpm,
              "arrangement": "piano", "instruments": ["Acoustic Grand Piano"],
              "beats": [round(float(t), 5) for t in beats], "downbeats": [round(float(t), 5) for t in downbeats]}
    say(f"{origin}: the demo song, {record['seconds']:.0f} s, {signature} at {DEMO_TEMPO_QPM:g} qpm")
    return _as_render(folder, _store(folder, record, mono.astype(np.float32)))


# ------------------------------------------------------------------------------------------ evaluation


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


def _methods() -> dict[str, Callable[[np.ndarray], Analysis]]:
    """The analyses compared: ``before`` (as on main before issue 21) and ``after``
    (:func:`engine.analysis.analyse`)."""
    from engine.analysis import _analyse, analyse

    return {"before": lambda mono: _analyse(mono, legacy=True), "after": analyse}


def _summary(rows: Sequence[dict]) -> dict:
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
    methods = _methods()
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
            "summary": {m: _summary([r[m] for r in rows]) for m in methods},
            "summary_where_both_beat": {m: _summary([r[m] for r in both]) for m in methods}}



# ---------------------------------------------------------------------------- agreement on recordings

#: Repeats are looked for on blocks of this many onset frames (93 ms), over windows of REPEAT_S seconds
#: at lags of MIN_REPEAT_LAG_S or more; a window whose mean chroma and mel cosine similarity with its repeat
#: reaches REPEAT_SIMILARITY counts (a section played again scores 0.85-0.97 on the recordings, unrelated
#: passages 0.6-0.75). At most REPEATS_PER_TRACK, each from its own stretch and at its own lag.
REPEAT_BLOCK = 4
REPEAT_S = 10.0
MIN_REPEAT_LAG_S = 6.0
REPEAT_SIMILARITY = 0.8
REPEATS_PER_TRACK = 4


@dataclass(frozen=True)
class Repeat:
    """A passage of a track heard again.

    Attributes
    ----------
    start_s, seconds : float
        Where the first occurrence starts and how long the window is.
    lag_s : float
        Where the repeat starts, less ``start_s``: refined to a fraction of a frame on the onsets.
    similarity : float
        Mean cosine similarity of the two occurrences' chroma and mel blocks.
    """

    start_s: float
    seconds: float
    lag_s: float
    similarity: float


def find_repeats(mono: np.ndarray) -> list[Repeat]:
    """Passages a track plays again, from its own chroma and mel, independently of any beat tracking.

    Each lag of whole blocks (:data:`REPEAT_BLOCK`) is scored by the similarity of every window of
    :data:`REPEAT_S` with the window that lag later; the best windows at or above :data:`REPEAT_SIMILARITY`
    are taken greedily, none overlapping another in either occurrence nor within 1 s of another's lag. Each
    lag is then refined on the onset envelope, whose cross-correlation between the two occurrences peaks where
    their attacks line up (to a fraction of a frame: parabolic interpolation).

    Parameters
    ----------
    mono : numpy.ndarray
        [shape=(frames,), dtype=float32] at :data:`engine.analysis.ANALYSIS_RATE`.

    Returns
    -------
    list of Repeat
        Most similar first, at most :data:`REPEATS_PER_TRACK`.
    """
    import librosa

    power = np.abs(librosa.stft(mono, n_fft=2048, hop_length=HOP)) ** 2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=ANALYSIS_RATE, n_mels=32), ref=np.max,
                                 amin=1e-10, top_db=80.0)
    onset = librosa.onset.onset_strength(S=mel_db, sr=ANALYSIS_RATE, hop_length=HOP).astype(np.float64)
    chroma = librosa.feature.chroma_stft(S=power, sr=ANALYSIS_RATE, tuning=0.0)
    blocks = chroma.shape[1] // REPEAT_BLOCK

    def pooled(x: np.ndarray) -> np.ndarray:  # (dims, frames) -> (dims, blocks)
        return x[:, :blocks * REPEAT_BLOCK].reshape(x.shape[0], blocks, REPEAT_BLOCK).mean(axis=2)

    harmony = pooled(chroma)
    harmony /= np.maximum(np.linalg.norm(harmony, axis=0, keepdims=True), 1e-9)
    timbre = pooled(mel_db)
    timbre = (timbre - timbre.mean(axis=1, keepdims=True)) / np.maximum(timbre.std(axis=1, keepdims=True), 1e-9)
    timbre /= np.maximum(np.linalg.norm(timbre, axis=0, keepdims=True), 1e-9)
    look = np.concatenate([harmony, timbre]) / np.sqrt(2.0)
    block_s = REPEAT_BLOCK * HOP / ANALYSIS_RATE
    width, min_lag = round(REPEAT_S / block_s), round(MIN_REPEAT_LAG_S / block_s)
    candidates = []
    for lag in range(min_lag, blocks - width):
        similarity = np.convolve(np.sum(look[:, :-lag] * look[:, lag:], axis=0), np.ones(width) / width, "valid")
        start = int(np.argmax(similarity))
        if similarity[start] >= REPEAT_SIMILARITY:
            candidates.append((float(similarity[start]), start, lag))
    repeats: list[Repeat] = []
    taken: list[tuple[int, int]] = []
    for similarity, start, lag in sorted(candidates, reverse=True):
        spans = [(start, start + width), (start + lag, start + lag + width)]
        if (any(a < e and s < b for a, b in spans for s, e in _occupied(taken, width))
                or any(abs(lag - other) * block_s < 1.0 for _, other in taken)):
            continue
        taken.append((start, lag))
        repeats.append(Repeat(start_s=start * block_s, seconds=width * block_s,
                              lag_s=_refined_lag(onset, start * REPEAT_BLOCK, lag * REPEAT_BLOCK,
                                                 width * REPEAT_BLOCK) * HOP / ANALYSIS_RATE,
                              similarity=round(similarity, 3)))
        if len(repeats) == REPEATS_PER_TRACK:
            break
    return repeats


def _occupied(taken: list[tuple[int, int]], width: int) -> list[tuple[int, int]]:
    """The block spans that earlier repeats' two occurrences cover."""
    return [span for start, lag in taken for span in ((start, start + width), (start + lag, start + lag + width))]


def _refined_lag(onset: np.ndarray, start: int, lag: int, width: int) -> float:
    """The lag, in frames, within a block either way of ``lag``, at which the onsets of the two windows
    correlate best; between frames by parabolic interpolation."""
    reach = REPEAT_BLOCK
    first = onset[start:start + width]
    first = first - first.mean()
    scores = []
    for shift in range(-reach, reach + 1):
        second = onset[start + lag + shift:start + lag + shift + width]
        if second.shape[0] < width:
            scores.append(-np.inf)
            continue
        second = second - second.mean()
        scores.append(float(np.dot(first, second) / max(np.linalg.norm(first) * np.linalg.norm(second), 1e-12)))
    best = int(np.argmax(scores))
    shift = 0.0
    if 0 < best < len(scores) - 1 and np.isfinite(scores[best - 1]) and np.isfinite(scores[best + 1]):
        before, at, after = scores[best - 1], scores[best], scores[best + 1]
        curve = before - 2 * at + after
        shift = 0.5 * (before - after) / curve if curve < 0 else 0.0
    return lag + best - reach + shift


def repeat_agreement(analysis: Analysis, repeats: Sequence[Repeat]) -> float | None:
    """How well an analysis's downbeats carry over a track's repeats: the F-measure (:data:`F_WINDOW_S`) of the
    downbeats found in each repeat against those found in its first occurrence moved by the lag, averaged over
    the repeats (None without a beat or without repeats).

    A beat a third of a bar off, a wrong meter or a metrical level that does not divide the bar makes a
    repeat's downbeats fall elsewhere than its first occurrence's (a lag of whole bars is a whole number of
    true bars, rarely of false ones); a downbeat consistently on the wrong beat of the bar does not.
    """
    if analysis.mode != "beats" or not repeats:
        return None
    downbeats = analysis.bounds[:-1][analysis.phase == 0] / analysis.sample_rate
    scores = []
    for repeat in repeats:
        # A beat's width in from each edge, so that a downbeat just outside one window cannot miss the other.
        margin = 60.0 / max(analysis.tempo_bpm, 1.0)
        lo, hi = repeat.start_s + margin, repeat.start_s + repeat.seconds - margin
        first = downbeats[(downbeats >= lo) & (downbeats < hi)] + repeat.lag_s
        again = downbeats[(downbeats >= lo + repeat.lag_s) & (downbeats < hi + repeat.lag_s)]
        scores.append(f_measure(first, again))
    return float(np.mean(scores))


def recorded_tracks(per_package: int = RECORDED_PER_PACKAGE) -> list[str]:
    """The recorded tracks judged: the evaluation set's fixed shuffle of each package's tracks
    (:func:`training.evalset._package_tracks`, seeded ``encore-evalset:<package>``), the first ``per_package``
    of each that last :data:`MIN_RECORDED_S` or more.

    Raises
    ------
    ConfigError
        Neither package is installed.
    """
    from ..corpus.evalset import package_tracks

    chosen = []
    for package in RECORDED_PACKAGES:
        tracks = sorted(package_tracks(package, dpkg_files(package)))
        random.Random(f"encore-evalset:{package}").shuffle(tracks)
        kept = 0
        for track in tracks:
            if kept == per_package:
                break
            try:
                if soundfile.info(track).duration >= MIN_RECORDED_S:
                    chosen.append(track)
                    kept += 1
            except (soundfile.LibsndfileError, RuntimeError, OSError):
                continue
    if not chosen:
        raise ConfigError(f"none of {', '.join(RECORDED_PACKAGES)} is installed: "
                          f"sudo apt-get install {' '.join(RECORDED_PACKAGES)}")
    return chosen


def evaluate_recorded(tracks: Sequence[str], progress: Callable[[str], None] | None = None) -> dict:
    """Label-free agreement of each analysis with itself on recorded tracks.

    Per track and analysis: ``repeat_f`` (:func:`repeat_agreement` over :func:`find_repeats`), ``halves_meter``
    (the two halves, analysed apart, get the same meter) and ``halves_tempo`` (and tempi within
    :data:`TEMPO_TOLERANCE`; both None unless both halves have a beat), with the meter and tempo of the whole.

    Returns
    -------
    dict
        ``{"tracks": [...], "summary": {method: means over tracks}}``.
    """
    say = progress or (lambda line: None)
    methods = _methods()
    rows = []
    for track in tracks:
        try:
            mono = to_model_input(load_audio(track), ANALYSIS_RATE)
        except (AudioFileError, AudioContentError) as e:
            say(f"{track}: skipped, {first_line(e)}")
            continue
        repeats = find_repeats(mono)
        middle = mono.shape[0] // 2
        row = {"track": track, "seconds": round(mono.shape[0] / ANALYSIS_RATE, 1),
               "repeats": [asdict(r) for r in repeats]}
        for method, analyse in methods.items():
            whole, first, second = analyse(mono), analyse(mono[:middle]), analyse(mono[middle:])
            agreement = repeat_agreement(whole, repeats)
            beats = all(a.mode == "beats" for a in (first, second))
            row[method] = {
                "repeat_f": None if agreement is None else round(agreement, 3),
                "halves_meter": bool(first.meter == second.meter) if beats else None,
                "halves_tempo": bool(abs(first.tempo_bpm / second.tempo_bpm - 1) <= TEMPO_TOLERANCE) if beats else None,
                "beats": whole.mode == "beats", "meter": whole.meter, "tempo_bpm": round(whole.tempo_bpm, 2)}
        say(f"{Path(track).name}: {len(repeats)} repeats; " + "; ".join(
            f"{m} {row[m]['tempo_bpm']:.0f} bpm {row[m]['meter']}, repeat F "
            + ("-" if row[m]["repeat_f"] is None else f"{row[m]['repeat_f']:.2f}") for m in methods))
        rows.append(row)
    return {"tracks": rows, "summary": {m: _summary([r[m] for r in rows]) for m in methods}}


# ------------------------------------------------------------------------------------------------ run


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
        Also judge agreement on :func:`recorded_tracks`.
    recorded_per_package : int
        Tracks of each recorded package.
    workers : int
        Rendering processes.
    progress : callable, optional
        Called with one line per render, analysis and track.

    Returns
    -------
    dict
        What ``downbeats.json`` holds: ``renders`` (:func:`evaluate_set`), ``recorded``
        (:func:`evaluate_recorded`, with ``recorded``), the settings and the seconds taken.

    Raises
    ------
    ConfigError
        See :func:`build_set` and :func:`recorded_tracks`.
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
