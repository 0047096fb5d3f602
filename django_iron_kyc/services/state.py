"""The state rule: how Iron's state reaches a locked row, and when signals are due.

Every change of state that comes from Iron (webhook, poll, create, sandbox call, refresh)
ends here, on a row its caller locked: :func:`apply_to_locked_identification` and
:func:`apply_to_locked_customer`. They take the verdict of the ordering rule
(:mod:`~django_iron_kyc.services.ordering`): a stale update is dropped, one the rule does not
trust is left for the caller to confirm with Iron (``needs_confirmation``), anything else is
stored as Iron spells it, and each signal is sent once per actual change, after the
transaction commits. The public entry points that lock, apply and confirm are in
:mod:`~django_iron_kyc.services.apply`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..conf import iron_settings
from ..models import Customer, Identification, IdentificationQuerySet
from ..payloads import RemoteCustomer, RemoteIdentification, normalize_identification_status
from ..statuses import moves_forward
from .ordering import Verdict, customer_verdict, identification_verdict, implied_customer_statuses
from .signalling import send_customer_status_changed, send_identification_signals
from .sources import Source

__all__ = [
    "ApplyResult",
    "apply_to_locked_customer",
    "apply_to_locked_identification",
    "locked_customers",
    "locked_identifications",
]

logger = logging.getLogger(__name__)


@dataclass
class ApplyResult:
    """What applying a remote state did."""

    instance: Any
    applied: bool
    """False when nothing was stored: the update was stale, or needs confirming."""
    status_changed: bool
    previous_status: str
    needs_confirmation: bool = False
    """The ordering rule does not trust it: fetch Iron's current state and apply that."""


# Statuses signalled on a change; any other is stored as Iron sent it, and logged.
_KNOWN_IDENTIFICATION_STATUSES = frozenset(Identification.Status.values)
_KNOWN_CUSTOMER_STATUSES = frozenset(Customer.Status.values)

# What applying Iron's state may change on the row (saved with update_fields).
_APPLIED_IDENTIFICATION_FIELDS = (
    "iron_id",
    "iron_updated_at",
    "iron_created_at",
    "webhook_sent_at",
    "moved_back_at",
    "url",
    "review_comment",
    "with_edd",
    "status",
    "superseded_at",
    "next_poll_at",
    "poll_count",
    "updated_at",
)


def locked_identifications() -> IdentificationQuerySet:
    """Identifications locked for update (``of=self``) with their customer, for one transaction.

    The customer comes with the row: the terminal signal after commit needs it, and a query
    then could fail (database gone) and lose the signal.
    """
    return Identification.objects.select_for_update(of=("self",)).select_related("customer")


def locked_customers() -> Any:
    """Customers locked for update, for one transaction."""
    return Customer.objects.select_for_update()


def apply_to_locked_identification(
    row: Identification,
    remote: RemoteIdentification,
    source: Source,
    *,
    fresh: bool = False,
) -> ApplyResult:
    """Apply ``remote`` to ``row``, which the caller locked with :func:`locked_identifications`
    in its open transaction; ``fresh``: ``remote`` was fetched after ``row`` was read and the
    row has not changed since. Raises ``ValueError`` for another Iron identification."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError(
            "apply_to_locked_identification needs the transaction that holds the row lock"
        )
    _check_same_object(row, remote)
    previous = row.status
    verdict = identification_verdict(row, remote, fresh=fresh)
    if verdict is not Verdict.APPLY:
        _log_verdict(verdict, row, remote, source)
        return ApplyResult(row, False, False, previous, verdict is Verdict.CONFIRM)
    status = normalize_identification_status(remote.status)
    known = status in _KNOWN_IDENTIFICATION_STATUSES
    if not known:
        logger.warning(
            "Iron sent an unknown identification status %r for %s; stored as is, no signal sent.",
            status,
            remote.iron_id,
        )
    _take_iron_identity(row, remote)
    if remote.url is not None:
        row.url = remote.url
    if remote.review_comment is not None:
        row.review_comment = remote.review_comment
    if remote.with_edd is not None:
        row.with_edd = remote.with_edd
    changed = status != previous
    if changed and not moves_forward(previous, status):
        # Only a confirmed fetch gets here (ordering): from now on its webhooks are
        # confirmed too, so an old event retried later cannot undo this move.
        row.moved_back_at = timezone.now()
        logger.info(
            "Iron confirmed identification %s moved from %s to %s.", row.iron_id, previous, status
        )
    row.status = status
    if changed and row.superseded_at is None and row.failed_at is None:
        _supersede_if_replaced(row)
    if row.is_terminal or row.superseded_at is not None:
        row.next_poll_at = None
    elif changed or row.next_poll_at is None:
        # Progress (or a first status): look again soon, backing off from there.
        row.next_poll_at = timezone.now() + iron_settings.POLL_FIRST_DELAY
        row.poll_count = 0
    row.save(update_fields=_APPLIED_IDENTIFICATION_FIELDS)
    if changed and known:
        transaction.on_commit(lambda: send_identification_signals(row, previous, status, source))
    return ApplyResult(row, applied=True, status_changed=changed, previous_status=previous)


def apply_to_locked_customer(row: Customer, remote: RemoteCustomer, source: Source) -> ApplyResult:
    """Apply ``remote`` to the customer ``row`` the caller locked in its open transaction.

    Sends ``customer_status_changed`` after commit when the status actually changed.
    """
    _check_same_object(row, remote)
    previous = row.status
    implied: frozenset[str] = frozenset()
    if remote.from_a_webhook and remote.status != previous:
        current = row.current_identification
        if current is not None:
            implied = implied_customer_statuses(current.status)
    verdict = customer_verdict(row, remote, implied=implied)
    if verdict is not Verdict.APPLY:
        _log_verdict(verdict, row, remote, source)
        return ApplyResult(row, False, False, previous, verdict is Verdict.CONFIRM)
    known = remote.status in _KNOWN_CUSTOMER_STATUSES
    if not known:
        logger.warning(
            "Iron sent an unknown customer status %r for %s; stored as is, no signal sent.",
            remote.status,
            remote.iron_id,
        )
    _take_iron_identity(row, remote)
    for field in ("email", "name", "external_id", "customer_type"):
        value = getattr(remote, field)
        if value is not None:
            setattr(row, field, value)
    changed = remote.status != previous
    row.status = remote.status
    row.save()
    if changed and known:
        status = remote.status
        transaction.on_commit(lambda: send_customer_status_changed(row, previous, status, source))
    return ApplyResult(row, applied=True, status_changed=changed, previous_status=previous)


def _supersede_if_replaced(row: Identification) -> None:
    """Keep Iron's rule on a change of status: only the customer's newest identification counts.

    ``row`` (locked, about to be saved) is marked superseded when the customer has a newer
    identification at Iron, or an intent not sent yet. When ``row`` stays current and is in
    flight, older ones still in flight are superseded instead (one in flight at most).
    """
    since = row.iron_created_at or row.created_at
    others = Identification.objects.filter(customer_id=row.customer_id).exclude(pk=row.pk)
    newer = Q(iron_id__isnull=False) & (
        Q(iron_created_at__gt=since) | Q(iron_created_at__isnull=True, created_at__gt=since)
    )
    intent = Q(iron_id__isnull=True) & Identification.IN_FLIGHT
    replaced = others.filter(newer | intent).exists()
    if not replaced and not row.is_terminal:
        older = list(others.in_flight().values_list("pk", flat=True))
        if older:
            others.filter(pk__in=older).update(superseded_at=timezone.now(), next_poll_at=None)
            logger.info(
                "Identification %s is in flight again and newest; superseded older #%s.",
                row.iron_id,
                ", #".join(map(str, older)),
            )
    if replaced:
        row.superseded_at = timezone.now()
        logger.info(
            "Identification %s moved to %s, but the customer has a newer identification; "
            "marked superseded (it no longer counts).",
            row.iron_id,
            row.status,
        )


def _take_iron_identity(
    row: Identification | Customer, remote: RemoteIdentification | RemoteCustomer
) -> None:
    """Iron's id and its times onto the row, each clock in its own field (creation time only
    if not known yet; the newest webhook send time)."""
    row.iron_id = remote.iron_id
    if remote.updated_at is not None:
        row.iron_updated_at = remote.updated_at
    if remote.created_at is not None and row.iron_created_at is None:
        row.iron_created_at = remote.created_at
    if remote.sent_at is not None and (
        row.webhook_sent_at is None or remote.sent_at > row.webhook_sent_at
    ):
        row.webhook_sent_at = remote.sent_at


def _check_same_object(
    row: Identification | Customer, remote: RemoteIdentification | RemoteCustomer
) -> None:
    if row.iron_id is not None and row.iron_id != remote.iron_id:
        what = row._meta.model_name
        raise ValueError(
            f"Iron {what} {remote.iron_id} applied to local row {row.pk} which is {row.iron_id}"
        )


def _log_verdict(
    verdict: Verdict,
    row: Identification | Customer,
    remote: RemoteIdentification | RemoteCustomer,
    source: Source,
) -> None:
    when = remote.updated_at or remote.sent_at
    logger.info(
        "%s %s update of %s %s to %s (%s %s); stored %s.",
        "Ignoring stale" if verdict is Verdict.STALE else "Confirming with Iron the",
        source,
        row._meta.model_name,
        remote.iron_id,
        remote.status,
        "updated at Iron" if remote.updated_at is not None else "webhook sent",
        when.isoformat() if when is not None else "undated",
        row.status or "nothing",
    )
