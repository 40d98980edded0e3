"""Background tasks of the catalog. Each loads its job by id and calls one service; all are idempotent."""

import logging

from celery import Task, shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError, InterfaceError

from library import services

log = logging.getLogger(__name__)

# Failures worth another try: the database or storage was briefly unavailable.
TRANSIENT = (DatabaseError, InterfaceError, OSError)


class JobTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Out of retries, or an unexpected error: the job fails with the reason instead of staying 'running'."""
        job_id = kwargs.get("job_id") or (args[0] if args else None)
        if job_id:
            services.job_fail(job_id=job_id, error=f"internal_error: {type(exc).__name__}: {exc}")


@shared_task(
    base=JobTask,
    name="library.render_cue",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    max_retries=5,
    retry_backoff=2,
    retry_backoff_max=60,
)
def render_cue_task(*, job_id: str) -> None:
    services.cue_render(job_id=job_id)


@worker_ready.connect
def resume_unfinished_jobs(sender=None, **kwargs) -> None:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        count = services.job_resume_unfinished()
        if count:
            log.info("re-enqueued %d unfinished job(s) left by an earlier worker", count)
