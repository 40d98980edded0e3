"""Background tasks of the catalog. Each loads its job by id and calls one service; all are idempotent."""

import logging

from celery import Task, shared_task
from celery.signals import worker_ready

from library import services

log = logging.getLogger(__name__)


class JobTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Out of retries, or an unexpected error: the job fails with the reason instead of staying 'running' (unless
        another worker holds a live lease on it)."""
        job_id = kwargs.get("job_id") or (args[0] if args else None)
        if job_id:
            services.job_fail(job_id=job_id, error=f"internal_error: {type(exc).__name__}: {exc}")


@shared_task(
    base=JobTask,
    bind=True,
    name="library.render_cue",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=services.TRANSIENT_ERRORS,
    max_retries=5,
    retry_backoff=2,
    retry_backoff_max=60,
    # A 20-minute cue renders in under a minute; a render still going after this is stuck, and the worker child
    # is killed. The message comes back, and the job's attempt limit ends a loop of such kills.
    time_limit=900,
)
def render_cue_task(self, *, job_id: str) -> None:
    try:
        services.cue_render(job_id=job_id)
    except services.JobBusy as busy:
        raise self.retry(countdown=busy.retry_after, max_retries=None) from None


@worker_ready.connect
def resume_unfinished_work(sender=None, **kwargs) -> None:
    """When a worker starts: enqueue jobs whose messages were lost, and remove files left by failed transactions."""
    count = services.job_resume_unfinished()
    if count:
        log.info("enqueued %d unfinished job(s) again", count)
    removed = services.artifact_sweep_orphans()
    if removed:
        log.info("removed %d stored file(s) that no artifact row names", removed)
