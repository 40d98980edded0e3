"""Orchestration: which instruments play a cue, in which role, and the accompanying parts they play.

Programs are General MIDI System Level 1 program numbers (MMA, 1991), counted from 0 as in the MIDI program change
message: 0 Acoustic Grand Piano, 42 Cello, 43 Contrabass, 44 Tremolo Strings, 47 Timpani, 48 String Ensemble 1,
49 String Ensemble 2, 57 Trombone, 58 Tuba, 60 French Horn, 61 Brass Section, 68 Oboe, 70 Bassoon, 71 Clarinet,
73 Flute, 88 Pad 1 (new age), 89 Pad 2 (warm), 91 Pad 4 (choir), 94 Pad 7 (halo). Unpitched percussion uses the
General MIDI percussion key map on channel 10: 35/36 bass drum, 41/43/45 toms, 49/57 crash cymbals, 51/59 ride
cymbals (GM has no suspended cymbal, so a roll is written as rapid ride strokes).

Expression follows common orchestral MIDI practice: CC7 (channel volume) is set once per track as a mix level,
CC11 (expression) follows the intensity arc and swells into hits, CC1 (modulation, the dynamics control of
orchestral sample libraries) shapes each long note.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

from generation.composer.tempo import PPQ, Grid

ROLES = ("melody", "countermelody", "harmony", "pad", "bass", "accent", "percussion")
# Mix level (CC7) per role: the tune on top, pads behind.
VOLUME = {"melody": 110, "countermelody": 96, "harmony": 92, "pad": 80, "bass": 100, "accent": 100, "percussion": 100}
# Comfortable written range per program: the melody's register is kept inside it.
RANGE = {0: (36, 96), 40: (55, 100), 42: (36, 72), 60: (41, 77), 68: (58, 91), 71: (50, 89), 73: (60, 96)}
BASS_DRUM, LOW_TOM, MID_TOM, CRASH, RIDE = 36, 43, 47, 49, 59


@dataclass(frozen=True)
class Track:
    name: str
    role: str  # one of ROLES
    family: str  # one of spec.ENSEMBLE_FAMILIES
    program: int  # General MIDI program, 0-127 (ignored for drums)
    is_drum: bool


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class
    tones: tuple[int, ...]  # pitch classes, root first
    symbol: str  # roman numeral, e.g. "bVI"


@dataclass(frozen=True)
class Texture:
    pedal: bool = False  # bass holds the tonic under moving harmony
    tremolo: bool = False
    ostinato: bool = False  # driving repeated eighths in bass and piano
    drums: bool = False  # rhythmic drums and toms, not only accents
    lyrical: bool = False  # an oboe rather than a flute for the tune
    pad_program: int = 89
    dynamics: float = 0.5  # 0..1, added to the arc
    density: float = 0.5  # 0..1, how busy the accompaniment is


@dataclass
class Part:
    track: Track
    notes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (start tick, end tick, pitch, velocity)
    controls: list[tuple[int, int, int]] = field(default_factory=list)  # (tick, controller, value)

    def note(self, start: int, end: int, pitch: int, velocity: float) -> None:
        if end > start:
            self.notes.append((start, end, max(0, min(127, pitch)), max(1, min(127, round(velocity)))))


@dataclass
class Plan:
    """Everything the parts share: the bar grid, the harmony, the arc per bar, the hits and the texture."""

    grid: Grid
    tonic: int
    scale: tuple[int, ...]
    levels: list[float]  # intensity 0..1 per bar
    chords: list[tuple[int, int, Chord]]  # (start tick, end tick, chord), in order, covering the cue
    sections: list[tuple[str, int, int]]  # (name, first bar, bar after the last)
    hit_ticks: list[int]
    swells: list[tuple[int, int]]  # (start tick, hit tick) of each crescendo into a hit
    texture: Texture
    _bar_starts: list[int] = field(default_factory=list)
    _chord_starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._bar_starts = [bar.start_tick for bar in self.grid.bars]
        self._chord_starts = [start for start, _, _ in self.chords]

    @property
    def final_tick(self) -> int:
        """The downbeat of the final chord: the accompaniment writes up to it, the ending from it."""
        return self.grid.bars[-1].start_tick

    def bar_at(self, tick: int) -> int:
        return max(0, bisect.bisect_right(self._bar_starts, tick) - 1)

    def level_at(self, tick: int) -> float:
        return self.levels[self.bar_at(tick)]

    def chord_at(self, tick: int) -> Chord:
        return self.chords[max(0, bisect.bisect_right(self._chord_starts, tick) - 1)][2]

    def section_at(self, tick: int) -> str:
        bar = self.bar_at(tick)
        return next(name for name, first, end in self.sections if first <= bar < end)

    def velocity(self, tick: int, boost: float = 0.0) -> float:
        """Dynamics follow the arc first, the mood's own loudness second."""
        return 28 + 84 * (0.75 * self.level_at(tick) + 0.25 * self.texture.dynamics) + boost


def plan_tracks(ensemble: tuple[str, ...], texture: Texture) -> tuple[Track, ...]:
    """The tracks of an ensemble, one role each. The tune goes to woodwinds, else strings, brass, piano or pads;
    a countermelody joins when two melodic families are present; percussion gives a timpani track (a pitched GM
    program on its own channel) and a drum track on channel 10."""
    families = set(ensemble)
    melodic = [f for f in ("woodwinds", "strings", "brass", "piano", "synth_pads") if f in families]
    tracks: list[Track] = []
    lead = melodic[0] if melodic else None
    if lead:
        program = {"woodwinds": 68 if texture.lyrical else 73, "strings": 40, "brass": 60, "piano": 0}.get(lead, 88)
        tracks.append(Track("melody", "melody", lead, program, False))
    counter = next((f for f in ("brass", "strings", "woodwinds") if f in families and f != lead), None)
    if counter and len([f for f in melodic if f != "synth_pads"]) >= 2:
        tracks.append(
            Track("countermelody", "countermelody", counter, {"brass": 60, "strings": 42}.get(counter, 71), False)
        )
    if "strings" in families:
        tracks.append(Track("strings", "harmony", "strings", 44 if texture.tremolo else 48, False))
    if "piano" in families:
        tracks.append(Track("piano", "harmony", "piano", 0, False))
    if "synth_pads" in families:
        tracks.append(Track("pad", "pad", "synth_pads", texture.pad_program, False))
    if not families & {"strings", "piano", "synth_pads"}:
        if "woodwinds" in families:
            tracks.append(Track("clarinets", "harmony", "woodwinds", 71, False))
        if "brass" in families:
            tracks.append(Track("brass", "harmony", "brass", 61, False))
    bass = next((f for f in ("strings", "brass", "woodwinds", "piano", "synth_pads") if f in families), None)
    if bass:
        program = {"strings": 43, "brass": 58, "woodwinds": 70, "piano": 0}.get(bass, texture.pad_program)
        tracks.append(Track("bass", "bass", bass, program, False))
    if "brass" in families:
        tracks.append(Track("low brass", "accent", "brass", 57, False))
    if "percussion" in families:
        tracks.append(Track("timpani", "percussion", "percussion", 47, False))
        tracks.append(Track("drums", "percussion", "percussion", 0, True))
    return tuple(tracks)


# --- Pitch helpers ---------------------------------------------------------------------------------------------


def nearest(pitch_classes: tuple[int, ...], target: float, low: int, high: int) -> int:
    """The pitch in [low, high] with one of ``pitch_classes`` closest to ``target`` (lower wins a tie)."""
    candidates = [p for p in range(low, high + 1) if p % 12 in pitch_classes]
    return min(candidates, key=lambda p: (abs(p - target), p)) if candidates else round(target)


def voicing(chord: Chord, previous: list[int], low: int, high: int, size: int) -> list[int]:
    """A close-position voicing of ``size`` notes in range, moving as little as possible from ``previous``."""
    pool = [p for p in range(low, high + 1) if p % 12 in chord.tones]
    size = min(size, len(pool))
    centre = (low + high) / 2
    best: tuple[float, list[int]] | None = None
    for first in range(len(pool) - size + 1):
        window = pool[first : first + size]
        if previous and len(previous) == size:
            cost = float(sum(abs(a - b) for a, b in zip(window, sorted(previous), strict=True)))
        else:
            cost = abs(sum(window) / size - centre) * size
        cost += 8 * len(set(chord.tones[:3]) - {p % 12 for p in window})
        if best is None or cost < best[0]:
            best = (cost, window)
    return best[1] if best else []


def weighted_choice(rng: random.Random, weights: list[float]) -> int:
    """An index drawn in proportion to ``weights`` using only ``Random.random``, whose sequence Python keeps stable
    across versions (``choice`` and ``choices`` are not guaranteed to)."""
    total = sum(weights)
    point = rng.random() * total
    running = 0.0
    for index, weight in enumerate(weights):
        running += weight
        if point < running:
            return index
    return max(range(len(weights)), key=weights.__getitem__)


# --- Accompaniment ---------------------------------------------------------------------------------------------


def _spans(plan: Plan):
    """The chord spans before the final bar, clipped to it."""
    for start, end, chord in plan.chords:
        if start < plan.final_tick:
            yield start, min(end, plan.final_tick), chord


def write_harmony(plan: Plan, part: Part, rng: random.Random) -> None:
    """Strings, pads and harmony instruments sustain voice-led chords; the piano plays patterns instead."""
    if part.track.program == 0:
        _write_piano(plan, part, rng)
        return
    pad = part.track.role == "pad"
    low, high = (48, 72) if pad else (50, 79)
    previous: list[int] = []
    for start, end, chord in _spans(plan):
        level = plan.level_at(start)
        size = 2 if level < 0.15 else 3 if level < 0.55 else 4
        notes = voicing(chord, previous if len(previous) == size else [], low, high, size)
        previous = notes
        if level > 0.75 and not pad:
            notes = [*notes, notes[-1] + 12]
        velocity = plan.velocity(start, -12 if pad else -4)
        for pitch in notes:
            part.note(start, end, pitch, velocity)
        _shape_long_note(part, start, end, velocity)


def _shape_long_note(part: Part, start: int, end: int, velocity: float) -> None:
    """A swell and release on CC1 across a sustained chord, so long notes breathe instead of sitting flat."""
    if end - start < 2 * PPQ:
        return
    base = max(20, min(110, round(velocity)))
    for offset, lift in ((0, -12), ((end - start) // 2, 10), (end - start - PPQ // 2, -6)):
        part.controls.append((start + offset, 1, max(0, min(127, base + lift))))


def _write_piano(plan: Plan, part: Part, rng: random.Random) -> None:
    low, high = 48, 76
    for start, end, chord in _spans(plan):
        level = plan.level_at(start)
        busy = level + 0.3 * (plan.texture.density - 0.5)
        step = PPQ // 2 if busy > 0.7 or plan.texture.ostinato else PPQ if busy > 0.35 else end - start
        tones = voicing(chord, [], low, high, 4)
        pattern = [tones[0], tones[2], tones[1], tones[-1]] if len(tones) == 4 else tones
        offset = int(rng.random() * len(pattern))
        if step == end - start:
            for pitch in tones[:3]:
                part.note(start, end, pitch, plan.velocity(start, -10))
            continue
        for number, at in enumerate(range(start, end, step)):
            accent = 6 if (at - plan.grid.bars[plan.bar_at(at)].start_tick) % (2 * PPQ) == 0 else 0
            pitch = pattern[(number + offset) % len(pattern)]
            part.note(at, min(end, at + step), pitch, plan.velocity(at, accent - 12))


def write_bass(plan: Plan, part: Part, rng: random.Random) -> None:
    """Roots of the chords; a tonic pedal in tense music, driving eighths where the texture calls for an ostinato."""
    low, high = (28, 50) if part.track.program in (43, 58, 70) else (36, 55)
    for start, end, chord in _spans(plan):
        level = plan.level_at(start)
        pedal = plan.texture.pedal and plan.section_at(start) not in ("climax",)
        root = nearest((plan.tonic if pedal else chord.root,), low + 7, low, high)
        if plan.texture.ostinato and level >= 0.5:
            for at in range(start, end, PPQ // 2):
                up = 12 if (at - start) % (2 * PPQ) == PPQ and rng.random() < 0.4 else 0
                part.note(at, min(end, at + PPQ * 2 // 5), root + up, plan.velocity(at, -6))
            continue
        part.note(start, end, root, plan.velocity(start, -4))
        fifth = start + (end - start) // 2
        if level > 0.6 and not pedal and end - start >= 4 * PPQ:
            part.notes[-1] = (start, fifth, *part.notes[-1][2:])
            part.note(fifth, end, nearest(((chord.root + 7) % 12,), root + 5, low, high), plan.velocity(fifth, -8))


def write_countermelody(plan: Plan, part: Part, rng: random.Random) -> None:
    """A slow line of guide tones (thirds, then fifths) moving by the smallest step, in the sections with enough
    energy for a second voice."""
    low, high = RANGE.get(part.track.program, (48, 72))
    low, high = max(low, 48), min(high, 70)
    pitch = (low + high) // 2
    for start, end, chord in _spans(plan):
        if plan.section_at(start) == "intro" or plan.level_at(start) < 0.4:
            continue
        guide = (chord.tones[1],) if rng.random() < 0.7 else chord.tones[1:]
        pitch = nearest(guide, pitch, low, high)
        velocity = plan.velocity(start, -8)
        if plan.level_at(start) > 0.7 and end - start >= 4 * PPQ:
            middle = start + (end - start) // 2
            part.note(start, middle, pitch, velocity)
            pitch = nearest(chord.tones, pitch + (2 if rng.random() < 0.5 else -2), low, high)
            part.note(middle, end, pitch, velocity + 4)
        else:
            part.note(start, end, pitch, velocity)
            _shape_long_note(part, start, end, velocity)


def write_accent(plan: Plan, part: Part, rng: random.Random) -> None:
    """Low brass: a sforzando chord on every hit, weight under the climax."""
    for tick in plan.hit_ticks:
        if tick < plan.final_tick:
            _sforzando(plan, part, tick, (36, 60), 3)
    for start, end, chord in _spans(plan):
        if plan.section_at(start) == "climax" and start not in plan.hit_ticks:
            for pitch in voicing(chord, [], 40, 62, 3):
                part.note(start, start + (end - start) // 2, pitch, plan.velocity(start, -2))


def _sforzando(plan: Plan, part: Part, tick: int, register: tuple[int, int], size: int) -> None:
    chord = plan.chord_at(tick)
    length = min(PPQ * 2, plan.grid.bars[plan.bar_at(tick)].ticks)
    for pitch in voicing(chord, [], register[0], register[1], size):
        part.note(tick, tick + length, pitch, 122)


def write_timpani(plan: Plan, part: Part, rng: random.Random) -> None:
    """A roll swelling into each hit and a stroke on it; tonic and dominant strokes under a climax."""
    tonic = nearest((plan.tonic,), 45, 40, 52)
    for swell_start, tick in plan.swells:
        _roll(part, swell_start, tick, tonic, plan.velocity(swell_start, -20), 118)
        if tick < plan.final_tick:
            part.note(tick, tick + PPQ, tonic, 124)
    for bar in plan.grid.bars[:-1]:
        at = bar.start_tick
        if plan.section_at(at) == "climax" and at not in plan.hit_ticks and not _in_swell(plan, at):
            part.note(at, at + PPQ, tonic, plan.velocity(at, -6))
            if bar.ticks >= 3 * PPQ:
                fifth = nearest(((plan.tonic + 7) % 12,), tonic - 5, 38, 52)
                part.note(at + bar.ticks // 2, at + bar.ticks // 2 + PPQ, fifth, plan.velocity(at, -12))


def write_drums(plan: Plan, part: Part, rng: random.Random) -> None:
    """A cymbal roll into each hit, bass drum and crash on it; a tom groove in driving music."""
    for swell_start, tick in plan.swells:
        _roll(part, swell_start, tick, RIDE, plan.velocity(swell_start, -24), 112)
        if tick < plan.final_tick:
            part.note(tick, tick + PPQ, BASS_DRUM, 124)
            part.note(tick, tick + 2 * PPQ, CRASH, 118)
    for bar in plan.grid.bars[:-1]:
        at, level = bar.start_tick, plan.level_at(bar.start_tick)
        if at in plan.hit_ticks or _in_swell(plan, at):
            continue
        if plan.texture.drums and level >= 0.55:
            for offset in range(0, bar.ticks, PPQ // 2):
                strong = offset % (2 * PPQ) == 0
                if strong or rng.random() < 0.35 + 0.4 * level:
                    pitch = BASS_DRUM if strong else (LOW_TOM if rng.random() < 0.6 else MID_TOM)
                    part.note(
                        at + offset, at + offset + PPQ // 4, pitch, plan.velocity(at + offset, 0 if strong else -12)
                    )
        elif plan.section_at(at) == "climax":
            part.note(at, at + PPQ, BASS_DRUM, plan.velocity(at, -10))


def _in_swell(plan: Plan, tick: int) -> bool:
    return any(start <= tick < hit for start, hit in plan.swells)


def _roll(part: Part, start: int, end: int, pitch: int, soft: float, loud: float) -> None:
    """Rapid repeated strokes (sixteenths, thirty-seconds above a slow pulse) rising from ``soft`` to ``loud``."""
    stroke = PPQ // 4 if end - start <= 4 * PPQ else PPQ // 2
    count = max(1, (end - start) // stroke)
    for number in range(count):
        at = start + number * stroke
        part.note(at, min(end, at + stroke), pitch, soft + (loud - soft) * number / count)


def write_expression(plan: Plan, part: Part) -> None:
    """CC7 once as the track's mix level; CC11 at each bar from the arc, rising to full in every swell."""
    part.controls.append((0, 7, VOLUME[part.track.role]))
    if part.track.is_drum:
        return
    values: list[tuple[int, int]] = []
    for bar in plan.grid.bars:
        values.append((bar.start_tick, round(64 + 63 * math.sqrt(plan.level_at(bar.start_tick)))))
    for start, hit in plan.swells:
        values = [(t, v) for t, v in values if not start <= t < hit]
        begin = next((v for t, v in reversed(values) if t <= start), 96)
        steps = max(2, min(16, (hit - start) // (PPQ // 2)))
        values.extend(
            (start + (hit - start) * i // steps, round(begin + (127 - begin) * i / steps)) for i in range(steps)
        )
        values.append((hit, 127))
    last = None
    for tick, value in sorted(values):
        if value != last and tick <= plan.grid.end_tick:
            part.controls.append((tick, 11, value))
            last = value
