"""Celery tasks: thin, idempotent wrappers around :mod:`django_iron_kyc.services`.

Every task takes primary keys, is safe to run twice (``acks_late`` with
``reject_on_worker_lost``: a task lost with its worker runs again), retries only transient
errors (429, 5xx, timeouts) with exponential backoff and jitter that never undercuts Iron's
``Retry-After``, and is enqueued only after the transaction that asked for it commits.
Run eagerly (``CELERY_TASK_ALWAYS_EAGER``), a task does not retry: an identification intent is
left to the sweep, and ``refresh_customer`` raises the transient error.

Redelivery is capped: every POST of an identification intent counts in
``create_attempts``; past ``IRON_KYC_CREATE_MAX_ATTEMPTS`` the intent is reconciled by
listing instead of being sent again, so a poison message cannot loop forever.

Add the sweep to your beat schedule (see :data:`BEAT_SCHEDULE`); this module imports no
models at import time, so a settings module may import it::

    from django_iron_kyc.tasks import BEAT_SCHEDULE as IRON_KYC_BEAT_SCHEDULE

    CELERY_BEAT_SCHEDULE = {**IRON_KYC_BEAT_SCHEDULE}

Each task runs one function. Task names are pinned (a queued message must keep finding its
task), so some differ from their function's:

=================================  ===================================================
``create_identification``          ``services.submit_identification``
``refresh_customer``               ``services.refresh_customer``
``poll_pending_identifications``   ``services.poll_due_identifications``
``process_received_webhooks``      ``webhooks.process_received_deliveries``
``retry_webhook_deliveries``       ``webhooks.retry_deliveries``
``apply_retention``                ``services.apply_retention``
=================================  ===================================================

Services and webhooks enqueue them by name (:mod:`django_iron_kyc.enqueue`), never by
importing this module. Each task imports what it runs when it runs, not at the top: settings
modules import this one for :data:`BEAT_SCHEDULE` before Django's apps (and so the models
that services need) are loaded.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

from .conf import iron_settings
from .enqueue import (
    APPLY_RETENTION,
    CREATE_IDENTIFICATION,
    POLL_PENDING_IDENTIFICATIONS,
    PROCESS_RECEIVED_WEBHOOKS,
    REFRESH_CUSTOMER,
    RETRY_WEBHOOK_DELIVERIES,
)
from .exceptions import IronTransientError

__all__ = [
    "BEAT_SCHEDULE",
    "apply_retention",
    "create_identification",
    "poll_pending_identifications",
    "process_received_webhooks",
    "refresh_customer",
    "retry_countdown",
    "retry_webhook_deliveries",
]

logger = logging.getLogger(__name__)

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "iron-kyc-poll-pending-identifications": {
        "task": POLL_PENDING_IDENTIFICATIONS,
        "schedule": 60.0,
        # A sweep that waited longer than the interval in the queue is dropped: the next
        # one does its work.
        "options": {"expires": 55.0},
    },
    "iron-kyc-retry-webhook-deliveries": {
        "task": RETRY_WEBHOOK_DELIVERIES,
        "schedule": 60.0,
        "options": {"expires": 55.0},
    },
    "iron-kyc-apply-retention": {
        "task": APPLY_RETENTION,
        "schedule": 3600.0,
        "options": {"expires": 3300.0},
    },
}
"""The beat schedule django-iron-kyc needs: the poll sweep and the webhook sweep, every
minute each, and retention (``IRON_KYC_DELIVERY_RETENTION``) every hour."""


# Every task: late acknowledgement, run again when its worker is lost, no result stored.
_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
}


def retry_countdown(retries: int, retry_after: float | None = None) -> float:
    """Seconds before retry number ``retries + 1``: exponential backoff with jitter.

    ``IRON_KYC_TASK_RETRY_BACKOFF`` doubling per retry up to
    ``IRON_KYC_TASK_RETRY_BACKOFF_MAX``, with the upper half jittered; never less than
    Iron's ``Retry-After``.
    """
    base = max(0.0, iron_settings.TASK_RETRY_BACKOFF)
    backoff: float = min(iron_settings.TASK_RETRY_BACKOFF_MAX, base * 2.0 ** min(retries, 32))
    countdown: float = backoff / 2 + random.uniform(0, backoff / 2)  # noqa: S311 (jitter, not crypto)
    if retry_after:
        countdown = max(countdown, float(retry_after))
    return countdown


def _next_retry(task: Any, exc: IronTransientError) -> float | None:
    """The countdown of the next retry, or ``None`` for no Celery retry.

    None when ``TASK_MAX_RETRIES`` are used up, and when the task runs eagerly
    (``CELERY_TASK_ALWAYS_EAGER``): an eager retry would run at once, ignoring the backoff
    and Iron's ``Retry-After`` (or, with eager propagation, raise ``Retry`` at the caller).
    """
    retries: int = task.request.retries or 0
    if task.request.is_eager or retries >= iron_settings.TASK_MAX_RETRIES:
        return None
    return retry_countdown(retries, exc.retry_after)


def _retry(task: Any, exc: IronTransientError, countdown: float) -> Exception:
    retry: Exception = task.retry(
        exc=exc, countdown=countdown, max_retries=iron_settings.TASK_MAX_RETRIES
    )
    return retry


@shared_task(name=CREATE_IDENTIFICATION, **_TASK_OPTIONS)
def create_identification(self: Any, identification_pk: int) -> str:
    """Create identification ``identification_pk`` at Iron (see ``services.submit_identification``).

    Returns the outcome: ``"confirmed"``, ``"failed"``, ``"superseded"``, ``"pending"``
    (not confirmed yet: the sweep tries again) or ``"missing"``.
    """
    from . import services  # lazy import: settings import BEAT_SCHEDULE
    from .models import Identification  # lazy import: settings import BEAT_SCHEDULE

    try:
        row = services.submit_identification(identification_pk)
    except Identification.DoesNotExist:
        logger.warning("Identification #%s no longer exists; nothing to create.", identification_pk)
        return "missing"
    except IronTransientError as exc:
        countdown = _next_retry(self, exc)
        if countdown is None:
            logger.warning(
                "Creating identification #%s failed (attempt %d of this task: %s); the sweep "
                "tries again later.",
                identification_pk,
                (self.request.retries or 0) + 1,
                exc,
            )
            return "pending"
        # Keep the sweep from enqueueing a second copy while this retry waits.
        Identification.objects.filter(pk=identification_pk, iron_id__isnull=True).update(
            next_poll_at=timezone.now()
            + timedelta(seconds=countdown)
            + iron_settings.CREATE_RECOVERY_DELAY
        )
        raise _retry(self, exc, countdown) from None
    if row.iron_id is not None:
        return "confirmed"
    if row.failed_at is not None:
        return "failed"
    if row.superseded_at is not None:
        return "superseded"
    return "pending"


@shared_task(name=REFRESH_CUSTOMER, **_TASK_OPTIONS)
def refresh_customer(self: Any, customer_pk: int) -> None:
    """Fetch customer ``customer_pk`` and all its identifications from Iron and apply them.

    See ``services.refresh_customer``. Transient errors are retried; others are raised.
    """
    from . import services  # lazy import: settings import BEAT_SCHEDULE
    from .models import Customer  # lazy import: settings import BEAT_SCHEDULE

    try:
        services.refresh_customer(customer_pk)
    except Customer.DoesNotExist:
        logger.warning("Customer #%s no longer exists; nothing to refresh.", customer_pk)
    except IronTransientError as exc:
        countdown = _next_retry(self, exc)
        if countdown is None:
            raise
        raise _retry(self, exc, countdown) from None


@shared_task(name=POLL_PENDING_IDENTIFICATIONS, **_TASK_OPTIONS)
def poll_pending_identifications(self: Any) -> dict[str, int]:
    """The periodic sweep: run it every minute (see :data:`BEAT_SCHEDULE`).

    Polls the identifications that are due, flags the ones too old to follow, and
    re-enqueues intents an outage left behind. See ``services.poll_due_identifications``.
    Never retried: the next sweep picks up what this one could not do.
    """
    from . import services  # lazy import: settings import BEAT_SCHEDULE

    return services.poll_due_identifications().as_dict()


@shared_task(name=PROCESS_RECEIVED_WEBHOOKS, **_TASK_OPTIONS)
def process_received_webhooks(self: Any) -> dict[str, Any]:
    """Act on the stored webhook deliveries not processed yet (``IRON_KYC_WEBHOOK_PROCESSING
    = "deferred"``). The webhook view enqueues it; see ``webhooks.process_received_deliveries``.

    Runs at most 1,000 deliveries, then enqueues itself again if more are waiting. Never
    retried: a delivery that fails is recorded ``failed`` and retried by the webhook sweep.
    """
    from . import webhooks  # lazy import: settings import BEAT_SCHEDULE

    result = webhooks.process_received_deliveries()
    if result.more and not self.request.is_eager:
        process_received_webhooks.apply_async()
    return result.as_dict()


@shared_task(name=RETRY_WEBHOOK_DELIVERIES, **_TASK_OPTIONS)
def retry_webhook_deliveries(self: Any) -> dict[str, Any]:
    """The webhook sweep: run it every minute (see :data:`BEAT_SCHEDULE`).

    Processes deliveries whose processing was lost and retries failed ones with backoff;
    see ``webhooks.retry_deliveries``. Never retried: the next sweep carries on.
    """
    from . import webhooks  # lazy import: settings import BEAT_SCHEDULE

    return webhooks.retry_deliveries().as_dict()


@shared_task(name=APPLY_RETENTION, **_TASK_OPTIONS)
def apply_retention(self: Any) -> dict[str, Any]:
    """Retention: run it every hour (see :data:`BEAT_SCHEDULE`).

    Deletes the webhook deliveries acted on more than ``IRON_KYC_DELIVERY_RETENTION`` ago and
    clears the review comments that no longer count; see ``services.apply_retention``.
    Never retried: the next run carries on.
    """
    from . import services  # lazy import: settings import BEAT_SCHEDULE

    return services.apply_retention().as_dict()
