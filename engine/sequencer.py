"""The resynth sequencer: which segment of the memory plays next, in runs of whole bars that jump between phrases.

The continuation plays the song's own material in the song's own order, in runs of whole bars, and jumps only
from a bar line to a bar line (:mod:`engine.structure`), so a jump lands on the same beat of the bar it leaves:

1. **The first jump**, at the song's end, goes to the earlier point whose last :data:`FIRST_MATCH_BEATS`
   segments best match the song's last ones, at the same position in the bar: the continuation carries on
   where a repeat of the song's last passage would. (The song ends wherever its file ends, so this one cut is
   mid-bar; it enters mid-bar at the same place.) Where that passage runs out before the first run is due to
   jump (a short memory, whose best match lies a bar or two before its end), the run goes back to the bar line
   the same distance before the line it must leave at: the passage is played once more, as a repeat sign would
   have it, before other phrases are visited (:meth:`Sequencer._repeat_entry`).
2. **Runs**: each run's length is drawn around a target set by ``variety`` (32 bars at 0, 8 at 0.5, 2 at 1).
   Once a run is that long, it leaves at the next phrase line (an 8-bar line at low variety, any bar line at
   the highest) where a good jump exists, else plays on to the next one and asks less of the jump. It must
   jump where the song's steady bars end (:func:`steady_bars`): before its last cadence, a ritardando or a
   decay, which only an ending plays. Jumps enter steady bars only (not a fade-in or a free intro).
3. **A jump** enters a phrase start. Its score adds the transition cost between the bars around the two bar
   lines, the line's level, the learned scorer's log-probability of the entry (resynth; the jukebox leaves it
   out), how well the two waveforms line up, seeded noise that grows with ``variety``, and a penalty for bars
   played in the last few minutes (``recency_s``), so that in ten minutes most of the song's phrases are heard.
   An entry whose onsets line up with the bar being left only at the edge of the aligner's reach
   (:class:`~engine.rhythm.RhythmAligner`) is no good jump; where a jump is forced it scores far below the rest.
   The song itself was just heard: its bars count as played when they were.
4. **An ending** (:meth:`Sequencer.end`, :meth:`Sequencer.end_at`): from the next phrase line, or the one that
   makes the continuation end nearest a given time, the run goes into the song's own ending (its last section,
   :meth:`Sequencer.ending_bar`) and plays it to the memory's end; a memory that was cut off mid-music instead
   ends on its last whole bar, which the renderer fades out bar line to bar line.

Deterministic: the same memory, settings and seed give the same segments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .analysis import ANALYSIS_RATE, Analysis, context_features
from .rhythm import RhythmAligner
from .structure import Structure, find_structure

if TYPE_CHECKING:
    from .config import ResynthConfig

#: What :meth:`Sequencer.plan` returns after an ending's last segment.
END = -1
#: Segments before the song's end that the first jump matches (8 beats: two bars of 4/4).
FIRST_MATCH_BEATS = 8
#: The ending starts at most this many bars before the memory's end, and at least ENDING_MIN_BARS.
ENDING_MAX_BARS = 16
ENDING_MIN_BARS = 4
#: Bars played within this many bars' time are never entered again at once (a stutter).
STUTTER_BARS = 2
#: Fewest entries a jump chooses among before it looks at lines of a lower level too.
MIN_ENTRIES = 3
#: At either end of the memory, a bar with a beat this far (a share of the song's median beat) from the
#: song's beat is not steady: a ritardando, a held last chord, a free intro.
STEADY_BEAT_SHARE = 0.08
#: At either end of the memory, a bar whose loudest beat is this far under the memory's mean level (dB) is not
#: steady: a decay or a fade.
STEADY_QUIET_DB = -12.0


class Sequencer:
    """Plans the continuation segment by segment: runs of whole bars, jumps between phrase lines.

    Parameters
    ----------
    analysis : Analysis
    mono : numpy.ndarray
        [shape=(frames,), dtype=float32] the memory at :data:`~engine.analysis.ANALYSIS_RATE` (for the
        waveform term of a cut).
    scorer : SimilarityScorer or LearnedScorer
        Its log-probabilities weigh each jump's entry (all zero for the jukebox).
    config : ResynthConfig
    history : numpy.ndarray
        [shape=(played,), dtype=int] the segments heard so far in order; the first planned segment follows
        them, replacing the memory's last segment (where the song ends).
    structure : Structure, optional
        The memory's bars and phrases (found here when None).
    entry_offset_s : float
        How far into its last segment the memory ends: the first segment plays from that far in, so the
        continuation's clock starts there.

    Attributes
    ----------
    history : list of int
        Every segment played, the memory's first.
    jumps : int
        Jumps made so far, the first at the song's end included.
    finished : bool
        An ending has been planned to its last segment.
    fade_segment : int
        Once an ending is under way in a memory cut off mid-music (whose own end is no ending): the segment that
        starts its last whole bar, which the renderer fades out to the bar line; -1 otherwise.
    """

    #: Score weights (log-probability units). The transition cost is in units of its median over the song.
    WEIGHT_LEARNED = 1.0
    WEIGHT_JOIN = 1.5
    WEIGHT_WAVEFORM = 0.5
    #: Per level of the entry's line (a phrase line 1, an 8-bar line 2, a 16-bar line or section start 3).
    WEIGHT_LEVEL = 0.3
    #: For bars heard a moment ago, falling off over ``recency_s``: above the spread of transition costs among
    #: good jumps, so another phrase that fits is preferred to one just heard.
    RECENCY_PENALTY = 3.0
    #: For taking the same jump again within ``recency_s``: in a short memory, where every bar is recent, the
    #: same few jumps would otherwise come round in the same order, a verbatim loop of several runs.
    TRANSITION_PENALTY = 4.0
    NOISE = 1.0
    #: For an entry whose rhythm lines up only at the edge of the aligner's reach (or not at all), where a jump
    #: is forced (elsewhere such an entry is not taken): most such joins broke the beat grid. Above the recency
    #: and repetition penalties together: a stumble is heard at once, a phrase heard again only after minutes.
    UNALIGNED_PENALTY = 8.0

    def __init__(self, analysis: Analysis, mono: np.ndarray, scorer, config: ResynthConfig, history: np.ndarray,
                 structure: Structure | None = None, entry_offset_s: float = 0.0):
        self.analysis, self.scorer, self.config = analysis, scorer, config
        self.structure = s = structure if structure is not None else find_structure(analysis)
        n = analysis.segments
        self.bar_of = s.bar_of_segment(n)
        self._bar_line = np.full(n + 1, -1, np.int64)  # segment -> the bar it starts (the end of the last: bars)
        self._bar_line[s.bar_starts] = np.arange(s.bars + 1)
        self.durations_s = analysis.durations / analysis.sample_rate
        self.median_s = float(np.median(analysis.durations)) / analysis.sample_rate
        self.history = [int(k) for k in history]
        self.now_s = -float(entry_offset_s)
        # When each bar last began, in seconds of continuation: the memory's bars as they were heard.
        starts = analysis.bounds[s.bar_starts[:-1]]
        self.bar_played = (starts - analysis.frames) / analysis.sample_rate
        self.rng = np.random.default_rng(config.seed)
        self.variety = config.variety
        # A run longer than a third of the memory would end at its end every time, always jumping to the same
        # place: a short memory (a 30 s clip, a live phrase) gets shorter runs, so its few phrases can mix.
        self.target_bars = min(2.0 ** (5.0 - 4.0 * config.variety), max(2.0, s.bars / 3.0))
        self.line_level = 2 if config.variety < 0.25 else 1 if config.variety <= 0.75 else 0
        # Some noise even at variety 0: among jumps that fit equally well, the same one every time is a loop.
        self.noise_scale = self.NOISE * (0.2 + 0.8 * config.variety)
        self.run_bars = 0
        self.run_target = self._draw_run()
        self.jumps = 0
        self.transition_used: dict[tuple[int, int], float] = {}  # (bar left, bar entered) -> when, in s
        self.finished = False
        self.fade_segment = -1
        self._committed = 0
        self._repeat_shift: int | None = None  # segments the first jump went back; None once the first run is over
        self._ending_due = False
        self._end_at_s: float | None = None
        self._in_ending = False
        entries = s.level >= self.line_level
        pairs = s.transition[:, entries][np.isfinite(s.transition[:, entries]) & (s.transition[:, entries] > 0)]
        self.threshold = float(np.percentile(pairs, config.candidate_percentile)) if pairs.size else np.inf
        self.aligner = RhythmAligner(analysis)
        self._mono = mono
        self._cut_rows: dict[tuple[int, bool], np.ndarray] = {}
        self.abrupt_end = _ends_abruptly(analysis)
        self.steady_first, self.steady_stop = steady_bars(analysis, s, abrupt_end=self.abrupt_end)
        scorer.prepare(analysis)

    # --- the plan -------------------------------------------------------------------------------------------
    def plan(self, seconds: float) -> list[int]:
        """Choose segments that play for at least ``seconds`` and commit them; :data:`END` closes an ending."""
        out: list[int] = []
        total = 0.0
        while total < seconds:
            j = self.next_segment()
            out.append(j)
            if j == END:
                break
            total += float(self.durations_s[j])
        return out

    def end(self) -> None:
        """Go to the song's own ending from the next phrase line (or carry on into it, when already there)."""
        self._ending_due = True

    def end_at(self, seconds: float) -> None:
        """End on the song's own ending at the phrase line that brings the continuation's end nearest
        ``seconds`` (of continuation, from the song's end)."""
        self._end_at_s = float(seconds)

    def ending_bar(self) -> int:
        """The bar the song's own ending starts at: its last section start or 16-bar line within the last
        :data:`ENDING_MAX_BARS` bars, else its last 8-bar or phrase line at least :data:`ENDING_MIN_BARS` before
        the end, else its first bar."""
        s = self.structure
        last = s.bars
        window = np.arange(max(0, last - ENDING_MAX_BARS), max(0, last - ENDING_MIN_BARS) + 1)
        window = window[window < last]
        for wanted in (3, 2, 1):
            found = window[s.level[window] >= wanted]
            if found.size:
                return int(found[-1] if wanted < 3 else found[0])
        return 0

    def ending_seconds(self, bar: int | None = None) -> float:
        """How long the ending plays from the line before ``bar`` (:meth:`ending_bar` when None): to the memory's
        end, or to the end of its last whole bar where the memory was cut off mid-music."""
        a, s = self.analysis, self.structure
        start = a.bounds[s.bar_starts[self.ending_bar() if bar is None else bar]]
        stop = a.bounds[s.bar_starts[-1]] if self.abrupt_end else a.frames
        return float(stop - start) / a.sample_rate

    def next_segment(self) -> int:
        """Choose the next segment to play and commit it (:data:`END` once an ending is over)."""
        if self.finished:
            return END
        if self._committed == 0:
            return self._commit(self._first_entry())
        current = self.history[-1]
        following = current + 1
        last_whole = int(self.structure.bar_starts[-1])  # the segment after the last whole bar
        if self._in_ending:
            if following >= self.analysis.segments or (self.abrupt_end and following >= last_whole):
                self.finished = True
                return END
            return self._commit(following)
        if following > last_whole:  # past the last whole bar (a first cut that entered there): jump back now
            return self._commit(self._at_bar_line(self.structure.bars))
        line = int(self._bar_line[following])
        if line < 0:  # inside a bar (or the pickup): always in order
            return self._commit(following)
        return self._commit(self._at_bar_line(line))

    def _at_bar_line(self, bar: int) -> int:
        """The segment that plays at the bar line before ``bar`` (``bar == bars``: the end of the last whole
        bar, where the memory's material runs out): the bar itself, or a jump's entry."""
        s = self.structure
        left = bar - 1  # the bar just played
        level = int(s.level[bar]) if bar < s.bars else 3
        if left < 0:  # the first whole bar, after a pickup the first cut entered: nothing to leave yet
            return int(s.bar_starts[bar])
        ending = self.ending_bar()
        # Already inside the ending (or at the memory's end of one that dies away), it may play on in order to
        # the end; or it may go back to the ending's start, which takes longer.
        inside = ending <= bar < s.bars or (bar == s.bars and not self.abrupt_end)
        ways = ([bar] if inside else []) + ([ending] if ending != bar else [])
        way = self._ending_way(level, ways)
        if way is not None:
            self._in_ending = True
            if self.abrupt_end:
                self.fade_segment = int(s.bar_starts[s.bars - 1])
            return int(s.bar_starts[bar]) if way == bar else self._jump(left, ending)
        if bar < s.bars:
            self.run_bars += 1
        forced = bar >= self.steady_stop  # the song's last cadence, ritardando or decay: only an ending plays it
        patience = self.run_bars - self.run_target
        if forced and patience <= 0:
            repeat = self._repeat_entry(bar)
            if repeat is not None:
                return self._jump(left, repeat)
        if not forced and (patience < 0 or level < self.line_level - (1 if patience >= 2 * self.target_bars else 0)):
            return int(s.bar_starts[bar])
        entry = self._choose_entry(left, forced=forced, relax=max(0.0, patience / max(self.target_bars, 1.0)))
        if entry is None:
            return int(s.bar_starts[bar])
        return self._jump(left, entry)

    def _ending_way(self, level: int, ways: list[int]) -> int | None:
        """Whether the ending begins at this line, and how: the bar of ``ways`` to play from (this very bar, in
        order, or the ending's first), or None to carry on as usual."""
        if level < min(1, self.line_level) or not ways:
            return None
        if self._ending_due:
            return ways[0]  # asked to end: the soonest way
        end_at_s = self._end_at_s
        if end_at_s is None:
            return None
        # End here if that lands nearer the asked time than ending at the next phrase line would; of the ways
        # that do, the one whose end lands nearest.
        phrase_s = self.structure.bar_seconds * 4
        ends = {way: self.now_s + self.ending_seconds(way) for way in ways}
        due = [way for way, end in ends.items() if end >= end_at_s - 0.5 * phrase_s]
        return min(due, key=lambda way: abs(ends[way] - end_at_s)) if due else None

    def _first_entry(self) -> int:
        """Where the continuation enters at the song's end: the segment whose predecessors best match the memory's
        last :data:`FIRST_MATCH_BEATS` segments, at the same position in the bar."""
        a = self.analysis
        last = a.segments - 1  # where the memory ends; the continuation replaces it
        width = min(FIRST_MATCH_BEATS, max(1, last // 2))
        look = _look(a)
        candidates = np.arange(width, last - width + 1)
        candidates = candidates[a.phase[candidates] == a.phase[last]]
        if candidates.size == 0:
            self.jumps += 1
            return int(max(0, last - 1))
        offsets = np.arange(1, width + 1)
        before = look[candidates[:, None] - offsets[None, :]]  # (M, width, D)
        mine = look[last - offsets]  # (width, D)
        distance = np.linalg.norm(before - mine[None], axis=2).mean(axis=1)
        self.jumps += 1
        entry = int(candidates[int(np.argmin(distance))])
        self._repeat_shift = last - entry
        return entry

    def _repeat_entry(self, bar: int) -> int | None:
        """Where the first run goes when it must leave at the line before ``bar`` before it is due to jump: the
        bar line nearest to :attr:`_repeat_shift` segments before that line (the passage the first jump matched,
        once more), among the steady bars before it; None after the first run, or when there is none.

        On the 36 evaluation clips, where the best match of a 30 s memory's end often lies a bar or two before it,
        such a run had to jump within 2-3 s of the song's end into any other phrase; going back to where the
        matched passage began is what a repeat of that passage plays, and what the truth most often did."""
        shift, s = self._repeat_shift, self.structure  # :meth:`_jump` ends the first run, whichever jump follows
        if shift is None or shift <= 0:
            return None
        bars = np.arange(self.steady_first, min(self.steady_stop, bar))
        if bars.size == 0:
            return None
        target = int(s.bar_starts[bar]) - shift
        entry = int(bars[int(np.argmin(np.abs(s.bar_starts[bars] - target)))])
        # Like any jump, only where the rhythm lines up within the aligner's reach.
        _, _, unaligned = self.cuts(int(s.bar_starts[bar]) - 1, s.bar_starts[[entry]])
        return None if unaligned[0] else entry

    def _choose_entry(self, left: int, *, forced: bool, relax: float) -> int | None:
        """The bar to jump into after bar ``left``, or None when no jump is good enough yet."""
        s, cfg = self.structure, self.config
        bars = np.arange(s.bars)
        recent = self.bar_played > self.now_s - STUTTER_BARS * s.bar_seconds
        steady = (bars >= self.steady_first) & (bars < self.steady_stop)
        fresh = np.isfinite(s.transition[left]) & ~recent & (np.abs(bars - left) > 1) & steady
        # Entries at the variety's phrase level, or the next level down when that leaves under MIN_ENTRIES.
        for level in range(self.line_level, -1, -1):
            allowed = fresh & (s.level >= level)
            if allowed.sum() >= MIN_ENTRIES:
                break
        if not allowed.any():
            allowed = np.isfinite(s.transition[left]) & (bars != left + 1)
            if (allowed & steady).any():
                allowed &= steady
            if not allowed.any():
                allowed = bars != left + 1 if s.bars > 1 else np.ones(1, bool)
        candidates = bars[allowed]
        cost = s.transition[left, candidates]
        cost = np.where(np.isfinite(cost), cost, 10.0)
        _, waveform, unaligned = self.cuts(int(s.bar_starts[left + 1]) - 1, s.bar_starts[candidates])
        # An entry whose rhythm does not line up within reach is no good jump: a run plays on to the next line.
        good = (cost <= self.threshold * (1.0 + relax)) & (unaligned == 0)
        if not forced and not good.any():
            return None
        if not forced:
            candidates, cost, waveform, unaligned = candidates[good], cost[good], waveform[good], unaligned[good]
        entries = s.bar_starts[candidates]
        # The bars a run from each candidate would play, and how recently each was heard.
        run = min(s.bars, max(1, round(self.target_bars)))
        ahead = np.minimum(candidates[:, None] + np.arange(run)[None, :], s.bars - 1)
        recency = np.exp(-(self.now_s - self.bar_played[ahead]) / cfg.recency_s).mean(axis=1)
        used = np.array([self.transition_used.get((left, int(j)), -np.inf) for j in candidates])
        repeated = np.exp(-(self.now_s - used) / cfg.recency_s)
        allowed_segments = np.zeros(self.analysis.segments, bool)
        allowed_segments[entries] = True
        context = context_features(self.analysis, np.asarray(self.history), context_segments=32, context_s=20.0)
        learned = self.scorer.log_probabilities(context[None], allowed_segments[None])[0, entries]
        score = (self.WEIGHT_LEARNED * learned - self.WEIGHT_JOIN * cost - self.WEIGHT_WAVEFORM * waveform
                 + self.WEIGHT_LEVEL * np.minimum(s.level[candidates], 3) - self.RECENCY_PENALTY * recency
                 - self.TRANSITION_PENALTY * repeated - self.UNALIGNED_PENALTY * unaligned
                 + self.noise_scale * self.rng.gumbel(size=candidates.size))
        return int(candidates[int(np.argmax(score))])

    def _jump(self, left: int, bar: int) -> int:
        self._repeat_shift = None  # the first run is over
        self.jumps += 1
        self.transition_used[(left, bar)] = self.now_s
        self.run_bars = 0
        self.run_target = self._draw_run()
        return int(self.structure.bar_starts[bar])

    def _draw_run(self) -> float:
        """Bars the next run plays before it looks for a jump: around the variety's target, within a factor
        of 1.4 either way (none at variety 0)."""
        return float(self.target_bars * 2.0 ** (self.variety * self.rng.uniform(-0.5, 0.5)))

    def _commit(self, j: int) -> int:
        bar = int(self.bar_of[j])
        if bar >= 0 and self.structure.bar_starts[bar] == j:
            self.bar_played[bar] = self.now_s
        self.history.append(j)
        self._committed += 1
        if len(self.history) > 4096:  # the context reads 32; an endless run must not grow
            del self.history[:-1024]
        self.now_s += float(self.durations_s[j])
        return j

    # --- cuts -----------------------------------------------------------------------------------------------
    def cuts(self, current: int, candidates: np.ndarray, *,
             at_memory_end: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How a cut from the end of ``current`` into each candidate goes (computed once per pair, then cached).

        Parameters
        ----------
        current : int
            The segment being left.
        candidates : numpy.ndarray
            [shape=(M,), dtype=int] the segments it could jump into.
        at_memory_end : bool
            The first cut of a continuation: it leaves the memory at its very end, which lies
            ``frames - bounds[current + 1]`` samples into segment ``current + 1``, and enters every candidate
            that far into it.

        Returns
        -------
        lags : numpy.ndarray
            [shape=(M,), dtype=float64] samples (at :data:`ANALYSIS_RATE`) to add to each candidate's entry so
            its onsets continue the rhythm being left (:class:`~engine.rhythm.RhythmAligner`).
        waveform : numpy.ndarray
            [shape=(M,)] 0 to 1: 1 - correlation, halved, of the 10 ms the original plays after the cut with
            the 10 ms after each entry (0.5 at the memory's end, where nothing follows).
        unaligned : numpy.ndarray
            [shape=(M,), dtype=float64] 1 where the rhythm lines up only at the edge of the aligner's reach
            (:meth:`RhythmAligner.align`'s ``at_edge``), else 0.
        """
        key = (current, at_memory_end)
        row = self._cut_rows.get(key)
        if row is None:  # rows hold every segment; only the pairs asked about are filled in
            if len(self._cut_rows) >= 1024:  # a long memory and an endless run: keep the recent rows only
                for stale in list(self._cut_rows)[:512]:
                    del self._cut_rows[stale]
            row = self._cut_rows[key] = np.full((3, self.analysis.segments), np.nan)
        candidates = np.asarray(candidates, np.int64)
        todo = np.unique(candidates[np.isnan(row[0, candidates])])
        if todo.size:
            row[:, todo] = self._measure_cuts(current, todo, at_memory_end)
        return row[0, candidates], row[1, candidates], row[2, candidates]

    def _measure_cuts(self, current: int, candidates: np.ndarray, at_memory_end: bool) -> np.ndarray:
        """[shape=(3, M)] lags, waveform costs and unaligned flags of :meth:`cuts`, measured."""
        bounds, mono = self.analysis.bounds, self._mono
        source = int(self.analysis.frames if at_memory_end else bounds[current + 1])
        entries = bounds[candidates] + (source - int(bounds[current + 1]) if at_memory_end else 0)
        lags, _, at_edge = self.aligner.align(source, entries)
        width = round(0.01 * ANALYSIS_RATE)

        def starts_of(positions: np.ndarray) -> np.ndarray:  # the unit-norm 10 ms that start at each position
            positions = np.clip(np.rint(positions).astype(np.int64), 0, max(0, mono.shape[0] - width))
            windows = mono[positions[:, None] + np.arange(width)[None, :]].astype(np.float64)
            windows -= windows.mean(axis=1, keepdims=True)
            return windows / np.maximum(np.linalg.norm(windows, axis=1, keepdims=True), 1e-9)

        if source + width <= mono.shape[0]:
            waveform = 0.5 * (1.0 - starts_of(entries + lags) @ starts_of(np.array([source]))[0])
        else:
            waveform = np.full(candidates.shape[0], 0.5)
        measured = np.stack([lags, waveform, at_edge.astype(np.float64)])
        if not at_memory_end:
            measured[:, candidates == current + 1] = 0.0  # going on in order is no cut at all
        return measured


def steady_bars(analysis: Analysis, structure: Structure, *, abrupt_end: bool) -> tuple[int, int]:
    """The bars an endless run plays: from the first steady bar to the line after the last one.

    In the long listen, most joins where the beat slipped left the memory's last bars (a cadence, a ritardando,
    a held chord, a decay) for an earlier bar line: the beat lands off the grid there, and it sounds like the
    song ending and starting again. Those bars belong to an ending. So a memory that ends as a song ends loses
    its last whole bar (its cadence), and from either end, bars go while a beat in them strays
    :data:`STEADY_BEAT_SHARE` or more from the median beat (with a steady beat only) or their loudest beat is
    under :data:`STEADY_QUIET_DB` (a decay, a fade-in). At most a quarter of the bars (and
    :data:`ENDING_MAX_BARS`) go at each end, and at least two stay.

    A memory cut off mid-music (a clip, a live phrase) keeps its last bar: the continuation's first jump goes
    back to where its last bars repeat, and a run from there that plays on longer in the song's own order comes
    closer to what follows (on the 36 evaluation clips, leaving that bar out too cost 0.15 dB of log-mel
    against looping, song by song).

    Parameters
    ----------
    analysis : Analysis
    structure : Structure
        Its bars.
    abrupt_end : bool
        The memory was cut off mid-music (:func:`_ends_abruptly`): its last bar is no cadence.

    Returns
    -------
    first, stop : int
        Bars ``first`` to ``stop - 1`` are steady; ``stop`` is where a run that is not ending must jump.
    """
    bars = structure.bars
    limit = min(ENDING_MAX_BARS, bars // 4)
    if bars - 2 * limit < 2:
        limit = max(0, (bars - 2) // 2)
    loudness = analysis.loudness_db
    durations = analysis.durations.astype(np.float64)
    share = np.abs(durations / max(float(np.median(durations)), 1.0) - 1.0)

    def steady(bar: int) -> bool:
        inside = slice(int(structure.bar_starts[bar]), int(structure.bar_starts[bar + 1]))
        strays = analysis.mode == "beats" and bool(np.any(share[inside] >= STEADY_BEAT_SHARE))
        return not strays and float(np.max(loudness[inside])) > STEADY_QUIET_DB

    stop = bars - (1 if limit > 0 and not abrupt_end else 0)
    while stop > bars - limit and not steady(stop - 1):
        stop -= 1
    first = 0
    while first < limit and not steady(first):
        first += 1
    return first, stop


def _look(analysis: Analysis) -> np.ndarray:
    """[shape=(segments, 44)] what a segment sounds like to the join: timbre, and harmony weighted twice."""
    from .analysis import HARMONY, TIMBRE

    return np.concatenate([analysis.features[:, TIMBRE], 2.0 * analysis.features[:, HARMONY]], axis=1)


#: A memory whose last 0.3 s are within this many dB of its mean level was cut off mid-music.
ABRUPT_END_DB = 20.0


def _ends_abruptly(analysis: Analysis) -> bool:
    """True when the memory stops mid-music (its last segment as loud as the music) rather than dying away."""
    return bool(analysis.loudness_db[-1] > -ABRUPT_END_DB)
