"""Picture sync: a bar grid and a tempo map that put every hit point on a downbeat.

A cue is cut into segments at its hit points; each segment is filled with whole bars of the cue's meter and played
at a tempo that makes the bars last exactly as long as the picture between the hits. Tempo stays within
``MAX_TEMPO_DEVIATION`` (12 %) of the requested tempo, the figure a conductor can bend a cue without the music
sounding rushed or dragged, and moves by at most ``PREFERRED_TEMPO_STEP`` (2 % of the requested tempo) per quarter
note, ``MAX_TEMPO_STEP`` (3 %) where a close hit needs it: a ramp rather than a jump, also across the hits
themselves. Where no count of whole bars fits within those bounds, one bar of another meter (a 2/4, 5/8 or 3/16
bar, say) is put just before the hit, as film composers do; where even that fails the hit is refused as
unreachable. At the slowest tempos a hit only a beat after the one before can be unreachable.

Times are counted in MIDI ticks at ``PPQ`` ticks per quarter note and tempos are the integer microseconds per quarter
note of a Standard MIDI File ``set_tempo`` event ("Standard MIDI Files 1.0", MMA), so the seconds computed here are
the seconds any MIDI reader computes from the written file.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product

from generation.composer import ComposerError

PPQ = 960
MAX_TEMPO_DEVIATION = 0.12
PREFERRED_TEMPO_STEP = 0.02
MAX_TEMPO_STEP = 0.03
# The solver keeps a little inside the documented bound so that rounding to whole microseconds cannot cross it.
_SOLVER_DEVIATION = 0.118
# A hit within this of the end is the end itself (the music cuts off on it).
END_TOLERANCE_SECONDS = 0.001
# Extra cost of an odd bar, by how far its denominator strays from the cue's: bending tempo a little is preferred.
_ODD_BAR_COST = {"same": 0.04, "eighths": 0.05, "sixteenths": 0.08}
# An ending that only fits whole bars by bending tempo more than this holds its final chord instead.
_ENDING_MAX_BEND = 0.05


@dataclass(frozen=True)
class Bar:
    start_tick: int
    ticks: int
    numerator: int
    denominator: int


@dataclass(frozen=True)
class Grid:
    """The bars of a cue, its tempo events and where each hit landed."""

    bars: tuple[Bar, ...]
    tempo_events: tuple[tuple[int, int], ...]  # (tick, microseconds per quarter note), the first at tick 0
    end_tick: int
    hit_bars: tuple[int, ...]  # per hit, the index of the bar it starts; len(bars) for a hit at the very end
    _starts: list[float] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        seconds = 0.0
        for (tick, tempo), (next_tick, _) in zip(self.tempo_events, self.tempo_events[1:], strict=False):
            self._starts.append(seconds)
            seconds += (next_tick - tick) * tempo / PPQ / 1e6
        self._starts.append(seconds)

    def seconds(self, tick: int) -> float:
        """The time of a tick, exactly as a MIDI reader computes it from the tempo events."""
        index = bisect.bisect_right(self.tempo_events, (tick, math.inf)) - 1
        event_tick, tempo = self.tempo_events[index]
        return self._starts[index] + (tick - event_tick) * tempo / PPQ / 1e6

    def bpm_at(self, tick: int) -> float:
        index = bisect.bisect_right(self.tempo_events, (tick, math.inf)) - 1
        return 60e6 / self.tempo_events[index][1]

    def meter_changes(self) -> list[tuple[int, int, int]]:
        """(tick, numerator, denominator) wherever the meter differs from the bar before."""
        changes: list[tuple[int, int, int]] = []
        for bar in self.bars:
            if not changes or changes[-1][1:] != (bar.numerator, bar.denominator):
                changes.append((bar.start_tick, bar.numerator, bar.denominator))
        return changes


def bar_ticks(numerator: int, denominator: int) -> int:
    return numerator * PPQ * 4 // denominator


def solve_grid(
    *,
    tempo_bpm: float,
    meter: tuple[int, int],
    duration_seconds: float,
    hit_times: Sequence[float] = (),
    hit_names: Sequence[str] | None = None,
) -> Grid:
    """Lay bars and a tempo map over ``duration_seconds`` so that every hit time starts a bar within a millisecond.

    ``tempo_bpm`` counts quarter notes per minute whatever the meter. A hit at the very end (within
    ``END_TOLERANCE_SECONDS``) lands on the closing bar line. Raises ComposerError ``hit_unreachable`` naming the
    hit when neither whole bars nor one odd bar can reach it within the tempo bounds.
    """
    names = list(hit_names) if hit_names is not None else [f"{t:.3f} s" for t in hit_times]
    hits = sorted(zip(hit_times, names, strict=True))
    end_is_hit = bool(hits) and hits[-1][0] >= duration_seconds - END_TOLERANCE_SECONDS
    targets = [(t, name, True) for t, name in (hits[:-1] if end_is_hit else hits)]
    targets.append((duration_seconds, hits[-1][1] if end_is_hit else "", end_is_hit))
    solver = _Solver(float(tempo_bpm), meter)
    hit_bars: list[int] = []
    for number, (target, name, exact) in enumerate(targets):
        final = number == len(targets) - 1
        following = targets[number + 1][0] - target if not final else None
        solver.segment(target, name=name, exact=exact, final=final, following=following)
        if exact:
            hit_bars.append(len(solver.bars))
    return Grid(
        bars=tuple(solver.bars),
        tempo_events=tuple(solver.events),
        end_tick=solver.tick,
        hit_bars=tuple(hit_bars),
    )


class _Solver:
    def __init__(self, tempo_bpm: float, meter: tuple[int, int]) -> None:
        self.base = tempo_bpm
        self.meter = meter
        self.low = tempo_bpm * (1 - _SOLVER_DEVIATION)
        self.high = tempo_bpm * (1 + _SOLVER_DEVIATION)
        self.steps = (tempo_bpm * PREFERRED_TEMPO_STEP, tempo_bpm * MAX_TEMPO_STEP)
        self.step = self.steps[0]
        self.bars: list[Bar] = []
        self.events: list[tuple[int, int]] = []
        self.tick = 0
        self.seconds = 0.0
        self.entering: float | None = None  # the tempo the previous segment ended on; free at the start
        self.leaving: float | None = None  # the tempo the next segment wants; free at the end

    def segment(self, target: float, *, name: str, exact: bool, final: bool, following: float | None) -> None:
        length = target - self.seconds
        self.leaving = self._nominal(following) if following else None
        if final and not exact:
            layout = self._whole_bars(length, max_bend=_ENDING_MAX_BEND)
            if layout is None:
                self._held_ending(length)
                return
        else:
            # Gentle ramps leaning towards the next segment first; then without the lean (a nicety, where reaching
            # this hit is not), then with steeper ramps.
            leaning, layout = self.leaving, None
            for step, lean in product(self.steps, (leaning, None)):
                self.step, self.leaving = step, lean
                layout = self._whole_bars(length) or self._odd_bar(length)
                if layout is not None:
                    break
            if layout is None:
                detail = f"The hit at {name} cannot land on a downbeat with the tempo within ±12 %"
                raise ComposerError("hit_unreachable", f"{detail}; move it or change the tempo or meter.")
        meters, plateau = layout
        self._emit(meters, length, plateau)
        self.step = self.steps[0]

    # --- Choosing bars ---------------------------------------------------------------------------------------

    def _whole_bars(self, length: float, max_bend: float = _SOLVER_DEVIATION) -> tuple[list, float] | None:
        bar = bar_ticks(*self.meter) / PPQ
        ideal = length * self.base / 60 / bar
        counts = sorted({max(1, math.floor(ideal)), max(1, math.ceil(ideal))}, key=lambda m: abs(m - ideal))
        for count in counts:
            if abs(count / ideal - 1) > max_bend:
                continue
            plateau = self._plateau(count * bar, length)
            if plateau is not None:
                return [self.meter] * count, plateau
        return None

    def _odd_bar(self, length: float) -> tuple[list, float] | None:
        for meters, quarters in self._odd_layouts(length):
            plateau = self._plateau(quarters, length)
            if plateau is not None:
                return meters, plateau
        return None

    def _odd_layouts(self, length: float) -> list[tuple[list, float]]:
        """Whole bars plus one bar of another meter, cheapest first, each within the tempo bound on average."""
        numerator, denominator = self.meter
        bar = bar_ticks(numerator, denominator) / PPQ
        quarters = length * self.base / 60
        options: list[tuple[float, int, tuple[int, int]]] = []
        for kind, den in (("same", denominator), ("eighths", 8), ("sixteenths", 16)):
            if den < denominator:
                continue
            for num in range(1, 2 * numerator * den // denominator + 1):
                odd = bar_ticks(num, den) / PPQ
                if (num, den) == (numerator, denominator) or odd == bar:
                    continue
                ideal = (quarters - odd) / bar
                for count in {max(0, math.floor(ideal)), max(0, math.ceil(ideal))}:
                    total = count * bar + odd
                    options.append((abs(total / quarters - 1) + _ODD_BAR_COST[kind], count, (num, den)))
        layouts = []
        for _, count, odd_meter in sorted(options):
            total = count * bar + bar_ticks(*odd_meter) / PPQ
            if abs(total / quarters - 1) <= _SOLVER_DEVIATION:
                layouts.append(([self.meter] * count + [odd_meter], total))
        return layouts

    # --- Tempo within a segment ------------------------------------------------------------------------------

    def _pieces(self, quarters: float, plateau: float) -> list[tuple[float, float]]:
        """(quarters, bpm) runs. Each quarter note's tempo is the plateau, held within reach of the tempo the
        segment enters on (one step per quarter note from it) and of the tempo the next segment wants (one step
        per quarter note to it), so tempo ramps into and out of the plateau. The last piece stays on its own so its
        tempo can absorb rounding."""
        count = max(1, math.ceil(quarters - 1e-9))
        edge = math.ceil(2 * _SOLVER_DEVIATION / PREFERRED_TEMPO_STEP) + 1  # past this, the reach no longer binds
        pieces: list[tuple[float, float]] = []
        k = 0
        while k < count:
            if edge <= k < count - edge - 1:
                pieces.append((float(count - edge - 1 - k), plateau))
                k = count - edge - 1
                continue
            length = quarters - (count - 1) if k == count - 1 else 1.0
            tempo = self._reachable(plateau, k, count)
            if pieces and pieces[-1][1] == tempo and k < count - 1:
                pieces[-1] = (pieces[-1][0] + length, tempo)
            else:
                pieces.append((length, tempo))
            k += 1
        return pieces

    def _reachable(self, plateau: float, k: int, count: int) -> float:
        low, high = -math.inf, math.inf
        if self.entering is not None:
            low, high = self.entering - self.step * (k + 1), self.entering + self.step * (k + 1)
        if self.leaving is not None:
            reach = self.step * (count - k)
            if max(low, self.leaving - reach) <= min(high, self.leaving + reach):
                low, high = max(low, self.leaving - reach), min(high, self.leaving + reach)
        return max(low, min(high, plateau))

    def _nominal(self, length: float) -> float | None:
        """The tempo the cheapest layout of a segment would want, ignoring ramps: where the next segment is
        heading, so this one can lean towards it."""
        bar = bar_ticks(*self.meter) / PPQ
        quarters = length * self.base / 60
        tempo = max(1, round(quarters / bar)) * bar * 60 / length
        if self.low <= tempo <= self.high:
            return tempo
        layouts = self._odd_layouts(length)
        return layouts[0][1] * 60 / length if layouts else None

    def _span(self, quarters: float, plateau: float) -> float:
        return sum(q * 60 / bpm for q, bpm in self._pieces(quarters, plateau))

    def _plateau(self, quarters: float, length: float) -> float | None:
        """The plateau tempo that makes ``quarters`` last ``length`` seconds, or None when out of bounds."""
        if length <= 0 or not self._span(quarters, self.high) <= length <= self._span(quarters, self.low):
            return None
        low, high = self.low, self.high
        for _ in range(60):
            middle = (low + high) / 2
            if self._span(quarters, middle) > length:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    def _emit(self, meters: list[tuple[int, int]], length: float, plateau: float) -> None:
        start = self.tick
        for num, den in meters:
            self.bars.append(Bar(self.tick, bar_ticks(num, den), num, den))
            self.tick += bar_ticks(num, den)
        quarters = (self.tick - start) / PPQ
        runs = [[round(q * PPQ), round(60e6 / bpm)] for q, bpm in self._pieces(quarters, plateau)]
        runs = [run for run in runs if run[0] > 0]
        # Rounding tempos to whole microseconds shifts the hit: absorb it in the longest run, then the last.
        for run in (max(runs, key=lambda r: r[0]), runs[-1]):
            error_us = length * 1e6 - sum(ticks * tempo / PPQ for ticks, tempo in runs)
            run[1] += round(error_us * PPQ / run[0])
        at = start
        for ticks, tempo in runs:
            if not self.events or self.events[-1][1] != tempo:
                self.events.append((at, tempo))
            at += ticks
        self.seconds += sum(ticks * tempo / PPQ / 1e6 for ticks, tempo in runs)
        self.entering = 60e6 / runs[-1][1]

    def _held_ending(self, length: float) -> None:
        """Bars at a steady tempo up to the last downbeat that leaves at least a beat, then the final chord held
        until the end: an ending need not fill its last bar."""
        tempo = self.entering if self.entering is not None else self.base
        tempo_us = round(60e6 / tempo)
        end = self.tick + max(1, round(length * 1e6 * PPQ / tempo_us))
        bar = bar_ticks(*self.meter)
        starts = [self.tick]
        while starts[-1] + bar + PPQ <= end:
            starts.append(starts[-1] + bar)
        for at in starts:
            self.bars.append(Bar(at, min(bar, end - at), *self.meter))
        if not self.events or self.events[-1][1] != tempo_us:
            self.events.append((self.tick, tempo_us))
        # Whole ticks put the end up to half a tick (a millisecond at the slowest tempos) off the duration: the held
        # chord's own tempo, a hair different, takes the rounding up, and never lets the cue run past its length.
        held = end - starts[-1]
        before_us = (starts[-1] - self.tick) * tempo_us / PPQ
        held_us = math.floor((length * 1e6 - before_us) * PPQ / held)
        if 0 < held_us != tempo_us:
            if self.events and self.events[-1][0] == starts[-1]:
                self.events[-1] = (starts[-1], held_us)
            else:
                self.events.append((starts[-1], held_us))
        self.tick = end
        self.seconds += length
