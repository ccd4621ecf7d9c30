"""music21's bundled scores as training music: which scores, and how one is read, written as MIDI and rendered.

The selection (:func:`select_scores`) takes public-domain scores from music21's corpus, collections in turn, and
never :data:`DEMO_SCORE`. A score job (:class:`_ScoreJob`) parses one, writes out its repeats, arranges it for
General MIDI instruments at a tempo drawn from a seed of its corpus path (:mod:`training.corpus.arrangement`),
writes it as MIDI and renders it with FluidSynth and the FluidR3 GM soundfont (Debian's ``fluidsynth`` and
``fluid-soundfont-gm``); a short piece is played again, a long one cut at :data:`MAX_SCORE_SECONDS`.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import math
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio import load_audio
from engine.errors import ConfigError

from ..common.files import file_size, first_line
from .arrangement import arrange
from .jobs import MIN_SECONDS, OverBudget, Skip, audible_span, run_jobs, safe_name, settings_key, time_budget

#: The music21 corpus path of the demo song's score (Scott Joplin, Maple Leaf Rag, 1899); never in the corpus.
DEMO_SCORE = "joplin/maple_leaf_rag.mxl"

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SOUNDFONT_COPYRIGHT = Path("/usr/share/doc/fluid-soundfont-gm/copyright")
#: FluidSynth's master gain; renders are float, so this only sets the synth's internal headroom.
FLUIDSYNTH_GAIN = 0.6

#: Scores are cut here (with a 1 s fade): the corpus wants many pieces more than whole long movements.
MAX_SCORE_SECONDS = 180.0
#: Most plays of a short score (a chorale, a fiddle tune) to reach :data:`training.corpus.jobs.MIN_SECONDS`.
MAX_SCORE_PLAYS = 4
#: Renders are normalised to this peak; soundtrack files keep their own mastering.
PEAK_DBFS = -1.0
#: Wall-clock budget per score for parsing and arranging; music21 is slow on some big files.
SCORE_TIME_BUDGET_S = 60.0
#: Larger corpus files are skipped unparsed (they are huge scores, slow to parse and cut at 3 min anyway).
MAX_SCORE_FILE_BYTES = 500_000

#: Score formats in order of preference when one work comes in several.
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc")
#: Collections taken first in each round of the selection (the rest follow alphabetically), so a small
#: ``max_scores`` still spans composers and styles.
SCORE_COLLECTIONS = (
    "bach", "mozart", "beethoven", "haydn", "ryansMammoth", "schumann_robert", "schumann_clara", "handel",
    "chopin", "corelli", "cpebach", "monteverdi", "palestrina", "trecento", "josquin", "schubert", "verdi",
    "weber", "liliuokalani", "johnson_j_r", "leadSheet", "beach",
)
#: Test files and exercises, not music.
EXCLUDED_COLLECTIONS = ("demos", "theoryExercises")


@dataclass(frozen=True)
class _ScoreJob:
    """Render one music21 score (the worker decides the arrangement and how many plays it needs)."""

    corpus_path: str  # relative to the music21 corpus folder, e.g. "bach/bwv1.6.mxl"
    corpus_root: str
    sample_rate: int
    music21_version: str

    @property
    def source(self) -> str:
        return "music21"

    @property
    def name(self) -> str:
        return safe_name(str(Path(self.corpus_path).with_suffix("")).replace("/", "-"))

    @property
    def origin(self) -> str:
        return self.corpus_path

    def key(self) -> str:
        return settings_key(self, soundfont_bytes=file_size(SOUNDFONT))

    def make(self, tmp: Path) -> tuple[np.ndarray, dict]:
        return _render_score_job(self, tmp)


# --------------------------------------------------------------------------------------- selection


def check_renderer() -> None:
    if shutil.which("fluidsynth") is None:
        raise ConfigError("fluidsynth is not installed: sudo apt-get install fluidsynth fluid-soundfont-gm")
    if not SOUNDFONT.is_file():
        raise ConfigError(f"{SOUNDFONT} is missing: sudo apt-get install fluid-soundfont-gm")


def music21_corpus() -> tuple[str, Path]:
    try:
        import music21
    except ImportError as e:
        raise ConfigError("music21 is not installed: pip install 'encore[train]'") from e
    root = Path(music21.__file__).parent / "corpus"
    if not (root / DEMO_SCORE).is_file():
        raise ConfigError(f"music21 {music21.__version__} has no bundled corpus at {root}")
    return music21.__version__, root


def select_scores(corpus_root: Path) -> tuple[list[str], list[dict]]:
    """Every usable corpus score, in the order the build takes them, and what was left out and why.

    One file per work (the preferred format), no multi-tune collections, no files over
    :data:`MAX_SCORE_FILE_BYTES`, never :data:`DEMO_SCORE`. Collections take turns, one score each per
    round (:data:`SCORE_COLLECTIONS` first); within a collection any prefix of the order is spread evenly
    over its sorted files, so a build with a larger ``max_scores`` only adds scores.
    """
    works: dict[tuple[str, str], Path] = {}
    for path in sorted(corpus_root.rglob("*")):
        if path.suffix.lower() not in SCORE_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(corpus_root)
        work = (str(relative.parent), relative.stem)
        best = works.get(work)
        if best is None or SCORE_SUFFIXES.index(path.suffix.lower()) < SCORE_SUFFIXES.index(best.suffix.lower()):
            works[work] = path

    excluded: list[dict] = []
    collections: dict[str, list[str]] = {}
    for path in sorted(works.values()):
        relative = path.relative_to(corpus_root).as_posix()
        collection = relative.split("/")[0]
        reason = None
        if relative == DEMO_SCORE:
            reason = "the demo song's score"
        elif collection in EXCLUDED_COLLECTIONS:
            reason = "test file, not music"
        elif path.stat().st_size > MAX_SCORE_FILE_BYTES:
            reason = f"file over {MAX_SCORE_FILE_BYTES // 1000} kB"
        elif path.suffix.lower() == ".abc" and _abc_tune_count(path) > 1:
            reason = f"collection of {_abc_tune_count(path)} tunes"
        if reason:
            excluded.append({"origin": relative, "reason": reason})
        else:
            collections.setdefault(collection, []).append(relative)

    order = [c for c in SCORE_COLLECTIONS if c in collections]
    order += sorted(c for c in collections if c not in SCORE_COLLECTIONS)
    if not order:
        return [], excluded
    spread = {c: _spread(collections[c]) for c in order}
    selection = []
    for turn in range(max(len(files) for files in spread.values())):
        selection += [spread[c][turn] for c in order if turn < len(spread[c])]
    return selection, excluded


def _spread(items: list[str]) -> list[str]:
    """Reorder so that every prefix samples the whole list evenly: positions 0, 1/2, 1/4, 3/4, 1/8, ..."""
    n, order, taken, i = len(items), [], set(), 0
    while len(order) < n:
        # Van der Corput sequence in base 2: the bits of i, mirrored after the binary point.
        position, bit, k = 0.0, 0.5, i
        while k:
            position += bit * (k & 1)
            k >>= 1
            bit /= 2
        index = int(position * n)
        if index not in taken:
            taken.add(index)
            order.append(items[index])
        i += 1
    return order


def _abc_tune_count(path: Path) -> int:
    return sum(1 for line in path.read_text(errors="replace").splitlines() if line.startswith("X:"))


# --------------------------------------------------------------------------------------- rendering


def render_scores(candidates: list[str], max_scores: int, out_dir: Path, sample_rate: int,
                  music21_version: str, corpus_root: Path, pool: concurrent.futures.Executor,
                  say: Callable[[str], None]) -> list[dict]:
    """Render ``max_scores`` scores, taking further candidates in order for any that are skipped."""
    records: list[dict] = []
    taken = 0
    while taken < len(candidates):
        missing = max_scores - sum(1 for r in records if r["status"] == "ok")
        if missing <= 0:
            break
        batch = candidates[taken:taken + missing]
        taken += len(batch)
        jobs = [_ScoreJob(path, str(corpus_root), sample_rate, music21_version) for path in batch]
        records += run_jobs(jobs, out_dir, pool, say)
    return records


def _render_score_job(job: _ScoreJob, tmp: Path) -> tuple[np.ndarray, dict]:
    """Arrange, render and tidy one score.

    Returns
    -------
    samples : numpy.ndarray
        [shape=(frames,), dtype=float32] at ``job.sample_rate``, peak at :data:`PEAK_DBFS`.
    details : dict
        Manifest fields: licence, instruments, tempo, repeats and cuts.
    """
    rng = random.Random(hashlib.sha256(job.corpus_path.encode()).hexdigest())
    midi_path = tmp / "score.mid"
    try:
        with time_budget(SCORE_TIME_BUDGET_S):
            score = parse_score(Path(job.corpus_root) / job.corpus_path)
            score, expanded = expand_repeats(score)
            arrangement = arrange(score, rng)
            # Past the cap nothing is kept, so nothing past it is written or rendered.
            drop_measures_after(score, (MAX_SCORE_SECONDS + 5.0) * arrangement["tempo_qpm"] / 60.0)
            write_midi(score, midi_path)
    except OverBudget:
        raise Skip(f"parsing took over {SCORE_TIME_BUDGET_S:.0f} s") from None
    except Skip:
        raise
    except Exception as e:  # music21's parsers raise all sorts on odd files; one bad score is not fatal
        raise Skip(f"music21 cannot parse or write it ({type(e).__name__}: {first_line(e)})") from None

    rate = job.sample_rate
    max_render = MAX_SCORE_SECONDS + 60.0
    mono = render_midi([midi_path], rate, tmp / "render.wav", max_render).mean(axis=1)
    start, end = audible_span(mono, rate)
    plays = 1
    if end - start < MIN_SECONDS * rate:
        if end <= start:
            raise Skip("renders silent")
        plays = math.ceil((MIN_SECONDS + 1.0) * rate / (end - start))
        if plays > MAX_SCORE_PLAYS:
            raise Skip(f"lasts {(end - start) / rate:.1f} s, too short even played {MAX_SCORE_PLAYS} times")
        # FluidSynth plays the files as a playlist, one straight after the other: a da capo.
        mono = render_midi([midi_path] * plays, rate, tmp / "render.wav", max_render).mean(axis=1)
        start, end = audible_span(mono, rate)
        if end - start < MIN_SECONDS * rate:
            raise Skip(f"lasts {(end - start) / rate:.1f} s even played {plays} times")
    mono = mono[start:end]
    cut_at = None
    if len(mono) > MAX_SCORE_SECONDS * rate:
        cut_at = MAX_SCORE_SECONDS
        mono = mono[: round(MAX_SCORE_SECONDS * rate)]
        fade = round(1.0 * rate)
        mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    gain = 10 ** (PEAK_DBFS / 20) / float(np.max(np.abs(mono)))
    details = {
        "licence": "public-domain",
        "collection": job.corpus_path.split("/")[0],
        **_score_credits(score),
        **arrangement,
        "repeats_expanded": expanded,
        "plays": plays,
        "cut_at_s": cut_at,
        "gain_db": round(20 * math.log10(gain), 2),
        "renderer": f"fluidsynth -g {FLUIDSYNTH_GAIN}, {SOUNDFONT.name}",
    }
    return (mono * gain).astype(np.float32), details


def parse_score(path: Path):
    """Parse a corpus file into one ``Score`` (never reading or writing music21's pickle cache)."""
    from music21 import converter, stream

    parsed = converter.parse(str(path), forceSource=True)
    if isinstance(parsed, stream.Opus):
        if len(parsed.scores) != 1:
            raise Skip(f"holds {len(parsed.scores)} pieces")
        parsed = parsed.scores[0]
    if isinstance(parsed, stream.Part):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    if not parsed.parts or not parsed.recurse().notes:
        raise Skip("holds no notes")
    return parsed


def expand_repeats(score) -> tuple[object, bool]:
    """Write out repeat signs (a fiddle tune is twice as long with them).

    When music21 rejects the marks (inconsistent ones are common in old encodings) they are dropped and
    the score plays straight through; the MIDI writer would otherwise fail on them too.
    """
    from music21 import bar, repeat, spanner, stream

    try:
        return score.expandRepeats(), True
    except Exception:  # music21's ExpanderException and friends from malformed repeat structures
        pass
    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline("regular")
    for mark in list(score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        mark.activeSite.remove(mark)
    return score, False


def write_midi(score, path: Path) -> None:
    """Write a score as MIDI with one channel per part and every channel silenced at the end.

    music21 gives parts that share a program one channel; two violins in unison then overlap on one
    key, and FluidSynth can leave that note sounding for ever (its player renders until every voice has
    died away, so the render never ends). Own channels avoid the overlap; the closing All Notes Off
    catches anything else.
    """
    from music21 import midi
    from music21.midi import translate

    midi_file = translate.music21ObjectToMidiFile(score)
    pitched_channels = [c for c in range(1, 17) if c != 10]  # 10 is General MIDI percussion
    pitched_tracks = 0
    for track in midi_file.tracks:
        voice_events = [e for e in track.events if isinstance(e, midi.MidiEvent) and e.channel
                        and e.type in midi.ChannelVoiceMessages]
        if not any(e.type == midi.ChannelVoiceMessages.NOTE_ON for e in voice_events):
            continue
        if all(e.channel != 10 for e in voice_events):
            channel = pitched_channels[pitched_tracks % len(pitched_channels)]
            pitched_tracks += 1
            for event in voice_events:
                event.channel = channel
        channels = sorted({e.channel for e in voice_events})
        end = next((i for i in range(len(track.events) - 1, -1, -1)
                    if getattr(track.events[i], "type", None) == midi.MetaEvents.END_OF_TRACK), None)
        if end is None:
            continue
        closing = []
        for channel in channels:
            all_notes_off = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=channel)
            all_notes_off.parameter1, all_notes_off.parameter2 = 123, 0
            closing += [all_notes_off, midi.DeltaTime(track, time=0, channel=channel)]
        track.events[end:end] = closing
    midi_file.open(str(path), "wb")
    try:
        midi_file.write()
    finally:
        midi_file.close()


def drop_measures_after(score, quarters: float) -> None:
    """Remove every measure that starts ``quarters`` quarter notes or more into the score."""
    from music21 import stream

    for part in score.parts:
        for measure in list(part.getElementsByClass(stream.Measure)):
            if measure.offset >= quarters:
                part.remove(measure)


def _score_credits(score) -> dict:
    metadata = score.metadata
    credits = {}
    if metadata is not None:
        for field in ("composer", "title", "movementName", "copyright"):
            value = getattr(metadata, field, None)
            if value and not str(value).endswith((".mxl", ".xml", ".krn", ".abc")):
                credits["encoding_copyright" if field == "copyright" else field] = str(value)
    return credits


def render_midi(midi_paths: Sequence[Path], sample_rate: int, wav_path: Path, max_seconds: float) -> np.ndarray:
    """Render MIDI files back to back with FluidSynth, headless and faster than real time.

    Parameters
    ----------
    midi_paths : sequence of pathlib.Path
        Played one straight after the other.
    sample_rate : int
        In Hz.
    wav_path : pathlib.Path
        Scratch file for the render.
    max_seconds : float
        A render that runs longer is stopped and the piece skipped.

    Returns
    -------
    numpy.ndarray
        [shape=(frames, 2), dtype=float32] at ``sample_rate``.
    """
    command = ["fluidsynth", "-n", "-i", "-q", "-g", str(FLUIDSYNTH_GAIN), "-r", str(sample_rate),
               "-O", "float", "-T", "wav", "-F", str(wav_path), str(SOUNDFONT), *map(str, midi_paths)]
    # A voice that never dies away keeps FluidSynth rendering for ever: stop it at a sane length.
    max_bytes = int(max_seconds * sample_rate * 2 * 4)  # stereo float32
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while process.poll() is None:
            if file_size(wav_path) > max_bytes or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise Skip(f"FluidSynth rendered past {max_seconds:.0f} s (or for 600 s): a note never ends")
            time.sleep(0.1)
        log.seek(0)
        output = log.read().decode(errors="replace")
    if process.returncode != 0 or not wav_path.is_file():
        raise Skip(f"FluidSynth failed: {first_line(output or 'no output')}")
    return load_audio(wav_path).samples


def music21_source_entry(version: str, corpus_root: Path, excluded: list[dict]) -> dict:
    corpus_licence = corpus_root / "license.txt"
    notice = corpus_licence.read_text() if corpus_licence.is_file() else ""
    return {
        "licence": "public-domain scores; music21 itself is BSD-3-Clause",
        "copyright": (
            "The compositions rendered here are in the public domain: their composers died long ago and they "
            "were published before 1929 (the newest are Beach, Berlin, J. R. Johnson, Schoenberg and Webern). "
            f"The score encodings come from the corpus bundled with music21 {version}, software by Michael "
            "Scott Asato Cuthbert and contributors under the BSD 3-Clause licence; the corpus's own notice "
            "follows.\n\n" + notice),
        "renderer": (f"FluidSynth with {SOUNDFONT} (FluidR3_GM, MIT licence, see {SOUNDFONT_COPYRIGHT}); "
                     "General MIDI instruments and tempo drawn from a seed of each score's corpus path"),
        "excluded": excluded,
    }
