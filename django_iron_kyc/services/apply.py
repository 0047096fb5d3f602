"""Applying Iron's state: lock the row, apply it, and confirm with Iron what is not trusted.

:func:`apply_identification_state` and :func:`apply_customer_state` are the public entry
points (the poller, refresh, creation and sandbox answers use them; the webhook acts through
:mod:`~django_iron_kyc.services.deliveries`, which confirms the same way). When the ordering
rule does not trust what arrived (a move backward, sideways or out of a decision), Iron's
current state is fetched with one ``GET`` **after** the row was read, and applied instead;
if the row changed while Iron was asked, Iron is asked again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction

from ..client import IronClient
from ..models import Customer, Identification
from ..payloads import RemoteCustomer, RemoteIdentification
from .iron import get_client
from .sources import Source
from .state import (
    ApplyResult,
    apply_to_locked_customer,
    apply_to_locked_identification,
    locked_customers,
    locked_identifications,
)

__all__ = [
    "CONFIRM_ATTEMPTS",
    "apply_customer_state",
    "apply_identification_state",
    "fetch_customer",
    "fetch_identification",
]

logger = logging.getLogger(__name__)

CONFIRM_ATTEMPTS = 3
"""How many times Iron is asked while the row keeps changing under a confirmation."""


def apply_identification_state(
    identification: Identification | int,
    remote: RemoteIdentification,
    *,
    source: Source | str,
) -> ApplyResult:
    """Apply Iron's state of one identification to our row. The only way status changes.

    Locks the row, then follows the ordering rule (README, "Ordering"): an update older than
    the stored one (on Iron's clock) is dropped; a move forward in the lifecycle is applied;
    any other change is confirmed by fetching the identification from Iron
    (``GET /api/identifications/{id}``) and applying Iron's answer. The status is stored as
    Iron spells it (``Rejected`` as ``Declined``; unknown values stored and logged, no
    signal); on an actual change ``identification_status_changed`` is sent and, on entry
    into Approved/Declined/Expired of an identification that is not superseded, the terminal
    signal: after the transaction commits, so a rollback sends nothing. Raises
    ``ValueError`` when ``remote`` is another Iron identification, and
    :class:`~django_iron_kyc.exceptions.IronAPIError` when a confirmation cannot reach Iron
    (nothing is applied then).
    """
    source = Source(source)
    pk = identification.pk if isinstance(identification, Identification) else identification
    with transaction.atomic():
        row = locked_identifications().get(pk=pk)
        result = apply_to_locked_identification(row, remote, source)
    if not result.needs_confirmation:
        return result
    return _confirm_identification(pk, row.iron_id, row.updated_at, source)


def apply_customer_state(
    customer: Customer | int,
    remote: RemoteCustomer,
    *,
    source: Source | str,
) -> ApplyResult:
    """Apply Iron's state of one customer to our row (the rule for customers: README,
    "Ordering"). Sends ``customer_status_changed`` after commit when the status changed."""
    source = Source(source)
    pk = customer.pk if isinstance(customer, Customer) else customer
    with transaction.atomic():
        row = locked_customers().get(pk=pk)
        result = apply_to_locked_customer(row, remote, source)
    if not result.needs_confirmation:
        return result
    seen = row.updated_at
    for _attempt in range(CONFIRM_ATTEMPTS):
        with get_client() as client:
            fresh = fetch_customer(client, remote.iron_id)
        with transaction.atomic():
            row = locked_customers().get(pk=pk)
            if row.updated_at == seen:
                return apply_to_locked_customer(row, fresh, source)
            seen = row.updated_at
    return _gave_up(row, source)


def fetch_identification(client: IronClient, iron_id: uuid.UUID) -> RemoteIdentification:
    """Iron's current state of one identification (``GET /api/identifications/{id}``)."""
    return RemoteIdentification.from_api(client.get_identification(iron_id))


def fetch_customer(client: IronClient, iron_id: uuid.UUID) -> RemoteCustomer:
    """Iron's current state of one customer (``GET /api/customers/{id}``)."""
    return RemoteCustomer.from_api(client.get_customer(iron_id))


def _confirm_identification(
    pk: int, iron_id: uuid.UUID | None, seen: datetime, source: Source
) -> ApplyResult:
    assert iron_id is not None  # a row without an Iron id is never confirmed
    for _attempt in range(CONFIRM_ATTEMPTS):
        with get_client() as client:
            fresh = fetch_identification(client, iron_id)
        with transaction.atomic():
            row = locked_identifications().get(pk=pk)
            if row.updated_at == seen:
                return apply_to_locked_identification(row, fresh, source, fresh=True)
            seen = row.updated_at
    return _gave_up(row, source)


def _gave_up(row: Identification | Customer, source: Source) -> ApplyResult:
    logger.warning(
        "%s %s kept changing while its %s update was confirmed with Iron; not applied "
        "(the next webhook or poll brings Iron's state).",
        row._meta.model_name,
        row.iron_id,
        source,
    )
    return ApplyResult(row, applied=False, status_changed=False, previous_status=row.status)
