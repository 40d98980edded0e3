"""Reading a producer's request, free English and/or structured fields, into a ``GenerationSpec``.

The text is read in passes, each taking the phrases it understands out of what is left, most specific first so that
a timecode is never read as a duration nor a frame rate as a tempo: hit points ("hit at 00:01:05:12 @ 24 fps"), builds
("build to a hit at ..."), other times after "at", frame rates, tempos ("120 bpm"), meters ("6/8"), keys ("D minor"),
durations ("1:30", "2 min 30"), then single words and short phrases (moods, genre, ensemble, Italian tempo markings,
the intensity arc). Punctuation separates phrases. Words left over are reported in ``ParsedPrompt.ignored``, except a
short list of stop words. Structured fields win over the text, field by field, without being a conflict; ranges,
hit spacing and the like are checked on the merged result with the same codes as for text.

Decisions a producer may want to know:

* A hit given in seconds or m:ss ("hit at 0:42") keeps that exact time; its timecode is rendered at the one frame rate
  named elsewhere in the prompt, or at 24 fps when none (or several) are named. An HH:MM:SS:FF timecode needs a rate:
  one named right after it ("@ 25 fps") or exactly one named anywhere in the prompt, else ``frame_rate_required``.
* "at <time>" outside a hit or build phrase is read as a hit; a bare "1:30" is the duration.
* A hit needs ``MIN_HIT_SPACING_SECONDS`` of music before it (``hit_too_early``); a hit exactly at the end is allowed.
* Tonics are spelled C C# D Eb E F F# G Ab A Bb B whatever the mode (sharps for C# and F#, flats otherwise), so
  "Db major" reads as C# major. "A minor" and "a minor" both name the key (the article reading would only set the
  mode, which the key sets too). The compact chord spelling ("Dm", "F#m", "Cmaj") needs a capital letter.
* Tempo: a number ("120 bpm", "tempo 120") beats an Italian marking (largo 50 ... prestissimo 200), which beats a
  hint (slow 70, mid-tempo 100, fast 140); two different values of the same kind are ``tempo_conflict``.
* "Orchestral" means strings, brass, woodwinds and percussion: the piano is a colour to ask for, not part of the
  symphony orchestra. Families are always given in the order of ``ENSEMBLE_FAMILIES``.
* Defaults, listed in ``ParsedPrompt.defaulted`` even where a mood or genre chose them: mode from the first mood or
  genre that suggests one (dark, tense, sad... minor), else major; key C major or A minor; tempo from the first mood,
  else the genre, else 100; meter 4/4; duration 60 s; ensemble by genre (ambient: strings, piano, synth pads), else the
  spec default; arc a steady 0.5 from start to end. Moods beyond the eighth are dropped.
* The arc: "intense"/"gentle" set the overall level (0.8/0.3, else 0.5); "start quiet" 0.25 at the start; "end soft"
  or "fade out" 0.1 at the end, "end big" 1.0; each build rises to 1.0 at its target (the named hit or time, else the
  last hit, else the end, or 80 % of the way when the end is soft) from a start of at most 0.3.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from generation.composer import ComposerError
from generation.composer.spec import (
    ENSEMBLE_FAMILIES,
    MAX_DURATION_SECONDS,
    MAX_PROMPT_CHARS,
    MAX_TEMPO_BPM,
    MIN_DURATION_SECONDS,
    MIN_HIT_SPACING_SECONDS,
    MIN_TEMPO_BPM,
    MODES,
    ArcPoint,
    GenerationSpec,
    HitPoint,
)
from generation.composer.timecode import frame_rate_parse, seconds_to_timecode, timecode_to_seconds


@dataclass(frozen=True)
class ParsedPrompt:
    spec: GenerationSpec
    ignored: tuple[str, ...]  # words of the text not understood, in order, lower-cased, without duplicates
    defaulted: tuple[str, ...]  # spec fields neither the text nor the fields gave (filled with defaults)


# --- Vocabulary ------------------------------------------------------------------------------------------------------

MAX_MOODS = 8
DEFAULT_TEMPO_BPM = 100.0
DEFAULT_LEVEL = 0.5
HIT_FPS_DEFAULT = "24"  # the timecode rendering of a hit given in seconds when the prompt names no frame rate

# mood -> (the mode it suggests or None, the tempo it suggests)
MOODS: dict[str, tuple[str | None, float]] = {
    "tense": ("minor", 110), "dark": ("minor", 80), "sad": ("minor", 66), "hopeful": ("major", 96),
    "triumphant": ("major", 120), "calm": ("major", 72), "mysterious": ("minor", 80), "romantic": ("major", 76),
    "playful": ("major", 120), "epic": (None, 110), "uplifting": ("major", 110), "aggressive": ("minor", 150),
    "nostalgic": (None, 80), "dreamy": (None, 70), "happy": ("major", 120), "energetic": ("major", 140),
    "scary": ("minor", 90), "urgent": ("minor", 150), "angry": ("minor", 140), "lonely": ("minor", 66),
    "reflective": (None, 70), "warm": ("major", 84), "cold": ("minor", 80), "emotional": (None, 72),
    "chaotic": ("minor", 160), "determined": (None, 110), "sneaky": ("minor", 100), "magical": ("major", 92),
    "confident": ("major", 112), "sensual": (None, 80), "dramatic": ("minor", 96),
}  # fmt: skip
_MOOD_SYNONYMS = {
    "tense": "suspenseful suspense tension anxious nervous uneasy",
    "dark": "ominous brooding menacing sinister foreboding grim",
    "sad": "melancholic melancholy sorrowful mournful somber sombre tragic",
    "hopeful": "optimistic", "triumphant": "heroic victorious glorious",
    "calm": "peaceful serene tranquil relaxed relaxing", "mysterious": "eerie mystery enigmatic uncanny",
    "romantic": "tender loving intimate", "playful": "whimsical quirky mischievous cheeky funny lighthearted",
    "epic": "grand majestic sweeping", "uplifting": "inspiring inspirational",
    "aggressive": "action-packed ferocious fierce violent", "nostalgic": "wistful bittersweet",
    "dreamy": "ethereal dreamlike floaty", "happy": "joyful cheerful", "energetic": "upbeat lively driving",
    "scary": "frightening terrifying creepy spooky", "urgent": "frantic frenetic hectic", "angry": "furious",
    "lonely": "desolate isolated", "reflective": "contemplative pensive thoughtful introspective meditative",
    "warm": "comforting cozy cosy", "cold": "icy sterile clinical", "emotional": "moving heartfelt poignant touching",
    "chaotic": "turbulent", "determined": "resolute purposeful", "sneaky": "stealthy sly creeping",
    "magical": "enchanted enchanting wondrous", "confident": "bold swaggering", "sensual": "sultry seductive",
}  # fmt: skip

# genre -> (mode it suggests, tempo it suggests, ensemble it suggests)
GENRES: dict[str, tuple[str | None, float | None, tuple[str, ...] | None]] = {
    "underscore": (None, None, None),
    "action": (None, 140, ("strings", "brass", "percussion", "synth_pads")),
    "ambient": (None, 70, ("strings", "piano", "synth_pads")),
    "drama": (None, 84, None),
    "thriller": ("minor", 110, ("strings", "percussion", "synth_pads")),
    "comedy": ("major", 120, ("strings", "woodwinds", "piano", "percussion")),
    "horror": ("minor", 90, ("strings", "percussion", "synth_pads")),
    "romance": ("major", 76, ("strings", "woodwinds", "piano")),
    "documentary": (None, 90, ("strings", "piano", "synth_pads")),
    "trailer": (None, 120, ("strings", "brass", "woodwinds", "percussion", "synth_pads")),
    "western": (None, 100, None),
    "fantasy": (None, 100, None),
    "sci-fi": (None, 100, ("strings", "percussion", "synth_pads")),
    "noir": ("minor", 84, ("strings", "brass", "woodwinds", "piano")),
    "adventure": ("major", 120, ("strings", "brass", "woodwinds", "percussion")),
    "animation": ("major", 120, None),
    "crime": ("minor", 100, None),
    "war": ("minor", 90, None),
}
_GENRE_SYNONYMS = {"comedy": "comedic", "sci-fi": "scifi|science fiction", "animation": "cartoon|animated"}

_ORCHESTRA = ("strings", "brass", "woodwinds", "percussion")
_ENSEMBLE_WORDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("orchestral", "orchestra", "full orchestra", "symphonic", "symphony"), _ORCHESTRA),
    **dict.fromkeys(
        ("strings", "string", "string quartet", "string section", "string orchestra", "violin", "violins", "viola",
         "violas", "cello", "cellos", "double bass"), ("strings",)),
    **dict.fromkeys(
        ("brass", "horns", "horn", "french horn", "trumpet", "trumpets", "trombone", "trombones", "tuba"), ("brass",)),
    **dict.fromkeys(
        ("woodwinds", "woodwind", "winds", "flute", "flutes", "clarinet", "clarinets", "oboe", "oboes", "bassoon",
         "bassoons"), ("woodwinds",)),
    **dict.fromkeys(("piano", "solo piano", "pianos"), ("piano",)),
    **dict.fromkeys(("percussion", "drums", "drum", "timpani", "taiko"), ("percussion",)),
    **dict.fromkeys(
        ("synth", "synths", "synthesizer", "synthesizers", "pads", "synth pads", "synth_pads", "electronic"),
        ("synth_pads",)),
    "hybrid": (*_ORCHESTRA, "synth_pads"),
    "chamber": ("strings", "woodwinds", "piano"),
    "chamber orchestra": ("strings", "brass", "woodwinds"),
}  # fmt: skip

TEMPO_MARKINGS = {
    "largo": 50, "lento": 55, "larghetto": 62, "adagio": 70, "andante": 90, "moderato": 110, "allegretto": 116,
    "allegro": 130, "vivace": 150, "presto": 170, "prestissimo": 200,
}  # fmt: skip
TEMPO_HINTS = {"slow": 70, "slowly": 70, "mid-tempo": 100, "midtempo": 100, "fast": 140, "quick": 140, "up-tempo": 140}
_METER_WORDS = {"waltz": (3, 4), "common time": (4, 4), "cut time": (2, 2)}
_MODE_WORDS = {"major": "major", "minor": "minor", "major key": "major", "minor key": "minor"}

LEVEL_HIGH, LEVEL_LOW = 0.8, 0.3
START_QUIET, START_BIG = 0.25, 0.9
END_SOFT, END_BIG = 0.1, 1.0
BUILD_PEAK, BUILD_START_MAX = 1.0, 0.3
_LEVEL_WORDS = {
    **dict.fromkeys(("intense", "powerful", "loud", "massive"), LEVEL_HIGH),
    **dict.fromkeys(
        ("gentle", "soft", "subtle", "quiet", "delicate", "restrained", "understated", "minimal"), LEVEL_LOW
    ),
}
_QUIET = ("quiet", "quietly", "soft", "softly", "gently", "small", "low")
_BIG = ("big", "loud", "loudly", "strong", "intense", "huge")
_START_VERBS = ("start", "starts", "begin", "begins", "open", "opens")
_START_WORDS = {
    **{f"{verb} {how}": START_QUIET for verb in _START_VERBS for how in _QUIET},
    **{f"{verb} {how}": START_BIG for verb in _START_VERBS for how in _BIG},
}
_END_VERBS = ("end", "ends", "ending", "finish", "finishes", "close", "closes")
_END_WORDS = {
    **{f"{verb} {how}": END_SOFT for verb in _END_VERBS for how in _QUIET},
    **{f"{verb} {how}": END_BIG for verb in _END_VERBS for how in _BIG},
    **dict.fromkeys(
        ("fade out", "fades out", "fading out", "fade away", "fades away", "fade to silence", "fade to nothing",
         "die away", "dies away"), END_SOFT),
    **dict.fromkeys(("big finish", "big ending", "big finale", "grand finale"), END_BIG),
}  # fmt: skip
_NEGATIONS = ("no", "not", "without", "minus")
STOP_WORDS = frozenset(
    "a an the with and or to at in on of for by from into then but also please some this that it is be should "
    "cue cues music score scoring track piece feel feeling vibe style mood key long length lasting duration "
    "throughout overall very really bit little more i we want need make write give me us".split()
)


def _words(phrase: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[^\W_]+(?:'[^\W_]+)?", phrase.lower().replace("_", " ")))


def _phrase_table() -> dict[tuple[str, ...], tuple[str, Any]]:
    """Every phrase the word pass understands, as its words -> (what it says, the value)."""
    table: dict[tuple[str, ...], tuple[str, Any]] = {}
    for mood in MOODS:
        for spelling in (mood, *_MOOD_SYNONYMS.get(mood, "").split()):
            table[_words(spelling)] = ("mood", mood)
    for genre in GENRES:
        for spelling in (genre, *_GENRE_SYNONYMS.get(genre, "").split("|")):
            table[_words(spelling)] = ("genre", genre)
    for kind, entries in (
        ("ensemble", _ENSEMBLE_WORDS),
        ("tempo_marking", TEMPO_MARKINGS),
        ("tempo_hint", TEMPO_HINTS),
        ("meter", _METER_WORDS),
        ("mode", _MODE_WORDS),
        ("arc_level", _LEVEL_WORDS),
        ("arc_start", _START_WORDS),
        ("arc_end", _END_WORDS),
    ):
        table.update({_words(spelling): (kind, value) for spelling, value in entries.items()})
    return table


_PHRASES = _phrase_table()
_LONGEST_PHRASE = max(len(words) for words in _PHRASES)

# --- Patterns --------------------------------------------------------------------------------------------------------

_SEC = r"(?:seconds|second|secs|sec|s)"
_MIN = r"(?:minutes|minute|mins|min|m)"
_TC = r"\d{1,2}:\d{1,2}:\d{1,2}[:;]\d{1,2}"
_CLOCK = r"(?:\d{1,2}:)?\d{1,3}:[0-5]\d(?:\.\d+)?"
_SPAN = (
    rf"\d+(?:\.\d+)?[ \t]*{_MIN}(?:[ \t]*(?:and[ \t]+)?\d+(?:\.\d+)?(?:[ \t]*{_SEC}\b|(?![ \t]*(?:fps|bpm|frame|/))))?"
    rf"|\d+(?:\.\d+)?[ \t]*{_SEC}"
)
_TIME = rf"(?<![\d:;.])(?:{_TC}|{_CLOCK}|{_SPAN})(?![\w:;])"
_QUAL = r"(?:ndf|df|non[\s-]*drop(?:[\s-]*frames?)?|drop(?:[\s-]*frames?)?)"
_RATE = rf"\d+(?:\.\d+)?(?:\s*(?:fps|frames?\s+per\s+second))?(?:\s*{_QUAL})?(?![\w./])(?!\s*(?:bpm|beats))"
_FPS_AFTER = rf"(?:\s*(?:@|\bat\b|\bin\b)\s*(?P<fps>{_RATE}))?"
# In a list of hit times a bare comma only joins timecodes: "hit at 0:42, 1:30" keeps 1:30 as the duration.
_TIMES = rf"(?P<times>{_TIME}(?:\s*(?:,\s*and|and|&)\s*{_TIME}|\s*,\s*(?<![\d:;.]){_TC}(?![\w:;]))*)"
_HIT_WORDS = r"hits?|stings?|stingers?|accents?|impacts?|sync\s+points?"
_I = re.IGNORECASE

_HIT = re.compile(rf"\b(?:{_HIT_WORDS})\s+(?:at|on)\s+{_TIMES}{_FPS_AFTER}", _I)
_BUILD = re.compile(
    r"\b(?:(?:slow|gradual|steady|long)\s+)?(?:build(?:s|ing)?(?:\s+up)?|crescendo(?:s|ing)?|swell(?:s|ing)?"
    r"|ris(?:e|es|ing))(?:\s+(?:to|towards?|into|until))?(?:\s+(?:a|an|the))?"
    r"(?:\s+(?:(?:big|huge|final)\s+)?(?:climax|peak|high\s+point))?\b",
    _I,
)
_BUILD_TARGET = re.compile(rf"(?:(?:at|by)\s+)?(?P<times>{_TIME}){_FPS_AFTER}", _I)
_AT_TIME = re.compile(rf"(?:\bat\b|@)\s*(?P<times>{_TIME}){_FPS_AFTER}", _I)
_LONE_TIMECODE = re.compile(rf"(?<![\d:;.])(?P<times>{_TC})(?![\w:;]){_FPS_AFTER}", _I)
_FPS_SAID = re.compile(
    rf"(?<![\w.:/])(?:\d+(?:\.\d+)?\s*(?:fps|frames?\s+per\s+second)(?:\s*{_QUAL})?|\d+(?:\.\d+)?\s*{_QUAL}"
    r"|23\.976?|23\.98|29\.97|drop[\s-]*frame)(?![\w.])",
    _I,
)
_TEMPO = re.compile(
    r"\btempo\s*(?:of|at|=|:)?\s*(?P<a>\d+(?:\.\d+)?)(?:\s*(?:bpm|beats\s+per\s+minute))?(?![\w.])"
    r"|(?<![\w.])(?P<b>\d+(?:\.\d+)?)\s*(?:bpm|beats\s+per\s+minute|beats/min)\b",
    _I,
)
_METER = re.compile(r"(?<![\w/.:])(?P<n>\d{1,3})\s*/\s*(?P<d>\d{1,3})(?![\w/.])")
_ACC = r"(?P<acc>[#♯b♭]|[\s-]*(?:sharp|flat)\b)"
_KEY_MODE = re.compile(rf"(?<![\w#♯♭])(?P<letter>[a-z]){_ACC}?\s*(?P<mode>major|minor)\b", _I)
_KEY_COMPACT = re.compile(r"(?<![\w#♯♭])(?P<letter>[A-G])(?P<acc>[#♯b♭])?(?P<mode>maj|min|m)(?![\w#♯♭])")
_KEY_OF = re.compile(rf"\bkey\s*(?:of|:|=)?\s*(?P<letter>[a-z]){_ACC}?(?![\w#♯♭])", _I)
_KEY_IN = re.compile(rf"\bin\s+(?P<letter>[A-G]){_ACC}?(?![\w#♯♭])")
_KEY_ALONE = re.compile(rf"\s*(?P<letter>[a-z]){_ACC}?\s*(?P<mode>major|minor|maj|min|m)?\s*", _I)
_WORD_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "forty-five": 45, "fifty": 50, "sixty": 60, "ninety": 90,
}  # fmt: skip
_NUMBER_WORDS = "|".join(sorted(_WORD_NUMBERS, key=len, reverse=True))
_WORD_DURATION = rf"\b(?P<count>{_NUMBER_WORDS})[\s-]+(?P<unit>minutes?|seconds)(?P<half>\s+and\s+a\s+half)?\b"
_DURATION = re.compile(rf"(?<![\d:;.])(?:{_CLOCK}|{_SPAN})(?![\w:;])|{_WORD_DURATION}", _I)
_CLOCK_PARTS = re.compile(r"(?:(\d{1,2}):)?(\d{1,3}):([0-5]\d(?:\.\d+)?)")
_SPAN_PARTS = re.compile(rf"(?:(\d+(?:\.\d+)?)\s*{_MIN})?\s*(?:and\s+)?(?:(\d+(?:\.\d+)?)\s*{_SEC}?)?", _I)
_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NATURALS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


# --- Time, key and meter readers (shared by the text and the fields) -------------------------------------------------


@dataclass(frozen=True)
class _Time:
    """A time as said: an SMPTE timecode (with the frame rate said after it, if any) or plain seconds."""

    said: str
    timecode: str | None = None
    seconds: float | None = None
    fps: str | None = None


def _time_read(said: str, fps_said: str | None = None) -> _Time:
    fps = frame_rate_parse(fps_said) if fps_said else None
    said = said.strip()
    if re.fullmatch(_TC, said):
        return _Time(said, timecode=said, fps=fps)
    return _Time(said, seconds=_seconds_read(said), fps=fps)


def _seconds_read(said: str) -> float:
    """Seconds from "1:30", "0:01:30", "90 s", "2 min 30", "1m30s", "two minutes"; ValueError if none of those."""
    if clock := _CLOCK_PARTS.fullmatch(said):
        hours, minutes, seconds = clock.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    if words := re.fullmatch(_WORD_DURATION, said, _I):
        count = _WORD_NUMBERS[words["count"].lower()] + (0.5 if words["half"] else 0)
        return count * (60 if words["unit"].lower().startswith("minute") else 1)
    span = _SPAN_PARTS.fullmatch(said)
    if span is None or not re.fullmatch(rf"(?:{_SPAN})", said, _I):
        raise ValueError(said)
    return float(span[1] or 0) * 60 + float(span[2] or 0)


def _times_in(match: re.Match) -> list[_Time]:
    return [_time_read(time[0], match["fps"]) for time in re.finditer(_TIME, match["times"], _I)]


def _tonic(letter: str, accidental: str | None, said: str) -> str:
    """The canonical spelling of a tonic (see the module docstring); ``key_invalid`` for letters outside A..G."""
    letter = letter.upper()
    if letter not in _NATURALS:
        raise ComposerError("key_invalid", f"{said.strip()!r}: a key is a letter A to G, with # or b")
    accidental = (accidental or "").strip(" -").lower()
    shift = 1 if accidental in ("#", "♯", "sharp") else -1 if accidental in ("b", "♭", "flat") else 0
    return _TONICS[(_NATURALS[letter] + shift) % 12]


def _mode_of(word: str | None) -> str | None:
    if not word:
        return None
    return "minor" if word.lower() in ("minor", "min") or word == "m" else "major"


def _meter_read(numerator: str, denominator: str, said: str) -> tuple[int, int]:
    beats, unit = int(numerator), int(denominator)
    if not 1 <= beats <= 32 or unit not in (1, 2, 4, 8, 16, 32):
        raise ComposerError(
            "meter_invalid", f"{said!r}: a meter has 1 to 32 beats of a 1, 2, 4, 8, 16 or 32 note, like 6/8"
        )
    return beats, unit


# --- Reading the text ------------------------------------------------------------------------------------------------


@dataclass
class _Build:
    target: _Time | None  # None: the last hit, else the end of the cue


@dataclass
class _TextSaid:
    """Everything the text said, before conflicts are resolved (fields may override any of it)."""

    moods: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    ensemble_added: list[str] = field(default_factory=list)
    ensemble_removed: list[str] = field(default_factory=list)
    tempos: dict[str, list[float]] = field(default_factory=lambda: {"number": [], "marking": [], "hint": []})
    tonics: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    meters: list[tuple[int, int]] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    hits: list[_Time] = field(default_factory=list)
    frame_rates: list[str] = field(default_factory=list)
    level: float | None = None
    start: float | None = None
    end: float | None = None
    builds: list[_Build] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def arc_said(self) -> bool:
        return bool(self.builds) or any(value is not None for value in (self.level, self.start, self.end))


class _TextReader:
    """Takes phrases out of the text pass by pass; what a pass took is blanked so no later pass reads it again."""

    def __init__(self, text: str) -> None:
        self.rest = text
        self.said = _TextSaid()

    def take(self, pattern: re.Pattern) -> list[re.Match]:
        matches = [match for match in pattern.finditer(self.rest) if match.group(0).strip()]
        for match in matches:
            self._blank(match.start(), match.end())
        return matches

    def _blank(self, start: int, end: int) -> None:
        # NUL never survives the prompt checks, so it can mark taken text; it is neither a word nor a space, so
        # nothing can match across it.
        self.rest = self.rest[:start] + "\0" * (end - start) + self.rest[end:]

    def read(self) -> _TextSaid:
        hit_starts = self._read_hits()
        self._read_builds(hit_starts)
        for pattern in (_AT_TIME, _LONE_TIMECODE):
            self.said.hits += [time for match in self.take(pattern) for time in _times_in(match)]
        self.said.frame_rates += [frame_rate_parse(match[0]) for match in self.take(_FPS_SAID)]
        self.said.tempos["number"] += [float(match["a"] or match["b"]) for match in self.take(_TEMPO)]
        self.said.meters += [_meter_read(match["n"], match["d"], match[0]) for match in self.take(_METER)]
        self._read_keys()
        self.said.durations += [_seconds_read(match[0]) for match in self.take(_DURATION)]
        self._read_words()
        return self.said

    def _read_hits(self) -> dict[int, _Time]:
        """The hit phrases; returns the first time of each by where the phrase starts, for builds aimed at it."""
        starts = {}
        for match in self.take(_HIT):
            times = _times_in(match)
            starts[match.start()] = times[0]
            self.said.hits += times
        return starts

    def _read_builds(self, hit_starts: dict[int, _Time]) -> None:
        for match in self.take(_BUILD):
            position = len(self.rest) - len(self.rest[match.end() :].lstrip())
            target = hit_starts.get(position)
            if target is None and (aimed := _BUILD_TARGET.match(self.rest, position)):
                self._blank(aimed.start(), aimed.end())
                target = _times_in(aimed)[0]
            self.said.builds.append(_Build(target))

    def _read_keys(self) -> None:
        for pattern in (_KEY_MODE, _KEY_COMPACT, _KEY_OF, _KEY_IN):
            for match in self.take(pattern):
                self.said.tonics.append(_tonic(match["letter"], match["acc"], match[0]))
                if mode := _mode_of(match.groupdict().get("mode")):
                    self.said.modes.append(mode)

    def _read_words(self) -> None:
        for segment in re.split(r"[^\w\s'\-]+|_", self.rest.lower()):
            words = _words(segment)
            position = 0
            while position < len(words):
                position = self._read_phrase(words, position)

    def _read_phrase(self, words: tuple[str, ...], position: int) -> int:
        """Reads the longest known phrase at ``position`` (or one unknown word); returns where the next one starts."""
        negated = words[position] in _NEGATIONS
        start = position + 1 if negated else position
        kind, value, end = _phrase_at(words, start)
        if negated:
            if kind != "ensemble":
                self._ignore(words[position:end])
                return end
            self.said.ensemble_removed += value
            # "no drums or brass": the negation carries over "or"/"nor".
            while end + 1 < len(words) and words[end] in ("or", "nor"):
                more_kind, more_value, more_end = _phrase_at(words, end + 1)
                if more_kind != "ensemble":
                    break
                self.said.ensemble_removed += more_value
                end = more_end
            return end
        self._understand(kind, value, words[start:end])
        return end

    def _understand(self, kind: str | None, value: Any, words: tuple[str, ...]) -> None:
        said = self.said
        if kind is None:
            self._ignore(words)
        elif kind == "mood":
            said.moods.append(value)
        elif kind == "genre":
            said.genres.append(value)
        elif kind == "ensemble":
            said.ensemble_added += value
        elif kind in ("tempo_marking", "tempo_hint"):
            said.tempos[kind.removeprefix("tempo_")].append(float(value))
        elif kind == "meter":
            said.meters.append(value)
        elif kind == "mode":
            said.modes.append(value)
        else:
            attribute = kind.removeprefix("arc_")
            if getattr(said, attribute) is None:  # the first word about the start, end or level wins
                setattr(said, attribute, value)

    def _ignore(self, words: tuple[str, ...]) -> None:
        self.said.ignored += [word for word in words if word not in STOP_WORDS and word not in self.said.ignored]


def _phrase_at(words: tuple[str, ...], start: int) -> tuple[str | None, Any, int]:
    """The longest phrase of the vocabulary at ``start``: (kind, value, end); (None, None, start + 1) if none."""
    for length in range(min(_LONGEST_PHRASE, len(words) - start), 0, -1):
        if (found := _PHRASES.get(words[start : start + length])) is not None:
            return found[0], found[1], start + length
    return None, None, min(start + 1, len(words))


# --- Reading the fields ----------------------------------------------------------------------------------------------

# More hit points or arc points than any cue needs only costs work and bloats the signed record.
MAX_LIST_ITEMS = 64

FIELD_NAMES = (
    "moods", "genre", "ensemble", "tempo_bpm", "key", "mode", "meter", "duration_seconds", "duration", "hit_points",
    "arc",
)  # fmt: skip


def _field_error(name: str, problem: str) -> ComposerError:
    return ComposerError("field_invalid", f"{name}: {problem}")


def _field_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _field_error(name, f"must be a number, not {value!r}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        raise _field_error(name, "is far too large") from None
    if not math.isfinite(number):
        raise _field_error(name, f"must be a finite number, not {value!r}")
    return number


def _field_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _field_error(name, f"must be a string, not {type(value).__name__}")
    if not _is_unicode_text(value) or len(value) > MAX_PROMPT_CHARS:
        raise _field_error(name, "must be valid Unicode text of at most 2,000 characters")
    return value


def _field_list(name: str, value: Any, *, most: int = MAX_LIST_ITEMS) -> list:
    if not isinstance(value, list | tuple):
        raise _field_error(name, f"must be a list, not {type(value).__name__}")
    if len(value) > most:
        raise _field_error(name, f"takes at most {most} items, not {len(value)}")
    return list(value)


def _field_words(name: str, value: Any, kind: str) -> Any:
    found = _PHRASES.get(_words(_field_text(name, value)))
    if found is None or found[0] != kind:
        raise _field_error(name, f"{value!r} is not a {kind} this composer knows")
    return found[1]


def _fields_read(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The spec values the fields give, by spec field name; ``hit_points`` as times, ``arc`` as raw points."""
    unknown = sorted(str(name) for name in fields if name not in FIELD_NAMES)
    if unknown:
        raise ComposerError("field_unknown", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}")
    given: dict[str, Any] = {}
    for name in FIELD_NAMES:
        if fields.get(name) is not None:  # JSON null means "not given"
            _FIELD_READERS[name](fields[name], given)
    return given


def _read_moods(value: Any, given: dict) -> None:
    moods = [_field_words("moods", mood, "mood") for mood in _field_list("moods", value)]
    if len(moods) > MAX_MOODS:
        raise _field_error("moods", f"at most {MAX_MOODS} moods")
    given["moods"] = tuple(dict.fromkeys(moods))


def _read_genre(value: Any, given: dict) -> None:
    given["genre"] = _field_words("genre", value, "genre")


def _read_ensemble(value: Any, given: dict) -> None:
    if not _field_list("ensemble", value):
        raise ComposerError("ensemble_empty", "ensemble: name at least one instrument family")
    given["ensemble"] = ([family for item in _field_list("ensemble", value) for family in _ensemble_item(item)], [])


def _ensemble_item(item: Any) -> tuple[str, ...]:
    if item in ENSEMBLE_FAMILIES:
        return (item,)
    return _field_words("ensemble", item, "ensemble")


def _read_tempo(value: Any, given: dict) -> None:
    given["tempo_bpm"] = _field_number("tempo_bpm", value)


def _read_key(value: Any, given: dict) -> None:
    match = _KEY_ALONE.fullmatch(_field_text("key", value))
    if match is None:
        raise ComposerError("key_invalid", f"key: {value!r} is not a key like 'D minor', 'F#' or 'Bb major'")
    given["key"] = _tonic(match["letter"], match["acc"], value)
    if mode := _mode_of(match["mode"]):
        given["mode"] = mode


def _read_mode(value: Any, given: dict) -> None:
    mode = _field_text("mode", value).strip().lower()
    if mode not in MODES:
        raise _field_error("mode", f"{value!r} is not one of {', '.join(MODES)}")
    if given.get("mode", mode) != mode:
        raise ComposerError("key_conflict", f"key says {given['mode']} but mode says {mode}")
    given["mode"] = mode


def _read_meter(value: Any, given: dict) -> None:
    text = _field_text("meter", value)
    if (match := _METER.fullmatch(text.strip())) is not None:
        given["meter"] = _meter_read(match["n"], match["d"], text)
    elif (words := _PHRASES.get(_words(text))) is not None and words[0] == "meter":
        given["meter"] = words[1]
    else:
        raise ComposerError("meter_invalid", f"meter: {text!r} is not a meter like 6/8")


def _read_duration_seconds(value: Any, given: dict) -> None:
    given["duration_seconds"] = _field_number("duration_seconds", value)


def _read_duration(value: Any, given: dict) -> None:
    text = _field_text("duration", value)
    try:
        seconds = _seconds_read(text.strip())
    except ValueError:
        raise _field_error("duration", f"{text!r} is not a duration like '1:30' or '90 s'") from None
    if given.get("duration_seconds", seconds) != seconds:
        raise ComposerError("duration_conflict", f"duration {text!r} and duration_seconds {given['duration_seconds']}")
    given["duration_seconds"] = seconds


def _read_hit_points(value: Any, given: dict) -> None:
    given["hit_points"] = [_hit_field(item) for item in _field_list("hit_points", value)]


def _hit_field(item: Any) -> _Time:
    if isinstance(item, str):
        match = re.fullmatch(rf"\s*(?P<times>{_TIME}){_FPS_AFTER}\s*", item, _I)
        if match is None:
            raise _field_error("hit_points", f"{item!r} is not a time like '00:01:05:12 @ 24 fps' or '0:42'")
        return _times_in(match)[0]
    if not isinstance(item, Mapping) or not item.keys() <= {"timecode", "fps", "time_seconds"}:
        raise _field_error("hit_points", f"{item!r}: a hit is a string or {{timecode, fps}} or {{time_seconds}}")
    fps = frame_rate_parse(_field_text("hit_points fps", item["fps"])) if item.get("fps") is not None else None
    if item.get("timecode") is not None:
        return _Time(item["timecode"], timecode=_field_text("hit_points timecode", item["timecode"]), fps=fps)
    if item.get("time_seconds") is None:
        raise _field_error("hit_points", f"{item!r} has neither a timecode nor time_seconds")
    seconds = _field_number("hit_points time_seconds", item["time_seconds"])
    return _Time(str(seconds), seconds=seconds, fps=fps)


def _read_arc(value: Any, given: dict) -> None:
    points = []
    for item in _field_list("arc", value):
        if not isinstance(item, Mapping) or set(item) != {"time_seconds", "level"}:
            raise _field_error("arc", f"{item!r}: an arc point is {{time_seconds, level}}")
        time = _field_number("arc time_seconds", item["time_seconds"])
        points.append(ArcPoint(time, _field_number("arc level", item["level"])))
    given["arc"] = points


_FIELD_READERS = {
    "moods": _read_moods, "genre": _read_genre, "ensemble": _read_ensemble, "tempo_bpm": _read_tempo,
    "key": _read_key, "mode": _read_mode, "meter": _read_meter, "duration_seconds": _read_duration_seconds,
    "duration": _read_duration, "hit_points": _read_hit_points, "arc": _read_arc,
}  # fmt: skip


# --- Merging, defaults and checks ------------------------------------------------------------------------------------


def _one(values: list, code: str, what: str) -> Any:
    """The one value said (repeats are fine); ``code`` when two different ones were."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) > 1:
        raise ComposerError(code, f"the prompt names {len(distinct)} {what}: {', '.join(map(str, distinct))}")
    return distinct[0] if distinct else None


def _first_genre(said: _TextSaid) -> str | None:
    """The first genre named; "thriller underscore" or "action comedy" are common ways to say one thing, so later
    genres are reported as ignored rather than refused."""
    distinct = list(dict.fromkeys(said.genres))
    said.ignored += [genre for genre in distinct[1:] if genre not in said.ignored]
    return distinct[0] if distinct else None


def _text_values(said: _TextSaid, overridden: set[str]) -> dict[str, Any]:
    """What the text gives for each spec field the fields do not; conflicts only matter where nothing overrides."""
    values: dict[str, Any] = {}
    candidates = {
        "moods": lambda: tuple(dict.fromkeys(said.moods))[:MAX_MOODS] if said.moods else None,
        "genre": lambda: _first_genre(said),
        "ensemble": lambda: (
            (said.ensemble_added, said.ensemble_removed) if said.ensemble_added or said.ensemble_removed else None
        ),
        "tempo_bpm": lambda: _text_tempo(said),
        "key": lambda: _one(said.tonics, "key_conflict", "keys"),
        "mode": lambda: _one(said.modes, "key_conflict", "modes"),
        "meter": lambda: _one(said.meters, "meter_conflict", "meters"),
        "duration_seconds": lambda: _one(said.durations, "duration_conflict", "durations"),
        "hit_points": lambda: said.hits or None,
        "arc": lambda: said if said.arc_said() else None,
    }
    for name, value_of in candidates.items():
        if name not in overridden and (value := value_of()) is not None:
            values[name] = value
    return values


def _text_tempo(said: _TextSaid) -> float | None:
    for kind in ("number", "marking", "hint"):
        tempo = _one(said.tempos[kind], "tempo_conflict", "tempos")
        if tempo is not None:
            return tempo
    return None


def _suggested(moods: tuple[str, ...], genre: str | None, index: int) -> Any:
    """The first suggestion (mode: index 0, tempo: 1) of the moods in the order said, then of the genre."""
    suggestions: list[Any] = [MOODS[mood][index] for mood in moods]
    if genre is not None:
        suggestions.append(GENRES[genre][index])
    return next((value for value in suggestions if value is not None), None)


def _ensemble(value: tuple[list[str], list[str]] | None, genre: str | None) -> tuple[str, ...]:
    default = (genre and GENRES[genre][2]) or GenerationSpec.ensemble
    added, removed = value or ([], [])
    families = set(added or default) - set(removed)
    if not families:
        raise ComposerError("ensemble_empty", f"no instrument family is left after removing {', '.join(removed)}")
    return tuple(family for family in ENSEMBLE_FAMILIES if family in families)


def _time_at(time: _Time, frame_rates: list[str]) -> tuple[float, str]:
    """(seconds, frame rate) of a time said; a timecode without its own rate takes the one rate the prompt names."""
    named = list(dict.fromkeys(frame_rates))
    if time.timecode is None:
        assert time.seconds is not None  # a time is said as a timecode or as seconds
        return time.seconds, time.fps or (named[0] if len(named) == 1 else HIT_FPS_DEFAULT)
    if time.fps is None and len(named) != 1:
        several = f" (the prompt names {', '.join(named)})" if named else ""
        raise ComposerError(
            "frame_rate_required", f"timecode {time.said!r} needs a frame rate, e.g. '@ 24 fps'{several}"
        )
    fps = time.fps or named[0]
    return timecode_to_seconds(time.timecode, fps), fps


def _hit_point(time: _Time, frame_rates: list[str]) -> HitPoint:
    """A hit as the spec holds it: the time said, and its timecode at its frame rate."""
    seconds, fps = _time_at(time, frame_rates)
    if seconds < MIN_HIT_SPACING_SECONDS:
        raise ComposerError(
            "hit_too_early", f"hit at {time.said}: a hit needs {MIN_HIT_SPACING_SECONDS:g} s of music before it"
        )
    return HitPoint(seconds, seconds_to_timecode(seconds, fps), fps)


def _hits_checked(hits: list[HitPoint], duration: float) -> tuple[HitPoint, ...]:
    ordered = sorted(set(hits), key=lambda hit: (hit.time_seconds, hit.fps, hit.timecode))
    for hit in ordered:
        if hit.time_seconds > duration:
            raise ComposerError(
                "hit_after_end", f"hit at {hit.timecode} ({hit.time_seconds:g} s) is after the end ({duration:g} s)"
            )
    for before, after in zip(ordered, ordered[1:], strict=False):
        # A hair of tolerance: timecodes at 23.976 and 29.97 are not whole multiples of a second.
        if after.time_seconds - before.time_seconds < MIN_HIT_SPACING_SECONDS - 1e-9:
            raise ComposerError(
                "hits_too_close",
                f"hits at {before.timecode} and {after.timecode} are closer than {MIN_HIT_SPACING_SECONDS:g} s",
            )
    return tuple(ordered)


def _arc_from_text(said: _TextSaid | None, duration: float, hits: tuple[HitPoint, ...], rates: list) -> tuple:
    if said is None:
        return (ArcPoint(0.0, DEFAULT_LEVEL), ArcPoint(duration, DEFAULT_LEVEL))
    level = DEFAULT_LEVEL if said.level is None else said.level
    start = said.start if said.start is not None else min(level, BUILD_START_MAX) if said.builds else level
    end = level if said.end is None else said.end
    points = {0.0: start, duration: end}
    for build in said.builds:
        peak = _build_peak(build, said, duration, hits, rates)
        if peak <= 0 or peak > duration:
            raise ComposerError("arc_invalid", f"a build to {peak:g} s is outside the cue (0 to {duration:g} s)")
        if peak < duration or said.end is None:
            points[peak] = BUILD_PEAK
    return tuple(ArcPoint(time, points[time]) for time in sorted(points))


def _build_peak(build: _Build, said: _TextSaid, duration: float, hits: tuple, rates: list) -> float:
    if build.target is not None:
        return _time_at(build.target, rates)[0]
    if hits:
        return hits[-1].time_seconds
    # A build that must still leave room to fade peaks four fifths of the way.
    return 0.8 * duration if said.end is not None and said.end < DEFAULT_LEVEL else duration


def _arc_from_fields(points: list[ArcPoint], duration: float) -> tuple[ArcPoint, ...]:
    """Sorted, with the first level held back to 0 s and the last carried to the end when missing."""
    if not points:
        return _arc_from_text(None, duration, (), [])
    ordered = sorted(points, key=lambda point: point.time_seconds)
    for point in ordered:
        if not 0 <= point.level <= 1 or not 0 <= point.time_seconds <= duration:
            raise ComposerError("arc_invalid", f"arc point {point}: levels run 0..1, times 0..{duration:g} s")
    if len({point.time_seconds for point in ordered}) < len(ordered):
        raise ComposerError("arc_invalid", "two arc points at the same time")
    if ordered[0].time_seconds > 0:
        ordered.insert(0, ArcPoint(0.0, ordered[0].level))
    if ordered[-1].time_seconds < duration:
        ordered.append(ArcPoint(duration, ordered[-1].level))
    return tuple(ordered)


def _in_range(value: float, low: float, high: float, code: str, what: str) -> float:
    if not low <= value <= high:
        raise ComposerError(code, f"{what} {value:g} is outside {low:g}..{high:g}")
    return value


def _spec(values: dict[str, Any], rates: list[str]) -> GenerationSpec:
    moods = values.get("moods", ())
    genre = values.get("genre")
    mode = values.get("mode") or _suggested(moods, genre, 0) or "major"
    tempo = values["tempo_bpm"] if "tempo_bpm" in values else _suggested(moods, genre, 1) or DEFAULT_TEMPO_BPM
    duration = float(values.get("duration_seconds", GenerationSpec.duration_seconds))
    _in_range(float(tempo), MIN_TEMPO_BPM, MAX_TEMPO_BPM, "tempo_out_of_range", "tempo (bpm)")
    _in_range(duration, MIN_DURATION_SECONDS, MAX_DURATION_SECONDS, "duration_out_of_range", "duration (s)")
    hits = _hits_checked([_hit_point(time, rates) for time in values.get("hit_points", [])], duration)
    arc = values.get("arc")
    return GenerationSpec(
        moods=moods,
        genre=genre,
        ensemble=_ensemble(values.get("ensemble"), genre),
        tempo_bpm=float(tempo),
        key=values.get("key") or ("A" if mode == "minor" else "C"),
        mode=mode,
        meter=values.get("meter", GenerationSpec.meter),
        duration_seconds=float(duration),
        hit_points=hits,
        arc=_arc_from_fields(arc, duration) if isinstance(arc, list) else _arc_from_text(arc, duration, hits, rates),
    )


# --- The entry point -------------------------------------------------------------------------------------------------


def _text_checked(text: Any) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ComposerError("prompt_invalid", f"the prompt must be text, not {type(text).__name__}")
    if len(text) > MAX_PROMPT_CHARS:
        raise ComposerError("prompt_too_long", f"the prompt has {len(text)} characters; at most {MAX_PROMPT_CHARS}")
    # Line breaks from a text area (CR LF included) and tabs are fine; other control characters are not prose.
    if any(unicodedata.category(char) == "Cc" and char not in "\n\r\t" for char in text):
        raise ComposerError("prompt_invalid", "the prompt contains control characters")
    if not _is_unicode_text(text):
        raise ComposerError("prompt_invalid", "the prompt is not valid Unicode text (a lone surrogate)")
    return text


def _is_unicode_text(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's ``\\ud800``), which no UTF-8 storage can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_prompt(text: str | None, fields: Mapping[str, Any] | None = None) -> ParsedPrompt:
    """Read a producer's prompt and/or structured fields into a ``GenerationSpec``.

    The same input always gives the same spec. Fields win over the text field by field. Refusals are
    ``ComposerError``s with stable codes: prompt_empty, prompt_too_long, prompt_invalid, field_unknown, field_invalid,
    tempo_out_of_range, tempo_conflict, key_invalid, key_conflict, meter_invalid, meter_conflict,
    duration_out_of_range, duration_conflict, timecode_invalid, frame_rate_unsupported, frame_rate_required,
    hit_after_end, hits_too_close, hit_too_early, ensemble_empty and arc_invalid. The module docstring lists the
    defaults and how ambiguous phrases are read.
    """
    text = _text_checked(text)
    if fields is not None and not isinstance(fields, Mapping):
        raise ComposerError("field_invalid", f"fields: must be an object, not {type(fields).__name__}")
    fields = fields or {}
    if not text.strip() and all(value is None for value in fields.values()):
        raise ComposerError("prompt_empty", "say what the cue should be, in words or in fields")
    said = _TextReader(text).read()
    given = _fields_read(fields)
    values = {**_text_values(said, set(given)), **given}
    spec = _spec(values, said.frame_rates)
    defaulted = tuple(name for name in GenerationSpec.__dataclass_fields__ if name not in values)
    return ParsedPrompt(spec=spec, ignored=tuple(said.ignored), defaulted=defaulted)
