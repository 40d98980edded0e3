"""The built-in composer: from a spec, a seed and a melody model to a Standard MIDI File.

The moods choose the harmony (a pool of progressions per mood and mode, how many chords per bar), the register and
the texture; the intensity arc shapes density and dynamics; the form (intro, A, build, climax, resolution, ending)
is laid over a bar grid whose tempo map (``tempo.py``) puts every hit point on a downbeat. The tune is sampled step
by step from the melody model under musical constraints and its opening motif returns, restated, sequenced and
varied, across the sections. Parts are orchestrated in ``orchestration.py``.

Everything random comes from ``random.Random(n).random()``, whose sequence Python keeps stable across versions, with
one stream per part derived from the seed by SHA-256, so one part's changes never reshuffle another's. The file is
written byte by byte here ("Standard MIDI Files 1.0", MMA: format 1, a conductor track holding tempo, meter and key
events, then one track per part), so the same spec, seed and model always give the same bytes.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from dataclasses import dataclass, replace

from generation.composer import ComposerError
from generation.composer.model import MelodyModel
from generation.composer.orchestration import (
    RANGE,
    Chord,
    Part,
    Plan,
    Texture,
    Track,
    nearest,
    plan_tracks,
    voicing,
    weighted_choice,
    write_accent,
    write_bass,
    write_countermelody,
    write_drums,
    write_expression,
    write_harmony,
    write_timpani,
)
from generation.composer.spec import (
    MAX_DURATION_SECONDS,
    MAX_TEMPO_BPM,
    MIN_DURATION_SECONDS,
    MIN_TEMPO_BPM,
    ArcPoint,
    GenerationSpec,
    HitPoint,
)
from generation.composer.tempo import MAX_TEMPO_DEVIATION, PPQ, Grid, solve_grid
from generation.composer.timecode import seconds_to_timecode

__all__ = ["CODE_VERSION", "MIXES", "Composition", "Track", "compose", "cutdown_spec"]

CODE_VERSION = "cueledger-composer/2"
MIXES = ("full", "no-percussion", "underscore")
MAX_SEED = 2**64 - 1

_NOTES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_QUALITIES = {"maj": (0, 4, 7), "min": (0, 3, 7), "sus4": (0, 5, 7)}
_NUMERALS = {
    "I": (0, "maj"), "Isus": (0, "sus4"), "i": (0, "min"), "bII": (1, "maj"), "ii": (2, "min"), "bIII": (3, "maj"),
    "III": (4, "maj"), "iii": (4, "min"), "IV": (5, "maj"), "iv": (5, "min"), "V": (7, "maj"), "v": (7, "min"),
    "bVI": (8, "maj"), "VI": (9, "maj"), "vi": (9, "min"), "bVII": (10, "maj"),
}  # fmt: skip


@dataclass(frozen=True)
class _Mood:
    major: tuple[str, ...]
    minor: tuple[str, ...]
    chords_per_bar: float  # harmonic rhythm: 0.5 is a chord every two bars
    register: int  # the tune's centre, a MIDI pitch, at the middle of the arc
    texture: Texture


# Film-scoring habits per mood: tense music sits low over a pedal with chromatic mediants and slow harmony; hopeful
# music climbs I-V-vi-IV in a bright register; calm music breathes on slow pads; action drives with fast harmony,
# ostinato and drums.
_MOODS = {
    "tense": _Mood(("I bVI bVII I", "I bIII bVI V"), ("i bVI iv V", "i III i bVI", "i bII i V"), 0.5, 64,
                   Texture(pedal=True, tremolo=True, dynamics=0.45, density=0.35, pad_program=94)),
    "sad": _Mood(("vi IV I V", "I iii vi IV", "IV I ii V"), ("i iv bVII bIII", "i bVI bIII bVII", "i iv i V"), 1, 70,
                 Texture(lyrical=True, dynamics=0.35, density=0.3, pad_program=89)),
    "hopeful": _Mood(("I V vi IV", "I IV vi V", "IV I V vi"), ("i bVI bIII bVII", "bVI bVII i i"), 1, 75,
                     Texture(dynamics=0.6, density=0.55, pad_program=88)),
    "heroic": _Mood(("I bVII IV I", "I V vi IV", "I IV bVII IV"), ("i bVII bVI bVII", "i bVI bVII i"), 1, 72,
                    Texture(drums=True, dynamics=0.8, density=0.7, pad_program=91)),
    "calm": _Mood(("I IV I IV", "I vi IV I", "Isus I IV I"), ("i iv i iv", "i bVII i bVI"), 0.5, 69,
                  Texture(dynamics=0.25, density=0.2, pad_program=89)),
    "action": _Mood(("I bVII bVI bVII", "I bIII IV I"), ("i bVI bVII i", "i i bVI bVII", "i iv bVI V"), 2, 71,
                    Texture(ostinato=True, drums=True, dynamics=0.8, density=0.85, pad_program=94)),
    "mysterious": _Mood(("I bIII I bVI",), ("i bII i bII", "i III bVI i"), 0.5, 66,
                        Texture(tremolo=True, dynamics=0.35, density=0.3, pad_program=94)),
    "romantic": _Mood(("I vi ii V", "I iii IV V", "I vi IV V"), ("i iv bVII bIII", "i bVI iv V"), 1, 72,
                      Texture(lyrical=True, dynamics=0.5, density=0.5, pad_program=91)),
    "playful": _Mood(("I IV V I", "I ii V I"), ("i iv V i",), 2, 76, Texture(dynamics=0.55, density=0.6)),
    "neutral": _Mood(("I vi IV V", "I IV vi V"), ("i bVI bIII bVII", "i iv bVI V"), 1, 71, Texture()),
}  # fmt: skip
_ALIASES = {
    "suspense": "tense", "suspenseful": "tense", "dark": "tense", "ominous": "tense", "menacing": "tense",
    "thriller": "tense", "horror": "tense", "melancholic": "sad", "melancholy": "sad", "somber": "sad",
    "sombre": "sad", "tragic": "sad", "nostalgic": "sad", "tender": "sad", "drama": "sad", "uplifting": "hopeful",
    "inspiring": "hopeful", "bright": "hopeful", "triumphant": "heroic", "epic": "heroic", "adventure": "heroic",
    "peaceful": "calm", "serene": "calm", "ambient": "calm", "dreamy": "calm", "gentle": "calm", "chase": "action",
    "energetic": "action", "driving": "action", "intense": "action", "eerie": "mysterious", "magical": "mysterious",
    "love": "romantic", "warm": "romantic", "whimsical": "playful", "comedy": "playful", "light": "playful",
}  # fmt: skip
_WRITERS = {
    "countermelody": write_countermelody, "harmony": write_harmony, "pad": write_harmony, "bass": write_bass,
    "accent": write_accent,
}  # fmt: skip


@dataclass(frozen=True)
class Composition:
    midi: bytes
    tracks: tuple[Track, ...]
    tempo_map: tuple[tuple[float, float], ...]  # (time in seconds, quarter notes per minute) of each tempo event
    downbeats: tuple[float, ...]  # the start of every bar, seconds
    meters: tuple[tuple[float, int, int], ...]  # (time in seconds, numerator, denominator) of each meter change
    hits: tuple[dict, ...]  # per hit point: time_seconds, bar (1-based; one past the last for the end), timecode, ...
    sections: tuple[dict, ...]  # name, start_seconds, end_seconds of each form section
    duration_seconds: float
    parameters: dict  # JSON-safe record of every choice made


def timing_check(spec: GenerationSpec) -> None:
    """Refuse a spec whose hit points no musical tempo map can reach (``hit_unreachable``), before any composing:
    the bar grid depends on the spec alone, never on the seed."""
    hits = sorted(spec.hit_points, key=lambda hit: hit.time_seconds)
    solve_grid(
        tempo_bpm=spec.tempo_bpm,
        meter=spec.meter,
        duration_seconds=spec.duration_seconds,
        hit_times=[hit.time_seconds for hit in hits],
        hit_names=[f"{hit.timecode} ({hit.time_seconds:.3f} s)" for hit in hits],
    )


def compose(spec: GenerationSpec, *, seed: int, model: MelodyModel, mix: str = "full") -> Composition:
    """Compose a cue for ``spec``. Deterministic: the same spec, seed, model and mix give byte-identical MIDI, and
    every mix of one seed shares its timing and, for the parts it keeps, its notes.

    Raises ComposerError (``seed_invalid``, ``mix_invalid``, ``key_invalid``, ``meter_invalid``,
    ``tempo_out_of_range``, ``duration_out_of_range``, ``hit_unreachable``).
    """
    _validate(spec, seed, mix)
    tonic = _tonic(spec.key)
    hits = sorted(spec.hit_points, key=lambda hit: hit.time_seconds)
    grid = solve_grid(
        tempo_bpm=spec.tempo_bpm,
        meter=spec.meter,
        duration_seconds=spec.duration_seconds,
        hit_times=[hit.time_seconds for hit in hits],
        hit_names=[f"{hit.timecode} ({hit.time_seconds:.3f} s)" for hit in hits],
    )
    moods, mood = _mood(spec)
    levels = [
        _level(spec.arc, (grid.seconds(b.start_tick) + grid.seconds(b.start_tick + b.ticks)) / 2) for b in grid.bars
    ]
    sections = _form(grid, levels)
    progression = mood.major if spec.mode == "major" else mood.minor
    progression_text = progression[int(_stream(seed, "harmony").random() * len(progression))]
    hit_ticks = [grid.bars[i].start_tick if i < len(grid.bars) else grid.end_tick for i in grid.hit_bars]
    chords, rhythms = _harmony(grid, sections, tonic, spec.mode, progression_text.split(), mood, hit_ticks)
    plan = Plan(
        grid=grid,
        tonic=tonic,
        scale=tuple((tonic + step) % 12 for step in _SCALES[spec.mode]),
        levels=levels,
        chords=chords,
        sections=sections,
        hit_ticks=hit_ticks,
        swells=_swells(grid, hit_ticks),
        texture=mood.texture,
    )
    tracks = plan_tracks(tuple(f for f in spec.ensemble), mood.texture)
    parts, melody_record = _write_parts(plan, tracks, seed, model, mood)
    kept = [part for part in parts if _in_mix(part.track, mix)]
    bars = grid.bars
    parameters = {
        "code_version": CODE_VERSION,
        "seed": str(seed),
        "model_version": model.version,
        "mix": mix,
        "moods": moods,
        "key": spec.key,
        "mode": spec.mode,
        "progression": progression_text,
        "harmonic_rhythm": {"chords_per_bar": mood.chords_per_bar, "per_section": rhythms},
        "register": melody_record.pop("register"),
        "texture": {
            "pedal": mood.texture.pedal,
            "tremolo": mood.texture.tremolo,
            "ostinato": mood.texture.ostinato,
            "drums": mood.texture.drums,
            "dynamics": mood.texture.dynamics,
            "density": mood.texture.density,
        },
        "form": [{"name": name, "first_bar": first + 1, "bars": end - first} for name, first, end in sections],
        "programs": {part.track.name: (-1 if part.track.is_drum else part.track.program) for part in kept},
        "tempo": {
            "bpm": spec.tempo_bpm,
            "max_deviation": MAX_TEMPO_DEVIATION,
            "min_bpm": round(min(60e6 / us for _, us in grid.tempo_events), 3),
            "max_bpm": round(max(60e6 / us for _, us in grid.tempo_events), 3),
        },
        "odd_bars": [i + 1 for i, b in enumerate(bars) if (b.numerator, b.denominator) != tuple(spec.meter)],
        "melody": melody_record,
    }
    return Composition(
        midi=_midi(grid, kept, tonic, spec),
        tracks=tuple(part.track for part in kept),
        tempo_map=tuple((grid.seconds(tick), 60e6 / us) for tick, us in grid.tempo_events),
        downbeats=tuple(grid.seconds(bar.start_tick) for bar in bars),
        meters=tuple((grid.seconds(tick), num, den) for tick, num, den in grid.meter_changes()),
        hits=tuple(
            {
                "time_seconds": hit.time_seconds,
                "bar": index + 1,
                "timecode": hit.timecode,
                "fps": hit.fps,
                "error_ms": round(abs(grid.seconds(tick) - hit.time_seconds) * 1000, 3),
            }
            for hit, index, tick in zip(hits, grid.hit_bars, hit_ticks, strict=True)
        ),
        sections=tuple(
            {
                "name": name,
                "start_seconds": grid.seconds(bars[first].start_tick),
                "end_seconds": grid.seconds(bars[end].start_tick if end < len(bars) else grid.end_tick),
            }
            for name, first, end in sections
        ),
        duration_seconds=grid.seconds(grid.end_tick),
        parameters=parameters,
    )


def _validate(spec: GenerationSpec, seed: int, mix: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ComposerError("seed_invalid", f"The seed must be an integer from 0 to {MAX_SEED}.")
    if mix not in MIXES:
        raise ComposerError("mix_invalid", f"Unknown mix {mix!r}; one of {', '.join(MIXES)}.")
    numerator, denominator = spec.meter
    if not 1 <= numerator <= 32 or denominator not in (1, 2, 4, 8, 16, 32):
        raise ComposerError("meter_invalid", f"The meter {numerator}/{denominator} is not one the composer writes.")
    if not MIN_TEMPO_BPM <= spec.tempo_bpm <= MAX_TEMPO_BPM:
        raise ComposerError("tempo_out_of_range", f"The tempo must be {MIN_TEMPO_BPM:g} to {MAX_TEMPO_BPM:g} bpm.")
    if not MIN_DURATION_SECONDS <= spec.duration_seconds <= MAX_DURATION_SECONDS:
        raise ComposerError("duration_out_of_range", "A cue lasts from 5 seconds to 20 minutes.")


def _tonic(key: str) -> int:
    if not key or key[0] not in _NOTES or key[1:] not in ("", "#", "b"):
        raise ComposerError("key_invalid", f"Unknown key {key!r}.")
    return (_NOTES[key[0]] + {"": 0, "#": 1, "b": -1}[key[1:]]) % 12


def _stream(seed: int, name: str) -> random.Random:
    """An independent random stream for one part of the composition."""
    digest = hashlib.sha256(f"{CODE_VERSION}:{seed}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - music, not secrets: reproducibility is the point


def _mood(spec: GenerationSpec) -> tuple[list[str], _Mood]:
    """The first recognised mood (or the genre) decides harmony and register; every mood adds its texture."""
    words = [*spec.moods, *([spec.genre] if spec.genre else [])]
    names = []
    for word in words:
        name = _ALIASES.get(word.strip().lower(), word.strip().lower())
        if name in _MOODS and name not in names:
            names.append(name)
    names = names or ["neutral"]
    primary = _MOODS[names[0]]
    texture = primary.texture
    for name in names[1:]:
        other = _MOODS[name].texture
        flags = {
            flag: getattr(texture, flag) or getattr(other, flag) for flag in ("pedal", "tremolo", "ostinato", "drums")
        }
        texture = replace(texture, **flags)
    return names, replace(primary, texture=texture)


def _level(arc: tuple[ArcPoint, ...], seconds: float) -> float:
    """The arc's intensity at a time, linear between points and flat beyond them; 0.5 without an arc."""
    if not arc:
        return 0.5
    points = sorted((p.time_seconds, max(0.0, min(1.0, p.level))) for p in arc)
    index = bisect.bisect_right([t for t, _ in points], seconds)
    if index == 0:
        return points[0][1]
    if index == len(points):
        return points[-1][1]
    (t0, l0), (t1, l1) = points[index - 1], points[index]
    return l0 + (l1 - l0) * (seconds - t0) / (t1 - t0) if t1 > t0 else l1


# --- Form and harmony ------------------------------------------------------------------------------------------


def _form(grid: Grid, levels: list[float]) -> list[tuple[str, int, int]]:
    """Sections over the bars: an intro, blocks of phrases named by the arc (build where it rises or leads into a
    hit, climax where it is high, resolution after the climax), and the final bar as the ending. A hit always
    starts a new section."""
    count = len(grid.bars)
    if count == 1:
        return [("ending", 0, 1)]
    hit_bars = {b for b in grid.hit_bars if 0 < b < count}
    cuts = {0, count - 1} | {b for b in hit_bars if b < count - 1}
    intro = 0 if count < 4 else max(1, min(8, round((count - 1) * 0.12)))
    intro = min([intro, *[b for b in hit_bars if b > 0]])
    cuts.add(intro)
    seconds_per_bar = grid.seconds(grid.end_tick) / count
    block = 8 if seconds_per_bar < 2.5 else 4
    for first, end in zip(sorted(cuts), sorted(cuts)[1:], strict=False):
        cuts.update(range(first + block, end - block // 2, block))
    bounds = sorted(cuts | {count})
    blocks: list[tuple[str, int, int]] = []
    peak_seen = False
    for first, end in zip(bounds, bounds[1:], strict=False):
        if end == count:
            name = "ending"
        elif first < intro or (first == 0 and intro):
            name = "intro"
        else:
            mean = sum(levels[first:end]) / (end - first)
            rise = levels[end - 1] - levels[first]
            if mean >= 0.7:
                name, peak_seen = "climax", True
            elif rise > 0.15 or (end in hit_bars and end - first >= 2 and rise >= 0):
                name = "build"
            elif peak_seen:
                name = "resolution"
            else:
                name = "A"
        if blocks and blocks[-1][0] == name and first not in hit_bars:
            blocks[-1] = (name, blocks[-1][1], end)
        else:
            blocks.append((name, first, end))
    return blocks


def _chord(symbol: str, tonic: int) -> Chord:
    offset, quality = _NUMERALS[symbol]
    root = (tonic + offset) % 12
    return Chord(root, tuple((root + i) % 12 for i in _QUALITIES[quality]), symbol)


def _harmony(grid: Grid, sections, tonic: int, mode: str, progression: list[str], mood: _Mood, hit_ticks: list[int]):
    """Chord spans over the bars: the progression restarts with each section, at the section's harmonic rhythm
    (faster in a climax, slower in an intro); a dominant leads into each hit and into the final tonic."""
    bars = grid.bars
    spans: list[list] = []
    rhythms = {}
    for name, first, end in sections:
        rate = mood.chords_per_bar
        if name == "climax" and mood.texture.dynamics > 0.3:
            rate = min(2.0, rate * 2)
        elif name == "intro":
            rate = max(0.5, rate / 2)
        rhythms[name] = rate
        number, bar = 0, first
        while bar < end:
            b = bars[bar]
            symbol = progression[number % len(progression)]
            if rate <= 0.5 and bar + 1 < end and bars[bar + 1].start_tick not in hit_ticks:
                spans.append([b.start_tick, bars[bar + 1].start_tick + bars[bar + 1].ticks, symbol])
                bar += 2
            elif rate >= 2 and b.ticks >= 2 * PPQ:
                middle = b.start_tick + b.ticks // 2 // (PPQ // 2) * (PPQ // 2)
                spans.append([b.start_tick, middle, symbol])
                number += 1
                spans.append([middle, b.start_tick + b.ticks, progression[number % len(progression)]])
                bar += 1
            else:
                spans.append([b.start_tick, b.start_tick + b.ticks, symbol])
                bar += 1
            number += 1
    home = "i" if mode == "minor" else "I"
    dominant = "IV" if mood.texture.dynamics <= 0.25 else "V"
    for index, span in enumerate(spans):
        if span[0] in hit_ticks or index == len(spans) - 1:
            span[2] = home
        if index + 1 < len(spans) and (spans[index + 1][0] in hit_ticks or index + 2 == len(spans)) and index > 0:
            span[2] = dominant
    spans[-1][1] = grid.end_tick
    return [(start, end, _chord(symbol, tonic)) for start, end, symbol in spans], rhythms


def _swells(grid: Grid, hit_ticks: list[int]) -> list[tuple[int, int]]:
    """Each hit's crescendo starts a bar before it, two when that bar is short, never before the previous hit."""
    swells = []
    starts = [bar.start_tick for bar in grid.bars]
    previous = 0
    for tick in hit_ticks:
        index = bisect.bisect_left(starts, tick) - 1
        start = starts[max(index, 0)]
        if index > 0 and grid.seconds(tick) - grid.seconds(start) < 1.5 and starts[index - 1] >= previous:
            start = starts[index - 1]
        swells.append((max(start, previous), tick))
        previous = tick
    return swells


# --- The tune --------------------------------------------------------------------------------------------------


class _Melody:
    """Samples the tune from the model, one step at a time, weighting each step the model offers by how well it
    fits: in the scale (or the chord's chromatic tones), chord tones on strong beats, inside the register, no long
    repeated notes, no leap after a leap, no note across a bar line. The opening motif is kept and brought back."""

    def __init__(self, plan: Plan, model: MelodyModel, rng: random.Random, part: Part, register: int) -> None:
        self.plan, self.model, self.rng, self.part = plan, model, rng, part
        low, high = RANGE.get(part.track.program, (48, 96))
        self.centre = max(low + 9, min(high - 9, register))
        self.low, self.high = low, high
        self.context: list[int] = []
        self.pitch = self.centre
        self.last_interval = 0
        self.motif: list[tuple[int, int, int]] = []  # (offset ticks, length ticks, interval)
        self._allowed: dict[Chord, set[int]] = {}

    def allowed(self, chord: Chord) -> set[int]:
        if chord not in self._allowed:
            chromatic = [c for c in chord.tones if c not in self.plan.scale]
            clash = {p for p in self.plan.scale if any((p - c) % 12 in (1, 11) for c in chromatic)}
            self._allowed[chord] = (set(self.plan.scale) - clash) | set(chord.tones)
        return self._allowed[chord]

    def centre_at(self, tick: int) -> int:
        """The register follows the arc: up to half an octave higher at full intensity."""
        return self.centre + round((self.plan.level_at(tick) - 0.5) * 8)

    def phrase(self, first: int, count: int, variant: str) -> None:
        bars = self.plan.grid.bars
        start, last = bars[first].start_tick, bars[first + count - 1]
        cadence = last.start_tick if count > 1 else start + max(PPQ, last.ticks // 2 // PPQ * PPQ)
        chord = self.plan.chord_at(start)
        self.pitch = nearest(
            chord.tones, self.centre_at(start) + (3 if variant == "sequence" else 0), self.low, self.high
        )
        self.last_interval = 0
        at = start
        notes: list[tuple[int, int, int]] = []
        if variant != "new" and self.motif:
            for offset, length, interval in self.motif:
                if start + offset < at or start + offset + length > cadence:
                    break
                at = start + offset
                if notes:
                    interval = self._vary(at, length) if variant == "variation" else interval
                    self.pitch = self._fit(self.pitch + interval, at)
                notes.append((at, length, self.pitch))
                at += min(length, self._room(at, cadence))
        while at < cadence:
            choice = self._choose(at, cadence)
            if notes or choice[1] == 0:
                self.pitch += choice[1]
            notes.append((at, choice[2], self.pitch))
            at += choice[2]
        if variant == "new" and not self.motif:
            half = (cadence - start) // 2
            self.motif = [
                (n[0] - start, n[1], n[2] - notes[i - 1][2] if i else 0)
                for i, n in enumerate(notes)
                if n[0] - start < max(half, PPQ)
            ]
        end_chord = self.plan.chord_at(cadence)
        self.pitch = nearest(end_chord.tones, self.pitch, self.low, self.high)
        room = last.start_tick + last.ticks - cadence
        notes.append((cadence, max(PPQ // 2, min(room - PPQ // 2, max(PPQ, room // 2))), self.pitch))
        span = max(1, cadence - start)
        for at, length, pitch in notes:
            bar = bars[self.plan.bar_at(at)]
            strong = (at - bar.start_tick) % (2 * PPQ) == 0
            shape = 10 * math.sin(math.pi * min(1.0, (at - start) / span)) - 4 + (5 if strong else 0)
            self.part.note(at, at + length, pitch, self.plan.velocity(at, shape))

    def _room(self, at: int, limit: int) -> int:
        bar = self.plan.grid.bars[self.plan.bar_at(at)]
        return min(limit, bar.start_tick + bar.ticks) - at

    def _fit(self, pitch: int, at: int) -> int:
        """Snap a restated motif note into the current harmony and register."""
        while pitch > self.high:
            pitch -= 12
        while pitch < self.low:
            pitch += 12
        allowed = self.allowed(self.plan.chord_at(at))
        return pitch if pitch % 12 in allowed else nearest(tuple(allowed), pitch, self.low, self.high)

    def _weight(self, at: int, interval: int, length: int) -> float:
        target = self.pitch + interval
        if not self.low <= target <= self.high:
            return 0.0
        chord = self.plan.chord_at(at)
        bar = self.plan.grid.bars[self.plan.bar_at(at)]
        weight = 1.0 if target % 12 in self.allowed(chord) else 0.01
        if (at - bar.start_tick) % (2 * PPQ) == 0:
            weight *= 3.0 if target % 12 in chord.tones else 0.5
        if interval == 0:
            weight *= (0.15 if self.last_interval == 0 else 0.7) * (0.4 if length >= 2 * PPQ else 1.0)
        if abs(interval) > 7:
            weight *= 0.4
        if abs(self.last_interval) > 4 and interval * self.last_interval > 0:
            weight *= 0.3
        distance = (target - self.centre_at(at)) / 7
        return weight * math.exp(-0.5 * distance * distance)

    def _choose(self, at: int, limit: int) -> tuple[int | None, int, int]:
        room = self._room(at, limit)
        options, weights = [], []
        for index, probability in self.model.transitions(self.context):
            interval, quarters = self.model.step(index)
            length = round(quarters * PPQ)
            if length <= room:
                weight = probability * self._weight(at, interval, length)
                if weight > 0:
                    options.append((index, interval, length))
                    weights.append(weight)
        if not options:
            # Nothing the model offers fits here: hold a chord tone to the bar line.
            target = nearest(self.plan.chord_at(at).tones, self.pitch, self.low, self.high)
            return None, target - self.pitch, room
        choice = options[weighted_choice(self.rng, weights)]
        self.context = [*self.context[-3:], choice[0]]
        self.last_interval = choice[1]
        return choice

    def _vary(self, at: int, length: int) -> int:
        """A new interval for a kept rhythm: the model's, weighted as any step."""
        candidates: dict[int, float] = {}
        for index, probability in self.model.transitions(self.context):
            interval = self.model.step(index)[0]
            candidates[interval] = candidates.get(interval, 0.0) + probability * self._weight(at, interval, length)
        intervals = sorted(i for i, w in candidates.items() if w > 0)
        if not intervals:
            return 0
        return intervals[weighted_choice(self.rng, [candidates[i] for i in intervals])]


def _write_melody(plan: Plan, part: Part, rng: random.Random, model: MelodyModel, register: int) -> dict:
    """Phrases of four bars (two when bars are long) through every section but the intro and ending, a rest after
    each; the first phrase's opening becomes the motif that later phrases restate, sequence or vary."""
    melody = _Melody(plan, model, rng, part, register)
    grid = plan.grid
    seconds_per_bar = grid.seconds(grid.end_tick) / len(grid.bars)
    size = 4 if seconds_per_bar < 2.5 else 2
    phrases = []
    for name, first, end in plan.sections:
        if name in ("intro", "ending"):
            continue
        bar, number = first, 0
        while bar < end:
            count = min(size, end - bar)
            quiet = plan.levels[bar] < 0.2 and number % 2 == 1
            if not quiet:
                if not melody.motif:
                    variant = "new"
                elif number == 0:
                    variant = "sequence" if name == "build" else "statement"
                else:
                    variant = ("variation", "sequence", "new")[weighted_choice(rng, [0.45, 0.25, 0.3])]
                melody.phrase(bar, count, variant)
                phrases.append(variant)
            bar += count
            number += 1
    return {
        "register": {"centre": melody.centre, "low": melody.low, "high": melody.high},
        "motif": [[offset / PPQ, length / PPQ, interval] for offset, length, interval in melody.motif],
        "phrases": {variant: phrases.count(variant) for variant in ("new", "statement", "sequence", "variation")},
        "last_pitch": melody.pitch,
    }


# --- Parts, the ending and the file ----------------------------------------------------------------------------


def _write_parts(plan: Plan, tracks: tuple[Track, ...], seed: int, model: MelodyModel, mood: _Mood):
    parts = [Part(track) for track in tracks]
    record: dict = {"register": {}, "motif": [], "phrases": {}, "last_pitch": None}
    for part in parts:
        rng = _stream(seed, part.track.name)
        role = part.track.role
        if role == "melody":
            record = _write_melody(plan, part, rng, model, mood.register)
        elif role == "percussion":
            (write_drums if part.track.is_drum else write_timpani)(plan, part, rng)
        else:
            _WRITERS[role](plan, part, rng)
    end_hit = bool(plan.hit_ticks) and plan.hit_ticks[-1] == plan.grid.end_tick
    for part in parts:
        _write_ending(plan, part, end_hit, record["last_pitch"])
        _sforzando_hits(plan, part)
        write_expression(plan, part)
        _tidy(part, plan.grid.end_tick)
    record.pop("last_pitch")
    return parts, record


def _write_ending(plan: Plan, part: Part, end_hit: bool, last_pitch: int | None) -> None:
    """The final chord from the last downbeat to the very end: quiet when the arc ends soft, full when it ends loud
    or when a hit at the end makes the cue cut off at the top of a crescendo."""
    start, end = plan.final_tick, plan.grid.end_tick
    chord = plan.chord_at(start)
    level = plan.levels[-1]
    velocity = plan.velocity(start, 10 if end_hit else 0)
    role, program = part.track.role, part.track.program
    if role == "melody":
        low, high = RANGE.get(program, (48, 96))
        target = last_pitch if last_pitch is not None else (low + high) // 2
        part.note(start, end, nearest((chord.root, chord.tones[1]), target, low, high), velocity)
    elif role == "countermelody" and level >= 0.3:
        part.note(start, end, nearest((chord.tones[1],), 60, 48, 70), velocity - 6)
    elif role in ("harmony", "pad"):
        for pitch in voicing(chord, [], 48, 76, 4 if level >= 0.3 else 3):
            part.note(start, end, pitch, velocity - (10 if role == "pad" else 2))
    elif role == "bass":
        low = 28 if program in (43, 58, 70) else 36
        part.note(start, end, nearest((chord.root,), low + 7, low, low + 22), velocity)
    elif role == "accent" and (end_hit or level >= 0.6):
        for pitch in voicing(chord, [], 40, 62, 3):
            part.note(start, end, pitch, velocity)
    elif role == "percussion" and not end_hit:
        if not part.track.is_drum:
            part.note(start, end, nearest((plan.tonic,), 45, 40, 52), velocity - (0 if level >= 0.6 else 20))
        elif level >= 0.6:
            part.note(start, end, 36, velocity)
            part.note(start, end, 49, velocity)


def _sforzando_hits(plan: Plan, part: Part) -> None:
    """Whatever the accompaniment attacks on a hit is played sforzando: the tutti chord of the hit."""
    if part.track.role in ("melody", "countermelody"):
        return
    hits = set(plan.hit_ticks)
    part.notes = [(s, e, p, max(v, 116) if s in hits else v) for s, e, p, v in part.notes]


def _tidy(part: Part, end_tick: int) -> None:
    """Clip to the end and never overlap two notes of one pitch (a MIDI reader would pair their on and off events
    wrongly)."""
    notes = sorted((s, min(e, end_tick), p, v) for s, e, p, v in part.notes if s < end_tick)
    last_by_pitch: dict[int, int] = {}
    tidy: list[tuple[int, int, int, int]] = []
    for start, end, pitch, velocity in notes:
        if pitch in last_by_pitch:
            index = last_by_pitch[pitch]
            previous = tidy[index]
            if previous[1] > start:
                tidy[index] = (previous[0], start, *previous[2:])
        last_by_pitch[pitch] = len(tidy)
        tidy.append((start, end, pitch, velocity))
    part.notes = [note for note in tidy if note[1] > note[0]]
    part.controls = sorted(c for c in part.controls if c[0] <= end_tick)


def _in_mix(track: Track, mix: str) -> bool:
    if mix == "no-percussion":
        return track.role != "percussion"
    if mix == "underscore":
        return track.role not in ("melody", "countermelody")
    return True


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _chunk(events: list[tuple[int, int, bytes]]) -> bytes:
    body, at = bytearray(), 0
    for tick, _, data in sorted(events, key=lambda e: (e[0], e[1])):
        body += _vlq(tick - at) + data
        at = tick
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)


def _text(kind: int, text: str) -> bytes:
    data = text.encode("ascii", "replace")
    return bytes((0xFF, kind)) + _vlq(len(data)) + data


def _key_signature(tonic: int, spec: GenerationSpec) -> bytes:
    major = (tonic + 3) % 12 if spec.mode == "minor" else tonic
    sharps = {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: -6, 1: -5, 8: -4, 3: -3, 10: -2, 5: -1}[major]
    if "#" in spec.key and sharps < 0 and sharps + 12 <= 7:
        sharps += 12  # spelled with sharps: C# rather than Db
    return bytes((0xFF, 0x59, 2, sharps & 0xFF, 1 if spec.mode == "minor" else 0))


def _midi(grid: Grid, parts: list[Part], tonic: int, spec: GenerationSpec) -> bytes:
    """Format 1: the conductor track (tempo, meter, key), then one track per part; channel 10 for drums."""
    conductor = [(0, 0, _text(0x03, "cue")), (0, 0, _key_signature(tonic, spec))]
    for tick, numerator, denominator in grid.meter_changes():
        data = bytes((0xFF, 0x58, 4, numerator, int(math.log2(denominator)), 24, 8))
        conductor.append((tick, 1, data))
    for tick, tempo in grid.tempo_events:
        conductor.append((tick, 2, b"\xff\x51\x03" + tempo.to_bytes(3, "big")))
    chunks = [_chunk(conductor)]
    channels = iter([c for c in range(16) if c != 9])
    for part in parts:
        channel = 9 if part.track.is_drum else next(channels)
        events = [(0, 0, _text(0x03, part.track.name))]
        if not part.track.is_drum:
            events.append((0, 1, bytes((0xC0 | channel, part.track.program))))
        for tick, controller, value in part.controls:
            events.append((tick, 3, bytes((0xB0 | channel, controller, value))))
        for start, end, pitch, velocity in part.notes:
            events.append((end, 2, bytes((0x80 | channel, pitch, 64))))
            events.append((start, 4, bytes((0x90 | channel, pitch, velocity))))
        chunks.append(_chunk(events))
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + len(chunks).to_bytes(2, "big")
    return header + PPQ.to_bytes(2, "big") + b"".join(chunks)


# --- Cut-downs -------------------------------------------------------------------------------------------------


def cutdown_spec(spec: GenerationSpec, seconds: float) -> GenerationSpec:
    """The spec of a shorter version (a 15, 30 or 60 second cut-down) of a cue, made as a music editor makes one:
    the opening is kept as it was and the ending's shape is moved to the new end, scaled to the new length, with
    the middle dropped. Hits after the new end are dropped; a hit at the original end (a stinger) moves to the new
    end, and hits too close before it to be reached go.

    Raises ComposerError ``cutdown_invalid`` unless 5 s <= ``seconds`` <= the cue's duration.
    """
    if not MIN_DURATION_SECONDS <= seconds <= spec.duration_seconds:
        raise ComposerError(
            "cutdown_invalid", f"A cut-down lasts from 5 seconds to the cue's {spec.duration_seconds:g}."
        )
    if seconds == spec.duration_seconds:
        return spec
    duration = spec.duration_seconds
    arc: list[ArcPoint] = []
    if spec.arc:
        # Head: the first 60 % of the cut-down as in the original; tail: the original's last 30 %, scaled into the
        # cut-down's last 30 %; between them the composer interpolates.
        head, tail = 0.6 * seconds, 0.3
        arc = [p for p in spec.arc if p.time_seconds <= head]
        arc.append(ArcPoint(head, round(_level(spec.arc, head), 4)))
        tail_points = [p for p in spec.arc if p.time_seconds >= duration * (1 - tail)]
        start = ArcPoint(duration * (1 - tail), _level(spec.arc, duration * (1 - tail)))
        for point in [start, *tail_points, ArcPoint(duration, _level(spec.arc, duration))]:
            at = seconds - (duration - point.time_seconds) * seconds / duration
            arc.append(ArcPoint(round(at, 4), round(point.level, 4)))
        arc = sorted({p.time_seconds: p for p in arc}.values(), key=lambda p: p.time_seconds)
    stinger = next((h for h in spec.hit_points if h.time_seconds >= duration - 0.001), None)
    limit = seconds - 2.0 if stinger else seconds
    hits = [h for h in spec.hit_points if h.time_seconds < limit or (not stinger and h.time_seconds <= seconds)]
    if stinger:
        hits.append(HitPoint(seconds, seconds_to_timecode(seconds, stinger.fps), stinger.fps))
    return replace(spec, duration_seconds=seconds, hit_points=tuple(hits), arc=tuple(arc))
