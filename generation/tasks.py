"""Background tasks of generation. Each loads its job by id and calls one service; all are idempotent."""

import logging

from celery import Task, shared_task
from celery.signals import worker_ready

from generation import services
from library.tasks import JOB_TASK_OPTIONS, job_task_run

log = logging.getLogger(__name__)


class GenerationTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Out of retries, killed at the time limit, or an unexpected error: the job fails instead of staying
        'running' (its lease was renewed moments ago, so the attempt that held it is named)."""
        job_id = kwargs.get("job_id") or (args[0] if args else None)
        if job_id:
            log.error("generation job %s: %s: %s", job_id, type(exc).__name__, exc)
            services.generation_fail(job_id=job_id, error=services.INTERNAL_ERROR, attempt=services.job_attempt(job_id))


# Composing takes well under a second per cue; the first job of a new model also registers its training works as
# reference works (a minute or two). A job still going after this is stuck, and the worker child is killed.
@shared_task(name="generation.run", time_limit=540, **{**JOB_TASK_OPTIONS, "base": GenerationTask})
def generation_run_task(self, *, job_id: str) -> None:
    job_task_run(self, services.generation_run, job_id)


@worker_ready.connect
def resume_unfinished_generations(sender=None, **kwargs) -> None:
    """When a worker starts: enqueue generation jobs whose messages were lost."""
    count = services.generation_resume_unfinished()
    if count:
        log.info("enqueued %d unfinished generation job(s) again", count)
