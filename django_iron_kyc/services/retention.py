"""Retention: what Iron sent is kept for ``IRON_KYC_DELIVERY_RETENTION``, then deleted or cleared.

:func:`apply_retention` is what the hourly ``apply_retention`` task runs: it deletes the webhook
deliveries acted on longer ago than the retention (:func:`prune_deliveries`, which
``iron_kyc_prune_webhooks`` runs too) and clears the free text that outlived its use
(:func:`clear_outdated_free_text`). Both work in batches: each batch is one short
transaction over at most ``batch_size`` rows, claimed with ``SELECT ... FOR UPDATE SKIP
LOCKED``, so two runs at once (the task twice, the task and the command) take different rows
and never wait for each other, and memory does not grow with the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from ..conf import iron_settings
from ..models import Identification, WebhookDelivery
from .deliveries import RETRYABLE_OUTCOMES

__all__ = [
    "BATCH_SIZE",
    "PruneResult",
    "RetentionResult",
    "apply_retention",
    "clear_outdated_free_text",
    "prune_deliveries",
]

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
"""Rows per batch (and per transaction) unless the caller gives ``batch_size``."""

_Row = TypeVar("_Row", bound=models.Model)


@dataclass
class PruneResult:
    """What pruning deleted (or, with ``dry_run``, would delete), and what it kept."""

    deleted: int = 0
    kept_unfinished: int = 0  # old enough, but not acted on yet (received or failed)
    cutoff: datetime | None = None  # None: nothing pruned (the retention is None)
    dry_run: bool = False


@dataclass
class RetentionResult:
    """What one run of :func:`apply_retention` did."""

    deliveries_deleted: int = 0
    free_text_cleared: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_retention(
    *, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> RetentionResult:
    """Delete the deliveries acted on before the retention, clear the outdated free text.

    What the ``apply_retention`` task runs (hourly in ``tasks.BEAT_SCHEDULE``); nothing with
    ``IRON_KYC_DELIVERY_RETENTION = None``. Safe to run twice at once.
    """
    now = now or timezone.now()
    pruned = prune_deliveries(now=now, batch_size=batch_size)
    cleared = clear_outdated_free_text(now=now, batch_size=batch_size)
    result = RetentionResult(pruned.deleted, cleared)
    if pruned.deleted or any(cleared.values()):
        logger.info(
            "Retention: deleted %d webhook deliveries older than %s; cleared %s.",
            pruned.deleted,
            pruned.cutoff.isoformat() if pruned.cutoff else "-",
            ", ".join(f"{count} {kind}" for kind, count in cleared.items()) or "nothing",
        )
    return result


def prune_deliveries(
    *,
    older_than: timedelta | None = None,
    include_unfinished: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> PruneResult:
    """Delete the webhook deliveries received more than ``older_than`` ago, in batches.

    ``older_than`` defaults to ``IRON_KYC_DELIVERY_RETENTION``; with that None (and no
    ``older_than``) nothing is deleted. Deliveries not acted on yet (``received``, ``failed``)
    are kept and counted in ``kept_unfinished``, unless ``include_unfinished``. ``dry_run``
    counts what would be deleted and deletes nothing.
    """
    retention = older_than if older_than is not None else iron_settings.DELIVERY_RETENTION
    if retention is None:
        return PruneResult(dry_run=dry_run)
    cutoff = (now or timezone.now()) - retention
    old = WebhookDelivery.objects.filter(received_at__lt=cutoff)
    unfinished = Q(outcome__in=RETRYABLE_OUTCOMES)
    doomed = old if include_unfinished else old.exclude(unfinished)
    kept = 0 if include_unfinished else old.filter(unfinished).count()
    if dry_run:
        return PruneResult(doomed.count(), kept, cutoff, dry_run=True)
    deleted = _in_batches(doomed, lambda batch: batch.delete()[0], batch_size)
    return PruneResult(deleted, kept, cutoff)


def clear_outdated_free_text(
    *, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> dict[str, int]:
    """Clear the free text kept beyond what the current state needs; counts by kind.

    The one place that says which free text outlives its use: each step below is a kind of
    text, the rows where it no longer serves the current state and has not changed for
    ``IRON_KYC_DELIVERY_RETENTION`` (nothing with None), and the fields to blank. Rows are
    updated, never deleted, and ``updated_at`` is left as it was. Steps today:

    - ``review_comments``: the review comment of an identification that is not its
      customer's current one (superseded, failed locally, or older than the current one).

    A new kind of free text (such as the reasons of a replaced requirements snapshot) is
    one more step in this list.
    """
    retention = iron_settings.DELIVERY_RETENTION
    if retention is None:
        return {}
    cutoff = (now or timezone.now()) - retention
    steps: list[tuple[str, QuerySet[Any], dict[str, Any]]] = [
        (
            "review_comments",
            Identification.objects.filter(_not_current(), updated_at__lt=cutoff).exclude(
                review_comment=""
            ),
            {"review_comment": ""},
        ),
    ]
    return {kind: _in_batches(rows, _blank(fields), batch_size) for kind, rows, fields in steps}


def _blank(fields: dict[str, Any]) -> Callable[[QuerySet[Any]], int]:
    """An update of a batch that sets ``fields``."""
    return lambda batch: batch.update(**fields)


def _not_current() -> Q:
    """An identification that is not its customer's current one
    (:attr:`Customer.current_identification`: the newest neither superseded nor failed)."""
    counts = Q(superseded_at__isnull=True, failed_at__isnull=True)
    newer_that_counts = Identification.objects.filter(
        counts,
        Q(created_at__gt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk")),
        customer_id=OuterRef("customer_id"),
    )
    return ~counts | Q(Exists(newer_that_counts))


def _in_batches(rows: QuerySet[_Row], act: Callable[[QuerySet[_Row]], int], batch_size: int) -> int:
    """``act`` on ``rows`` a batch at a time; the sum of what it returned.

    Each batch is one transaction: at most ``batch_size`` primary keys, in order, claimed
    with ``FOR UPDATE SKIP LOCKED`` (rows another run holds are left to it), then ``act`` on
    those rows still matching ``rows``. Keyset pagination: each batch starts after the last.
    """
    done, last_pk = 0, None
    while True:
        with transaction.atomic():
            after = rows if last_pk is None else rows.filter(pk__gt=last_pk)
            batch = list(
                after.order_by("pk")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not batch:
                return done
            done += act(rows.filter(pk__in=batch))
        last_pk = batch[-1]
