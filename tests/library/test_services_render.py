"""cue_render: a queued cue becomes ready with its audio; repeats and crashes leave one set of artifacts."""

from datetime import timedelta

import pytest
import soundfile
from django.core.files.storage import default_storage
from django.utils import timezone

from library.models import Artifact, Cue, ProcessingJob
from library.services import JOB_MAX_ATTEMPTS, JobBusy, cue_ingest, cue_render, job_claim, job_resume_unfinished
from tests.factories import midi_sketch


def LONG_AGO():
    return timezone.now() - timedelta(hours=1)


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
    ProcessingJob.objects.filter(pk=job.pk).update(state=ProcessingJob.State.RUNNING, updated_at=LONG_AGO())
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
    alive = cue_ingest(created_by=producer, title="Running elsewhere", midi=midi_sketch(seed=4))
    ProcessingJob.objects.filter(cue=running).update(state=ProcessingJob.State.RUNNING, updated_at=LONG_AGO())
    ProcessingJob.objects.filter(cue=alive).update(state=ProcessingJob.State.RUNNING, updated_at=timezone.now())
    ProcessingJob.objects.filter(cue=done).update(state=ProcessingJob.State.SUCCEEDED)
    assert job_resume_unfinished() == 2
    assert set(enqueued) == set(ProcessingJob.objects.filter(cue__in=[waiting, running]).values_list("pk", flat=True))


def test_a_job_another_worker_holds_is_busy_not_run_twice(queued_cue):
    job = queued_cue.jobs.get()
    assert job_claim(job.pk) == 1
    with pytest.raises(JobBusy):
        cue_render(job_id=job.pk)
    job.refresh_from_db()
    assert (job.state, job.attempts) == (ProcessingJob.State.RUNNING, 1)


def test_a_job_that_keeps_killing_its_worker_is_failed_after_the_attempt_limit(queued_cue):
    job = queued_cue.jobs.get()
    ProcessingJob.objects.filter(pk=job.pk).update(
        state=ProcessingJob.State.RUNNING, attempts=JOB_MAX_ATTEMPTS, updated_at=LONG_AGO()
    )
    cue_render(job_id=job.pk)
    job.refresh_from_db()
    queued_cue.refresh_from_db()
    assert job.state == ProcessingJob.State.FAILED and job.error.startswith("attempts_exhausted")
    assert queued_cue.status == Cue.Status.DRAFT


def test_an_attempt_that_lost_its_lease_does_not_overwrite_the_newer_one(queued_cue, monkeypatch):
    """The first attempt stalls past its lease, a second takes the job over and finishes; when the first finally
    finishes rendering, it must not mark the job or the cue again."""
    from library import services

    job = queued_cue.jobs.get()
    real_render = services.audio_render

    def stall_while_another_worker_takes_over(score, out_dir, progress=None):
        monkeypatch.setattr(services, "audio_render", real_render)
        ProcessingJob.objects.filter(pk=job.pk).update(updated_at=LONG_AGO())
        render_job(queued_cue)  # the takeover: attempt 2 renders and succeeds
        Cue.objects.filter(pk=queued_cue.pk).update(processing_error="marker: untouched since attempt 2")
        out_dir.mkdir(parents=True, exist_ok=True)  # attempt 2 tidied our folder away; we are slow, not dead
        return real_render(score, out_dir, progress=progress)

    monkeypatch.setattr(services, "audio_render", stall_while_another_worker_takes_over)
    cue_render(job_id=job.pk)
    job.refresh_from_db()
    queued_cue.refresh_from_db()
    assert (job.state, job.attempts) == (ProcessingJob.State.SUCCEEDED, 2)
    assert queued_cue.processing_error == "marker: untouched since attempt 2"
