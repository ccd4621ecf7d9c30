"""A score's instruments and tempo: General MIDI programs and one tempo, drawn from a seeded generator.

Keyboard music stays on one keyboard; other music gets an ensemble or a random mix of voices. The tempo is the
score's own metronome mark give or take 10 %, or a beat drawn from :data:`CHOSEN_BEAT_BPM` where it has none.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

#: General MIDI programs (0-based) the arrangements draw from.
GM_NAMES = {
    0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 4: "Electric Piano 1", 6: "Harpsichord",
    11: "Vibraphone", 12: "Marimba", 16: "Drawbar Organ", 19: "Church Organ", 21: "Accordion",
    24: "Acoustic Guitar (nylon)", 32: "Acoustic Bass", 40: "Violin", 41: "Viola", 42: "Cello",
    43: "Contrabass", 46: "Orchestral Harp", 48: "String Ensemble 1", 52: "Choir Aahs", 56: "Trumpet",
    57: "Trombone", 58: "Tuba", 60: "French Horn", 68: "Oboe", 70: "Bassoon", 71: "Clarinet", 73: "Flute",
    74: "Recorder",
}
#: Ensembles as programs from the top part down; parts in between take the nearest voice.
ENSEMBLES: dict[str, tuple[int, ...]] = {
    "string quartet": (40, 40, 41, 42),
    "string orchestra": (48, 48, 48, 43),
    "wind quintet": (73, 68, 71, 60, 70),
    "brass": (56, 56, 60, 57, 58),
    "choir": (52,),
    "church organ": (19,),
    "piano": (0,),
    "harpsichord": (6,),
}
KEYBOARD_PROGRAMS = (0, 0, 1, 4, 6, 19)
LEAD_PROGRAMS = (40, 68, 71, 73, 74, 56, 11, 12, 24, 21, 46, 0)
MIDDLE_PROGRAMS = (41, 60, 71, 52, 24, 48, 0, 46)
BASS_PROGRAMS = (42, 43, 70, 57, 32, 58)
#: Beats per minute drawn for a score without a metronome mark, and the spread applied to one that has it.
CHOSEN_BEAT_BPM = (72.0, 120.0)
SCORE_TEMPO_SPREAD = (0.9, 1.1)
QPM_RANGE = (48.0, 200.0)


def arrange(score, rng: random.Random) -> dict:
    """Give every part a General MIDI instrument and the score one tempo; return the choices.

    Keyboard music stays on one keyboard; other music gets an ensemble, or a random mix, from
    :data:`ENSEMBLES`, mapped onto the parts from the top down.
    """
    from music21 import instrument

    parts = list(score.parts)
    part_names = [_part_name(p, i) for i, p in enumerate(parts)]
    originals = [p.getInstrument(returnDefault=False) for p in parts]
    if any(isinstance(i, instrument.KeyboardInstrument) for i in originals):
        style = "keyboard"
        programs = [rng.choice(KEYBOARD_PROGRAMS)] * len(parts)
    else:
        style = rng.choice([*ENSEMBLES, "mixed", "mixed"])
        if style == "mixed":
            programs = [rng.choice(LEAD_PROGRAMS)]
            programs += [rng.choice(MIDDLE_PROGRAMS) for _ in parts[1:-1]]
            if len(parts) > 1:
                programs.append(rng.choice(BASS_PROGRAMS))
        else:
            voices = ENSEMBLES[style]
            programs = [voices[round(i * (len(voices) - 1) / max(len(parts) - 1, 1))] if len(parts) > 1
                        else voices[0] for i in range(len(parts))]
    set_programs(score, programs)

    qpm, tempo_from = _score_qpm(score)
    if qpm is None:
        beat = _beat_quarters(score)
        qpm, tempo_from = rng.uniform(*CHOSEN_BEAT_BPM) * beat, "chosen"
    else:
        qpm *= rng.uniform(*SCORE_TEMPO_SPREAD)
    qpm = round(min(max(qpm, QPM_RANGE[0]), QPM_RANGE[1]), 1)
    set_tempo(score, qpm)
    return {
        "arrangement": style,
        "instruments": [{"part": name, "program": program, "name": GM_NAMES[program]}
                        for name, program in zip(part_names, programs, strict=True)],
        "tempo_qpm": qpm,
        "tempo_from": tempo_from,
    }


def set_programs(score, programs: Sequence[int]) -> None:
    """Replace each part's instruments by one General MIDI program (percussion parts are left alone)."""
    from music21 import instrument

    for part, program in zip(score.parts, programs, strict=True):
        current = list(part.recurse().getElementsByClass(instrument.Instrument))
        if any(isinstance(i, instrument.UnpitchedPercussion) for i in current):
            continue
        for old in current:
            old.activeSite.remove(old)
        new = instrument.Instrument()
        new.midiProgram = program
        new.instrumentName = GM_NAMES.get(program, f"program {program}")
        part.insert(0, new)


def _score_qpm(score) -> tuple[float | None, str]:
    """The first metronome mark's tempo in quarter notes per minute, if the score gives a number."""
    from music21 import tempo

    for mark in score.recurse().getElementsByClass(tempo.MetronomeMark):
        qpm = mark.getQuarterBPM()
        if qpm and qpm > 0:
            return float(qpm), "score"
    return None, "chosen"


def _beat_quarters(score) -> float:
    """Length of the first time signature's beat in quarter notes (1 for 4/4, 1.5 for 6/8, 2 for 2/2)."""
    from music21 import meter

    signatures = list(score.recurse().getElementsByClass(meter.TimeSignature))
    return float(signatures[0].beatDuration.quarterLength) if signatures else 1.0


def set_tempo(score, qpm: float) -> None:
    """One tempo for the whole score: its own marks go, as the arrangement already chose from them."""
    from music21 import tempo

    for mark in list(score.recurse().getElementsByClass(tempo.TempoIndication)):
        mark.activeSite.remove(mark)
    score.insert(0, tempo.MetronomeMark(number=qpm))


def _part_name(part, index: int) -> str:
    # An unnamed part has a numeric id (its memory address): not worth recording.
    return str(part.partName or (part.id if isinstance(part.id, str) else None) or f"part {index + 1}")
