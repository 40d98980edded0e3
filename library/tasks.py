"""Background tasks of the catalog. Each loads its job by id and calls one service; all are idempotent."""

import logging

from celery import Task, shared_task
from celery.signals import worker_ready

from library import services
from library.services import similarity

log = logging.getLogger(__name__)


class JobTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Out of retries, or an unexpected error: the job fails with the reason instead of staying 'running' (unless
        another worker holds a live lease on it)."""
        job_id = kwargs.get("job_id") or (args[0] if args else None)
        if job_id:
            services.job_fail(job_id=job_id, error=f"internal_error: {type(exc).__name__}: {exc}")


# Job tasks are acknowledged when they end, so a dead worker's job comes back; they retry brief outages of the
# database or storage, and wait out another worker's lease (JobBusy) for as long as it lasts.
JOB_TASK_OPTIONS = {
    "base": JobTask,
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": services.TRANSIENT_ERRORS,
    "max_retries": 5,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
}


def job_task_run(task, service, job_id: str) -> None:
    """Run a job's service; while another worker holds the job's lease, try again once the lease may have lapsed."""
    try:
        service(job_id=job_id)
    except services.JobBusy as busy:
        raise task.retry(countdown=busy.retry_after, max_retries=None) from None


# A 20-minute cue renders in under a minute; a render still going after this is stuck, and the worker child is
# killed. The message comes back, and the job's attempt limit ends a loop of such kills.
@shared_task(name="library.render_cue", time_limit=900, **JOB_TASK_OPTIONS)
def render_cue_task(self, *, job_id: str) -> None:
    job_task_run(self, services.cue_render, job_id)


# Building the indexes of a large corpus from scratch is the slow case (about two minutes at 100,000 works); a check
# itself takes a second or two. Below Redis's visibility timeout, so a stuck check is killed before the broker hands
# its message to a second worker.
@shared_task(name="library.similarity_check", soft_time_limit=480, time_limit=540, **JOB_TASK_OPTIONS)
def similarity_check_task(self, *, job_id: str) -> None:
    job_task_run(self, similarity.cue_similarity_check, job_id)


@shared_task(name="library.similarity_recheck", autoretry_for=services.TRANSIENT_ERRORS, retry_backoff=2)
def similarity_recheck_task() -> None:
    """Queue checks of the cues the corpus has grown past, a batch at a time, requeueing itself until none remain."""
    queued, more = similarity.similarity_recheck()
    log.info("queued %d similarity re-check(s)", queued)
    if more:
        similarity_recheck_task.delay()


@worker_ready.connect
def resume_unfinished_work(sender=None, **kwargs) -> None:
    """When a worker starts: enqueue jobs whose messages were lost, and remove files left by failed transactions."""
    count = services.job_resume_unfinished()
    if count:
        log.info("enqueued %d unfinished job(s) again", count)
    # A re-check whose message was lost (the embedded broker forgets taken messages) is found again from the database.
    similarity_recheck_task.delay()
    similarity.scratch_sweep()
    removed = services.artifact_sweep_orphans()
    if removed:
        log.info("removed %d stored file(s) that no artifact row names", removed)
