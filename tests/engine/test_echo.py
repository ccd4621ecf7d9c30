"""Live mode through speakers: the echo gate and the memory that leaves Encore out (engine.echo)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.echo import (
    ECHO_MARGIN,
    FOLLOW_SECONDS,
    LEARN_S,
    LEVEL_WINDOW_S,
    MAX_ECHO_DELAY_S,
    MIN_LEARNING_PAIRS,
    EchoGate,
    input_hears_encore,
    output_envelope,
    performer_spans,
    splice,
)
from engine.seam import click_score, rms

RATE = 48000
WINDOW = round(LEVEL_WINDOW_S * RATE)
POLL = round(0.02 * RATE)  # the live thread's poll


def music(seconds: float, seed: int) -> np.ndarray:
    """A mono test signal whose level swells and dips by 20 dB every second, as music's does."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = 0.05 + 0.45 * (0.5 + 0.5 * np.sin(2 * np.pi * 1.0 * t)) ** 4
    return (envelope * rng.standard_normal(t.size)).astype(np.float32)


def room(output: np.ndarray, coupling: float, delay_s: float, performer: np.ndarray | None = None) -> np.ndarray:
    """What the microphone hears: the output ``delay_s`` late and ``coupling`` times as loud, plus the performer."""
    delay = round(delay_s * RATE)
    heard = np.zeros_like(output)
    heard[delay:] = coupling * output[:output.shape[0] - delay]
    if performer is not None:
        heard += performer
    return heard


def decisions(gate: EchoGate, output: np.ndarray, heard: np.ndarray, *, learn_from: int = 0) -> np.ndarray:
    """The gate's verdict at every poll of the live thread, as the engine asks it."""
    gate.start_learning(learn_from)
    verdicts = []
    span = WINDOW + round(MAX_ECHO_DELAY_S * RATE)
    for end in range(learn_from + span, output.shape[0], POLL):
        level = rms(heard[end - WINDOW:end])
        verdicts.append(gate.is_performer(end, level, output_envelope(output[:end], RATE)))
    return np.array(verdicts)


def test_output_envelope_finds_the_loudest_window_within_the_echo_delay():
    quiet_then_burst = np.full(RATE, 0.01, np.float32)
    burst_at = RATE - round(0.2 * RATE)  # 0.2 s before the end: within the delays allowed for
    quiet_then_burst[burst_at:burst_at + WINDOW] = 0.5
    assert output_envelope(quiet_then_burst, RATE) == pytest.approx(0.5, rel=1e-6)
    old_burst = np.full(RATE, 0.01, np.float32)
    old_burst[:WINDOW] = 0.5  # a second ago: any echo of it has arrived long since
    assert output_envelope(old_burst, RATE) == pytest.approx(0.01, rel=1e-6)
    assert output_envelope(np.zeros(WINDOW - 1, np.float32), RATE) == 0.0


@pytest.mark.parametrize("coupling, delay_s", [(0.3, 0.03), (1.0, 0.12), (0.05, 0.25)])
def test_the_gate_learns_the_rooms_coupling_and_ignores_the_echo(coupling, delay_s):
    output = music(6.0, seed=1)
    gate = EchoGate(RATE, floor=0.01)
    verdicts = decisions(gate, output, room(output, coupling, delay_s))
    assert not gate.learning
    # The envelope is the loudest recent window, so the echo's ratio is at most the coupling.
    assert 0.5 * coupling <= gate.coupling <= 1.05 * coupling
    assert not verdicts.any()  # while learning, and after it: Encore heard back is never the performer


def test_the_performer_is_heard_over_the_echo_once_louder_than_the_margin():
    output = music(8.0, seed=2)
    performer = np.zeros_like(output)
    starts = round(4.0 * RATE)
    performer[starts:] = 0.6 * np.random.default_rng(3).standard_normal(output.shape[0] - starts)
    gate = EchoGate(RATE, floor=0.01)
    verdicts = decisions(gate, output, room(output, 0.3, 0.03, performer))
    first_poll = WINDOW + round(MAX_ECHO_DELAY_S * RATE)
    at = (np.arange(verdicts.shape[0]) * POLL + first_poll) / RATE
    assert not verdicts[at < 4.0].any()
    assert verdicts[at > 4.0 + LEVEL_WINDOW_S].mean() > 0.95  # the performer, 0.6 RMS, over an echo of <= 0.15


def test_with_headphones_the_gate_learns_no_coupling_and_passes_the_performer():
    output = music(4.0, seed=4)
    noise_floor = np.random.default_rng(5).standard_normal(output.shape[0]).astype(np.float32) * 1e-4
    gate = EchoGate(RATE, floor=0.01)
    decisions(gate, output, noise_floor)
    assert gate.coupling < gate.floor and "does not hear Encore" in gate.describe()
    assert gate.echo_db == np.inf
    # A quiet performer, 0.02 RMS against Encore's 0.1-0.5 in the headphones, plays again: heard at once.
    assert gate.is_performer(10 * RATE, 0.02, 0.5)


def test_until_the_first_coupling_is_learned_a_loud_input_over_encore_waits():
    gate = EchoGate(RATE, floor=0.01)
    gate.start_learning(0)
    assert not gate.is_performer(WINDOW, 0.5, 0.2)  # it may be the room: the first second learns
    assert gate.is_performer(WINDOW, 0.5, 0.005)    # Encore near silent: the input is the performer
    assert "not measured" in gate.describe()
    assert np.isnan(gate.echo_db)


def test_a_learned_coupling_decides_while_the_next_one_is_learned():
    gate = EchoGate(RATE, floor=0.01)
    gate.coupling = 0.1
    gate.start_learning(0)
    assert gate.learning
    at = 0
    for _ in range(MIN_LEARNING_PAIRS):  # the performer has just stopped: the first polls are echo
        assert not gate.is_performer(at, 0.1 * 0.4, 0.4)
        at += POLL
    assert gate.is_performer(at, 0.5, 0.5)  # 0.5 > ECHO_MARGIN * 0.1 * 0.5
    assert not gate.is_performer(at + POLL, ECHO_MARGIN * 0.1 * 0.5 * 0.9, 0.5)
    for poll in range(60):  # a second and more of pure echo at 0.1 relearns it
        gate.is_performer(at + poll * POLL, 0.1 * 0.4, 0.4)
    assert not gate.learning and gate.coupling == pytest.approx(0.1)
    assert "20 dB down" in gate.describe()
    assert gate.echo_db == pytest.approx(20.0)


def test_the_remains_loudest_as_encore_starts_again_are_echo_and_a_comeback_over_them_is_heard():
    # The soak's case: the last coupling was learnt 50 dB down, and a canceller's remains come back 17-22 dB
    # under Encore's output for the first 0.3-0.9 s of the next continuation. Taken for the performer, they
    # faded Encore 0.4 s after it began.
    gate = EchoGate(RATE, floor=0.01)
    gate.coupling = 10 ** (-50 / 20)
    gate.start_learning(0)
    remains, output, at = 10 ** (-20 / 20), 0.18, 0
    for _ in range(round(0.5 * RATE / POLL)):
        assert not gate.is_performer(at, remains * output, output)
        at += POLL
    # A comeback within the second is heard over them, and is not learnt as the room's echo.
    comeback = 0.5 * output
    for _ in range(MIN_LEARNING_PAIRS):
        assert gate.is_performer(at, comeback, output)
        at += POLL
    for _ in range(round(0.6 * RATE / POLL)):
        gate.is_performer(at, remains * output, output)
        at += POLL
    assert not gate.learning
    assert gate.coupling == pytest.approx(remains)


def test_the_level_a_comeback_must_reach_is_the_verdicts_own_in_every_state():
    # The live thread finds where a comeback began from this level: it must be the one the verdict uses.
    gate = EchoGate(RATE, floor=0.01)
    output, at = 0.4, 0

    def agrees(output_level: float) -> None:
        level = gate.performer_level(output_level)
        for input_level in (0.5 * level, 0.99 * level, 1.01 * level, 2.0 * level):
            if np.isfinite(input_level) and input_level > 0:
                expected = input_level > level
                probe = EchoGate(RATE, floor=gate.floor)  # the same state, so that probing learns nothing here
                probe.__dict__.update({k: (list(v) if isinstance(v, list) else v) for k, v in gate.__dict__.items()})
                assert probe.is_performer(at, input_level, output_level) == expected, (input_level, level)

    assert gate.performer_level(0.005) == 0.0  # Encore silent: any input is the performer
    gate.start_learning(0)
    assert gate.performer_level(output) == np.inf  # the first coupling: the room is not known yet
    at = _seconds_of_echo(gate, [0.1, 0.1], output=output)
    assert gate.performer_level(output) == pytest.approx(ECHO_MARGIN * 0.1 * output)
    agrees(output)
    gate.start_learning(at)
    for _ in range(MIN_LEARNING_PAIRS):  # relearning over louder remains: the higher of the two is expected
        gate.is_performer(at, 0.3 * output, output)
        at += POLL
    assert gate.performer_level(output) == pytest.approx(ECHO_MARGIN * 0.3 * output)
    agrees(output)


def _seconds_of_echo(gate: EchoGate, ratios: list[float], *, output: float = 0.4, at: int = 0) -> int:
    """Each of ``ratios`` for a second of polls (input = ratio * output); returns the frame after them."""
    polls_a_second = round(RATE / POLL)
    for ratio in ratios:
        for _ in range(polls_a_second):
            gate.is_performer(at, ratio * output, output)
            at += POLL
    return at


def test_the_coupling_follows_a_converging_canceller_down_and_a_quieter_performer_is_heard():
    # With a canceller, the first continuation learns the echo's remains while the filter still converges
    # (measured in the soak: 24 dB down where 50 dB came later): a performer 6 dB under the echo went unheard.
    gate = EchoGate(RATE, floor=0.01)
    gate.start_learning(0)
    at = _seconds_of_echo(gate, [0.3, 0.3])  # learnt at the first poll a second on
    assert gate.coupling == pytest.approx(0.3)
    performer = 0.1 * 0.4  # over the echo's remains to come, under ECHO_MARGIN times those learnt
    assert not gate.is_performer(at, performer, 0.4)
    at = _seconds_of_echo(gate, [0.1] + [0.03] * (FOLLOW_SECONDS + 2), at=at)
    assert gate.coupling == pytest.approx(0.03)
    assert gate.is_performer(at, performer, 0.4)


def test_the_live_verdict_lets_the_gate_follow_remains_under_the_threshold_down():
    # The soak's case: a coupling learnt on a second with a burst of residual echo (-18 dB), then remains
    # 50 dB under Encore's output, far under the live threshold. The live thread's verdict on those quiet polls
    # is "not the performer", but the gate must still see them: then a performer 6 dB under the (uncancelled)
    # echo, dipping 16 dB under Encore's output, is heard.
    threshold, output = 0.01, 0.1
    gate = EchoGate(RATE, floor=threshold)
    gate.start_learning(0)
    at = _seconds_of_echo(gate, [0.125, 0.125], output=output)
    assert gate.coupling == pytest.approx(0.125)
    remains = 10 ** (-50 / 20) * output
    for _ in range(round((FOLLOW_SECONDS + 1) * RATE / POLL)):
        assert not gate.hears_performer(at, remains, output, threshold)
        at += POLL
    assert gate.coupling == pytest.approx(10 ** (-50 / 20), rel=0.01)
    dip = 10 ** (-16 / 20) * output
    assert gate.hears_performer(at, dip, output, threshold)
    assert not gate.hears_performer(at, 0.5 * threshold, 1e-3 * output, threshold), "never under the threshold"


def test_the_coupling_comes_down_only_on_several_seconds_and_never_goes_up_between_learnings():
    gate = EchoGate(RATE, floor=0.01)
    gate.start_learning(0)
    at = _seconds_of_echo(gate, [0.3, 0.3])
    # One low second (a chord dying away) among louder ones: the highest of the last seconds decides.
    at = _seconds_of_echo(gate, [0.3, 0.01, 0.3] * FOLLOW_SECONDS, at=at)
    assert gate.coupling == pytest.approx(0.3)
    # Louder than the echo learnt but not ECHO_MARGIN louder (a performer not heard yet, or the room changed):
    # it never raises the coupling ...
    at = _seconds_of_echo(gate, [0.5] * (FOLLOW_SECONDS + 1), at=at)
    assert gate.coupling == pytest.approx(0.3)
    # ... the next continuation's learning does.
    gate.start_learning(at)
    _seconds_of_echo(gate, [0.5, 0.5], at=at)
    assert gate.coupling == pytest.approx(0.5)


def test_learning_needs_a_second_of_input_and_enough_level_pairs():
    gate = EchoGate(RATE, floor=0.01)
    gate.start_learning(0)
    for poll in range(5):
        gate.is_performer(round(2 * LEARN_S * RATE) + poll, 0.03, 0.1)  # late enough, but only 5 pairs
    assert gate.learning and gate.coupling is None


@pytest.mark.parametrize("sounded, frames, expected", [
    ([], 1000, [(0, 1000)]),                                    # nothing to leave out
    ([], 300, [(700, 1000)]),                                   # the newest frames wanted
    ([(400, 600)], 1000, [(0, 400), (600, 1000)]),              # Encore's stretch left out
    ([(400, 600)], 500, [(300, 400), (600, 1000)]),             # ... and the rest reaches further back
    ([(600, 400 + 2000)], 1000, [(0, 600)]),                    # a stretch still open past the end
    ([(100, 200), (150, 500), (800, 900)], 1000, [(0, 100), (500, 800), (900, 1000)]),  # overlapping
    ([(-500, 300)], 1000, [(300, 1000)]),                       # older than the ring
    ([(0, 1000)], 1000, []),                                    # Encore all along
])
def test_performer_spans_leave_out_where_encore_sounded(sounded, frames, expected):
    assert performer_spans(0, 1000, sounded, frames) == expected


def test_splice_joins_the_pieces_without_a_click():
    t = np.arange(RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    fade = round(0.01 * RATE)
    # Cut a stretch out of the middle: the two sides are out of phase, a bare join would click.
    joined = splice([tone[:20000], tone[31111:]], fade)
    assert joined.shape == (20000 + (RATE - 31111) - fade,)
    bare = np.concatenate([tone[:20000], tone[31111:]])
    assert click_score(joined, 20000 - fade // 2, RATE)["jump"] < 0.5 * click_score(bare, 20000, RATE)["jump"]
    assert splice([tone[:100], tone[:10]], fade).shape == (110,)  # too short to fade: joined as is
    stereo = np.stack([tone, tone], axis=1)
    assert splice([stereo[:1000], stereo[2000:4000]], fade).shape == (3000 - fade, 2)


def test_splice_of_many_pieces_is_one_copy_with_every_join_faded():
    t = np.arange(3 * RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    fade = round(0.01 * RATE)
    cuts = [(0, 7000), (9001, 9700), (12345, 40000), (41000, 41100), (50017, 3 * RATE)]  # 700 and 100 frames too
    pieces = [tone[a:b] for a, b in cuts]
    joined = splice(pieces, fade)
    faded_joins = 2  # into and out of the 700 frames; the 100-frame piece is too short to fade either way
    assert joined.shape == (sum(b - a for a, b in cuts) - faded_joins * fade,)
    assert np.isfinite(joined).all() and np.abs(joined).max() <= 0.5 * 1.42  # equal power at worst sqrt(2)
    assert joined[:7000 - fade].tobytes() == tone[:7000 - fade].tobytes()  # untouched outside the fades
    assert splice([tone[:500]], fade) is not None and splice([tone[:500]], fade).shape == (500,)


@pytest.mark.parametrize(("cancelling", "canceller_hears", "gate_echo_db", "expected"), [
    # With a canceller, the gate learns from its residual, which sits under the threshold (inf) through speakers
    # while the raw input, which the memory keeps, holds Encore at full level: only the canceller can tell.
    (True, True, np.inf, True),
    (True, None, np.inf, True),  # not estimated yet: Encore's stretches are left out
    (True, False, np.inf, False),  # the estimate found no echo, nor the gate any left: headphones, a line input
    (True, False, np.nan, False),
    (True, False, 10.0, True),  # one estimate found none, yet the gate hears Encore after cancelling
    (False, None, 10.0, True),  # the level gate alone: its measure says it
    (False, None, np.nan, True),
    (False, None, np.inf, False),
])
def test_encores_stretches_leave_the_memory_unless_the_input_is_known_not_to_hear_it(cancelling, canceller_hears,
                                                                                     gate_echo_db, expected):
    assert input_hears_encore(cancelling=cancelling, canceller_hears=canceller_hears,
                              gate_echo_db=gate_echo_db) is expected
