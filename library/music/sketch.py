"""Short, deterministic multi-part MIDI sketches: the demo catalog's cues and the benchmarks' inputs.

A sketch is a diatonic chord progression voiced for pads or strings, a bass line on the chord roots, a melody
walking over chord tones and passing notes, and optionally a drum groove. The same arguments always give the same
bytes.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import pretty_midi

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 4), (0, 5, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4)),
}
_TONICS = {
    "C": 0,
    "C#": 1,
    "Db": 1,
    "D": 2,
    "Eb": 3,
    "E": 4,
    "F": 5,
    "F#": 6,
    "G": 7,
    "Ab": 8,
    "A": 9,
    "Bb": 10,
    "B": 11,
}


@dataclass(frozen=True)
class Sketch:
    tonic: str = "C"
    mode: str = "major"
    tempo_bpm: float = 100.0
    bars: int = 16
    beats_per_bar: int = 4
    melody_program: int = 73  # flute
    harmony_program: int = 48  # string ensemble
    bass_program: int = 32  # acoustic bass
    drums: bool = False
    seed: int = 0
    extra_programs: tuple[int, ...] = field(default=())


def sketch_midi(sketch: Sketch) -> bytes:
    """The sketch as Standard MIDI File bytes, with its tempo, time and key signatures declared."""
    rng = random.Random(sketch.seed)  # noqa: S311 - reproducible music, not secrets
    beat = 60.0 / sketch.tempo_bpm
    bar = beat * sketch.beats_per_bar
    root = 48 + _TONICS[sketch.tonic]
    scale = _MAJOR if sketch.mode == "major" else _MINOR
    progression = rng.choice(_PROGRESSIONS[sketch.mode])

    score = pretty_midi.PrettyMIDI(initial_tempo=sketch.tempo_bpm)
    score.time_signature_changes.append(pretty_midi.TimeSignature(sketch.beats_per_bar, 4, 0.0))
    key_number = _TONICS[sketch.tonic] + (12 if sketch.mode == "minor" else 0)
    score.key_signature_changes.append(pretty_midi.KeySignature(key_number, 0.0))
    harmony = pretty_midi.Instrument(program=sketch.harmony_program, name="Harmony")
    bass = pretty_midi.Instrument(program=sketch.bass_program, name="Bass")
    melody = pretty_midi.Instrument(program=sketch.melody_program, name="Melody")
    doubles = [pretty_midi.Instrument(program=p, name=f"Double {p}") for p in sketch.extra_programs]

    def degree(step: int, octave: int = 0) -> int:
        return root + 12 * (octave + step // 7) + scale[step % 7]

    for number in range(sketch.bars):
        start = number * bar
        chord = progression[number % len(progression)]
        swell = 60 + int(30 * number / max(1, sketch.bars - 1))
        for step in (chord, chord + 2, chord + 4):
            harmony.notes.append(pretty_midi.Note(swell, degree(step, 1), start, start + bar))
            for double in doubles:
                double.notes.append(pretty_midi.Note(swell - 10, degree(step, 2), start, start + bar))
        for beat_number in range(sketch.beats_per_bar):
            onset = start + beat_number * beat
            bass.notes.append(pretty_midi.Note(80, degree(chord, -1), onset, onset + beat * 0.9))
        position = chord + 7
        onset = start
        while onset < start + bar - 1e-9:
            length = beat * rng.choice((0.5, 0.5, 1.0, 1.0, 1.5, 2.0))
            length = min(length, start + bar - onset)
            position += rng.choice((-2, -1, -1, 0, 1, 1, 2))
            position = max(chord + 4, min(chord + 11, position))
            melody.notes.append(pretty_midi.Note(rng.randint(78, 108), degree(position, 1), onset, onset + length))
            onset += length
    score.instruments.extend([harmony, bass, melody, *doubles])
    if sketch.drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
        for half_beat in range(sketch.bars * sketch.beats_per_bar * 2):
            onset = half_beat * beat / 2
            kit.notes.append(pretty_midi.Note(70, 42, onset, onset + 0.05))  # closed hi-hat
            if half_beat % 4 == 0:
                kit.notes.append(pretty_midi.Note(100, 36, onset, onset + 0.1))  # bass drum
            elif half_beat % 4 == 2:
                kit.notes.append(pretty_midi.Note(95, 38, onset, onset + 0.1))  # snare
        score.instruments.append(kit)
    buffer = io.BytesIO()
    score.write(buffer)
    return buffer.getvalue()
