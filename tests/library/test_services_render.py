"""cue_render: a queued cue becomes ready with its audio; repeats and crashes leave one set of artifacts."""

import hashlib
from datetime import timedelta

import pytest
import soundfile
from django.core.files.storage import default_storage
from django.utils import timezone

from library.models import Artifact, Cue, ProcessingJob
from library.services import (
    JOB_MAX_ATTEMPTS,
    JobBusy,
    artifact_sweep_orphans,
    cue_ingest,
    cue_render,
    job_claim,
    job_resume_unfinished,
)
from provenance.content_credentials import LEDGER_LABEL as LEDGER_ASSERTION
from provenance.content_credentials import read as read_credentials
from provenance.models import LedgerEntry
from tests.factories import midi_sketch


def LONG_AGO():
    return timezone.now() - timedelta(hours=1)


@pytest.fixture
def queued_cue(producer):
    return cue_ingest(created_by=producer, title="To render", midi=midi_sketch(bars=4, drums=True))


def render_job(cue) -> ProcessingJob:
    job = cue.jobs.get(kind="render")
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


def test_a_rerun_after_a_crash_leaves_one_set_of_artifacts(queued_cue, private_files):
    """A worker died after storing the audio but before marking the job done: the job runs again. Rendering is
    deterministic, so preview and peaks are stored once; the signed files differ (every C2PA manifest has its own
    instance id) and the superseded ones, which nothing refers to, go with the orphan sweep."""
    job = render_job(queued_cue)
    first = {queued_cue.preview_id, queued_cue.waveform_id}
    ProcessingJob.objects.filter(pk=job.pk).update(state=ProcessingJob.State.RUNNING, updated_at=LONG_AGO())
    Cue.objects.filter(pk=queued_cue.pk).update(status=Cue.Status.ANALYSING, audio=None, preview=None, waveform=None)
    job = render_job(queued_cue)
    assert job.attempts == 2 and queued_cue.status == Cue.Status.READY
    assert {queued_cue.preview_id, queued_cue.waveform_id} == first
    artifact_sweep_orphans(older_than=timedelta(0))
    linked = {
        queued_cue.midi_id,
        queued_cue.audio_id,
        queued_cue.preview_id,
        queued_cue.waveform_id,
        queued_cue.midi_credentials_id,
        queued_cue.preview_credentials_id,
    }
    assert set(Artifact.objects.values_list("sha256", flat=True)) == linked
    assert {p.name for p in private_files.rglob("*") if p.is_file()} == linked


def test_the_audio_carries_content_credentials_that_link_to_the_ledger(queued_cue, settings):
    render_job(queued_cue)
    entry = LedgerEntry.objects.get(reference=queued_cue.provenance_reference)
    anchors = settings.CUELEDGER_C2PA_TRUST_ANCHORS.read_bytes()
    with default_storage.open(queued_cue.audio.storage_name) as handle:
        flac = settings.CUELEDGER_SCRATCH_DIR.parent / "delivered.flac"
        flac.write_bytes(handle.read())
    report = read_credentials(flac, trust_anchors_pem=anchors)
    assert report.valid, report.errors
    ledger = report.assertions[LEDGER_ASSERTION]
    assert (ledger["index"], ledger["envelope_sha256"]) == (entry.index, hashlib.sha256(entry.envelope).hexdigest())
    assert soundfile.info(flac).frames > 0  # still plays

    for source, manifest, name in (
        (queued_cue.midi, queued_cue.midi_credentials, "cue.mid"),
        (queued_cue.preview, queued_cue.preview_credentials, "preview.ogg"),
    ):
        path = settings.CUELEDGER_SCRATCH_DIR.parent / name
        path.write_bytes(default_storage.open(source.storage_name).read())
        sidecar = default_storage.open(manifest.storage_name).read()
        assert manifest.media_type == "application/c2pa"
        assert read_credentials(path, trust_anchors_pem=anchors, manifest_store=sidecar).valid


def test_without_a_signing_identity_the_render_fails_with_a_clear_reason(queued_cue, settings, tmp_path):
    settings.CUELEDGER_C2PA_KEY = tmp_path / "missing-key.pem"
    job = render_job(queued_cue)
    assert job.state == ProcessingJob.State.FAILED and job.error.startswith("credentials_unavailable")
    assert queued_cue.status == Cue.Status.DRAFT and "c2pa dev-ca" in queued_cue.processing_error


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
    job = queued_cue.jobs.get(kind="render")
    assert job_claim(job.pk) == 1
    with pytest.raises(JobBusy):
        cue_render(job_id=job.pk)
    job.refresh_from_db()
    assert (job.state, job.attempts) == (ProcessingJob.State.RUNNING, 1)


def test_a_job_that_keeps_killing_its_worker_is_failed_after_the_attempt_limit(queued_cue):
    job = queued_cue.jobs.get(kind="render")
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

    job = queued_cue.jobs.get(kind="render")
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
