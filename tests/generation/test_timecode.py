"""SMPTE ST 12-1 timecodes: known values, drop-frame edges, refusals and the round trip at every supported rate."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generation.composer import ComposerError
from generation.composer.spec import FRAME_RATES
from generation.composer.timecode import frame_rate_parse, seconds_to_timecode, timecode_to_seconds

FRAME_SECONDS = {
    "23.976": Fraction(1001, 24000),
    "24": Fraction(1, 24),
    "25": Fraction(1, 25),
    "29.97df": Fraction(1001, 30000),
    "30": Fraction(1, 30),
}
FRAMES_PER_DAY = {"23.976": 24 * 86400, "24": 24 * 86400, "25": 25 * 86400, "29.97df": 2589408, "30": 30 * 86400}


def test_a_timecode_at_24_fps_is_whole_frames_of_a_24th():
    assert timecode_to_seconds("00:01:05:12", "24") == 65.5


def test_a_timecode_at_23_976_counts_24_frames_of_1001_24000_s():
    assert timecode_to_seconds("00:01:05:12", "23.976") == float((65 * 24 + 12) * Fraction(1001, 24000))


def test_ten_minutes_of_drop_frame_is_frame_17982():
    seconds = timecode_to_seconds("00:10:00;00", "29.97df")

    assert seconds == float(17982 * Fraction(1001, 30000))
    assert seconds == pytest.approx(599.9994)


def test_the_first_frame_of_minute_one_in_drop_frame_is_labelled_02():
    seconds = timecode_to_seconds("00:01:00;02", "29.97df")

    assert seconds == float(1800 * Fraction(1001, 30000))
    assert seconds_to_timecode(seconds, "29.97df") == "00:01:00;02"


def test_the_frame_before_minute_one_in_drop_frame_is_00_00_59_29():
    assert seconds_to_timecode(float(1799 * Fraction(1001, 30000)), "29.97df") == "00:00:59;29"


def test_minutes_divisible_by_ten_keep_frames_00_and_01_in_drop_frame():
    assert seconds_to_timecode(timecode_to_seconds("00:20:00;00", "29.97df"), "29.97df") == "00:20:00;00"
    assert timecode_to_seconds("00:20:00;01", "29.97df") == float((2 * 17982 + 1) * Fraction(1001, 30000))


def test_drop_frame_also_accepts_a_colon_and_writes_a_semicolon():
    seconds = timecode_to_seconds("00:00:10:05", "29.97df")

    assert seconds_to_timecode(seconds, "29.97df") == "00:00:10;05"


def test_seconds_go_to_the_nearest_frame():
    assert seconds_to_timecode(65.51, "24") == "00:01:05:12"
    assert seconds_to_timecode(65.53, "24") == "00:01:05:13"
    assert seconds_to_timecode(0.0, "25") == "00:00:00:00"


@pytest.mark.parametrize(
    ("timecode", "fps", "problem"),
    [
        ("00:01:00;00", "29.97df", "drop-frame skips"),
        ("00:01:00;01", "29.97df", "drop-frame skips"),
        ("00:00:00:24", "24", "frames run from 00 to 23"),
        ("00:00:00:25", "25", "frames run from 00 to 24"),
        ("00:00:60:00", "24", "seconds"),
        ("00:60:00:00", "24", "minutes"),
        ("24:00:00:00", "24", "hours"),
        ("00:01:05;12", "24", "drop-frame"),
        ("0:01:05:12", "24", "HH:MM:SS:FF"),
        ("00:01:05", "24", "HH:MM:SS:FF"),
        ("00-01-05-12", "24", "HH:MM:SS:FF"),
        ("", "24", "HH:MM:SS:FF"),
    ],
)
def test_timecodes_out_of_range_or_malformed_are_refused(timecode, fps, problem):
    with pytest.raises(ComposerError) as refused:
        timecode_to_seconds(timecode, fps)

    assert refused.value.code == "timecode_invalid"
    assert problem in refused.value.detail


@pytest.mark.parametrize("seconds", [-0.5, float("nan"), float("inf"), 86400.0])
def test_times_outside_a_day_of_picture_have_no_timecode(seconds):
    with pytest.raises(ComposerError) as refused:
        seconds_to_timecode(seconds, "24")

    assert refused.value.code == "timecode_invalid"


def test_an_unknown_rate_is_refused_by_the_conversions():
    with pytest.raises(ComposerError) as refused:
        timecode_to_seconds("00:00:01:00", "60")

    assert refused.value.code == "frame_rate_unsupported"


@given(data=st.data())
def test_every_frame_round_trips_at_every_rate(data):
    fps = data.draw(st.sampled_from(FRAME_RATES))
    frame = data.draw(st.integers(min_value=0, max_value=FRAMES_PER_DAY[fps] - 1))

    timecode = seconds_to_timecode(float(frame * FRAME_SECONDS[fps]), fps)
    seconds = timecode_to_seconds(timecode, fps)

    assert seconds == float(frame * FRAME_SECONDS[fps])
    assert seconds_to_timecode(seconds, fps) == timecode


@given(
    hours=st.integers(0, 23),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    frames=st.integers(0, 29),
)
def test_every_valid_drop_frame_label_round_trips(hours, minutes, seconds, frames):
    timecode = f"{hours:02d}:{minutes:02d}:{seconds:02d};{frames:02d}"
    dropped = seconds == 0 and frames < 2 and minutes % 10 != 0

    if dropped:
        with pytest.raises(ComposerError):
            timecode_to_seconds(timecode, "29.97df")
    else:
        assert seconds_to_timecode(timecode_to_seconds(timecode, "29.97df"), "29.97df") == timecode


@pytest.mark.parametrize(
    ("spelling", "rate"),
    [
        ("24", "24"),
        ("24fps", "24"),
        ("24 FPS", "24"),
        ("23.976", "23.976"),
        ("23.98", "23.976"),
        ("25", "25"),
        ("25.0 fps", "25"),
        ("29.97", "29.97df"),
        ("29.97df", "29.97df"),
        ("29.97 DF", "29.97df"),
        ("29.97 drop-frame", "29.97df"),
        ("drop frame", "29.97df"),
        ("30", "30"),
        ("30 ndf", "30"),
        ("30 non-drop", "30"),
    ],
)
def test_frame_rate_spellings(spelling, rate):
    assert frame_rate_parse(spelling) == rate


@pytest.mark.parametrize(
    "spelling", ["29.97 ndf", "29.97 non-drop", "60", "48", "50 fps", "30 df", "ndf", "fast", "", None]
)
def test_unsupported_frame_rates_are_refused_with_the_list_of_supported_ones(spelling):
    with pytest.raises(ComposerError) as refused:
        frame_rate_parse(spelling)

    assert refused.value.code == "frame_rate_unsupported"
    assert "23.976, 24, 25, 29.97df, 30" in refused.value.detail
