"""The poll sweep: follow identifications no webhook settled, and recover lost intents.

Run every minute by ``tasks.poll_pending_identifications``. Polling is leased (a concurrent
sweep skips what another claimed) and backs off per identification.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.utils import timezone

from ..client import IronClient
from ..conf import iron_settings
from ..enqueue import CREATE_IDENTIFICATION, enqueue_on_commit
from ..exceptions import IronAPIError, IronTransientError
from ..models import Identification
from ..payloads import RemoteIdentification
from .customers import fetch_and_apply_customer
from .iron import get_client, list_remote
from .sources import Source
from .sync import local_snapshots, sync_identifications

__all__ = ["POLL_LEASE", "PollSweepResult", "poll_due_identifications"]

logger = logging.getLogger(__name__)

# A sweep claims the identifications it polls for this long, so a concurrent sweep skips
# them and a crashed one gives them back.
POLL_LEASE = timedelta(minutes=5)


@dataclass
class PollSweepResult:
    """Counts from one run of :func:`poll_due_identifications`."""

    customers: int = 0
    polled: int = 0
    changed: int = 0
    adopted: int = 0
    superseded: int = 0
    stale: int = 0
    recovered: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def poll_due_identifications() -> PollSweepResult:
    """The periodic sweep (run it every minute through ``tasks.poll_pending_identifications``).

    1. Flags identifications still undecided ``IRON_KYC_POLL_MAX_AGE`` after creation
       (``stale_at``, a warning logged; no more polling).
    2. Enqueues again the creation of intents Iron never confirmed whose last attempt is
       older than ``IRON_KYC_CREATE_RECOVERY_DELAY`` (a lost task, a broker outage).
    3. Polls the due identifications (confirmed, in flight, ``next_poll_at`` passed, not
       stale) in batches of ``IRON_KYC_POLL_BATCH_SIZE`` customers: one paginated list call
       per customer covers all of its identifications; changes are applied with
       ``source="poll"`` (and the customer fetched again when something changed); the next
       poll backs off from ``IRON_KYC_POLL_FIRST_DELAY``, doubling up to
       ``IRON_KYC_POLL_MAX_INTERVAL``.

    Memory and queries per batch are bounded (keyset pagination, value lists). A sweep
    stops at the first transient error (Iron down: the next sweep tries again).
    """
    result = PollSweepResult()
    now = timezone.now()
    result.stale = _flag_stale(now)
    result.recovered = _recover_intents(now)
    client: IronClient | None = None
    after = 0
    try:
        while True:
            batch = _claim_due_batch(now, after)
            if not batch:
                break
            after = batch[-1][1]
            if client is None:
                client = get_client()
            try:
                _poll_batch(client, batch, result)
            except IronTransientError as exc:
                result.errors += 1
                logger.warning("Poll sweep stopped early, Iron is unavailable: %s", exc)
                break
    finally:
        if client is not None:
            client.close()
    if result.polled or result.stale or result.recovered or result.errors:
        logger.info("Poll sweep: %s", result.as_dict())
    return result


def _flag_stale(now: datetime) -> int:
    cutoff = now - iron_settings.POLL_MAX_AGE
    size = max(1, iron_settings.POLL_BATCH_SIZE)
    candidates = (
        Identification.objects.pending()
        .filter(stale_at__isnull=True)
        .filter(
            Q(iron_created_at__lt=cutoff) | Q(iron_created_at__isnull=True, created_at__lt=cutoff)
        )
        .order_by("pk")
    )
    count, after = 0, 0
    while True:
        rows = list(candidates.filter(pk__gt=after).values_list("pk", "iron_id", "status")[:size])
        if not rows:
            return count
        Identification.objects.filter(pk__in=[r[0] for r in rows], stale_at__isnull=True).update(
            stale_at=now, next_poll_at=None
        )
        for pk, iron_id, status in rows:
            logger.warning(
                "Identification #%s (%s) is still %s after %s; flagged stale, no longer "
                "polled. Refresh its customer or decide what to do.",
                pk,
                iron_id,
                status,
                iron_settings.POLL_MAX_AGE,
            )
        count += len(rows)
        after = rows[-1][0]


def _recover_intents(now: datetime) -> int:
    size = max(1, iron_settings.POLL_BATCH_SIZE)
    delay = iron_settings.CREATE_RECOVERY_DELAY
    candidates = (
        Identification.objects.filter(
            iron_id__isnull=True,
            failed_at__isnull=True,
            superseded_at__isnull=True,
            created_at__lte=now - delay,
        )
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .order_by("pk")
    )
    count, after = 0, 0
    while True:
        with transaction.atomic():
            pks = list(
                candidates.filter(pk__gt=after)
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:size]
            )
            if not pks:
                return count
            Identification.objects.filter(pk__in=pks).update(next_poll_at=now + delay)
            for pk in pks:
                enqueue_on_commit(CREATE_IDENTIFICATION, pk)
        logger.warning(
            "Re-enqueued the creation of %d identification intent(s) Iron never confirmed: %s",
            len(pks),
            pks,
        )
        count += len(pks)
        after = pks[-1]


def _claim_due_batch(
    now: datetime, after_customer: int
) -> list[tuple[int, int, uuid.UUID | None, int]]:
    """Lock, lease and return the next due identifications (one per customer, by customer)."""
    size = max(1, iron_settings.POLL_BATCH_SIZE)
    with transaction.atomic():
        rows = list(
            Identification.objects.pending()
            .filter(
                next_poll_at__lte=now,
                stale_at__isnull=True,
                customer_id__gt=after_customer,
                customer__iron_id__isnull=False,
            )
            .order_by("customer_id", "pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "customer_id", "customer__iron_id", "poll_count")[:size]
        )
        if rows:
            Identification.objects.filter(pk__in=[r[0] for r in rows]).update(
                next_poll_at=timezone.now() + POLL_LEASE
            )
    return rows


def _backoff_schedule(now: datetime) -> Case | Value:
    """``next_poll_at`` after one more poll: POLL_FIRST_DELAY doubling, capped."""
    first = iron_settings.POLL_FIRST_DELAY
    cap = iron_settings.POLL_MAX_INTERVAL
    whens = []
    n = 0
    while first > timedelta(0) and first * 2 ** (n + 1) < cap and n < 32:
        whens.append(When(poll_count=n, then=Value(now + first * 2 ** (n + 1))))
        n += 1
    default = Value(now + cap, output_field=DateTimeField())
    if not whens:
        return default
    return Case(*whens, default=default, output_field=DateTimeField())


def _poll_batch(
    client: IronClient,
    batch: Sequence[tuple[int, int, uuid.UUID | None, int]],
    result: PollSweepResult,
) -> None:
    remotes_by_customer: dict[int, tuple[uuid.UUID, list[RemoteIdentification]]] = {}
    for _row_pk, customer_pk, customer_iron_id, _count in batch:
        if customer_pk in remotes_by_customer or customer_iron_id is None:
            continue
        try:
            remotes = list_remote(client, customer_iron_id)
        except IronTransientError:
            raise
        except IronAPIError as exc:
            if exc.status in (401, 403):
                raise
            result.errors += 1
            logger.error("Polling customer %s failed: %s", customer_iron_id, exc)
            remotes = []
        remotes_by_customer[customer_pk] = (customer_iron_id, remotes)
    result.customers += len(remotes_by_customer)
    result.polled += len(batch)

    local_by_iron_id, intents = local_snapshots(
        (r.iron_id for _, remotes in remotes_by_customer.values() for r in remotes),
        list(remotes_by_customer),
    )
    status_changed: set[int] = set()
    for customer_pk, (customer_iron_id, remotes) in remotes_by_customer.items():
        synced = sync_identifications(
            customer_pk, remotes, local_by_iron_id, intents.get(customer_pk), source=Source.POLL
        )
        status_changed.update(synced.status_changed)
        result.changed += len(synced.status_changed)
        result.adopted += len(synced.adopted)
        result.superseded += len(synced.superseded)
        if synced.status_changed or synced.adopted:
            # The customer's status at Iron moves with its identification's.
            fetch_and_apply_customer(client, customer_pk, customer_iron_id, source=Source.POLL)

    now = timezone.now()
    polled = [row[0] for row in batch]
    Identification.objects.filter(Identification.IN_FLIGHT).filter(
        pk__in=[pk for pk in polled if pk not in status_changed]
    ).update(
        poll_count=F("poll_count") + 1,
        last_polled_at=now,
        next_poll_at=_backoff_schedule(now),
    )
    if status_changed:
        Identification.objects.filter(pk__in=[pk for pk in polled if pk in status_changed]).update(
            last_polled_at=now
        )
