"""SMPTE timecodes as film editors write them, following SMPTE ST 12-1 (Time and Control Code).

A timecode ``HH:MM:SS:FF`` counts frames at a nominal whole-number rate (24, 25 or 30); the real duration of a frame
may differ from 1/nominal. At 23.976 the count runs at 24 but each frame lasts 1001/24000 s, so timecode drifts behind
the wall clock. 29.97 drop-frame (ST 12-1, 4.2.2) counts at 30 with frames lasting 1001/30000 s and skips the frame
numbers 00 and 01 at the start of every minute except minutes divisible by ten, which keeps the count within a few
frames of real time; drop-frame timecodes are written with ``;`` before the frames. A timecode here is one instant of
picture, so ``timecode_to_seconds`` returns the start of that frame in real seconds from 00:00:00:00.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from generation.composer import ComposerError
from generation.composer.spec import FRAME_RATES


@dataclass(frozen=True)
class _Rate:
    nominal: int  # frames counted per timecode second
    frame_seconds: Fraction  # real duration of one frame
    drop_frame: bool


_RATES = {
    "23.976": _Rate(24, Fraction(1001, 24000), False),
    "24": _Rate(24, Fraction(1, 24), False),
    "25": _Rate(25, Fraction(1, 25), False),
    "29.97df": _Rate(30, Fraction(1001, 30000), True),
    "30": _Rate(30, Fraction(1, 30), False),
}
# Drop-frame arithmetic (ST 12-1): two numbers dropped in nine minutes of every ten.
_DROPPED_PER_MINUTE = 2
_DF_FRAMES_PER_MINUTE = 30 * 60 - _DROPPED_PER_MINUTE  # 1798
_DF_FRAMES_PER_TEN_MINUTES = 30 * 600 - 9 * _DROPPED_PER_MINUTE  # 17982
# ST 12-1 hours run 00..23; a cue longer than a day of picture is not a cue.
_HOURS_PER_DAY = 24

_TIMECODE = re.compile(r"(\d{2}):(\d{2}):(\d{2})([:;])(\d{2})")


def _rate_of(fps: str) -> _Rate:
    if fps not in _RATES:
        raise ComposerError("frame_rate_unsupported", f"{fps!r} is not one of {', '.join(FRAME_RATES)}")
    return _RATES[fps]


def timecode_to_seconds(timecode: str, fps: str) -> float:
    """Real seconds from 00:00:00:00 to the start of the frame ``timecode`` names at the frame rate ``fps``.

    ``fps`` is one of ``FRAME_RATES``. ``HH:MM:SS:FF`` and, for 29.97 drop-frame only, ``HH:MM:SS;FF`` are accepted
    (SMPTE ST 12-1). Refuses with ``timecode_invalid`` a malformed timecode, a field out of range, a semicolon at a
    non-drop rate and, at 29.97df, a frame number that drop-frame skips (e.g. ``00:01:00;00``).
    """
    rate = _rate_of(fps)
    hours, minutes, seconds, separator, frames = _timecode_fields(timecode)
    if separator == ";" and not rate.drop_frame:
        raise ComposerError("timecode_invalid", f"{timecode!r}: a ';' marks drop-frame, which {fps} fps is not")
    _check_ranges(timecode, fps, rate, hours, minutes, seconds, frames)
    frame_count = ((hours * 60 + minutes) * 60 + seconds) * rate.nominal + frames
    if rate.drop_frame:
        total_minutes = hours * 60 + minutes
        frame_count -= _DROPPED_PER_MINUTE * (total_minutes - total_minutes // 10)
    return float(frame_count * rate.frame_seconds)


def _timecode_fields(timecode: str) -> tuple[int, int, int, str, int]:
    if not isinstance(timecode, str):
        raise ComposerError("timecode_invalid", f"a timecode is text like 00:01:05:12, not {type(timecode).__name__}")
    match = _TIMECODE.fullmatch(timecode.strip())
    if match is None:
        raise ComposerError("timecode_invalid", f"{timecode!r} is not a timecode of the form HH:MM:SS:FF")
    hours, minutes, seconds, separator, frames = match.groups()
    return int(hours), int(minutes), int(seconds), separator, int(frames)


def _check_ranges(timecode: str, fps: str, rate: _Rate, hours: int, minutes: int, seconds: int, frames: int) -> None:
    if hours >= _HOURS_PER_DAY:
        raise ComposerError("timecode_invalid", f"{timecode!r}: hours run from 00 to 23")
    if minutes >= 60:
        raise ComposerError("timecode_invalid", f"{timecode!r}: minutes run from 00 to 59")
    if seconds >= 60:
        raise ComposerError("timecode_invalid", f"{timecode!r}: seconds run from 00 to 59")
    if frames >= rate.nominal:
        raise ComposerError("timecode_invalid", f"{timecode!r}: frames run from 00 to {rate.nominal - 1:02d} at {fps}")
    if rate.drop_frame and seconds == 0 and frames < _DROPPED_PER_MINUTE and minutes % 10 != 0:
        raise ComposerError(
            "timecode_invalid",
            f"{timecode!r}: drop-frame skips frames 00 and 01 at the start of minutes not divisible by ten",
        )


def seconds_to_timecode(seconds: float, fps: str) -> str:
    """The timecode of the frame nearest to ``seconds`` (real time from 00:00:00:00) at the frame rate ``fps``.

    The inverse of ``timecode_to_seconds`` (SMPTE ST 12-1): 29.97 drop-frame timecodes are written with ``;`` before
    the frames, the others with ``:``. Refuses with ``timecode_invalid`` a negative time or one past 24 hours.
    """
    rate = _rate_of(fps)
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ComposerError("timecode_invalid", f"{seconds!r} s is not a time from the start of picture")
    # Exact arithmetic, then round half up, so a time computed from a timecode maps back to the same frame.
    frame_count = math.floor(Fraction(seconds) / rate.frame_seconds + Fraction(1, 2))
    if rate.drop_frame:
        frame_count = _drop_frame_label(frame_count)
    frames = frame_count % rate.nominal
    total_seconds = frame_count // rate.nominal
    hours, minutes, whole_seconds = total_seconds // 3600, total_seconds // 60 % 60, total_seconds % 60
    if hours >= _HOURS_PER_DAY:
        raise ComposerError("timecode_invalid", f"{seconds!r} s is past 23:59:59 of timecode")
    separator = ";" if rate.drop_frame else ":"
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d}{separator}{frames:02d}"


def _drop_frame_label(frame_count: int) -> int:
    """The 30-per-second count a drop-frame timecode displays for a real frame number (the skipped labels added)."""
    tens, within_ten = divmod(frame_count, _DF_FRAMES_PER_TEN_MINUTES)
    skipped = 9 * _DROPPED_PER_MINUTE * tens
    if within_ten >= _DROPPED_PER_MINUTE:
        skipped += _DROPPED_PER_MINUTE * ((within_ten - _DROPPED_PER_MINUTE) // _DF_FRAMES_PER_MINUTE)
    return frame_count + skipped


_RATE_SPELLING = re.compile(
    r"(?:(?P<number>\d+(?:\.\d+)?)\s*(?:fps|frames?\s*(?:per|/)\s*s(?:ec(?:ond)?)?)?)?\s*"
    r"(?:(?P<non_drop>ndf|non[\s-]*drop(?:[\s-]*frames?)?)|(?P<drop>df|drop(?:[\s-]*frames?)?))?"
)
_RATE_NUMBERS = {"23.976": "23.976", "23.98": "23.976", "23.97": "23.976", "24": "24", "25": "25", "30": "30"}


def frame_rate_parse(text: str) -> str:
    """The frame rate (one of ``FRAME_RATES``) a user's spelling names: "24fps", "23.98", "29.97 DF", "30 ndf"...

    Bare "29.97" and "drop frame" mean 29.97 drop-frame: it is the broadcast convention and the only 29.97 count
    supported. 29.97 non-drop, 30 drop-frame and rates such as 48, 50 or 60 are refused with ``frame_rate_unsupported``.
    """
    if not isinstance(text, str):
        raise ComposerError("frame_rate_unsupported", f"a frame rate is text like '24 fps'; {_supported()}")
    match = _RATE_SPELLING.fullmatch(" ".join(text.lower().split()))
    if match is None or not (match["number"] or match["drop"]):
        raise ComposerError("frame_rate_unsupported", f"{text!r} is not a frame rate; {_supported()}")
    number = _plain_number(match["number"]) if match["number"] else None
    if number in (None, "29.97"):
        if match["non_drop"]:
            raise ComposerError(
                "frame_rate_unsupported", f"{text!r}: 29.97 is supported as drop-frame only; {_supported()}"
            )
        return "29.97df"
    if number not in _RATE_NUMBERS:
        raise ComposerError("frame_rate_unsupported", f"{text!r} is not a supported frame rate; {_supported()}")
    if match["drop"]:
        raise ComposerError("frame_rate_unsupported", f"{text!r}: drop-frame exists only at 29.97; {_supported()}")
    return _RATE_NUMBERS[number]


def _plain_number(number: str) -> str:
    """'24.00' -> '24', '23.9760' -> '23.976': one spelling per number for the table lookup."""
    return number.rstrip("0").rstrip(".") if "." in number else number.lstrip("0") or "0"


def _supported() -> str:
    return "supported rates: " + ", ".join(FRAME_RATES)
