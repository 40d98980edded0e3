"""Training the melody model from music21's corpus: determinism, the shipped default model, the licence survey."""

import hashlib
import io
import json
import shutil

import pretty_midi
import pytest

from generation.composer import ComposerError, training
from generation.composer.training import (
    DEFAULT_COLLECTIONS,
    DEFAULT_MODEL_DIR,
    TrainingWork,
    available_collections,
    licence_evidence_verify,
    model_load,
    model_write,
    train,
    training_works,
    work_melody,
    work_midi,
)

SMALL_COLLECTION = "nottingham-dataset"  # one ABC file of two reels: trains in a second or two


@pytest.fixture
def fresh_parse():
    """Each training reads the files again, so a parser that is not deterministic shows up."""
    training._file_melodies.cache_clear()
    yield
    training._file_melodies.cache_clear()


def test_training_twice_gives_identical_files(fresh_parse, tmp_path):
    # Given two trainings of the same collection
    first = train([SMALL_COLLECTION])
    training._file_melodies.cache_clear()
    second = train([SMALL_COLLECTION])

    # Then the files and the version are identical, and the model names its manifest
    assert first.manifest_bytes == second.manifest_bytes
    assert first.model.to_bytes() == second.model.to_bytes()
    assert first.model.version == second.model.version
    assert first.model.training_digest == hashlib.sha256(first.manifest_bytes).hexdigest()

    # And written out and read back they are the same pair
    model_write(first, tmp_path)
    model, manifest = model_load(tmp_path)
    assert model.to_bytes() == first.model.to_bytes()
    assert manifest == first.manifest
    assert (tmp_path / "manifest.json").read_bytes() == first.manifest_bytes


def test_manifest_lists_collections_works_and_licences():
    # When a small collection is trained
    manifest = train([SMALL_COLLECTION]).manifest

    # Then the manifest records the silent terms and each work with its file's hash
    assert manifest["format"] == "cueledger-training-manifest/1"
    (collection,) = manifest["collections"]
    assert collection["license"] == "LicenseRef-unknown"
    assert collection["commercial_use"] is None
    assert collection["work_count"] == len(manifest["works"]) == 2
    path = training.CORPUS_ROOT / "nottingham-dataset/reelsa-c.abc"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [(w["number"], w["title"], w["sha256"]) for w in manifest["works"]] == [
        (80, "Cuckoo's Nest", digest),
        (81, "Little Czech Number", digest),
    ]
    lines = f"nottingham-dataset/reelsa-c.abc#80:{digest}\nnottingham-dataset/reelsa-c.abc#81:{digest}\n"
    assert collection["digest"] == hashlib.sha256(lines.encode()).hexdigest()


def test_shipped_default_model_loads_and_names_its_manifest():
    # When the shipped default model is loaded
    model, manifest = model_load(DEFAULT_MODEL_DIR)

    # Then its training digest is the manifest's hash and the manifest is of the default collections
    assert model.training_digest == hashlib.sha256((DEFAULT_MODEL_DIR / "manifest.json").read_bytes()).hexdigest()
    assert [c["name"] for c in manifest["collections"]] == sorted(DEFAULT_COLLECTIONS)
    assert sum(c["work_count"] for c in manifest["collections"]) == len(manifest["works"]) > 150
    assert (DEFAULT_MODEL_DIR / "model.json").stat().st_size < 2_000_000


def test_shipped_default_model_equals_a_fresh_training():
    # When the default collections are trained again from the installed corpus
    trained = train(DEFAULT_COLLECTIONS)

    # Then the shipped files are exactly what training writes
    assert trained.manifest_bytes == (DEFAULT_MODEL_DIR / "manifest.json").read_bytes()
    assert trained.model.to_bytes() == (DEFAULT_MODEL_DIR / "model.json").read_bytes()


def test_licence_survey_matches_the_installed_corpus():
    # When every surveyed collection is checked against the installed files
    terms = licence_evidence_verify(available_collections())

    # Then it passes and gives the surveyed terms of files whose terms are known by heart
    assert terms["essenFolksong/altdeu10.abc"].license == "LicenseRef-music21-noncommercial"
    assert terms["essenFolksong/altdeu10.abc"].commercial_use is False
    assert terms["josquin/milleRegrets.abc"].license == "GPL-2.0-or-later"
    assert terms["palestrina/Agnus_01.krn"].commercial_use is False
    assert terms["airdsAirs/book1.abc"].license == "LicenseRef-unknown"
    assert terms["airdsAirs/book1.abc"].commercial_use is None


@pytest.fixture
def corpus_copy(tmp_path, monkeypatch):
    """A copy of the corpus licence and of the small collection that a test may change."""
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copy(training.CORPUS_ROOT / "license.txt", root / "license.txt")
    shutil.copytree(training.CORPUS_ROOT / SMALL_COLLECTION, root / SMALL_COLLECTION)
    monkeypatch.setattr(training, "CORPUS_ROOT", root)
    return root


def test_licence_evidence_check_fails_on_a_new_rights_notice(corpus_copy):
    # Given a tune that now carries a copyright notice the survey has not seen
    path = corpus_copy / SMALL_COLLECTION / "reelsa-c.abc"
    path.write_text("% Copyright 2031 Somebody, all rights reserved\n" + path.read_text())

    # Then training refuses to label it with the surveyed terms
    with pytest.raises(ComposerError) as caught:
        train([SMALL_COLLECTION])
    assert caught.value.code == "licence_evidence_changed"


def test_licence_evidence_check_fails_on_changed_corpus_licence(corpus_copy):
    # Given corpus/license.txt with different terms
    (corpus_copy / "license.txt").write_text("All encodings may be used for any purpose.\n")

    # Then the check fails
    with pytest.raises(ComposerError) as caught:
        licence_evidence_verify([SMALL_COLLECTION])
    assert caught.value.code == "licence_evidence_changed"


def test_licence_evidence_check_fails_on_a_new_licence_file(corpus_copy):
    # Given a collection directory that gained a licence file
    (corpus_copy / SMALL_COLLECTION / "LICENSE").write_text("CC0-1.0\n")

    # Then the check fails
    with pytest.raises(ComposerError) as caught:
        licence_evidence_verify([SMALL_COLLECTION])
    assert caught.value.code == "licence_evidence_changed"


def test_tampered_manifest_fails_model_load(tmp_path):
    # Given a written model whose manifest was then edited
    model_write(train([SMALL_COLLECTION]), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_bytes())
    manifest["collections"][0]["commercial_use"] = True
    (tmp_path / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, separators=(",", ":")))

    # Then loading refuses the pair
    with pytest.raises(ComposerError) as caught:
        model_load(tmp_path)
    assert caught.value.code == "model_manifest_mismatch"


def test_missing_and_corrupt_model_files_fail_model_load(tmp_path):
    with pytest.raises(ComposerError) as caught:
        model_load(tmp_path)
    assert caught.value.code == "model_missing"

    model_write(train([SMALL_COLLECTION]), tmp_path)
    (tmp_path / "model.json").write_bytes(b'{"format": "cueledger-melody-model/1", "vocab')
    with pytest.raises(ComposerError) as caught:
        model_load(tmp_path)
    assert caught.value.code == "model_corrupt"


def test_unknown_collection_is_refused_with_the_known_ones():
    with pytest.raises(ComposerError) as caught:
        training_works(["bach", "no-such-collection"])
    assert caught.value.code == "collection_unknown"
    assert "no-such-collection" in caught.value.detail
    assert "oneills1850" in caught.value.detail


def _aird_ranting_highlandman() -> TrainingWork:
    path = "airdsAirs/book1.abc"
    digest = hashlib.sha256((training.CORPUS_ROOT / path).read_bytes()).hexdigest()
    return TrainingWork(path, 1, "airdsAirs", "The Ranting Highlandman.", digest, "LicenseRef-unknown")


def test_work_melody_of_a_known_tune():
    # Given Aird's "The Ranting Highlandman" (book 1, X:1; L:1/8, K:G), which opens "AG|B2B2 B2AG|B2B2 B2g2|":
    # A G | B B B A G | B B B g
    steps = work_melody(_aird_ranting_highlandman())

    # Then the steps after the first note are, by hand: G (-2, a quaver), B (+4, a crotchet), ...
    assert steps[:10] == [
        (-2, 0.5),
        (4, 1.0),
        (0, 1.0),
        (0, 1.0),
        (-2, 0.5),
        (-2, 0.5),
        (4, 1.0),
        (0, 1.0),
        (0, 1.0),
        (8, 1.0),
    ]


def test_work_midi_is_deterministic_and_readable(fresh_parse):
    # Given the MIDI of a tune, made twice from separate parses
    work = _aird_ranting_highlandman()
    first = work_midi(work)
    training._file_melodies.cache_clear()
    second = work_midi(work)

    # Then the bytes are the same, and pretty_midi reads one piano part of the melody at the notated tempo
    assert first == second
    midi = pretty_midi.PrettyMIDI(io.BytesIO(first))
    (instrument,) = midi.instruments
    assert instrument.program == 0
    pitches = [n.pitch for n in instrument.notes]
    assert pitches[:4] == [69, 67, 71, 71]  # A4 G4 B4 B4
    assert len(pitches) == len(work_melody(work)) + 1
    _, tempi = midi.get_tempo_changes()
    assert tempi[0] == pytest.approx(224.0)  # Q:1/2=112 is 224 crotchets a minute
