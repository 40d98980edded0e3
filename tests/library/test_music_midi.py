"""Reading and analysing MIDI: every refusal has its own code, and the analysis describes the music."""

import io

import mido
import pytest

from library.music import MusicError
from library.music.midi import midi_analyse, midi_read
from tests.factories import midi_from_tracks, midi_sketch, notes

LIMIT = 1200


def read(data: bytes, limit: float = LIMIT):
    return midi_read(data, max_duration_seconds=limit)


def refusal(data: bytes, limit: float = LIMIT) -> MusicError:
    with pytest.raises(MusicError) as caught:
        read(data, limit)
    return caught.value


def test_a_file_without_an_mthd_header_is_not_midi():
    assert refusal(b"RIFF....WAVEfmt definitely audio").code == "midi_invalid"


def test_a_midi_file_cut_short_is_truncated():
    data = midi_sketch(bars=4)
    assert refusal(data[: len(data) - 7]).code == "midi_truncated"
    assert refusal(data[:20]).code == "midi_truncated"


def test_a_midi_file_without_notes_is_empty():
    data = midi_from_tracks([mido.MetaMessage("set_tempo", tempo=500_000), mido.MetaMessage("end_of_track", time=960)])
    error = refusal(data)
    assert error.code == "midi_empty"


def test_zero_ticks_per_quarter_note_is_a_timing_error():
    data = bytearray(midi_from_tracks(notes([60, 62])))
    data[12:14] = b"\x00\x00"
    assert refusal(bytes(data)).code == "midi_timing_invalid"


def test_smpte_time_division_is_refused_with_a_reason():
    data = bytearray(midi_from_tracks(notes([60, 62])))
    data[12:14] = b"\xe7\x28"  # -25 frames per second, 40 ticks per frame
    error = refusal(bytes(data))
    assert error.code == "midi_timing_invalid"
    assert "SMPTE" in error.detail


def test_an_absurd_tick_value_is_refused_before_anything_is_allocated():
    track = notes([60]) + [
        mido.Message("note_on", note=62, velocity=90, time=0x0FFFFFFF),
        mido.Message("note_off", note=62, velocity=0, time=10),
    ]
    error = refusal(midi_from_tracks(track))
    assert error.code == "midi_timing_invalid"
    assert "tick" in error.detail


def test_a_tempo_of_zero_is_refused():
    data = midi_from_tracks([mido.MetaMessage("set_tempo", tempo=0), *notes([60, 62])])
    assert refusal(data).code == "midi_timing_invalid"


def test_a_cue_longer_than_the_limit_is_refused_with_both_lengths():
    data = midi_sketch(tempo_bpm=60, bars=40)  # 160 s
    error = refusal(data, limit=120)
    assert error.code == "duration_too_long"
    assert "2:40" in error.detail and "2:00" in error.detail
    assert read(data, limit=200)  # the same file under a larger limit is fine


def test_analysis_reads_declared_tempo_meter_and_key():
    score = read(midi_sketch(tonic="A", mode="minor", tempo_bpm=90, bars=8, beats_per_bar=3))
    analysis = midi_analyse(score)
    assert analysis.tempo_bpm == 90.0
    assert analysis.tempo_map == [{"time_seconds": 0.0, "bpm": 90.0}]
    assert analysis.time_signatures == ["3/4"]
    assert (analysis.key, analysis.mode, analysis.key_source) == ("A minor", "minor", "declared")
    assert analysis.duration_seconds == pytest.approx(8 * 3 * 60 / 90, abs=0.01)


def test_key_is_estimated_from_pitch_classes_when_undeclared():
    # An E major scale and tonic triad, held longest on E, B and G#.
    e_major = [64, 66, 68, 69, 71, 73, 75, 76, 64, 68, 71, 76, 64, 71]
    analysis = midi_analyse(read(midi_from_tracks(notes(e_major, program=0))))
    assert (analysis.key, analysis.mode, analysis.key_source) == ("E major", "major", "estimated")
    assert 0 < analysis.key_confidence <= 1


def test_tempo_changes_make_a_map_and_the_longest_tempo_is_the_main_one():
    track = [
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100)),
        *notes([60] * 4),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(140)),
        *notes([62] * 16),
    ]
    analysis = midi_analyse(read(midi_from_tracks(track)))
    assert [change["bpm"] for change in analysis.tempo_map] == [100.0, 140.0]
    assert analysis.tempo_map[1]["time_seconds"] == pytest.approx(2.4)
    assert analysis.tempo_bpm == 140.0  # 16 beats at 140 outlast 4 beats at 100


def test_instruments_are_named_by_general_midi_program_and_family():
    analysis = midi_analyse(read(midi_sketch(melody_program=73, harmony_program=48, bass_program=32, drums=True)))
    found = {(i.program, i.name, i.family, i.is_drum) for i in analysis.instruments}
    assert found == {
        (73, "Flute", "pipe", False),
        (48, "String Ensemble 1", "ensemble", False),
        (32, "Acoustic Bass", "bass", False),
        (0, "Drum kit", "drums", True),
    }
    assert analysis.note_count == sum(i.note_count for i in analysis.instruments)


def test_pitch_range_ignores_drums_and_uses_scientific_names():
    track = notes([48, 72], program=0) + notes([36, 81], channel=9)
    analysis = midi_analyse(read(midi_from_tracks(track)))
    assert analysis.pitch_range == {"lowest": 48, "highest": 72, "lowest_name": "C3", "highest_name": "C5"}


def test_energy_is_onsets_times_velocity_per_second():
    # 120 bpm: quarter notes every 0.5 s, so two onsets of velocity 90 in each second.
    analysis = midi_analyse(read(midi_from_tracks(notes([60] * 8))))
    assert len(analysis.energy) == 4
    assert analysis.energy[:3] == [pytest.approx(2 * 90 / 127, abs=1e-3)] * 3


def test_analysis_is_deterministic():
    data = midi_sketch(seed=7, drums=True)
    assert midi_analyse(read(data)) == midi_analyse(read(data))


def test_a_tempo_event_outside_the_first_track_cannot_hide_the_real_length():
    """pretty_midi reads tempo from track 0 only, so a file whose other tracks speed up the tempo would measure
    short by the raw events and render for days. The length pretty_midi will render is what must fit."""
    conductor = [mido.MetaMessage("end_of_track", time=0)]
    hostile = [mido.MetaMessage("set_tempo", tempo=1), mido.Message("note_on", note=60, velocity=90, time=0),
               mido.Message("note_off", note=60, velocity=0, time=9_000_000)]  # fmt: skip
    error = refusal(midi_from_tracks(conductor, hostile, ticks_per_beat=1))
    assert error.code == "duration_too_long"


def test_too_many_tracks_are_refused_from_the_header():
    data = bytearray(midi_from_tracks(notes([60])))
    data[10:12] = (10_000).to_bytes(2, "big")
    assert refusal(bytes(data)).code == "midi_too_complex"


def test_too_many_instrument_parts_are_refused():
    tracks = [notes([60], channel=n % 16, program=n % 128) for n in range(200)]
    assert refusal(midi_from_tracks(*tracks)).code == "midi_too_complex"


def test_a_malformed_key_signature_is_invalid_midi_not_a_crash():
    data = midi_from_tracks(notes([60, 62]))
    track_start = data.index(b"MTrk")
    body = b"\x00\xff\x59\x02\x40\x00" + data[track_start + 8 :]
    hostile = data[:track_start] + b"MTrk" + len(body).to_bytes(4, "big") + body
    assert refusal(hostile).code == "midi_invalid"


def test_the_one_pass_length_agrees_with_mido():
    track = [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90)), *notes([60] * 6),
             mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(150)), *notes([62] * 10)]  # fmt: skip
    data = midi_from_tracks(track, notes([48] * 3))
    from library.music.midi import _timing

    assert _timing(mido.MidiFile(file=io.BytesIO(data))) == pytest.approx(mido.MidiFile(file=io.BytesIO(data)).length)
