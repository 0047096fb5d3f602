"""The one place where Iron's client and our models meet.

Every change of state that comes from Iron (webhook, poll, create, sandbox call, refresh)
goes through :func:`apply_identification_state` or :func:`apply_customer_state`. They lock
the row, drop updates older than what is stored, store Iron's status as Iron spells it and
send each signal once per actual change, after the transaction commits.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import signals
from .conf import iron_settings
from .models import Customer, Identification

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


STATUS_ALIASES = {"Rejected": Identification.Status.DECLINED.value}
KNOWN_IDENTIFICATION_STATUSES = frozenset(Identification.Status.values)
KNOWN_CUSTOMER_STATUSES = frozenset(Customer.Status.values)


def normalize_identification_status(status: str) -> str:
    """Iron's status as we store it: exactly as spelled, except ``Rejected`` → ``Declined``."""
    return STATUS_ALIASES.get(status, status)


def parse_iron_datetime(value: Any) -> datetime | None:
    """Parse one of Iron's ISO 8601 timestamps into an aware datetime (UTC if naive)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed: datetime | None = value
    elif isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
    else:
        parsed = None
    if parsed is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt_timezone.utc)
    return parsed


def _uuid(value: Any, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"{what} is not a UUID: {value!r}") from None


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


@dataclass(frozen=True)
class RemoteIdentification:
    """Iron's view of one identification, from any source.

    Fields left ``None`` were not in what Iron sent and are not changed locally. From a
    webhook only ``iron_id``, ``status`` and ``updated_at`` (the container's timestamp)
    are known.
    """

    iron_id: uuid.UUID
    status: str
    updated_at: datetime | None = None
    created_at: datetime | None = None
    customer_iron_id: uuid.UUID | None = None
    url: str | None = None
    review_comment: str | None = None
    with_edd: bool | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RemoteIdentification:
        """Build from Iron's ``Identification`` JSON. Raises ``ValueError`` on a bad shape."""
        if not isinstance(data, Mapping):
            raise ValueError("an identification must be a JSON object")
        status = data.get("status")
        if not isinstance(status, str) or not status:
            raise ValueError(f"identification has no status: {status!r}")
        customer = data.get("customer_id")
        with_edd = data.get("with_edd")
        return cls(
            iron_id=_uuid(data.get("id"), "identification id"),
            status=status,
            updated_at=parse_iron_datetime(data.get("updated_at")),
            created_at=parse_iron_datetime(data.get("created_at")),
            customer_iron_id=_uuid(customer, "customer id") if customer else None,
            url=_optional_str(data, "url"),
            review_comment=_optional_str(data, "review_comment"),
            with_edd=bool(with_edd) if with_edd is not None else None,
        )


@dataclass(frozen=True)
class RemoteCustomer:
    """Iron's view of one customer (``None`` fields were not sent)."""

    iron_id: uuid.UUID
    status: str
    updated_at: datetime | None = None
    created_at: datetime | None = None
    email: str | None = None
    name: str | None = None
    external_id: str | None = None
    customer_type: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RemoteCustomer:
        """Build from Iron's ``Customer`` JSON. Raises ``ValueError`` on a bad shape."""
        if not isinstance(data, Mapping):
            raise ValueError("a customer must be a JSON object")
        status = data.get("status")
        if not isinstance(status, str) or not status:
            raise ValueError(f"customer has no status: {status!r}")
        return cls(
            iron_id=_uuid(data.get("id"), "customer id"),
            status=status,
            updated_at=parse_iron_datetime(data.get("updated_at")),
            created_at=parse_iron_datetime(data.get("created_at")),
            email=_optional_str(data, "email"),
            name=_optional_str(data, "name"),
            external_id=_optional_str(data, "external_id"),
            customer_type=_optional_str(data, "customer_type"),
        )


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


def apply_identification_state(
    identification: Identification | int,
    remote: RemoteIdentification,
    *,
    source: Source | str,
) -> ApplyResult:
    """Apply Iron's state of one identification to our row. The only way status changes.

    Locks the row (``select_for_update``), ignores ``remote`` when its ``updated_at`` is
    older than the stored ``iron_updated_at`` (Iron may deliver late, twice or out of
    order), stores the status as Iron spells it (``Rejected`` is stored as ``Declined``;
    unknown values are stored and logged), and on an actual change of status sends
    ``identification_status_changed`` and, on entry into Approved/Declined/Expired of an
    identification that is not superseded, the matching terminal signal. Signals go out
    after the transaction commits, so a rollback sends nothing.
    """
    source = Source(source)
    pk = identification.pk if isinstance(identification, Identification) else identification
    with transaction.atomic():
        row = Identification.objects.select_for_update().get(pk=pk)
        if row.iron_id is not None and row.iron_id != remote.iron_id:
            raise ValueError(
                f"Iron identification {remote.iron_id} applied to local row {row.pk} "
                f"which is {row.iron_id}"
            )
        previous = row.status
        if (
            remote.updated_at is not None
            and row.iron_updated_at is not None
            and remote.updated_at < row.iron_updated_at
        ):
            logger.info(
                "Ignoring stale %s update of identification %s (%s at %s; stored %s at %s).",
                source, remote.iron_id, remote.status, remote.updated_at.isoformat(),
                previous, row.iron_updated_at.isoformat(),
            )
            return ApplyResult(row, applied=False, status_changed=False, previous_status=previous)

        status = normalize_identification_status(remote.status)
        if status not in KNOWN_IDENTIFICATION_STATUSES:
            logger.warning(
                "Iron sent an unknown identification status %r for %s; stored as is.",
                status, remote.iron_id,
            )
        row.iron_id = remote.iron_id
        if remote.updated_at is not None:
            row.iron_updated_at = remote.updated_at
        if remote.created_at is not None and row.iron_created_at is None:
            row.iron_created_at = remote.created_at
        if remote.url is not None:
            row.url = remote.url
        if remote.review_comment is not None:
            row.review_comment = remote.review_comment
        if remote.with_edd is not None:
            row.with_edd = remote.with_edd
        changed = status != previous
        row.status = status
        if row.is_terminal or row.superseded_at is not None:
            row.next_poll_at = None
        elif changed or row.next_poll_at is None:
            # Progress (or a first status): look again soon, backing off from there.
            row.next_poll_at = timezone.now() + iron_settings.POLL_FIRST_DELAY
            row.poll_count = 0
        row.save()
        if changed:
            transaction.on_commit(
                lambda: _send_identification_signals(row, previous, status, source)
            )
        return ApplyResult(row, applied=True, status_changed=changed, previous_status=previous)


def _send_identification_signals(
    identification: Identification, previous: str, status: str, source: Source
) -> None:
    _send(
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
            identification.iron_id, status, status,
        )
        return
    _send(
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
        if row.iron_id is not None and row.iron_id != remote.iron_id:
            raise ValueError(
                f"Iron customer {remote.iron_id} applied to local row {row.pk} "
                f"which is {row.iron_id}"
            )
        previous = row.status
        if (
            remote.updated_at is not None
            and row.iron_updated_at is not None
            and remote.updated_at < row.iron_updated_at
        ):
            logger.info(
                "Ignoring stale %s update of customer %s (%s at %s; stored %s at %s).",
                source, remote.iron_id, remote.status, remote.updated_at.isoformat(),
                previous, row.iron_updated_at.isoformat(),
            )
            return ApplyResult(row, applied=False, status_changed=False, previous_status=previous)
        if remote.status not in KNOWN_CUSTOMER_STATUSES:
            logger.warning(
                "Iron sent an unknown customer status %r for %s; stored as is.",
                remote.status, remote.iron_id,
            )
        row.iron_id = remote.iron_id
        if remote.updated_at is not None:
            row.iron_updated_at = remote.updated_at
        if remote.created_at is not None and row.iron_created_at is None:
            row.iron_created_at = remote.created_at
        for field in ("email", "name", "external_id", "customer_type"):
            value = getattr(remote, field)
            if value is not None:
                setattr(row, field, value)
        changed = remote.status != previous
        row.status = remote.status
        row.save()
        if changed:
            status = remote.status
            transaction.on_commit(
                lambda: _send(
                    signals.customer_status_changed,
                    Customer,
                    customer=row,
                    previous_status=previous,
                    status=status,
                    source=source.value,
                )
            )
        return ApplyResult(row, applied=True, status_changed=changed, previous_status=previous)


def _send(signal: Any, sender: type, **kwargs: Any) -> None:
    # send_robust: one failing receiver in the host project must neither stop the others
    # nor turn an already committed change into an error (which would lose the event).
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "Receiver %r of a django-iron-kyc signal raised %r.",
                receiver, result, exc_info=result,
            )
