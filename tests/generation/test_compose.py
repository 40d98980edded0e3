"""The composer: determinism, picture sync, form and harmony from moods, orchestration, arc, ending and mixes."""

import io

import pretty_midi
import pytest

from generation.composer import ComposerError
from generation.composer.compose import CODE_VERSION, compose, cutdown_spec
from generation.composer.model import MelodyModel
from generation.composer.spec import ArcPoint, GenerationSpec, HitPoint
from library.music.midi import midi_read

ORCHESTRA = ("strings", "woodwinds", "brass", "percussion")


def _melody(pitches, durations):
    return [(b - a, d) for a, b, d in zip(pitches, pitches[1:], durations[1:], strict=False)]


@pytest.fixture(scope="module")
def model():
    melodies = [
        _melody([60, 62, 64, 65, 67, 65, 64, 62, 60], [1, 1, 1, 1, 2, 1, 1, 1, 2]),
        _melody([67, 64, 64, 65, 62, 62, 60, 64, 67, 67], [1, 0.5, 0.5, 1, 0.5, 0.5, 1, 1, 1, 2]),
        _melody([64, 62, 60, 62, 64, 67, 65, 64, 62, 60], [1.5, 0.5, 1, 1, 1, 1, 2, 1, 1, 2]),
        _melody([57, 60, 64, 69, 67, 64, 65, 62, 60, 59, 57], [0.5, 0.5, 1, 2, 1, 1, 0.75, 0.25, 1, 1, 3]),
        _melody([72, 71, 69, 67, 69, 71, 72, 74, 72], [1, 0.5, 0.5, 1, 1, 0.5, 0.5, 2, 4]),
    ]
    return MelodyModel.from_sequences(melodies, training_digest="test")


def _spec(**changes):
    fields = {
        "moods": ("tense",),
        "ensemble": ORCHESTRA,
        "tempo_bpm": 96.0,
        "key": "D",
        "mode": "minor",
        "duration_seconds": 120.0,
        "hit_points": (
            HitPoint(31.5, "00:00:31:12", "24"),
            HitPoint(64.2, "00:01:04:05", "24"),
            HitPoint(101.0, "00:01:41:00", "24"),
        ),
        "arc": (ArcPoint(0, 0.2), ArcPoint(60, 0.6), ArcPoint(100, 1.0), ArcPoint(120, 0.1)),
    }
    return GenerationSpec(**{**fields, **changes})


def _read(composition):
    return pretty_midi.PrettyMIDI(io.BytesIO(composition.midi))


def _notes(score, name):
    instrument = next(i for i in score.instruments if i.name == name)
    return [(round(n.start, 6), round(n.end, 6), n.pitch, n.velocity) for n in instrument.notes]


def test_same_seed_gives_the_same_bytes_and_another_seed_other_music(model):
    first = compose(_spec(), seed=7, model=model)
    again = compose(_spec(), seed=7, model=model)
    other = compose(_spec(), seed=8, model=model)

    assert first.midi == again.midi
    assert first.midi != other.midi
    assert _notes(_read(first), "melody") != _notes(_read(other), "melody")
    assert first.parameters["code_version"] == CODE_VERSION


def test_seeds_span_64_bits_and_nothing_else(model):
    compose(_spec(duration_seconds=10.0, hit_points=()), seed=2**64 - 1, model=model)
    for seed in (-1, 2**64, "1"):
        with pytest.raises(ComposerError) as error:
            compose(_spec(), seed=seed, model=model)
        assert error.value.code == "seed_invalid"


def test_the_midi_passes_the_catalog_reader_and_ends_exactly_on_the_duration(model):
    composition = compose(_spec(), seed=1, model=model)

    score = midi_read(composition.midi, max_duration_seconds=1200)
    assert score.get_end_time() == pytest.approx(120.0, abs=0.001)
    assert composition.duration_seconds == pytest.approx(120.0, abs=0.001)
    final_downbeat = composition.downbeats[-1]
    finals = [n for i in score.instruments if not i.is_drum for n in i.notes if n.end > final_downbeat + 0.01]
    assert finals
    assert all(n.start == pytest.approx(final_downbeat, abs=0.001) for n in finals)


def test_hits_land_on_downbeats_as_written_and_as_read_back(model):
    composition = compose(_spec(), seed=3, model=model)
    score = _read(composition)
    read_downbeats = score.get_downbeats()

    for hit in composition.hits:
        assert min(abs(d - hit["time_seconds"]) for d in composition.downbeats) <= 0.001
        assert min(abs(read_downbeats - hit["time_seconds"])) <= 0.001
        assert hit["error_ms"] <= 1.0
    times, tempi = score.get_tempo_changes()
    assert all(abs(t / 96 - 1) <= 0.12 for t in tempi)
    assert [round(t, 6) for t in times] == [round(t, 6) for t, _ in composition.tempo_map]


def test_a_hit_starts_a_section_and_is_accented(model):
    composition = compose(_spec(), seed=3, model=model)
    score = _read(composition)

    starts = [s["start_seconds"] for s in composition.sections]
    for hit in composition.hits:
        assert min(abs(s - hit["time_seconds"]) for s in starts) <= 0.001
        on_hit = [n for i in score.instruments for n in i.notes if abs(n.start - hit["time_seconds"]) < 0.001]
        assert {36, 49} <= {n.pitch for n in on_hit}  # bass drum and crash
        assert max(n.velocity for n in on_hit) >= 116
        strings = next(i for i in score.instruments if i.name == "strings")
        swell = [c.value for c in strings.control_changes if c.number == 11 and c.time <= hit["time_seconds"] + 0.001]
        assert swell[-1] == 127


def test_an_orchestra_gets_at_least_six_general_midi_tracks(model):
    composition = compose(_spec(), seed=5, model=model)
    score = _read(composition)

    assert len(composition.tracks) >= 6
    assert sum(1 for t in composition.tracks if not t.is_drum) <= 15
    roles = {t.role for t in composition.tracks}
    assert {"melody", "countermelody", "harmony", "bass", "accent", "percussion"} <= roles
    programs = {t.name: t.program for t in composition.tracks if not t.is_drum}
    assert programs["timpani"] == 47
    assert programs["bass"] == 43
    assert [i.is_drum for i in score.instruments].count(True) == 1
    for instrument in score.instruments:
        volumes = [c.value for c in instrument.control_changes if c.number == 7]
        assert len(volumes) == 1


def test_moods_choose_harmony_register_and_texture(model):
    tense = compose(_spec(), seed=9, model=model)
    hopeful = compose(_spec(moods=("hopeful",), mode="major"), seed=9, model=model)
    action = compose(_spec(moods=("action",)), seed=9, model=model)

    assert tense.parameters["progression"] in ("i bVI iv V", "i III i bVI", "i bII i V")
    assert tense.parameters["texture"]["pedal"] and tense.parameters["programs"]["strings"] == 44
    assert hopeful.parameters["progression"] in ("I V vi IV", "I IV vi V", "IV I V vi")
    assert (
        action.parameters["harmonic_rhythm"]["chords_per_bar"] > tense.parameters["harmonic_rhythm"]["chords_per_bar"]
    )
    assert tense.parameters["register"]["centre"] < hopeful.parameters["register"]["centre"]

    def mean_pitch(c):
        notes = _notes(_read(c), "melody")
        return sum(n[2] for n in notes) / len(notes)

    assert mean_pitch(tense) < mean_pitch(hopeful)


def test_the_melody_stays_in_the_mode_and_brings_back_its_motif(model):
    composition = compose(_spec(moods=("hopeful",), mode="major", key="Bb"), seed=11, model=model)
    notes = _notes(_read(composition), "melody")

    scale = {(10 + step) % 12 for step in (0, 2, 4, 5, 7, 9, 11)}
    assert sum(1 for n in notes if n[2] % 12 in scale) / len(notes) >= 0.9
    phrases = composition.parameters["melody"]["phrases"]
    assert phrases["statement"] + phrases["sequence"] + phrases["variation"] >= 2
    assert len(composition.parameters["melody"]["motif"]) >= 2


def test_the_arc_shapes_dynamics_a_soft_end_lands_quietly(model):
    composition = compose(_spec(hit_points=()), seed=4, model=model)
    score = _read(composition)
    notes = [n for i in score.instruments for n in i.notes]

    def mean_velocity(start, end):
        chosen = [n.velocity for n in notes if start <= n.start < end]
        return sum(chosen) / len(chosen)

    assert mean_velocity(90, 105) > mean_velocity(0, 20) + 10
    assert mean_velocity(composition.downbeats[-1] - 0.01, 121) < mean_velocity(90, 105) - 20


def test_mixes_drop_parts_and_keep_everything_else(model):
    full = compose(_spec(), seed=21, model=model)
    full_score = _read(full)
    for mix, dropped in (("no-percussion", {"timpani", "drums"}), ("underscore", {"melody", "countermelody"})):
        version = compose(_spec(), seed=21, model=model, mix=mix)
        names = {t.name for t in version.tracks}

        assert not names & dropped
        assert names | dropped == {t.name for t in full.tracks}
        assert version.tempo_map == full.tempo_map and version.downbeats == full.downbeats
        score = _read(version)
        for name in names:
            assert _notes(score, name) == _notes(full_score, name)
    with pytest.raises(ComposerError):
        compose(_spec(), seed=21, model=model, mix="karaoke")


def test_a_cutdown_keeps_its_stinger_and_ends_properly(model):
    spec = _spec(hit_points=(*_spec().hit_points, HitPoint(120.0, "00:02:00:00", "24")))
    cut = cutdown_spec(spec, 30)

    assert cut.duration_seconds == 30
    assert [h.time_seconds for h in cut.hit_points] == [30]
    assert cut.hit_points[-1].timecode == "00:00:30:00"
    assert cut.arc[-1].time_seconds == pytest.approx(30) and cut.arc[-1].level == pytest.approx(0.1)
    composition = compose(cut, seed=2, model=model)
    assert _read(composition).get_end_time() == pytest.approx(30, abs=0.001)
    assert composition.hits[-1]["error_ms"] <= 1.0
    assert cutdown_spec(spec, 60).hit_points[:2] == spec.hit_points[:1] + (HitPoint(60, "00:01:00:00", "24"),)


@pytest.mark.parametrize(
    ("tempo", "meter", "duration"),
    [(300.0, (4, 4), 5.0), (30.0, (7, 8), 1200.0), (30.0, (4, 4), 5.0), (300.0, (6, 8), 1200.0)],
)
def test_extremes_of_tempo_and_duration_compose(model, tempo, meter, duration):
    composition = compose(
        _spec(tempo_bpm=tempo, meter=meter, duration_seconds=duration, hit_points=(), arc=()), seed=0, model=model
    )

    score = midi_read(composition.midi, max_duration_seconds=1200.5)
    assert score.get_end_time() == pytest.approx(duration, abs=0.001)
