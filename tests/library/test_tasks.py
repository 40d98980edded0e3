"""The render task: retried on transient faults, and a job that cannot finish is marked failed, never left running."""

import pytest
from django.db import IntegrityError, OperationalError

from library.models import Cue, ProcessingJob
from library.services import cue_ingest
from library.tasks import render_cue_task
from tests.factories import midi_sketch


@pytest.fixture
def job(producer):
    return cue_ingest(created_by=producer, title="Task", midi=midi_sketch(bars=2)).jobs.get(kind="render")


def test_the_task_renders_the_job(job):
    render_cue_task.apply(kwargs={"job_id": str(job.pk)})
    job.refresh_from_db()
    assert job.state == ProcessingJob.State.SUCCEEDED and job.cue.status == Cue.Status.READY


def test_an_unexpected_error_fails_the_job_and_sends_the_cue_to_draft(job, monkeypatch):
    def explode(**kwargs):
        raise KeyError("something nobody expected")

    monkeypatch.setattr("library.services.cue_render", explode)
    result = render_cue_task.apply(kwargs={"job_id": str(job.pk)})
    assert result.failed()
    job.refresh_from_db()
    assert job.state == ProcessingJob.State.FAILED and "KeyError" in job.error
    assert job.cue.status == Cue.Status.DRAFT and "internal_error" in job.cue.processing_error


def test_a_transient_database_error_is_retried_until_it_passes(job, monkeypatch):
    from library import services

    real, calls = services.cue_render, []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise OperationalError("the database restarted")
        real(**kwargs)

    monkeypatch.setattr("library.services.cue_render", flaky)
    monkeypatch.setattr(render_cue_task, "retry_backoff", False)
    render_cue_task.apply(kwargs={"job_id": str(job.pk)})
    job.refresh_from_db()
    assert len(calls) == 3 and job.state == ProcessingJob.State.SUCCEEDED


def test_an_integrity_error_is_not_retried_since_it_would_only_repeat(job, monkeypatch):
    calls = []

    def conflicting(**kwargs):
        calls.append(kwargs)
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr("library.services.cue_render", conflicting)
    result = render_cue_task.apply(kwargs={"job_id": str(job.pk)})

    assert result.failed() and len(calls) == 1
    job.refresh_from_db()
    assert job.state == ProcessingJob.State.FAILED and "IntegrityError" in job.error
