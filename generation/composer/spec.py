"""What a producer asks for: the normalised form of a prompt and its structured fields.

A spec is immutable and plain; ``as_dict`` is the JSON the API echoes back and the generation record carries, and
``spec_from_dict`` reads it again (for edits of an earlier cue). Times are seconds from the start of the cue.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Limits that the prompt parser and the API enforce (each breach has its own error code).
MIN_DURATION_SECONDS = 5.0
MAX_DURATION_SECONDS = 20 * 60.0
MIN_TEMPO_BPM = 30.0
MAX_TEMPO_BPM = 300.0
# Hit points must be at least one beat apart at the slowest allowed tempo.
MIN_HIT_SPACING_SECONDS = 60.0 / MIN_TEMPO_BPM
MAX_PROMPT_CHARS = 2000

ENSEMBLE_FAMILIES = ("strings", "brass", "woodwinds", "piano", "percussion", "synth_pads")
MODES = ("major", "minor")
FRAME_RATES = ("23.976", "24", "25", "29.97df", "30")


@dataclass(frozen=True)
class HitPoint:
    """A moment in picture the music must accent, given as an SMPTE timecode at a frame rate."""

    time_seconds: float
    timecode: str  # as normalised, e.g. "00:01:05:12" ("00:01:05;12" for drop-frame)
    fps: str  # one of FRAME_RATES


@dataclass(frozen=True)
class ArcPoint:
    """The intensity the music should have at a time: 0 (barely there) to 1 (full)."""

    time_seconds: float
    level: float


@dataclass(frozen=True)
class GenerationSpec:
    moods: tuple[str, ...] = ()
    genre: str | None = None  # e.g. "underscore", "action", "ambient", "drama"
    ensemble: tuple[str, ...] = ("strings", "woodwinds", "brass", "piano", "percussion")  # ENSEMBLE_FAMILIES
    tempo_bpm: float = 100.0  # quarter notes per minute (the MIDI convention), whatever the meter
    key: str = "C"  # tonic: C, C#, Db, D, ..., B
    mode: str = "major"  # MODES
    meter: tuple[int, int] = (4, 4)
    duration_seconds: float = 60.0
    hit_points: tuple[HitPoint, ...] = ()
    arc: tuple[ArcPoint, ...] = field(default_factory=tuple)  # sorted by time; empty means a steady middle level

    def as_dict(self) -> dict:
        data = asdict(self)
        data["moods"] = list(self.moods)
        data["ensemble"] = list(self.ensemble)
        data["meter"] = f"{self.meter[0]}/{self.meter[1]}"
        return data


def spec_from_dict(data: dict) -> GenerationSpec:
    """The inverse of ``GenerationSpec.as_dict`` (no validation: the dict came from a spec)."""
    numerator, denominator = (int(part) for part in str(data["meter"]).split("/"))
    return GenerationSpec(
        moods=tuple(data["moods"]),
        genre=data.get("genre"),
        ensemble=tuple(data["ensemble"]),
        tempo_bpm=float(data["tempo_bpm"]),
        key=data["key"],
        mode=data["mode"],
        meter=(numerator, denominator),
        duration_seconds=float(data["duration_seconds"]),
        hit_points=tuple(HitPoint(**hit) for hit in data.get("hit_points", ())),
        arc=tuple(ArcPoint(**point) for point in data.get("arc", ())),
    )
