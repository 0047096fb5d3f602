"""Enqueue this app's Celery tasks by name: the one way services and webhooks ask for one.

The constants are the tasks' registered names (``tasks.py`` declares each task with one of
them), so services and webhooks never import ``tasks``, which sits above them. A name stays
the same when code moves, so a message already queued still finds its task.

``AppConfig.ready()`` imports ``tasks``, so every app has them registered; a registered task
is sent through its own ``apply_async`` (with ``CELERY_TASK_ALWAYS_EAGER`` it runs
in-process, as ``delay()`` would).
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from celery.result import AsyncResult
from django.db import transaction

__all__ = [
    "APPLY_RETENTION",
    "CREATE_IDENTIFICATION",
    "POLL_PENDING_IDENTIFICATIONS",
    "PROCESS_RECEIVED_WEBHOOKS",
    "REFRESH_CUSTOMER",
    "RETRY_WEBHOOK_DELIVERIES",
    "enqueue",
    "enqueue_on_commit",
    "enqueue_without_waiting",
    "runs_eagerly",
]

CREATE_IDENTIFICATION = "django_iron_kyc.tasks.create_identification"
REFRESH_CUSTOMER = "django_iron_kyc.tasks.refresh_customer"
POLL_PENDING_IDENTIFICATIONS = "django_iron_kyc.tasks.poll_pending_identifications"
PROCESS_RECEIVED_WEBHOOKS = "django_iron_kyc.tasks.process_received_webhooks"
RETRY_WEBHOOK_DELIVERIES = "django_iron_kyc.tasks.retry_webhook_deliveries"
APPLY_RETENTION = "django_iron_kyc.tasks.apply_retention"


def enqueue(name: str, *args: Any, **options: Any) -> AsyncResult[Any]:
    """Send task ``name`` with positional ``args``; ``options`` go to ``apply_async``."""
    result: AsyncResult[Any] = current_app.signature(name, args=args).apply_async(**options)
    return result


def enqueue_on_commit(name: str, *args: Any) -> None:
    """:func:`enqueue` once the current transaction commits (at once outside one).

    Robust: a broker that cannot be reached is logged, never raised, so the committed work
    stands; the sweeps pick up what the task would have done.
    """

    def send() -> None:
        enqueue(name, *args)

    send.__qualname__ = f"enqueue({name!r})"  # what Django logs when the send fails
    transaction.on_commit(send, robust=True)


def enqueue_without_waiting(name: str, *args: Any, **options: Any) -> AsyncResult[Any]:
    """:func:`enqueue`, failing at once when the broker cannot be reached.

    For a caller that must answer now (the webhook view): ``retry=False`` stops kombu's
    publish retries but not its connection retries (``broker_connection_timeout``), so the
    connection is made first, once. Eager tasks need no broker.
    """
    if runs_eagerly():
        return enqueue(name, *args, retry=False, **options)
    with current_app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=0)
        return enqueue(name, *args, retry=False, producer=producer, **options)


def runs_eagerly() -> bool:
    """Does Celery run tasks in the calling process (``task_always_eager``)?"""
    return bool(current_app.conf.task_always_eager)
