from celery import shared_task
from celery.signals import worker_ready
from django.db import DatabaseError, InterfaceError

from provenance import services


@shared_task(
    name="provenance.outbox_drain",
    acks_late=True,
    autoretry_for=(DatabaseError, InterfaceError),
    max_retries=10,
    retry_backoff=True,
    retry_backoff_max=60,
)
def outbox_drain_task() -> int:
    return services.outbox_drain()


@worker_ready.connect
def drain_after_restart(sender=None, **kwargs) -> None:
    """Records committed while no worker ran (or whose message was lost) are appended when a worker starts."""
    outbox_drain_task.delay()
