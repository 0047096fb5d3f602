"""Deferred processing's drain and the webhook sweep, both acting through
``services.deliveries``.

With ``IRON_KYC_WEBHOOK_PROCESSING = "deferred"`` the view only stores a delivery and asks
:data:`drain_scheduler` for a drain: the ``process_received_webhooks`` task, which runs
:func:`process_received_deliveries`. The scheduler throttles those messages per process. The
webhook sweep (:func:`retry_deliveries`, task ``retry_webhook_deliveries``, in the beat
schedule) acts on what a lost drain left and retries failures with backoff, in either mode.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from ..conf import iron_settings
from ..enqueue import PROCESS_RECEIVED_WEBHOOKS, enqueue_without_waiting, runs_eagerly
from ..models import WebhookDelivery
from ..services.deliveries import process_delivery

__all__ = [
    "DRAIN_WINDOW",
    "DeliverySweepResult",
    "DrainScheduler",
    "deliveries_due_for_retry",
    "drain_scheduler",
    "process_received_deliveries",
    "publish_drain",
    "request_drain",
    "retry_deliveries",
]

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome

DRAIN_WINDOW = 1.0
"""Seconds. One process sends at most two drain messages per window (see
:class:`DrainScheduler`)."""

_BATCH = 100
# Failed deliveries are retried after RETRY_DELAY doubled per attempt made, up to this
# many doublings (beyond them the delay is over a year: retrying is left to a person).
_MAX_DOUBLINGS = 20


class DrainScheduler:
    """Asks Celery to run the drain (:func:`process_received_deliveries`) without flooding it.

    Publishing a Celery message costs more CPU than storing the delivery, so a busy
    receiver must not send one per delivery. In each window of :data:`DRAIN_WINDOW`
    seconds, the first delivery sends a drain at once (a lone delivery waits for nothing)
    and the first one after it sends one more, due when the window ends; the rest send
    nothing. Each delivery is committed before it asks, so the drain that runs after the
    window ends finds every delivery of the window. A drain that cannot be sent (broker
    down) is logged and the next delivery tries again; the webhook sweep
    (:func:`retry_deliveries`) processes whatever was stored meanwhile. With Celery's
    ``task_always_eager`` (no broker, and a countdown is not waited for) every delivery
    runs a drain at once (eagerness is looked up when a window opens).

    ``publish(countdown)`` sends one drain, due in ``countdown`` seconds (default:
    :func:`publish_drain`, the Celery task). One instance per process
    (:data:`drain_scheduler`); thread-safe.
    """

    def __init__(
        self,
        window: float = DRAIN_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        publish: Callable[[float], object] | None = None,
    ) -> None:
        self.window = window
        self.clock = clock
        self.publish = publish or publish_drain
        self._lock = threading.Lock()
        self._window_end = -math.inf
        self._trailing = False
        self._eager = False

    def request(self) -> None:
        """A delivery was committed: make sure a drain will run after now."""
        now = self.clock()
        with self._lock:
            if now >= self._window_end:
                self._window_end = now + self.window
                self._trailing = False
                # Looked up once a window: Celery's settings cost more than the rest here.
                self._eager = runs_eagerly()
                countdown = 0.0
            elif self._eager:
                # An eager drain runs when sent, whatever its countdown: one per delivery.
                countdown = 0.0
            elif not self._trailing:
                self._trailing = True
                countdown = self._window_end - now
            else:
                return
        self._send(countdown)

    def reset(self) -> None:
        """Forget the current window: the next delivery sends a drain at once."""
        with self._lock:
            self._window_end = -math.inf
            self._trailing = False

    def _send(self, countdown: float) -> None:
        try:
            self.publish(countdown)
        except Exception:
            self.reset()
            logger.warning(
                "Could not enqueue the task that processes stored Iron webhook deliveries; "
                "they stay 'received' until the next delivery or the webhook sweep "
                "(django_iron_kyc.tasks.retry_webhook_deliveries) processes them.",
                exc_info=True,
            )


def publish_drain(countdown: float) -> None:
    """Send the drain task, due in ``countdown`` seconds, failing at once with the broker
    down: Iron gets its answer now, and the stored delivery waits for the sweep."""
    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    enqueue_without_waiting(PROCESS_RECEIVED_WEBHOOKS, **options)


drain_scheduler = DrainScheduler()
"""This process's :class:`DrainScheduler` (deferred processing)."""


def request_drain(alias: str | None) -> None:
    """Have :data:`drain_scheduler` send a drain once the current transaction on database
    ``alias`` commits (at once in autocommit), so the drain sees the stored delivery."""
    transaction.on_commit(drain_scheduler.request, using=alias, robust=True)


@dataclass
class DeliverySweepResult:
    """What :func:`process_received_deliveries` or :func:`retry_deliveries` did."""

    outcomes: Counter[str] = field(default_factory=Counter)
    more: bool = False
    """``limit`` was reached with deliveries still waiting."""

    def as_dict(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes), "more": self.more}


def _process_each(queryset: QuerySet[WebhookDelivery], limit: int) -> DeliverySweepResult:
    """Process the rows of ``queryset`` oldest first, in batches, at most ``limit``.

    Rows another connection is processing right now are skipped (``busy``): whoever holds
    the lock acts on them. Walks by primary key, so a skipped row is not picked up again.
    """
    result = DeliverySweepResult()
    last = 0
    done = 0
    while done < limit:
        pks = list(
            queryset.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", flat=True)[: min(_BATCH, limit - done)]
        )
        if not pks:
            return result
        for pk in pks:
            outcome = process_delivery(pk, skip_locked=True)
            result.outcomes[str(outcome or "busy")] += 1
        last = pks[-1]
        done += len(pks)
    result.more = queryset.filter(pk__gt=last).exists()
    return result


def process_received_deliveries(*, limit: int = 1000) -> DeliverySweepResult:
    """Act on the deliveries that are stored and not processed yet (outcome ``received``).

    What the deferred-processing task runs; safe to run on several workers at once (each
    delivery is acted on once). At most ``limit`` deliveries; ``more`` says some are left.
    """
    return _process_each(WebhookDelivery.objects.filter(outcome=Outcome.RECEIVED), limit)


def deliveries_due_for_retry(now: datetime | None = None) -> QuerySet[WebhookDelivery]:
    """Deliveries the webhook sweep processes (again).

    Those still ``received`` ``IRON_KYC_WEBHOOK_RETRY_DELAY`` after they arrived (their
    processing was lost: a broker outage, a worker or web process killed), and ``failed``
    ones with fewer than ``IRON_KYC_WEBHOOK_MAX_ATTEMPTS`` attempts whose arrival is at
    least that delay, doubled for each attempt after the first, in the past.
    """
    now = now or timezone.now()
    delay = iron_settings.WEBHOOK_RETRY_DELAY
    due = Q(outcome=Outcome.RECEIVED, received_at__lte=now - delay)
    for attempts in range(1, min(iron_settings.WEBHOOK_MAX_ATTEMPTS, _MAX_DOUBLINGS + 1)):
        due |= Q(
            outcome=Outcome.FAILED,
            attempts=attempts,
            received_at__lte=now - delay * 2 ** (attempts - 1),
        )
    return WebhookDelivery.objects.filter(due)


def retry_deliveries(*, now: datetime | None = None, limit: int = 1000) -> DeliverySweepResult:
    """The webhook sweep: process :func:`deliveries_due_for_retry`, at most ``limit``.

    Run by ``django_iron_kyc.tasks.retry_webhook_deliveries`` from the beat schedule, in
    either processing mode: Iron documents no retry policy, so a delivery that failed on
    our side is retried here rather than left to Iron.
    """
    return _process_each(deliveries_due_for_retry(now), limit)
