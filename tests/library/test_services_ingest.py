"""cue_ingest: a good cue is stored, analysed and queued for rendering; a bad one leaves nothing behind."""

from datetime import timedelta

import mido
import pytest
from django.core.files.storage import default_storage

from library.errors import LibraryError
from library.models import Artifact, Cue, CueInstrument, Mood, ProcessingJob
from library.services import artifact_sweep_orphans, cue_ingest
from provenance.models import OutboxRecord
from tests.factories import midi_from_tracks, midi_sketch, notes


def stored_files(media_root) -> list:
    return sorted(p for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []


def test_ingest_stores_the_midi_under_its_digest_and_records_the_analysis(producer, django_capture_on_commit_callbacks):
    data = midi_sketch(tonic="D", mode="minor", tempo_bpm=96, drums=True)
    with django_capture_on_commit_callbacks() as callbacks:
        cue = cue_ingest(created_by=producer, title=" Night Drive ", midi=data, moods=["Tense", "dark", "tense"])

    cue.refresh_from_db()
    assert cue.title == "Night Drive"
    assert cue.code == f"CUE-{cue.number:06d}"
    assert cue.status == Cue.Status.ANALYSING and cue.source == Cue.Source.IMPORTED
    assert (cue.key, cue.mode, cue.tempo_bpm) == ("D minor", "minor", 96.0)
    assert sorted(cue.moods.values_list("name", flat=True)) == ["dark", "tense"]
    assert cue.instruments.filter(family="drums", is_drum=True).exists()
    assert cue.analysis_detail["note_count"] == sum(cue.instruments.values_list("note_count", flat=True))
    assert default_storage.open(cue.midi.storage_name).read() == data
    assert (cue.midi.media_type, cue.midi.size) == ("audio/midi", len(data))
    assert ProcessingJob.objects.get(cue=cue).state == ProcessingJob.State.QUEUED
    record = OutboxRecord.objects.get()
    assert record.kind == "ingest" and record.subjects == [[f"{cue.code}.mid", cue.midi_id]]
    assert record.predicate["cue"] == {"id": str(cue.pk), "code": cue.code, "title": "Night Drive"}
    assert record.predicate["uploaded_by"] == producer.username and record.predicate["claimed_origin"] == {}
    assert len(callbacks) == 2  # rendering and the ledger append are enqueued only once the transaction commits


def test_cue_numbers_are_consecutive(producer):
    first = cue_ingest(created_by=producer, title="One", midi=midi_sketch(seed=1))
    second = cue_ingest(created_by=producer, title="Two", midi=midi_sketch(seed=2))
    assert second.number == first.number + 1


def test_the_same_midi_uploaded_twice_is_stored_once(producer, private_files):
    data = midi_sketch(seed=5)
    first = cue_ingest(created_by=producer, title="Take one", midi=data)
    second = cue_ingest(created_by=producer, title="Take two", midi=data)
    assert first.pk != second.pk
    assert first.midi_id == second.midi_id
    assert Artifact.objects.count() == 1
    assert len(stored_files(private_files)) == 1


BAD_INPUTS = {
    "not midi": (b"ID3\x03\x00 an mp3 pretending", "midi_invalid"),
    "truncated": (midi_sketch(bars=4)[:-9], "midi_truncated"),
    "no notes": (midi_from_tracks([mido.MetaMessage("end_of_track", time=480)]), "midi_empty"),
    "absurd ticks": (
        midi_from_tracks(notes([60]) + [mido.Message("note_on", note=61, time=0x0FFFFFFF)]),
        "midi_timing_invalid",
    ),
    "too long": (midi_sketch(tempo_bpm=30, bars=160), "duration_too_long"),  # 21:20
}


@pytest.mark.parametrize("data, code", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_a_refused_midi_leaves_no_row_no_file_and_no_job(
    producer, private_files, data, code, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(LibraryError) as caught:
        cue_ingest(created_by=producer, title="Bad", midi=data, moods=["tense"])
    assert caught.value.code == code
    assert (Cue.objects.count(), Artifact.objects.count(), ProcessingJob.objects.count()) == (0, 0, 0)
    assert Mood.objects.count() == 0 and CueInstrument.objects.count() == 0 and OutboxRecord.objects.count() == 0
    assert stored_files(private_files) == [] and callbacks == []


def test_a_file_over_the_size_limit_is_refused_before_parsing(producer, settings):
    settings.CUELEDGER_MAX_UPLOAD_BYTES = 100
    with pytest.raises(LibraryError) as caught:
        cue_ingest(created_by=producer, title="Big", midi=midi_sketch())
    assert caught.value.code == "file_too_large"
    assert "100" in caught.value.detail


def test_the_duration_limit_is_configurable(producer, settings):
    settings.CUELEDGER_MAX_DURATION_SECONDS = 10
    with pytest.raises(LibraryError) as caught:
        cue_ingest(created_by=producer, title="Long", midi=midi_sketch(bars=8, tempo_bpm=120))  # 16 s
    assert caught.value.code == "duration_too_long"


@pytest.mark.parametrize("moods", [["no/slashes!"], ["x" * 41], [f"mood-{i}" for i in range(21)]])
def test_bad_moods_are_refused(producer, moods):
    with pytest.raises(LibraryError) as caught:
        cue_ingest(created_by=producer, title="Moody", midi=midi_sketch(), moods=moods)
    assert caught.value.code == "mood_invalid"
    assert Cue.objects.count() == 0


def test_a_blank_title_is_refused(producer):
    with pytest.raises(LibraryError) as caught:
        cue_ingest(created_by=producer, title="   ", midi=midi_sketch())
    assert caught.value.code == "title_required"


def test_a_failure_after_the_file_is_written_leaves_an_orphan_that_the_sweep_removes(
    producer, private_files, monkeypatch
):
    """The database write fails after the MIDI reached storage: the rows roll back and the file stays (deleting it
    at once could remove bytes a concurrent upload just committed). The sweep removes it once it is old enough,
    and never touches a file that a row names."""

    def broken_bulk_create(*args, **kwargs):
        raise RuntimeError("database went away")

    kept = cue_ingest(created_by=producer, title="Kept", midi=midi_sketch(seed=8))
    with monkeypatch.context() as patch:
        patch.setattr(CueInstrument.objects, "bulk_create", broken_bulk_create)
        with pytest.raises(RuntimeError):
            cue_ingest(created_by=producer, title="Doomed", midi=midi_sketch(seed=9))
    assert Cue.objects.count() == 1 and Artifact.objects.count() == 1
    assert len(stored_files(private_files)) == 2

    assert artifact_sweep_orphans() == 0  # within the grace period: it might belong to a transaction in flight
    assert artifact_sweep_orphans(older_than=timedelta(0)) == 1
    assert [path.name for path in stored_files(private_files)] == [kept.midi_id]


def test_moods_are_normalised_to_lowercase_hyphenated_tags(producer):
    cue = cue_ingest(created_by=producer, title="Tags", midi=midi_sketch(), moods=["Film Noir", "mélancolique"])
    assert sorted(cue.moods.values_list("name", flat=True)) == ["film-noir", "mélancolique"]
