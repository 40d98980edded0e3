"""The prompt parser: the issue's example, each thing a prompt can say, fields over text, and every refusal."""

import pytest

from generation.composer import ComposerError
from generation.composer.prompts import parse_prompt
from generation.composer.spec import MAX_PROMPT_CHARS, ArcPoint, GenerationSpec, HitPoint

EXAMPLE = "tense orchestral underscore, 120 bpm, D minor, 6/8, 1:30, build to a hit at 00:01:05:12 @ 24 fps, end soft"


def refusal(text, fields=None) -> ComposerError:
    with pytest.raises(ComposerError) as refused:
        parse_prompt(text, fields)
    return refused.value


def test_the_example_prompt_reads_in_full():
    parsed = parse_prompt(EXAMPLE)

    spec = parsed.spec
    assert spec.moods == ("tense",)
    assert spec.genre == "underscore"
    assert spec.ensemble == ("strings", "brass", "woodwinds", "percussion")
    assert spec.tempo_bpm == 120.0
    assert (spec.key, spec.mode) == ("D", "minor")
    assert spec.meter == (6, 8)
    assert spec.duration_seconds == 90.0
    assert spec.hit_points == (HitPoint(65.5, "00:01:05:12", "24"),)
    assert spec.arc[0].time_seconds == 0.0
    assert spec.arc[0].level < 1.0
    assert ArcPoint(65.5, 1.0) in spec.arc
    assert spec.arc[-1].time_seconds == 90.0
    assert spec.arc[-1].level <= 0.2
    assert parsed.ignored == ()
    assert parsed.defaulted == ()


def test_the_same_prompt_always_gives_the_same_spec():
    assert parse_prompt(EXAMPLE) == parse_prompt(EXAMPLE)
    assert parse_prompt(EXAMPLE).spec.as_dict() == parse_prompt(EXAMPLE).spec.as_dict()


def test_a_spec_echoed_back_as_fields_gives_the_same_spec():
    spec = parse_prompt(EXAMPLE).spec

    assert parse_prompt(None, spec.as_dict()).spec == spec


def test_words_not_understood_are_reported_once_in_order_without_stop_words():
    parsed = parse_prompt("a wibbly calm cue with the wobbly wibbly feel of rain")

    assert parsed.spec.moods == ("calm",)
    assert parsed.ignored == ("wibbly", "wobbly", "rain")


def test_unsaid_fields_are_listed_as_defaulted_with_the_defaults_filled_in():
    parsed = parse_prompt("wibble")

    assert parsed.defaulted == tuple(GenerationSpec.__dataclass_fields__)
    spec = parsed.spec
    assert (spec.tempo_bpm, spec.key, spec.mode, spec.meter, spec.duration_seconds) == (100.0, "C", "major", (4, 4), 60)
    assert spec.ensemble == ("strings", "brass", "woodwinds", "piano", "percussion")
    assert spec.arc == (ArcPoint(0.0, 0.5), ArcPoint(60.0, 0.5))


def test_moods_are_normalised_kept_in_order_deduplicated_and_capped_at_eight():
    parsed = parse_prompt("suspenseful, ominous, melancholic tense heroic eerie tender playful epic uplifting wistful")

    assert parsed.spec.moods == ("tense", "dark", "sad", "triumphant", "mysterious", "romantic", "playful", "epic")


def test_the_mood_suggests_mode_key_and_tempo_when_none_is_said():
    spec = parse_prompt("dark").spec

    assert (spec.key, spec.mode, spec.tempo_bpm) == ("A", "minor", 80.0)
    assert parse_prompt("calm").spec.tempo_bpm == 72.0


def test_the_genre_suggests_an_ensemble():
    assert parse_prompt("ambient").spec.ensemble == ("strings", "piano", "synth_pads")
    assert parse_prompt("sci-fi").spec.genre == "sci-fi"


@pytest.mark.parametrize(
    ("text", "ensemble"),
    [
        ("full orchestra", ("strings", "brass", "woodwinds", "percussion")),
        ("string quartet", ("strings",)),
        ("horns and flute", ("brass", "woodwinds")),
        ("solo piano", ("piano",)),
        ("drums, synths", ("percussion", "synth_pads")),
        ("hybrid", ("strings", "brass", "woodwinds", "percussion", "synth_pads")),
        ("chamber", ("strings", "woodwinds", "piano")),
        ("orchestral without drums", ("strings", "brass", "woodwinds")),
        ("no percussion", ("strings", "brass", "woodwinds", "piano")),
        ("hybrid, no drums or pads", ("strings", "brass", "woodwinds")),
    ],
)
def test_ensemble_words(text, ensemble):
    assert parse_prompt(text).spec.ensemble == ensemble


@pytest.mark.parametrize(
    ("text", "tempo"),
    [("120bpm", 120), ("tempo 96", 96), ("at 84 bpm", 84), ("adagio", 70), ("presto", 170), ("slow", 70)],
)
def test_tempo_phrases(text, tempo):
    assert parse_prompt(text).spec.tempo_bpm == tempo


def test_a_number_beats_a_tempo_marking_without_conflict():
    assert parse_prompt("allegro, 120 bpm").spec.tempo_bpm == 120.0


@pytest.mark.parametrize(
    ("text", "key", "mode"),
    [
        ("D minor", "D", "minor"),
        ("Dm", "D", "minor"),
        ("F# major", "F#", "major"),
        ("Bb minor", "Bb", "minor"),
        ("in E flat major", "Eb", "major"),
        ("Db major", "C#", "major"),
        ("in G", "G", "major"),
        ("key of A", "A", "major"),
        ("minor", "A", "minor"),
        ("sad, major", "C", "major"),
    ],
)
def test_keys_and_modes(text, key, mode):
    spec = parse_prompt(text).spec

    assert (spec.key, spec.mode) == (key, mode)


@pytest.mark.parametrize(("text", "meter"), [("in 7/8", (7, 8)), ("3/4", (3, 4)), ("waltz", (3, 4))])
def test_meters(text, meter):
    assert parse_prompt(text).spec.meter == meter


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1:30", 90),
        ("90 s", 90),
        ("90 seconds long", 90),
        ("2 minutes", 120),
        ("2 min 30", 150),
        ("1m30s", 90),
        ("two minutes", 120),
        ("a minute and a half", 90),
    ],
)
def test_durations(text, seconds):
    assert parse_prompt(text).spec.duration_seconds == seconds


def test_a_time_after_hit_at_is_a_hit_rendered_at_24_fps_and_a_bare_time_is_the_duration():
    spec = parse_prompt("1:30, hit at 0:42").spec

    assert spec.duration_seconds == 90.0
    assert spec.hit_points == (HitPoint(42.0, "00:00:42:00", "24"),)


def test_hits_share_the_frame_rate_named_after_them():
    spec = parse_prompt("2:00, hits at 00:00:30:00 and 00:01:00:00 @ 25fps").spec

    assert spec.hit_points == (HitPoint(30.0, "00:00:30:00", "25"), HitPoint(60.0, "00:01:00:00", "25"))


def test_a_timecode_takes_the_one_frame_rate_said_anywhere():
    spec = parse_prompt("sting at 00:00:40;00, 1:30, shot at 29.97 DF").spec

    assert spec.hit_points == (HitPoint(40.04, "00:00:40;00", "29.97df"),)


def test_hits_are_sorted_and_identical_ones_merged():
    spec = parse_prompt("1:30, accent at 00:01:00:00 @ 24 fps, hit at 0:30, hit at 00:01:00:00 @ 24 fps").spec

    assert [hit.time_seconds for hit in spec.hit_points] == [30.0, 60.0]


def test_a_hit_exactly_at_the_end_is_allowed():
    assert parse_prompt("1:30, hit at 1:30").spec.hit_points[0].time_seconds == 90.0


def test_arc_start_quiet_and_big_finish():
    spec = parse_prompt("start quiet, big finish, 1:00").spec

    assert spec.arc == (ArcPoint(0.0, 0.25), ArcPoint(60.0, 1.0))


def test_arc_overall_levels():
    assert parse_prompt("intense").spec.arc == (ArcPoint(0.0, 0.8), ArcPoint(60.0, 0.8))
    assert parse_prompt("gentle, fade out").spec.arc == (ArcPoint(0.0, 0.3), ArcPoint(60.0, 0.1))


def test_a_build_to_a_time_peaks_there():
    spec = parse_prompt("crescendo to 0:50, 1:00").spec

    assert ArcPoint(50.0, 1.0) in spec.arc
    assert spec.hit_points == ()


def test_a_build_without_a_target_peaks_at_the_end():
    assert parse_prompt("slow build").spec.arc[-1] == ArcPoint(60.0, 1.0)


# --- Fields -----------------------------------------------------------------------------------------------------------


def test_fields_alone_make_a_spec():
    parsed = parse_prompt(
        None,
        {
            "moods": ["Suspenseful"],
            "genre": "thriller",
            "ensemble": ["strings", "synth"],
            "tempo_bpm": 96,
            "key": "C# minor",
            "meter": "5/4",
            "duration": "2:00",
            "hit_points": ["00:01:05:12 @ 24 fps", {"timecode": "00:00:30:00", "fps": "25"}, {"time_seconds": 90}],
            "arc": [{"time_seconds": 30, "level": 0.9}],
        },
    )

    spec = parsed.spec
    assert (spec.moods, spec.genre, spec.ensemble) == (("tense",), "thriller", ("strings", "synth_pads"))
    assert (spec.tempo_bpm, spec.key, spec.mode, spec.meter, spec.duration_seconds) == (96, "C#", "minor", (5, 4), 120)
    assert [hit.time_seconds for hit in spec.hit_points] == [30.0, 65.5, 90.0]
    assert spec.arc == (ArcPoint(0.0, 0.9), ArcPoint(30.0, 0.9), ArcPoint(120.0, 0.9))
    assert parsed.defaulted == ()


def test_fields_win_over_the_text_without_a_conflict():
    spec = parse_prompt("120 bpm, 130 bpm, D minor, 6/8, 1:30", {"tempo_bpm": 90, "key": "E", "meter": "4/4"}).spec

    assert (spec.tempo_bpm, spec.key, spec.mode, spec.meter, spec.duration_seconds) == (90, "E", "minor", (4, 4), 90)


def test_range_checks_apply_to_the_merged_result():
    assert parse_prompt("500 bpm", {"tempo_bpm": 140}).spec.tempo_bpm == 140
    assert refusal("hit at 1:20", {"duration_seconds": 60}).code == "hit_after_end"


def test_null_fields_are_not_given():
    assert parse_prompt("calm", {"genre": None}).spec.genre is None
    assert refusal("", {"genre": None}).code == "prompt_empty"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"tempo_bpm": "fast"}, "tempo_bpm"),
        ({"tempo_bpm": True}, "tempo_bpm"),
        ({"moods": "tense"}, "moods"),
        ({"moods": ["glum-ish"]}, "moods"),
        ({"genre": 3}, "genre"),
        ({"ensemble": ["kazoo"]}, "ensemble"),
        ({"mode": "dorian"}, "mode"),
        ({"duration": "soon"}, "duration"),
        ({"duration_seconds": "90"}, "duration_seconds"),
        ({"hit_points": [7]}, "hit_points"),
        ({"hit_points": ["later"]}, "hit_points"),
        ({"arc": [{"time_seconds": 1}]}, "arc"),
    ],
)
def test_fields_of_the_wrong_type_are_refused_by_name(fields, named):
    refused = refusal(None, fields)

    assert refused.code == "field_invalid"
    assert named in refused.detail


def test_unknown_fields_are_refused_by_name():
    refused = refusal("calm", {"tempo": 120})

    assert refused.code == "field_unknown"
    assert "tempo" in refused.detail


# --- Refusals ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields", "code"),
    [
        (None, None, "prompt_empty"),
        ("  \n", {}, "prompt_empty"),
        ("x" * (MAX_PROMPT_CHARS + 1), None, "prompt_too_long"),
        (42, None, "prompt_invalid"),
        ("calm\x00", None, "prompt_invalid"),
        ("calm\x1b[31m", None, "prompt_invalid"),
        ("20 bpm", None, "tempo_out_of_range"),
        ("301 bpm", None, "tempo_out_of_range"),
        (None, {"tempo_bpm": 29}, "tempo_out_of_range"),
        ("120 bpm, 90 bpm", None, "tempo_conflict"),
        ("adagio presto", None, "tempo_conflict"),
        ("H minor", None, "key_invalid"),
        (None, {"key": "H"}, "key_invalid"),
        ("D minor, E major", None, "key_conflict"),
        ("D minor, major", None, "key_conflict"),
        (None, {"key": "D minor", "mode": "major"}, "key_conflict"),
        ("7/5", None, "meter_invalid"),
        ("33/4", None, "meter_invalid"),
        (None, {"meter": "6-8"}, "meter_invalid"),
        ("6/8, 3/4", None, "meter_conflict"),
        ("waltz in 4/4", None, "meter_conflict"),
        ("4 s", None, "duration_out_of_range"),
        ("21 minutes", None, "duration_out_of_range"),
        ("1:30, 2 minutes", None, "duration_conflict"),
        (None, {"duration": "1:30", "duration_seconds": 80}, "duration_conflict"),
        ("1:30, hit at 00:01:00:24 @ 24 fps", None, "timecode_invalid"),
        ("1:30, hit at 00:01:00;00 @ 29.97 df", None, "timecode_invalid"),
        ("1:30, hit at 00:00:30;00 @ 25 fps", None, "timecode_invalid"),
        ("1:30, hit at 00:00:30:00 @ 60 fps", None, "frame_rate_unsupported"),
        ("29.97 non-drop", None, "frame_rate_unsupported"),
        ("1:30, hit at 00:00:30:00", None, "frame_rate_required"),
        ("1:30, hit at 00:00:30:00, 24 fps and 25 fps", None, "frame_rate_required"),
        (None, {"hit_points": [{"timecode": "00:00:30:00"}]}, "frame_rate_required"),
        ("1:30, hit at 00:01:30:01 @ 24 fps", None, "hit_after_end"),
        ("hit at 1:05", None, "hit_after_end"),
        ("hits at 0:30 and 0:31", None, "hits_too_close"),
        ("hit at 0:01", None, "hit_too_early"),
        (None, {"hit_points": [{"time_seconds": 0}]}, "hit_too_early"),
        ("solo piano, no piano", None, "ensemble_empty"),
        (None, {"ensemble": []}, "ensemble_empty"),
        ("build to 2:00, 1:30", None, "arc_invalid"),
        (None, {"arc": [{"time_seconds": 10, "level": 1.5}]}, "arc_invalid"),
        ("calm", {"tempo": 1}, "field_unknown"),
        ("calm", ["tempo_bpm"], "field_invalid"),
    ],
)
def test_refusals(text, fields, code):
    refused = refusal(text, fields)

    assert refused.code == code
    assert refused.detail


def test_hits_two_seconds_apart_are_fine_even_at_23_976():
    spec = parse_prompt("1:00, hits at 00:00:30:00 and 00:00:32:00 @ 23.976 fps").spec

    assert len(spec.hit_points) == 2


def test_a_second_genre_is_reported_as_ignored_not_refused():
    parsed = parse_prompt("tense thriller underscore, 1:00")
    assert parsed.spec.genre == "thriller"
    assert "underscore" in parsed.ignored
