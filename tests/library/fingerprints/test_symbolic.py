"""The symbolic (MIDI melody) detector: fingerprints, the index, matching under musical transformations, bad input."""

import json
import random

import numpy as np
import pretty_midi
import pytest

from library.fingerprints import FingerprintError
from library.fingerprints.symbolic import (
    DEFAULT_THRESHOLD,
    SymbolicFingerprint,
    SymbolicIndex,
    SymbolicMatch,
    smith_waterman,
    symbolic_fingerprint,
)

MAJOR = (0, 2, 4, 5, 7, 9, 11)


def tune(seed: int, notes: int = 48) -> list[tuple[float, float, int]]:
    """A random diatonic tune in C as (onset in beats, length in beats, pitch): leaps and steps, mixed rhythms."""
    rng = random.Random(seed)
    degree, beat, out = 7, 0.0, []
    for _ in range(notes):
        degree = max(0, min(14, degree + rng.choice((-4, -2, -1, -1, 1, 1, 2, 3, 5))))
        length = rng.choice((0.5, 0.5, 1.0, 1.0, 1.5, 2.0))
        out.append((beat, length, 60 + 12 * (degree // 7) + MAJOR[degree % 7]))
        beat += length
    return out


def score_of(*parts, bpm: float = 120.0, drums: list | None = None) -> pretty_midi.PrettyMIDI:
    """A score with one instrument per part; a part is (program, [(onset beats, length beats, pitch), ...])."""
    score = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    score.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    beat = 60.0 / bpm
    for program, notes in parts:
        instrument = pretty_midi.Instrument(program=program)
        for onset, length, pitch in notes:
            instrument.notes.append(pretty_midi.Note(90, pitch, onset * beat, (onset + length) * beat))
        score.instruments.append(instrument)
    if drums is not None:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes.extend(pretty_midi.Note(100, pitch, onset * beat, onset * beat + 0.1) for onset, _, pitch in drums)
        score.instruments.append(kit)
    return score


def chords(beats: int, root: int = 48) -> list[tuple[float, float, int]]:
    """Block chords every two beats: a polyphonic accompaniment part."""
    return [(b, 2.0, root + step) for b in range(0, beats, 2) for step in (0, 4, 7)]


def shifted(notes, semitones: int = 0, stretch: float = 1.0, offset: float = 0.0):
    return [(offset + onset * stretch, length * stretch, pitch + semitones) for onset, length, pitch in notes]


@pytest.fixture(scope="module")
def corpus() -> dict[int, SymbolicFingerprint]:
    """Twelve unrelated references: a tune over chords each, tune 0 to 11."""
    return {
        seed: symbolic_fingerprint(score_of((73, tune(seed)), (48, chords(int(tune(seed)[-1][0]) + 2))))
        for seed in range(12)
    }


@pytest.fixture(scope="module")
def index(corpus) -> SymbolicIndex:
    built = SymbolicIndex()
    for reference_id, fp in corpus.items():
        built.add(reference_id, fp)
    built.freeze()
    return built


def best(index: SymbolicIndex, score: pretty_midi.PrettyMIDI, **kwargs) -> SymbolicMatch:
    matches = index.query(symbolic_fingerprint(score), **kwargs)
    assert matches, "no match at all"
    return matches[0]


def test_a_transposed_faster_copy_is_found_with_its_transposition_and_tempo_ratio(index):
    # Given tune 3 up a minor third and played at 150 instead of 120 bpm, on another instrument
    cue = score_of((40, shifted(tune(3), semitones=3)), bpm=150.0)

    # When the cue is checked
    match = best(index, cue)

    # Then reference 3 comes first, every note aligned, with the transposition and the tempo ratio
    assert match.reference_id == 3
    assert match.score > DEFAULT_THRESHOLD
    assert match.matched_notes == 48
    assert match.transposition == 3 and match.octave_shift == 0
    assert match.tempo_ratio == pytest.approx(1.25, rel=1e-3)
    assert match.cue_share == 1.0 and match.reference_share == 1.0


@pytest.mark.parametrize(("stretch", "found"), [(0.5, True), (3.5, True), (4.5, False), (10.0, False)])
def test_a_copy_is_found_at_up_to_four_times_the_tempo_either_way_and_no_further(index, stretch, found):
    # Given tune 5 played `stretch` times slower (in augmentation): inter-onset ratios do not see tempo at all
    cue = score_of((73, shifted(tune(5), stretch=stretch)))

    # When the cue is checked
    matches = [m for m in index.query(symbolic_fingerprint(cue)) if m.reference_id == 5]

    # Then a plausible tempo is a copy; ten times slower is a coincidence of rhythms, not reported
    assert bool(matches) == found
    if found:
        assert matches[0].tempo_ratio == pytest.approx(1 / stretch, rel=1e-3)


def test_the_melody_moved_an_octave_down_into_an_inner_voice_is_found(index):
    # Given tune 5 two octaves lower on a cello, under a new high descant and new chords
    descant = [(float(b), 1.0, 84 + (b * 5) % 7) for b in range(90)]
    cue = score_of((42, shifted(tune(5), semitones=-24)), (0, descant), (19, chords(90, root=55)))

    # When the cue is checked
    match = best(index, cue)

    # Then the reference is found, its transposition a whole number of octaves
    assert match.reference_id == 5
    assert (match.transposition, match.octave_shift) == (0, -2)
    assert match.score > DEFAULT_THRESHOLD


def test_a_few_changed_and_ornamented_notes_do_not_hide_the_copy(index):
    # Given tune 7 with every tenth note a step higher and a grace note before every twelfth note
    notes = []
    for number, (onset, length, pitch) in enumerate(tune(7)):
        if number % 12 == 6:
            notes.append((onset, 0.125, pitch + 2))
            onset, length = onset + 0.125, length - 0.125
        notes.append((onset, length, pitch + (2 if number % 10 == 3 else 0)))
    cue = score_of((71, shifted(notes, semitones=-2)))

    # When the cue is checked
    match = best(index, cue)

    # Then reference 7 is found, most but not all of its notes aligned
    assert match.reference_id == 7
    assert match.transposition == -2
    assert 36 <= match.matched_notes < 48
    assert match.score > DEFAULT_THRESHOLD


def test_a_re_rhythmed_copy_is_found_by_its_intervals_alone(index):
    # Given tune 6's pitches in even quavers, a fourth lower
    even = [(number * 0.5, 0.5, pitch - 5) for number, (_, _, pitch) in enumerate(tune(6))]
    cue = score_of((68, even))

    # When the cue is checked
    match = best(index, cue)

    # Then reference 6 is found through its pitches, the rhythm earning nothing extra
    assert match.reference_id == 6
    assert match.transposition == -5
    assert match.matched_notes >= 44
    assert DEFAULT_THRESHOLD < match.score < 0.75 * match.matched_notes


def test_an_eight_bar_quote_inside_a_longer_unrelated_cue_is_located(index):
    # Given a 64-bar cue of unrelated material with 8 bars of tune 9 at bar 21, all in one line
    quote = [note for note in tune(9) if note[0] < 32.0]
    before = [note for note in tune(101, 200) if note[0] < 80.0]
    after = [(onset + 112.0, length, pitch) for onset, length, pitch in tune(102, 200) if onset < 144.0]
    cue = score_of((0, before + shifted(quote, semitones=1, offset=80.0) + after), (48, chords(256)))

    # When the cue is checked
    match = best(index, cue)

    # Then the quote is found in the cue's bars 21-28 and the reference's bars 1-8
    assert match.reference_id == 9
    assert match.transposition == 1
    assert match.cue_span.start_bar == pytest.approx(21.0, abs=0.5)
    assert match.cue_span.end_bar == pytest.approx(29.0, abs=0.6)
    assert match.reference_span.start_bar == pytest.approx(1.0, abs=0.5)
    assert match.cue_share < 0.4 < match.reference_share
    assert match.cue_notes[0][2] == match.reference_notes[0][2] + 1


def test_an_unrelated_tune_scores_below_the_default_threshold(index):
    # Given a tune that is in none of the references
    cue = score_of((73, tune(500)), (48, chords(100)))

    # When the cue is checked
    matches = index.query(symbolic_fingerprint(cue))

    # Then whatever the index returns scores below the threshold
    assert all(match.score < DEFAULT_THRESHOLD for match in matches)


def test_material_every_reference_shares_does_not_raise_a_flag():
    # Given 40 references that all end with the same long scale run, each after a tune of its own, and a control
    # index of only 3 of them, too few to tell that the run is common
    run = [(float(b) * 0.5, 0.5, 60 + MAJOR[b % 7] + 12 * (b // 7)) for b in range(24)]
    common, control = SymbolicIndex(), SymbolicIndex()
    for seed in range(40):
        own = tune(1000 + seed, 24)
        fp = symbolic_fingerprint(score_of((73, own + shifted(run, offset=own[-1][0] + 2.0))))
        common.add(seed, fp)
        if seed < 3:
            control.add(seed, fp)
    common.freeze()
    control.freeze()

    # When a cue that has only that scale run (in another key) and a tune of its own is checked against both
    own = tune(2000, 24)
    cue = symbolic_fingerprint(score_of((73, own + shifted(run, semitones=5, offset=own[-1][0] + 2.0))))

    # Then the run raises a flag only where it is not known to be common
    assert max(match.score for match in control.query(cue)) > DEFAULT_THRESHOLD
    assert all(match.score < DEFAULT_THRESHOLD for match in common.query(cue))


def test_exclude_leaves_the_reference_itself_out(index, corpus):
    # Given a reference queried against the index it belongs to
    # When it is queried with and without excluding itself
    with_itself = index.query(corpus[4])
    without = index.query(corpus[4], exclude=4)

    # Then it finds itself first, and not at all when excluded
    assert with_itself[0].reference_id == 4
    assert 4 not in [match.reference_id for match in without]


def test_a_match_is_json_safe(index):
    # Given a match
    match = best(index, score_of((40, shifted(tune(2), semitones=-5))))

    # When it is turned into a dict and JSON
    text = json.dumps(match.as_dict())

    # Then it round-trips with its spans and notes
    data = json.loads(text)
    assert data["reference_id"] == 2
    assert data["cue_span"]["start_seconds"] == 0.0
    assert len(data["cue_notes"]) == data["matched_notes"]


def test_drums_only_has_no_melodic_content():
    # Given a score of drums only
    groove = [(b * 0.5, 0.1, 36 + b % 3) for b in range(64)]
    score = score_of(drums=groove)

    # When it is fingerprinted
    # Then it is refused with a stable code
    with pytest.raises(FingerprintError) as error:
        symbolic_fingerprint(score)
    assert error.value.code == "no_melodic_content"


def test_a_few_held_chords_have_no_melodic_content():
    # Given a part of four block chords (twelve notes, but only four onsets)
    score = score_of((48, chords(8)))

    # When it is fingerprinted
    # Then it is refused
    with pytest.raises(FingerprintError) as error:
        symbolic_fingerprint(score)
    assert error.value.code == "no_melodic_content"


def test_something_other_than_a_score_is_refused():
    with pytest.raises(FingerprintError) as error:
        symbolic_fingerprint(b"MThd")  # type: ignore[arg-type]
    assert error.value.code == "score_invalid"


def test_the_top_line_of_a_polyphonic_part_is_its_melody():
    # Given a piano part: the tune in the right hand over chords in the left
    notes = tune(11) + chords(int(tune(11)[-1][0]))
    fp = symbolic_fingerprint(score_of((0, notes)))

    # Then its one line is the tune
    assert fp.line_count == 1
    assert [int(p) for p in fp.lines[0].pitches] == [pitch for _, _, pitch in tune(11)]


def test_the_fingerprint_round_trips_through_bytes_deterministically(corpus):
    # Given a fingerprint
    fp = corpus[1]

    # When it is encoded and decoded
    data = fp.to_bytes()
    again = SymbolicFingerprint.from_bytes(data)

    # Then the bytes, digest and contents are the same
    assert again.to_bytes() == data
    assert again.digest == fp.digest == __import__("hashlib").sha256(data).hexdigest()
    assert (again.note_count, again.line_count) == (fp.note_count, fp.line_count)
    assert again.duration_seconds == fp.duration_seconds


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-5],
        lambda data: data + b"\x00",
        lambda data: b"XXXXXXXX" + data[8:],
        lambda data: b"",
        lambda data: data[:30],
    ],
    ids=["truncated", "trailing", "bad-magic", "empty", "header-only"],
)
def test_damaged_fingerprint_bytes_are_refused(corpus, damage):
    with pytest.raises(FingerprintError) as error:
        SymbolicFingerprint.from_bytes(damage(corpus[1].to_bytes()))
    assert error.value.code == "fingerprint_corrupt"


def test_bars_come_from_the_downbeats():
    # Given a 4/4 score at 120 bpm: a bar is two seconds
    fp = symbolic_fingerprint(score_of((73, tune(1))))

    # Then 3 s is the middle of bar 2
    assert fp.bar_at(0.0) == 1.0
    assert fp.bar_at(3.0) == pytest.approx(2.5)


def test_the_index_saves_to_one_file_and_loads_the_same(index, corpus, tmp_path):
    # Given a frozen index saved to a file
    path = tmp_path / "symbolic.idx"
    index.save(path)

    # When it is loaded
    loaded = SymbolicIndex.load(path)

    # Then it holds the same references and answers queries the same way
    assert loaded.reference_ids() == index.reference_ids() == list(range(12))
    assert loaded.fingerprint(6).to_bytes() == corpus[6].to_bytes()
    assert loaded.memory_bytes() == index.memory_bytes()
    query = corpus[8]
    assert [m.as_dict() for m in loaded.query(query)] == [m.as_dict() for m in index.query(query)]


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_a_truncated_index_file_is_refused(index, tmp_path, cut):
    # Given a saved index cut short
    path = tmp_path / "symbolic.idx"
    index.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])

    # When it is loaded
    # Then it is refused as corrupt
    with pytest.raises(FingerprintError) as error:
        SymbolicIndex.load(path)
    assert error.value.code == "index_corrupt"


def test_a_corrupted_or_foreign_index_file_is_refused(index, tmp_path):
    path = tmp_path / "symbolic.idx"
    index.save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FingerprintError) as flipped:
        SymbolicIndex.load(path)
    path.write_bytes(b"not an index at all")
    with pytest.raises(FingerprintError) as foreign:
        SymbolicIndex.load(path)
    assert flipped.value.code == foreign.value.code == "index_corrupt"


def test_an_index_of_inconsistent_arrays_is_refused(index, tmp_path):
    # Given a well-formed archive whose postings name a reference that does not exist
    path = tmp_path / "symbolic.idx"
    index.save(path)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["postings"] = arrays["postings"] + 1000
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)

    # Then loading refuses it
    with pytest.raises(FingerprintError) as error:
        SymbolicIndex.load(path)
    assert error.value.code == "index_corrupt"


def test_an_empty_index_answers_nothing_and_saves(tmp_path):
    index = SymbolicIndex()
    index.freeze()
    fp = symbolic_fingerprint(score_of((73, tune(1))))
    assert len(index) == 0 and index.query(fp) == []
    index.save(tmp_path / "empty.idx")
    assert len(SymbolicIndex.load(tmp_path / "empty.idx")) == 0


def test_an_index_of_one_work_finds_it():
    # Given a corpus of one work
    index = SymbolicIndex()
    index.add(42, symbolic_fingerprint(score_of((73, tune(42)))))
    index.freeze()

    # When a transposed copy is checked
    matches = index.query(symbolic_fingerprint(score_of((40, shifted(tune(42), semitones=4)))))

    # Then it is found, and nothing is left once it is excluded
    assert [m.reference_id for m in matches] == [42]
    assert matches[0].score > DEFAULT_THRESHOLD
    assert index.query(index.fingerprint(42), exclude=42) == []


def test_the_index_refuses_misuse(corpus):
    index = SymbolicIndex()
    index.add(1, corpus[1])
    with pytest.raises(ValueError, match="already"):
        index.add(1, corpus[2])
    with pytest.raises(FingerprintError) as early:
        index.query(corpus[1])
    index.freeze()
    with pytest.raises(FingerprintError) as late:
        index.add(2, corpus[2])
    assert (early.value.code, late.value.code) == ("index_not_frozen", "index_frozen")


def test_smith_waterman_finds_the_best_local_alignment():
    # Given a substitution matrix where rows 1-3 match columns 2-4 and everything else mismatches
    substitution = np.full((5, 6), -1.0)
    for i, j in ((1, 2), (2, 3), (3, 4)):
        substitution[i, j] = 1.0

    # When it is aligned with a gap cost of 1
    score, pairs = smith_waterman(substitution, gap=-1.0)

    # Then the diagonal run is the alignment
    assert score == 3.0
    assert pairs == [(1, 2), (2, 3), (3, 4)]
