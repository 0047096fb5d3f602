"""The state rule: the only way Iron's state reaches our rows, and when signals go out.

Every change of state that comes from Iron (webhook, poll, create, sandbox call, refresh) goes
through :func:`apply_identification_state` or :func:`apply_customer_state`. They lock the row,
drop updates older than what is stored, store Iron's status as Iron spells it and send each
signal once per actual change, after the transaction commits.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .. import signals
from ..conf import iron_settings
from ..models import Customer, Identification, IdentificationQuerySet
from ..payloads import RemoteCustomer, RemoteIdentification, normalize_identification_status

__all__ = [
    "TERMINAL_SIGNALS",
    "ApplyResult",
    "Source",
    "apply_customer_state",
    "apply_identification_state",
    "apply_to_locked_identification",
    "is_newer",
    "locked_identifications",
    "send_signal",
]

logger = logging.getLogger(__name__)


class Source(str, enum.Enum):
    """Where a change of state came from (the ``source`` kwarg of the signals)."""

    WEBHOOK = "webhook"
    POLL = "poll"
    CREATE = "create"
    SANDBOX = "sandbox"
    REFRESH = "refresh"

    def __str__(self) -> str:
        return self.value


@dataclass
class ApplyResult:
    """What applying a remote state did."""

    instance: Any
    applied: bool  # False when the update was older than what is stored
    status_changed: bool
    previous_status: str


TERMINAL_SIGNALS = {
    Identification.Status.APPROVED.value: signals.identification_approved,
    Identification.Status.DECLINED.value: signals.identification_declined,
    Identification.Status.EXPIRED.value: signals.identification_expired,
}

# Statuses signalled on a change; any other is stored as Iron sent it, and logged.
_KNOWN_IDENTIFICATION_STATUSES = frozenset(Identification.Status.values)
_KNOWN_CUSTOMER_STATUSES = frozenset(Customer.Status.values)

# What applying Iron's state may change on the row (saved with update_fields).
_APPLIED_IDENTIFICATION_FIELDS = (
    "iron_id",
    "iron_updated_at",
    "iron_created_at",
    "url",
    "review_comment",
    "with_edd",
    "status",
    "superseded_at",
    "next_poll_at",
    "poll_count",
    "updated_at",
)


def apply_identification_state(
    identification: Identification | int,
    remote: RemoteIdentification,
    *,
    source: Source | str,
) -> ApplyResult:
    """Apply Iron's state of one identification to our row. The only way status changes.

    Locks the row (``select_for_update``), ignores ``remote`` when its ``updated_at`` is
    older than the stored ``iron_updated_at`` (Iron may deliver late, twice or out of
    order), leaves a terminal status only for an update strictly newer than the stored one
    (Iron's step-up), stores the status as Iron spells it (``Rejected`` is stored as
    ``Declined``; unknown values are stored and logged, without signals), and on an actual
    change of status sends ``identification_status_changed`` and, on entry into
    Approved/Declined/Expired of an identification that is not superseded, the matching
    terminal signal. Signals go out after the transaction commits, so a rollback sends
    nothing. Raises ``ValueError`` when ``remote`` is another Iron identification.
    """
    source = Source(source)
    pk = identification.pk if isinstance(identification, Identification) else identification
    with transaction.atomic():
        row = locked_identifications().get(pk=pk)
        return _apply_identification(row, remote, source)


def locked_identifications() -> IdentificationQuerySet:
    """Identifications locked for update (``of=self``) with their customer, for one transaction.

    The customer comes with the row: the terminal signal after commit needs it, and a query
    then could fail (database gone) and lose the signal.
    """
    return Identification.objects.select_for_update(of=("self",)).select_related("customer")


def apply_to_locked_identification(
    row: Identification, remote: RemoteIdentification, source: Source
) -> ApplyResult:
    """:func:`apply_identification_state` on a row the caller locked with
    :func:`locked_identifications` in its open transaction (no second lock, no savepoint;
    an error rolls back the caller's transaction). Used by ``services.deliveries``."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError(
            "apply_to_locked_identification needs the transaction that holds the row lock"
        )
    return _apply_identification(row, remote, source)


def _apply_identification(
    row: Identification, remote: RemoteIdentification, source: Source
) -> ApplyResult:
    previous = row.status
    if _is_stale(row, remote, source):
        return ApplyResult(row, applied=False, status_changed=False, previous_status=previous)

    status = normalize_identification_status(remote.status)
    if (
        status != previous
        and row.is_terminal
        and not is_newer(remote.updated_at, row.iron_updated_at)
    ):
        # Leaving a terminal status (a step-up) needs an update strictly newer than the
        # decision we stored; an undated or same-time one may be a late copy.
        logger.info(
            "Ignoring %s update of identification %s to %s: it is not newer than the "
            "stored terminal status %s.",
            source,
            remote.iron_id,
            status,
            previous,
        )
        return ApplyResult(row, applied=False, status_changed=False, previous_status=previous)
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
        transaction.on_commit(lambda: _send_identification_signals(row, previous, status, source))
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
    """Iron's id and timestamps onto the row (creation time only if not known yet)."""
    row.iron_id = remote.iron_id
    if remote.updated_at is not None:
        row.iron_updated_at = remote.updated_at
    if remote.created_at is not None and row.iron_created_at is None:
        row.iron_created_at = remote.created_at


def _is_stale(
    row: Identification | Customer,
    remote: RemoteIdentification | RemoteCustomer,
    source: Source,
) -> bool:
    """Refuse another Iron object (``ValueError``); True (and logged) for an older update."""
    what = row._meta.model_name
    if row.iron_id is not None and row.iron_id != remote.iron_id:
        raise ValueError(
            f"Iron {what} {remote.iron_id} applied to local row {row.pk} which is {row.iron_id}"
        )
    if (
        remote.updated_at is None
        or row.iron_updated_at is None
        or remote.updated_at >= row.iron_updated_at
    ):
        return False
    logger.info(
        "Ignoring stale %s update of %s %s (%s at %s; stored %s at %s).",
        source,
        what,
        remote.iron_id,
        remote.status,
        remote.updated_at.isoformat(),
        row.status,
        row.iron_updated_at.isoformat(),
    )
    return True


def is_newer(candidate: datetime | None, stored: datetime | None) -> bool:
    """Is ``candidate`` strictly newer than ``stored`` (an undated one never is)?"""
    if candidate is None:
        return False
    return stored is None or candidate > stored


def _send_identification_signals(
    identification: Identification, previous: str, status: str, source: Source
) -> None:
    send_signal(
        signals.identification_status_changed,
        Identification,
        identification=identification,
        previous_status=previous,
        status=status,
        source=source.value,
    )
    terminal = TERMINAL_SIGNALS.get(status)
    if terminal is None:
        return
    if identification.superseded_at is not None:
        logger.info(
            "Identification %s reached %s after being superseded; no %s signal.",
            identification.iron_id,
            status,
            status,
        )
        return
    send_signal(
        terminal,
        Identification,
        identification=identification,
        customer=identification.customer,
        previous_status=previous,
        source=source.value,
    )


def apply_customer_state(
    customer: Customer | int,
    remote: RemoteCustomer,
    *,
    source: Source | str,
) -> ApplyResult:
    """Apply Iron's state of one customer to our row (same rules as identifications).

    Sends ``customer_status_changed`` after commit when the status actually changed.
    """
    source = Source(source)
    pk = customer.pk if isinstance(customer, Customer) else customer
    with transaction.atomic():
        row = Customer.objects.select_for_update().get(pk=pk)
        previous = row.status
        if _is_stale(row, remote, source):
            return ApplyResult(row, applied=False, status_changed=False, previous_status=previous)
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
            transaction.on_commit(
                lambda: send_signal(
                    signals.customer_status_changed,
                    Customer,
                    customer=row,
                    previous_status=previous,
                    status=status,
                    source=source.value,
                )
            )
        return ApplyResult(row, applied=True, status_changed=changed, previous_status=previous)


def send_signal(signal: Any, sender: type, **kwargs: Any) -> None:
    """Send ``signal`` to every receiver; one that raises is logged, the others still run."""
    # send_robust: one failing receiver in the host project must neither stop the others
    # nor turn an already committed change into an error (which would lose the event).
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "Receiver %r of a django-iron-kyc signal raised %r.",
                receiver,
                result,
                exc_info=result,
            )
