"""Held-out scores rendered as the training corpus renders them, with where their beats and bar lines fall.

music21 corpus scores rendered with FluidSynth exactly as the training corpus renders them
(:mod:`training.corpus.scores`: the same parser, repeat expansion, arrangement seeded by the corpus path, MIDI
writer and synthesiser), each with its exact beat and downbeat times: the expanded score's measure offsets and
time signatures at the arrangement's single tempo, less the leading silence that the render's trim cut off.
Which scores: those the corpus selection (:func:`training.corpus.scores.select_scores`) puts after the first
:data:`CORPUS_SCORES`, i.e. scores a default ``training corpus`` build (``--max-scores 160``) never renders, so
no model trained on that corpus has heard them; taken in the selection's order (collections in turn), skipping
any that fail to render, change time signature within the render, or last under :data:`MIN_RENDER_S`. Each is
cut at :data:`RENDER_S`. The demo song joins them: its score is never in the corpus, and its labels are 2/4 at
:data:`training.corpus.demo.DEMO_TEMPO_QPM` from :func:`training.corpus.demo.render_demo_song`'s own render.

Renders land in ``OUT_DIR/renders/<name>.flac`` (mono 16-bit FLAC at :data:`engine.analysis.ANALYSIS_RATE`)
with ``<name>.json`` beside each holding its labels and how it was made; a render whose record matches the
settings is reused, so a second run renders nothing.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from engine.analysis import ANALYSIS_RATE
from engine.audio import load_audio, resample
from engine.errors import ConfigError

from ..common.files import first_line, write_atomically
from ..corpus.arrangement import arrange
from ..corpus.demo import DEMO_TEMPO_QPM, render_demo_song
from ..corpus.jobs import OverBudget, Skip, audible_span, executor, safe_name, time_budget
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


# ------------------------------------------------------------------------------------------ labels


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


# ------------------------------------------------------------------------------------- the renders


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
    """The corpus's render of one score (:func:`training.corpus.scores._render_score_job`'s steps: parse,
    write out the repeats, arrange with the corpus's seed), cut at :data:`RENDER_S`, with its labels
    (:func:`render_score`)."""
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
        Repeats written out, instruments and one tempo set (:func:`training.corpus.arrangement.arrange`); measures past
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
        [shape=(frames,), dtype=float32] peak at :data:`training.corpus.scores.PEAK_DBFS`, the last second faded out.

    Raises
    ------
    training.corpus.jobs.Skip
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
    """Beats and downbeats of the demo song (:func:`training.corpus.demo.render_demo_song`), from its score alone.

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
    """The demo song as :func:`training.corpus.demo.render_demo_song` makes it, with its labels
    (:func:`demo_labels`)."""
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
