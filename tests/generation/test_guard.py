"""The composer's memorisation filter: a composition like a training work is discarded and composed again."""

import io
import math

import pretty_midi
import pytest

from generation.composer import guard
from generation.composer.compose import compose
from generation.composer.guard import FILTER_THRESHOLD, attempt_seed, compose_unlike
from generation.composer.prompts import parse_prompt
from generation.composer.training import model_load
from library.fingerprints.symbolic import SymbolicIndex, symbolic_fingerprint
from library.music.midi import midi_read

SPEC = parse_prompt("hopeful strings and piano, 100 bpm, G major, 40 s").spec


@pytest.fixture(scope="module")
def model():
    return model_load()[0]


def index_of(*midis: bytes) -> SymbolicIndex:
    index = SymbolicIndex()
    for reference_id, midi in enumerate(midis, start=1):
        index.add(reference_id, symbolic_fingerprint(midi_read(midi, max_duration_seconds=math.inf)))
    index.freeze()
    return index


def melody_of(composition) -> bytes:
    """The composition's melody part alone: what a training work (a tune) looks like."""
    score = pretty_midi.PrettyMIDI(io.BytesIO(composition.midi))
    melody = {track.name for track in composition.tracks if track.role == "melody"}
    score.instruments = [part for part in score.instruments if part.name in melody]
    buffer = io.BytesIO()
    score.write(buffer)
    return buffer.getvalue()


def test_a_composition_that_resembles_a_training_work_is_composed_again(model):
    # Given a "training work" that is the very tune seed 7 composes
    first = compose(SPEC, seed=7, model=model)
    training = index_of(melody_of(first))

    # When the cue is composed unlike the training works
    guarded = compose_unlike(SPEC, seed=7, model=model, training=training)

    # Then that attempt is discarded, naming the work it resembled, and the next seed's cue is handed over
    assert [r["reference_id"] for r in guarded.rejected] == [1]
    assert guarded.rejected[0]["score"] >= FILTER_THRESHOLD
    assert guarded.seed == attempt_seed(7, 1) and guarded.composition.midi != first.midi
    assert guarded.report["attempts"] == 2 and guarded.report["composed_seed"] == str(attempt_seed(7, 1))
    again = compose_unlike(SPEC, seed=7, model=model, training=training)
    assert again.composition.midi == guarded.composition.midi  # deterministic, retries included


def test_with_nothing_alike_the_requested_seed_is_used(model):
    training = index_of(compose(parse_prompt("dark brass, 70 bpm, C minor, 40 s").spec, seed=1, model=model).midi)
    guarded = compose_unlike(SPEC, seed=7, model=model, training=training)
    assert guarded.seed == 7 and guarded.rejected == ()
    assert guarded.composition.midi == compose(SPEC, seed=7, model=model).midi


def test_when_every_attempt_resembles_training_the_least_similar_is_handed_over(model, monkeypatch):
    """The detector is replaced by one that finds every composition alike, with falling then rising scores: no real
    spec and corpus does that on demand, and the point is what happens when the attempts run out."""
    scores = iter([9.0, 8.5, 7.0, 7.5] + [9.9] * (guard.MAX_ATTEMPTS - 4))
    monkeypatch.setattr(guard, "nearest_training_work", lambda midi, training: (3, next(scores)))

    guarded = compose_unlike(SPEC, seed=7, model=model, training=index_of())

    assert guarded.exhausted and guarded.attempts == guard.MAX_ATTEMPTS == len(guarded.rejected)
    assert guarded.seed == attempt_seed(7, 2)  # the attempt that scored 7.0
    assert guarded.composition.midi == compose(SPEC, seed=attempt_seed(7, 2), model=model).midi
    assert guarded.report["exhausted"] is True


def test_attempt_seeds_are_fixed_and_stay_in_range():
    assert attempt_seed(5, 0) == 5
    assert attempt_seed(5, 1) == attempt_seed(5, 1) != attempt_seed(5, 2)
    assert all(0 <= attempt_seed(2**64 - 1, n) < 2**64 for n in range(20))
