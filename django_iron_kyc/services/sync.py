"""Following identifications: apply one customer's listing from Iron to our rows.

Iron counts a customer's newest identification. The listing decides which one is current,
supersedes the others still in flight, adopts the ones we did not know and revives one Iron
still counts. Deciding what changed costs no query: it is read from one snapshot query.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import Identification
from ..payloads import RemoteIdentification, normalize_identification_status
from .apply import apply_identification_state
from .intents import attach
from .iron import created_key, created_since
from .ordering import is_newer
from .sources import Source
from .state import ApplyResult

__all__ = [
    "SNAPSHOT_FIELDS",
    "SyncResult",
    "differs",
    "local_snapshots",
    "snapshot_in_flight",
    "steps_up",
    "sync_identifications",
]

logger = logging.getLogger(__name__)

SNAPSHOT_FIELDS = (
    "pk",
    "customer_id",
    "iron_id",
    "status",
    "url",
    "review_comment",
    "with_edd",
    "iron_updated_at",
    "created_at",
    "superseded_at",
    "failed_at",
)


@dataclass
class SyncResult:
    """What applying one customer's list of identifications did (pks)."""

    applied: list[int] = field(default_factory=list)
    status_changed: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)


def local_snapshots(
    iron_ids: Iterable[uuid.UUID], customer_pks: Sequence[int]
) -> tuple[dict[uuid.UUID, dict[str, Any]], dict[int, dict[str, Any]]]:
    """One query: the rows of these Iron ids, and every row in flight of these customers.

    Returns (confirmed rows by Iron id, unconfirmed intent by customer pk).
    """
    rows = Identification.objects.filter(
        Q(iron_id__in=list(iron_ids))
        | (Q(customer_id__in=list(customer_pks)) & Identification.IN_FLIGHT)
    ).values(*SNAPSHOT_FIELDS)
    by_iron_id: dict[uuid.UUID, dict[str, Any]] = {}
    intents: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["iron_id"] is None:
            intents[row["customer_id"]] = row
        else:
            by_iron_id[row["iron_id"]] = row
    return by_iron_id, intents


def snapshot_in_flight(row: Mapping[str, Any]) -> bool:
    """:attr:`Identification.IN_FLIGHT` over a snapshot (a dict of :data:`SNAPSHOT_FIELDS`)."""
    return (
        row["superseded_at"] is None
        and row["failed_at"] is None
        and row["status"] not in Identification.TERMINAL_STATUSES
    )


def steps_up(row: Mapping[str, Any], remote: RemoteIdentification | None) -> bool:
    """Will applying ``remote`` take this terminal row back into flight (Iron's step-up)?"""
    return (
        remote is not None
        and row["superseded_at"] is None
        and row["failed_at"] is None
        and row["status"] in Identification.TERMINAL_STATUSES
        and normalize_identification_status(remote.status) not in Identification.TERMINAL_STATUSES
        and is_newer(remote.updated_at, row["iron_updated_at"])
    )


def differs(row: Mapping[str, Any], remote: RemoteIdentification) -> bool:
    """Would applying ``remote`` change the row? (Decided without a query.)"""
    stored = row["iron_updated_at"]
    if remote.updated_at is not None and stored is not None and remote.updated_at < stored:
        return False
    if normalize_identification_status(remote.status) != row["status"]:
        return True
    if remote.updated_at is not None and remote.updated_at != stored:
        return True
    return any(
        getattr(remote, name) is not None and getattr(remote, name) != row[name]
        for name in ("url", "review_comment", "with_edd")
    )


def sync_identifications(
    customer_pk: int,
    remotes: Sequence[RemoteIdentification],
    local_by_iron_id: Mapping[uuid.UUID, Mapping[str, Any]],
    intent: Mapping[str, Any] | None,
    *,
    source: Source,
) -> SyncResult:
    """Apply one customer's identifications as Iron lists them; adopt unknown ones.

    Iron counts the newest identification: it is current, unless an unconfirmed local
    intent is newer (once sent, it will be). Local identifications in flight that are not
    current are superseded; unknown ones are adopted (superseded unless current). Costs
    no query when nothing changed.
    """
    result = SyncResult()
    if not remotes:
        return result
    ordered = sorted(remotes, key=created_key)
    newest = ordered[-1]
    current: RemoteIdentification | None = newest
    adopt_into_intent: RemoteIdentification | None = None
    if intent is not None:
        if newest.iron_id not in local_by_iron_id and created_since(newest, intent["created_at"]):
            adopt_into_intent = newest
        else:
            current = None
    if current is not None:
        # Also the ones this listing steps up: applied while the current one is not
        # tracked yet, they would be in flight and keep it from being adopted.
        listed = {remote.iron_id: remote for remote in remotes}
        outdated = [
            row["pk"]
            for row in local_by_iron_id.values()
            if row["customer_id"] == customer_pk
            and (snapshot_in_flight(row) or steps_up(row, listed.get(row["iron_id"])))
            and row["iron_id"] != current.iron_id
        ]
        if outdated:
            Identification.objects.filter(pk__in=outdated, superseded_at__isnull=True).update(
                superseded_at=timezone.now(), next_poll_at=None
            )
            result.superseded.extend(outdated)
            logger.info(
                "Iron counts identification %s for customer #%s now; superseded #%s.",
                current.iron_id,
                customer_pk,
                ", #".join(map(str, outdated)),
            )
        counted = local_by_iron_id.get(current.iron_id)
        if (
            counted is not None
            and counted["customer_id"] == customer_pk
            and counted["superseded_at"] is not None
            and counted["failed_at"] is None
        ):
            _revive(counted["pk"], current)
    for remote in ordered:
        row = local_by_iron_id.get(remote.iron_id)
        applied: ApplyResult | None
        if row is not None:
            if row["customer_id"] != customer_pk:
                logger.error(
                    "Iron lists identification %s under customer #%s, but it is tracked "
                    "under customer #%s; not applied.",
                    remote.iron_id,
                    customer_pk,
                    row["customer_id"],
                )
                continue
            if not differs(row, remote):
                continue
            applied = apply_identification_state(row["pk"], remote, source=source)
        elif remote is adopt_into_intent and intent is not None:
            instance = attach(intent["pk"], remote, source=source)
            if instance is None:
                continue
            logger.info(
                "Intent #%s is Iron identification %s (found by listing).",
                instance.pk,
                remote.iron_id,
            )
            applied = ApplyResult(instance, True, True, "")
            result.adopted.append(instance.pk)
        else:
            applied = _adopt_new(
                customer_pk, remote, source=source, superseded=remote is not current
            )
            if applied is None:
                continue
            result.adopted.append(applied.instance.pk)
        if applied.applied:
            result.applied.append(applied.instance.pk)
        if applied.status_changed:
            result.status_changed.append(applied.instance.pk)
    return result


def _revive(pk: int, remote: RemoteIdentification) -> bool:
    """Iron counts an identification we marked superseded: it is current again.

    Happens when a forced restart lost a race at Iron (the superseded intent's POST was
    created after the forced one) or the forced one was never created.
    """
    in_flight = normalize_identification_status(remote.status) not in (
        Identification.TERMINAL_STATUSES
    )
    try:
        with transaction.atomic():
            revived = Identification.objects.filter(pk=pk, superseded_at__isnull=False).update(
                superseded_at=None,
                stale_at=None,
                next_poll_at=timezone.now() if in_flight else None,
            )
    except IntegrityError:
        revived = 0
    if revived:
        logger.warning(
            "Iron counts identification %s, which was superseded here: it is current again.",
            remote.iron_id,
        )
    return bool(revived)


def _adopt_new(
    customer_pk: int, remote: RemoteIdentification, *, source: Source, superseded: bool
) -> ApplyResult | None:
    """Track an identification Iron has and we did not know (then apply it)."""
    now = timezone.now()
    try:
        with transaction.atomic():
            row = Identification.objects.create(
                customer_id=customer_pk,
                iron_id=remote.iron_id,
                with_edd=bool(remote.with_edd),
                superseded_at=now if superseded else None,
                created_at=min(remote.created_at, now) if remote.created_at else now,
            )
            result = apply_identification_state(row, remote, source=source)
    except IntegrityError:
        existing = Identification.objects.filter(iron_id=remote.iron_id).first()
        if existing is None:
            logger.warning(
                "Could not adopt Iron identification %s for customer #%s: another "
                "identification is in flight.",
                remote.iron_id,
                customer_pk,
            )
            return None
        return apply_identification_state(existing, remote, source=source)
    logger.info(
        "Adopted Iron identification %s (%s) for customer #%s%s.",
        remote.iron_id,
        remote.status,
        customer_pk,
        " as superseded" if superseded else "",
    )
    return result
