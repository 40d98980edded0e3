"""Read a Standard MIDI File defensively and describe it: duration, tempo, meter, key, instruments, energy.

The Standard MIDI File format is defined by the MIDI Manufacturers Association's "Standard MIDI Files 1.0"; General
MIDI program numbers and their sixteen families by "General MIDI System Level 1". Key estimation correlates a
duration-weighted pitch-class histogram with the Krumhansl-Kessler key profiles (C. L. Krumhansl, *Cognitive
Foundations of Musical Pitch*, 1990, table 4.1).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field

import mido
import numpy as np
import pretty_midi

from library.music import MusicError

# pretty_midi allocates one float per tick up to the last event; beyond this the file is corrupt or hostile.
MAX_TICK = 10_000_000
# A tempo meta event stores microseconds per quarter note in 24 bits; zero would mean an infinite tempo.
MIN_TEMPO_US = 1
# Far above any real cue (a 20-minute orchestral cue has some 30 parts and 200,000 events), far below what would
# exhaust a worker: each block of 15 parts costs a synthesiser of its own when rendering.
MAX_TRACKS = 512
MAX_PARTS = 128
MAX_EVENTS = 1_000_000

GM_FAMILIES = (
    "piano",
    "chromatic-percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth-lead",
    "synth-pad",
    "synth-effects",
    "ethnic",
    "percussive",
    "sound-effects",
)
DRUMS = "drums"

_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@dataclass(frozen=True)
class Instrument:
    program: int
    name: str
    family: str
    is_drum: bool
    note_count: int


@dataclass(frozen=True)
class Analysis:
    duration_seconds: float
    tempo_bpm: float
    tempo_map: list[dict]
    time_signatures: list[str]
    key: str | None
    mode: str | None
    key_source: str | None
    key_confidence: float | None
    instruments: list[Instrument]
    note_count: int
    pitch_range: dict | None
    energy: list[float] = field(repr=False)

    def as_dict(self) -> dict:
        return asdict(self)


def midi_read(data: bytes, *, max_duration_seconds: float) -> pretty_midi.PrettyMIDI:
    """Parse ``data`` as a Standard MIDI File, refusing anything malformed, empty, hostile or too long.

    Raises MusicError with code ``midi_invalid``, ``midi_truncated``, ``midi_timing_invalid``, ``midi_too_complex``,
    ``midi_empty`` or ``duration_too_long``. Checks run cheapest first: the header's track count, then tick, tempo
    and event counts on the raw events, all before pretty_midi builds its tick-to-time table and note objects.
    """
    if not data.startswith(b"MThd") or len(data) < 14:
        raise MusicError("midi_invalid", "Not a Standard MIDI File: it does not start with an 'MThd' header.")
    declared_tracks = int.from_bytes(data[10:12], "big")
    if declared_tracks > MAX_TRACKS:
        raise MusicError("midi_too_complex", f"The file declares {declared_tracks:,} tracks; at most {MAX_TRACKS}.")
    try:
        smf = mido.MidiFile(file=io.BytesIO(data))
    except EOFError:
        raise MusicError("midi_truncated", "The MIDI file ends in the middle of a chunk or event.") from None
    except Exception as exc:  # noqa: BLE001 - mido raises many types on hostile bytes; all mean "not valid MIDI"
        raise MusicError("midi_invalid", f"The MIDI file is malformed: {exc}.") from None
    _check_duration(_timing(smf), max_duration_seconds)
    try:
        score = pretty_midi.PrettyMIDI(mido_object=smf)
    except Exception as exc:  # noqa: BLE001 - the same boundary: anything pretty_midi rejects is invalid input
        raise MusicError("midi_invalid", f"The MIDI file cannot be interpreted: {exc}.") from None
    parts = [instrument for instrument in score.instruments if instrument.notes]
    if not parts:
        raise MusicError("midi_empty", "The MIDI file contains no notes.")
    if len(parts) > MAX_PARTS:
        raise MusicError("midi_too_complex", f"The cue has {len(parts)} instrument parts; at most {MAX_PARTS}.")
    # pretty_midi takes tempo only from the first track; the length it renders is the one that must fit.
    _check_duration(score.get_end_time(), max_duration_seconds)
    return score


def _check_duration(seconds: float, limit: float) -> None:
    # A millisecond's grace: times computed from whole ticks and microseconds land a hair either side of the limit.
    if seconds > limit + 0.001:
        raise MusicError(
            "duration_too_long", f"The cue lasts {_clock(seconds)}; the longest accepted is {_clock(limit)}."
        )


def _timing(smf: mido.MidiFile) -> float:
    """Check the raw events' timing and size, and return the file's length in seconds, in one pass over the events
    (mido's own ``length`` merges every track into a new list first, which costs memory on hostile files)."""
    if smf.type == 2:
        raise MusicError("midi_invalid", "Type 2 (sequential multi-song) MIDI files are not supported.")
    if smf.ticks_per_beat < 0 or smf.ticks_per_beat > 0x7FFF:
        raise MusicError("midi_timing_invalid", "SMPTE time division is not supported; use ticks per quarter note.")
    if smf.ticks_per_beat == 0:
        raise MusicError("midi_timing_invalid", "The header gives 0 ticks per quarter note.")
    tempo_changes: list[tuple[int, int]] = []
    last_tick = events = 0
    for number, track in enumerate(smf.tracks):
        ticks = 0
        events += len(track)
        if events > MAX_EVENTS:
            raise MusicError("midi_too_complex", f"The file holds more than {MAX_EVENTS:,} events.")
        for message in track:
            ticks += message.time
            if message.type == "set_tempo":
                if message.tempo < MIN_TEMPO_US:
                    raise MusicError("midi_timing_invalid", f"Track {number} sets a tempo of 0 microseconds per beat.")
                tempo_changes.append((ticks, message.tempo))
        if ticks > MAX_TICK:
            raise MusicError(
                "midi_timing_invalid",
                f"Track {number} reaches tick {ticks:,}; more than {MAX_TICK:,} ticks means a corrupt file.",
            )
        last_tick = max(last_tick, ticks)
    return _ticks_to_seconds(last_tick, sorted(tempo_changes), smf.ticks_per_beat)


def _ticks_to_seconds(tick: int, tempo_changes: list[tuple[int, int]], ticks_per_beat: int) -> float:
    seconds, at, tempo = 0.0, 0, 500_000  # SMF 1.0: 120 beats per minute until a tempo event says otherwise
    for change_tick, change_tempo in tempo_changes:
        if change_tick >= tick:
            break
        seconds += (change_tick - at) * tempo / ticks_per_beat / 1e6
        at, tempo = change_tick, change_tempo
    return seconds + (tick - at) * tempo / ticks_per_beat / 1e6


def midi_analyse(score: pretty_midi.PrettyMIDI) -> Analysis:
    """Describe a parsed score. Deterministic: the same file always gives the same analysis."""
    duration = float(score.get_end_time())
    notes = [(inst, note) for inst in score.instruments for note in inst.notes]
    key, mode, source, confidence = _key(score)
    return Analysis(
        duration_seconds=round(duration, 3),
        tempo_bpm=_main_tempo(score, duration),
        tempo_map=_tempo_map(score),
        time_signatures=_time_signatures(score),
        key=key,
        mode=mode,
        key_source=source,
        key_confidence=confidence,
        instruments=_instruments(score),
        note_count=len(notes),
        pitch_range=_pitch_range(score),
        energy=_energy(score, duration),
    )


def _tempo_map(score: pretty_midi.PrettyMIDI) -> list[dict]:
    times, tempi = score.get_tempo_changes()
    changes: list[dict] = []
    for time, bpm in zip(times, tempi, strict=True):
        if changes and math.isclose(changes[-1]["bpm"], round(float(bpm), 3)):
            continue
        changes.append({"time_seconds": round(float(time), 3), "bpm": round(float(bpm), 3)})
    return changes


def _main_tempo(score: pretty_midi.PrettyMIDI, duration: float) -> float:
    """The tempo in force for the longest total time."""
    times, tempi = score.get_tempo_changes()
    spans: dict[float, float] = {}
    bounds = [*times[1:], max(duration, times[-1])]
    for start, end, bpm in zip(times, bounds, tempi, strict=True):
        key = round(float(bpm), 3)
        spans[key] = spans.get(key, 0.0) + max(0.0, float(end - start))
    return max(spans.items(), key=lambda item: (item[1], -item[0]))[0]


def _time_signatures(score: pretty_midi.PrettyMIDI) -> list[str]:
    seen: list[str] = []
    for change in score.time_signature_changes:
        text = f"{change.numerator}/{change.denominator}"
        if text not in seen:
            seen.append(text)
    return seen or ["4/4"]  # SMF 1.0: without a time signature event, 4/4 is assumed.


def _key(score: pretty_midi.PrettyMIDI) -> tuple[str | None, str | None, str | None, float | None]:
    if score.key_signature_changes:
        number = score.key_signature_changes[0].key_number
        tonic, minor = number % 12, number >= 12
        return _key_name(tonic, minor), ("minor" if minor else "major"), "declared", None
    histogram = np.zeros(12)
    for instrument in score.instruments:
        if instrument.is_drum:
            continue
        for note in instrument.notes:
            histogram[note.pitch % 12] += note.end - note.start
    if not histogram.any() or np.allclose(histogram, histogram[0]):
        return None, None, None, None
    best = max(
        (
            (float(np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]), tonic, minor)
            for minor, profile in ((False, _MAJOR_PROFILE), (True, _MINOR_PROFILE))
            for tonic in range(12)
        ),
        key=lambda item: item[0],
    )
    correlation, tonic, minor = best
    return _key_name(tonic, minor), ("minor" if minor else "major"), "estimated", round(correlation, 3)


def _key_name(tonic: int, minor: bool) -> str:
    return f"{_MINOR_NAMES[tonic]} minor" if minor else f"{_MAJOR_NAMES[tonic]} major"


def _instruments(score: pretty_midi.PrettyMIDI) -> list[Instrument]:
    counts: dict[tuple[bool, int], int] = {}
    for instrument in score.instruments:
        if instrument.notes:
            slot = (bool(instrument.is_drum), int(instrument.program))
            counts[slot] = counts.get(slot, 0) + len(instrument.notes)
    return [
        Instrument(
            program=int(program),
            name="Drum kit" if is_drum else pretty_midi.program_to_instrument_name(program),
            family=DRUMS if is_drum else GM_FAMILIES[program // 8],
            is_drum=is_drum,
            note_count=count,
        )
        for (is_drum, program), count in sorted(counts.items())
    ]


def _pitch_range(score: pretty_midi.PrettyMIDI) -> dict | None:
    pitches = [note.pitch for inst in score.instruments if not inst.is_drum for note in inst.notes]
    if not pitches:
        return None
    low, high = min(pitches), max(pitches)
    return {"lowest": low, "highest": high, "lowest_name": note_name(low), "highest_name": note_name(high)}


def note_name(pitch: int) -> str:
    """Scientific pitch notation, MIDI 60 = C4."""
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _energy(score: pretty_midi.PrettyMIDI, duration: float) -> list[float]:
    """Per second: the number of note onsets times their mean velocity (as a share of 127), i.e. the sum of the
    onsets' velocities / 127. Bin i covers [i, i + 1) seconds."""
    bins = max(1, math.ceil(duration))
    onsets = [(note.start, note.velocity) for inst in score.instruments for note in inst.notes]
    starts = np.array([start for start, _ in onsets])
    weights = np.array([velocity for _, velocity in onsets], dtype=float) / 127.0
    index = np.clip(starts.astype(int), 0, bins - 1)
    curve = np.bincount(index, weights=weights, minlength=bins)
    return [round(float(value), 3) for value in curve]


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"
