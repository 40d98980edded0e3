"""cue_render: a queued cue becomes ready with its audio; repeats and crashes leave one set of artifacts."""

import pytest
import soundfile
from django.core.files.storage import default_storage

from library.models import Artifact, Cue, ProcessingJob
from library.services import cue_ingest, cue_render, job_resume_unfinished
from tests.factories import midi_sketch


@pytest.fixture
def queued_cue(producer):
    return cue_ingest(created_by=producer, title="To render", midi=midi_sketch(bars=4, drums=True))


def render_job(cue) -> ProcessingJob:
    job = cue.jobs.get()
    cue_render(job_id=job.pk)
    job.refresh_from_db()
    cue.refresh_from_db()
    return job


def test_rendering_makes_the_cue_ready_with_flac_preview_and_peaks(queued_cue):
    job = render_job(queued_cue)
    assert queued_cue.status == Cue.Status.READY and queued_cue.processing_error == ""
    assert (job.state, job.progress, job.attempts) == (ProcessingJob.State.SUCCEEDED, 1.0, 1)
    assert queued_cue.audio.media_type == "audio/flac"
    assert queued_cue.preview.media_type == "audio/ogg"
    assert queued_cue.waveform.media_type == "application/json"
    with default_storage.open(queued_cue.audio.storage_name) as handle:
        assert soundfile.info(handle).samplerate == 44_100


def test_rendering_twice_changes_nothing(queued_cue, private_files):
    render_job(queued_cue)
    files = sorted(private_files.rglob("*"))
    job = render_job(queued_cue)
    assert job.attempts == 1  # the finished job was not run again
    assert sorted(private_files.rglob("*")) == files


def test_a_rerun_after_a_crash_stores_the_same_artifacts_not_a_second_set(queued_cue, private_files):
    """A worker died after storing the audio but before marking the job done: the job runs again."""
    job = render_job(queued_cue)
    first = {queued_cue.audio_id, queued_cue.preview_id, queued_cue.waveform_id}
    ProcessingJob.objects.filter(pk=job.pk).update(state=ProcessingJob.State.RUNNING)
    Cue.objects.filter(pk=queued_cue.pk).update(status=Cue.Status.ANALYSING, audio=None, preview=None, waveform=None)
    job = render_job(queued_cue)
    assert job.attempts == 2 and queued_cue.status == Cue.Status.READY
    assert {queued_cue.audio_id, queued_cue.preview_id, queued_cue.waveform_id} == first
    assert Artifact.objects.count() == 4  # MIDI, FLAC, preview, peaks
    assert len([p for p in private_files.rglob("*") if p.is_file()]) == 4


def test_a_truncated_file_in_storage_is_replaced(queued_cue):
    job = render_job(queued_cue)
    path = default_storage.path(queued_cue.audio.storage_name)
    with open(path, "r+b") as handle:
        handle.truncate(100)
    ProcessingJob.objects.filter(pk=job.pk).update(state=ProcessingJob.State.QUEUED)
    render_job(queued_cue)
    assert default_storage.size(queued_cue.audio.storage_name) == queued_cue.audio.size


def test_an_unrenderable_cue_goes_back_to_draft_with_the_reason(queued_cue):
    with default_storage.open(queued_cue.midi.storage_name, "wb") as handle:
        handle.write(b"this is not MIDI any more")
    job = render_job(queued_cue)
    assert job.state == ProcessingJob.State.FAILED and job.error.startswith("midi_invalid")
    assert queued_cue.status == Cue.Status.DRAFT
    assert "Render audio failed: midi_invalid" in queued_cue.processing_error
    assert queued_cue.audio is None


def test_scratch_files_are_removed_after_rendering(queued_cue, settings):
    render_job(queued_cue)
    assert list(settings.CUELEDGER_SCRATCH_DIR.iterdir()) == []


def test_unfinished_jobs_are_enqueued_again(producer, monkeypatch):
    enqueued = []
    monkeypatch.setattr("library.services.job_enqueue", enqueued.append)
    waiting = cue_ingest(created_by=producer, title="Waiting", midi=midi_sketch(seed=1))
    running = cue_ingest(created_by=producer, title="Interrupted", midi=midi_sketch(seed=2))
    done = cue_ingest(created_by=producer, title="Done", midi=midi_sketch(seed=3))
    ProcessingJob.objects.filter(cue=running).update(state=ProcessingJob.State.RUNNING)
    ProcessingJob.objects.filter(cue=done).update(state=ProcessingJob.State.SUCCEEDED)
    assert job_resume_unfinished() == 2
    assert set(enqueued) == set(ProcessingJob.objects.filter(cue__in=[waiting, running]).values_list("pk", flat=True))
