"""Customers at Iron: create one (idempotently), and refresh one with its identifications."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from ..client import IronClient
from ..exceptions import (
    IdentificationStateError,
    InvalidPayloadError,
    IronAPIError,
    IronTransientError,
)
from ..models import Customer
from ..payloads import RemoteCustomer
from .apply import apply_customer_state
from .iron import describe_failure, get_client, list_remote
from .sources import Source
from .sync import local_snapshots, sync_identifications

__all__ = ["create_customer", "fetch_and_apply_customer", "refresh_customer"]

logger = logging.getLogger(__name__)


def create_customer(
    *,
    email: str,
    customer_type: str = Customer.CustomerType.PERSON,
    name: str = "",
    external_id: str | None = None,
    user: Any = None,
) -> Customer:
    """Create a customer at Iron (``POST /api/customers``) and return the local row.

    Idempotent the same way as identifications: the local row and its idempotency key are
    saved and committed **before** Iron is asked, and a retry of the same intent (the same
    ``user``, or the same ``external_id``, while Iron has not confirmed it yet) reuses that
    row and its key, so a timeout after Iron created the customer never makes a second
    one. A customer Iron already confirmed for ``user`` or ``external_id`` is returned
    without any request. On success Iron's answer is applied with ``source="create"``.

    Call it outside a transaction (inside one, the row only commits with it).

    Raises :class:`~django_iron_kyc.exceptions.IronTransientError` when Iron could not be
    reached or answered 429/5xx (the row stays, with ``last_error``, for a retry) and
    :class:`~django_iron_kyc.exceptions.IronAPIError` when Iron refused (``last_error``
    says why).
    """
    with transaction.atomic():
        row: Customer | None = None
        if user is not None:
            row = Customer.objects.select_for_update().filter(user=user).first()
        if row is None and external_id:
            row = (
                Customer.objects.select_for_update()
                .filter(external_id=external_id)
                .filter(Q(user__isnull=True) | Q(user=user) if user is not None else Q())
                .order_by(F("iron_id").asc(nulls_last=True), "pk")
                .first()
            )
        if row is not None and row.iron_id is not None:
            return row
        values = {
            "email": email,
            "customer_type": customer_type,
            "name": name or "",
            "external_id": external_id or "",
        }
        if row is None:
            row = Customer.objects.create(user=user, **values)
        else:
            # The same intent again: keep its key. If the details changed and Iron already
            # used the key, Iron answers 409 and last_error says so.
            for attr, value in values.items():
                setattr(row, attr, value)
            if user is not None:
                row.user = user
            row.save()
    try:
        with get_client() as client:
            data = client.create_customer(
                email=row.email,
                idempotency_key=row.idempotency_key,
                customer_type=row.customer_type,
                name=row.name or None,
                external_id=row.external_id or None,
            )
        remote = RemoteCustomer.from_api(data)
    except IronAPIError as exc:
        if exc.is_idempotency_conflict:
            logger.error(
                "Iron refused idempotency key %s of customer intent #%s (409): %s",
                row.idempotency_key,
                row.pk,
                exc,
            )
        message = (
            f"Could not reach Iron to create the customer; it will be retried. {exc}"
            if isinstance(exc, IronTransientError)
            else describe_failure(exc, "create the customer")
        )
        Customer.objects.filter(pk=row.pk).update(last_error=message)
        raise
    except InvalidPayloadError as exc:
        message = f"Iron's answer to creating the customer is not a customer: {exc}"
        Customer.objects.filter(pk=row.pk).update(last_error=message)
        raise IronAPIError(message, status=201, method="POST", path="/api/customers") from None
    with transaction.atomic():
        Customer.objects.filter(pk=row.pk).update(last_error="")
        result = apply_customer_state(row.pk, remote, source=Source.CREATE)
    instance: Customer = result.instance
    return instance


def refresh_customer(customer: Customer | int) -> Customer:
    """Fetch a customer and all its identifications from Iron now and apply them.

    One ``GET /api/customers/{id}`` (applied with ``source="refresh"``) and one paginated
    ``GET /api/customers/{id}/identifications``. Known identifications get Iron's state;
    unknown ones are adopted as local rows, so every identification at Iron is known
    locally: the newest one is current, older ones still in flight are marked superseded
    (Iron no longer counts them). Task twin: ``tasks.refresh_customer(customer_pk)``.

    Raises :class:`~django_iron_kyc.exceptions.IdentificationStateError` for a customer
    Iron has not created yet, and ``IronAPIError`` (or ``IronTransientError``) when Iron
    fails.
    """
    pk = customer.pk if isinstance(customer, Customer) else customer
    iron_id = Customer.objects.values_list("iron_id", flat=True).get(pk=pk)
    if iron_id is None:
        raise IdentificationStateError(f"Customer #{pk} does not exist at Iron yet.")
    with get_client() as client:
        remote_customer = RemoteCustomer.from_api(client.get_customer(iron_id))
        remotes = list_remote(client, iron_id)
    apply_customer_state(pk, remote_customer, source=Source.REFRESH)
    local_by_iron_id, intents = local_snapshots([r.iron_id for r in remotes], [pk])
    sync_identifications(pk, remotes, local_by_iron_id, intents.get(pk), source=Source.REFRESH)
    return Customer.objects.get(pk=pk)


def fetch_and_apply_customer(
    client: IronClient, customer_pk: int, customer_iron_id: uuid.UUID, *, source: Source
) -> None:
    """Fetch one customer from Iron and apply its state; a failure is logged, not raised.

    For callers whose own work is done (an identification changed, so the customer's status
    at Iron moves too): a customer fetched later catches up.
    """
    try:
        remote = RemoteCustomer.from_api(client.get_customer(customer_iron_id))
    except (IronAPIError, InvalidPayloadError) as exc:
        logger.warning("Could not fetch customer %s from Iron: %s", customer_iron_id, exc)
        return
    apply_customer_state(customer_pk, remote, source=source)
