"""Live mode through speakers: telling the performer from Encore's own echo, and keeping the echo out of memory.

With speakers and a microphone in one room, the microphone hears Encore's continuation as well as the
performer. Taken for the performer, that echo made Encore fade out within half a second of beginning and,
heard as music, it would be re-synthesised from: audio that was itself rendered, the compounding the resynth
generator exists to avoid. Two measures, neither of which subtracts anything from the signal:

- **A level gate** (:class:`EchoGate`): in the first second of each continuation (the performer has just
  stopped) the gate learns how loud the room returns Encore's output at the input (the *coupling*: input level
  over the output's recent level envelope). From then on the input counts as the performer only when it is
  :data:`ECHO_MARGIN` times louder than that echo would be. With headphones or a line input the coupling is
  about 0 and the gate passes everything, as before.
- **A memory without Encore** (:func:`performer_spans`): what a continuation continues is the input heard while
  Encore was silent; the stretches where it sounded, and :data:`MAX_ECHO_DELAY_S` after, are left out
  (unless the coupling learned says the input cannot hear Encore: then nothing is).

Levels are RMS over :data:`LEVEL_WINDOW_S`, the live thread's window. The output side is the highest such
level within the last :data:`ENVELOPE_SPAN_S` (:func:`output_envelope`), so the echo's delay
need not be known.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

#: Longest delay from Encore's output to its input that is allowed for, in seconds: the device's output and
#: input latency plus the room's path (a few ms per metre). Bluetooth speakers can exceed it.
MAX_ECHO_DELAY_S = 0.3
#: Level window, in seconds (the live thread's).
LEVEL_WINDOW_S = 0.05
#: How much of Encore's recent output the envelope reads, in seconds: a level window at every delay allowed.
ENVELOPE_SPAN_S = LEVEL_WINDOW_S + MAX_ECHO_DELAY_S
#: Step between the output windows the envelope takes its maximum over, in seconds.
ENVELOPE_HOP_S = 0.01
#: How long the coupling is learned at the start of each continuation, in seconds of input.
LEARN_S = 1.0
#: Fewest level pairs (one per live-thread poll with Encore audible) a coupling is learned from.
MIN_LEARNING_PAIRS = 10
#: The coupling is this percentile of the learned input/output level ratios: an echo's ratio is at most the
#: coupling (the envelope is the output's loudest recent window), so a high percentile finds it while one
#: stray sound in the learning second does not set it.
COUPLING_PERCENTILE = 90.0
#: The performer plays only when the input is this many times (6 dB) louder than the echo expected.
ECHO_MARGIN = 2.0
#: Between learnings the coupling follows the echo down to the highest measure of this many last seconds.
FOLLOW_SECONDS = 3


def output_envelope(played: np.ndarray, sample_rate: int) -> float:
    """The highest level of Encore's recent output, over windows at every delay the echo may have.

    Parameters
    ----------
    played : numpy.ndarray
        [shape=(frames,), dtype=float32] what Encore sent to the output, mono, newest last; the last
        ``ENVELOPE_SPAN_S * sample_rate`` frames are read.
    sample_rate : int
        In Hz.

    Returns
    -------
    float
        RMS of the loudest :data:`LEVEL_WINDOW_S` window, windows every :data:`ENVELOPE_HOP_S` (0.0 if shorter
        than one window).
    """
    window = max(1, round(LEVEL_WINDOW_S * sample_rate))
    hop = max(1, round(ENVELOPE_HOP_S * sample_rate))
    x = np.asarray(played[-round(ENVELOPE_SPAN_S * sample_rate):], dtype=np.float64)
    if x.shape[0] < window:
        return 0.0
    energy = np.concatenate(([0.0], np.cumsum(x * x)))
    ends = np.arange(x.shape[0], window - 1, -hop)  # windows that end at the newest frame, then every hop back
    return float(np.sqrt(max(0.0, float(np.max(energy[ends] - energy[ends - window])) / window)))


class EchoGate:
    """Decides whether a loud input is the performer or Encore heard back through the room.

    Parameters
    ----------
    sample_rate : int
        Of the input, in Hz.
    floor : float
        Output level (RMS, linear) under which Encore counts as silent: its echo cannot reach the input
        threshold then, so the input is the performer's. The live threshold.

    Attributes
    ----------
    coupling : float or None
        Learned input level per unit of output level (0.3: the room returns Encore 10 dB down); None until the
        first continuation's learning second is over. Between learnings it only comes down: while the input does
        not pass for the performer, it is lowered to the highest measure (:data:`COUPLING_PERCENTILE`) of the
        last :data:`FOLLOW_SECONDS` seconds where that is lower. With an echo canceller still converging when it
        was learnt (the first continuation: 24 dB down, where 50 dB came later), a performer 6 dB under the echo
        was not heard; now they are, as the echo's remains shrink. Seconds in which the performer plays unheard
        measure the performer, which is no lower.
    """

    def __init__(self, sample_rate: int, floor: float):
        self.sample_rate = sample_rate
        self.floor = float(floor)
        self.coupling: float | None = None
        self._learning_from: int | None = None
        self._ratios: list[float] = []
        self._following_from: int | None = None  # where the second being measured began
        self._following: list[float] = []
        self._measures: deque[float] = deque(maxlen=FOLLOW_SECONDS)  # the last seconds' measures

    @property
    def learning(self) -> bool:
        """Whether the coupling is being learned now."""
        return self._learning_from is not None

    def start_learning(self, frame: int) -> None:
        """Encore starts to sound at input frame ``frame``: learn the room's coupling over the next
        :data:`LEARN_S` (the previous coupling, if any, decides meanwhile)."""
        self._learning_from = frame
        self._ratios = []
        self._following_from, self._following = None, []
        self._measures.clear()

    def is_performer(self, frame: int, input_level: float, output_level: float) -> bool:
        """Whether the input's level is more than Encore's echo can explain (and learn from it while learning).

        Parameters
        ----------
        frame : int
            Input frame the levels end at (absolute).
        input_level : float
            RMS of the last :data:`LEVEL_WINDOW_S` of input.
        output_level : float
            :func:`output_envelope` of Encore's output up to the same moment.

        Returns
        -------
        bool
            True when Encore is silent (``output_level`` under the floor), or the input is louder than
            :data:`ECHO_MARGIN` times the echo expected. While the first coupling is being learned: False
            (the performer has just stopped; playing again within that second is heard after it). While a
            later one is, the echo expected is the higher of the last coupling's and what this second has
            measured so far (:meth:`_learn`).
        """
        if output_level <= self.floor:
            return True
        ratio = input_level / output_level
        if self._learning_from is not None:
            return self._learn(frame - self._learning_from, ratio)
        performer = ratio > ECHO_MARGIN * self._expected_ratio()  # never before a coupling is learnt
        if not performer and self.coupling is not None:
            self._follow(frame, ratio)
        return performer

    def _expected_ratio(self) -> float:
        """The input-to-output ratio Encore's echo is expected to reach now: the coupling, or while one is relearnt
        the higher of the last one and what this second has measured so far (:meth:`_learn`); inf where nothing
        says what the echo is (the first coupling not learnt yet)."""
        if self.coupling is None:
            return math.inf
        if self._learning_from is not None and self._ratios:
            return max(self.coupling, float(np.percentile(self._ratios, COUPLING_PERCENTILE)))
        return self.coupling

    def performer_level(self, output_level: float) -> float:
        """The input level over which :meth:`is_performer` hears the performer under ``output_level`` (RMS,
        linear): 0 while Encore is silent, inf while nothing says what its echo is. The live thread reads where a
        comeback's sound began from it."""
        if output_level <= self.floor:
            return 0.0
        return ECHO_MARGIN * self._expected_ratio() * output_level

    def _learn(self, since: int, ratio: float) -> bool:
        """One poll of the learning second, ``since`` input frames after it began: its verdict, and the ratio
        learnt where it is echo.

        The performer has just stopped, so the learning's first :data:`MIN_LEARNING_PAIRS` polls are learnt
        whatever they are, and the echo expected meanwhile is the higher of the last coupling and what this second
        has measured so far: a canceller's remains are loudest as Encore starts again (up to 17 dB under its
        output for the first 0.3-0.9 s in the soak, where 50 dB came later), and the last coupling alone took them
        for the performer and faded. Later polls that pass for the performer are not learnt, so that a comeback
        within the second does not set the coupling.
        """
        ratios = self._ratios
        first_polls = len(ratios) < MIN_LEARNING_PAIRS
        if first_polls:
            ratios.append(ratio)
        performer = ratio > ECHO_MARGIN * self._expected_ratio()  # inf for the first coupling: the room is unknown
        if not first_polls and not performer:
            ratios.append(ratio)
        if since >= LEARN_S * self.sample_rate and len(ratios) >= MIN_LEARNING_PAIRS:
            self.coupling = float(np.percentile(ratios, COUPLING_PERCENTILE))
            self._learning_from = None
        return performer

    def hears_performer(self, frame: int, input_level: float, output_level: float, threshold: float) -> bool:
        """The live thread's verdict on one poll: the input is over the live ``threshold`` and more than Encore's
        echo explains (:meth:`is_performer`).

        The gate sees every poll, the quiet ones too: with a canceller, the echo's remains sit far under the
        threshold (50 dB under Encore's output in the soak), and only those polls let the coupling follow them
        down. Consulted on loud polls alone, it followed only the performer and transients, and a coupling
        learnt on a second with a burst of residual echo (18-27 dB under the output, in 6 of 28 continuations
        of a 10-minute soak) held for the whole continuation, where a performer 6 dB under the echo dipped
        under it.

        Parameters
        ----------
        frame, input_level, output_level
            As in :meth:`is_performer`.
        threshold : float
            The live threshold (RMS, linear): quieter input is never the performer.
        """
        performer = self.is_performer(frame, input_level, output_level)
        return input_level > threshold and performer

    def _follow(self, frame: int, ratio: float) -> None:
        """Lower the coupling to what a second of echo alone measures, where that is lower (see ``coupling``)."""
        if self._following_from is None:
            self._following_from, self._following = frame, []
        self._following.append(ratio)
        if (frame - self._following_from >= LEARN_S * self.sample_rate
                and len(self._following) >= MIN_LEARNING_PAIRS):
            self._measures.append(float(np.percentile(self._following, COUPLING_PERCENTILE)))
            self._following_from, self._following = None, []
            if len(self._measures) == FOLLOW_SECONDS and self.coupling is not None:
                # The highest of several seconds: one second of a dying chord measures low, and the lowest of
                # many such measures would take the echo itself for the performer.
                self.coupling = min(self.coupling, max(self._measures))

    @property
    def echo_db(self) -> float:
        """How far below Encore's output the input hears it, in dB: inf when its echo can never reach the live
        threshold (headphones, a line input: the coupling is under the floor), nan before it is measured."""
        if self.coupling is None:
            return float("nan")
        return float("inf") if self.coupling < self.floor else float(-20 * np.log10(self.coupling))

    def describe(self) -> str:
        """One line for the engine's ``echo`` event: how loud the room returns Encore."""
        echo_db = self.echo_db
        if np.isnan(echo_db):
            return "not measured yet"
        if np.isinf(echo_db):
            return "the input does not hear Encore (headphones or a line input)"
        level = f"{echo_db:.0f} dB down" if echo_db >= 0 else f"{-echo_db:.0f} dB louder than it plays"
        return f"the input hears Encore {level} (speakers), and ignores it"


def input_hears_encore(*, cancelling: bool, canceller_hears: bool | None, gate_echo_db: float) -> bool:
    """Whether the live input may hold Encore's own output, heard back through the room, so that the stretches where
    Encore sounded are left out of the memory.

    With an echo canceller, the echo gate learns from the cancelled input, whose residual can sit under the live
    threshold while the raw input, which the memory keeps, holds the echo at full level: so its measure can say
    that the input hears Encore, never that it does not. That takes the canceller's delay estimate finding no
    echo (headphones, a line input) and the gate finding none left either. Without a canceller, the gate's
    measure says it.

    Parameters
    ----------
    cancelling : bool
        An echo canceller runs.
    canceller_hears : bool or None
        Its last delay estimate found Encore's echo (None before the first).
    gate_echo_db : float
        :attr:`EchoGate.echo_db`: inf when the echo can never reach the live threshold, nan before it is learned.

    Returns
    -------
    bool
        False only where it is known that the input does not hear Encore.
    """
    if cancelling:
        return canceller_hears is not False or math.isfinite(gate_echo_db)
    return gate_echo_db != math.inf


def performer_spans(start: int, stop: int, sounded: list[tuple[int, int]], frames: int) -> list[tuple[int, int]]:
    """Where the newest ``frames`` of input in ``[start, stop)`` are, leaving out the stretches Encore sounded.

    Parameters
    ----------
    start, stop : int
        Absolute input frames: the oldest held and one past the newest wanted.
    sounded : list of (int, int)
        ``[begin, end)`` absolute input frames where Encore sounded (its echo's delay included), any order;
        ``end`` may be past ``stop``.
    frames : int
        How many frames are wanted at most.

    Returns
    -------
    list of (int, int)
        ``[begin, end)`` spans, oldest first, disjoint and non-empty, totalling ``min(frames, what is left)``.
    """
    spans: list[tuple[int, int]] = []
    cursor, wanted = stop, frames
    for begin, end in sorted(sounded, reverse=True) + [(start - 1, start)]:
        if wanted <= 0 or cursor <= start:
            break
        end = min(end, cursor)
        if end <= begin:
            continue  # wholly after the cursor (or empty)
        lo = max(end, start, cursor - wanted)
        if lo < cursor:
            spans.append((lo, cursor))
            wanted -= cursor - lo
        cursor = min(cursor, begin)
    return spans[::-1]


def splice(pieces: list[np.ndarray], fade: int) -> np.ndarray:
    """Join pieces of input end to end, each join an equal-power crossfade of ``fade`` frames (so a cut-out
    stretch leaves no click in the memory); a join where either side is shorter than the fade has none.

    Parameters
    ----------
    pieces : list of numpy.ndarray
        [shape=(frames,) or (frames, channels), dtype=float32] each, oldest first, at least one.
    fade : int
        Crossfade length in frames.

    Returns
    -------
    numpy.ndarray
        [shape=(sum of frames - fade per crossfaded join, ...), dtype=float32]; the one piece itself when
        there is only one.
    """
    from .seam import crossfade

    if len(pieces) == 1:
        return np.asarray(pieces[0], dtype=np.float32)
    # One output array, each piece copied in once: a 5-minute memory cut in many places stays one copy.
    overlaps = [fade if min(before.shape[0], after.shape[0]) >= fade > 0 else 0
                for before, after in zip(pieces[:-1], pieces[1:], strict=True)]
    total = sum(piece.shape[0] for piece in pieces) - sum(overlaps)
    joined = np.empty((total, *pieces[0].shape[1:]), np.float32)
    at = 0
    for index, piece in enumerate(pieces):
        overlap = overlaps[index - 1] if index else 0
        if overlap:
            joined[at - overlap:at] = crossfade(joined[at - overlap:at], piece[:overlap], correlation=0.0)
        joined[at:at + piece.shape[0] - overlap] = piece[overlap:]
        at += piece.shape[0] - overlap
    return joined
