"""Sandbox decisions: approve or decline an identification at Iron's sandbox, then apply it."""

from __future__ import annotations

import uuid

from ..conf import iron_settings
from ..exceptions import IdentificationStateError, SandboxNotAllowedError
from ..models import Customer, Identification
from ..payloads import RemoteIdentification
from .apply import apply_identification_state
from .customers import fetch_and_apply_customer
from .iron import get_client
from .sources import Source

__all__ = ["sandbox_approve", "sandbox_decline"]


def sandbox_approve(identification: Identification) -> Identification:
    """Approve an identification in Iron's sandbox and apply the result (``source="sandbox"``).

    ``POST /api/sandbox/identification/{id}`` with ``{"approved": true}``. Raises
    :class:`~django_iron_kyc.exceptions.SandboxNotAllowedError` before any request unless
    sandbox actions are on (``IRON_KYC_SANDBOX_ACTIONS``, and only against the sandbox or
    a loopback fake), and :class:`~django_iron_kyc.exceptions.IdentificationStateError`
    for an identification Iron has not confirmed.
    """
    return _sandbox_decide(identification, approved=True)


def sandbox_decline(identification: Identification) -> Identification:
    """Decline an identification in Iron's sandbox (see :func:`sandbox_approve`)."""
    return _sandbox_decide(identification, approved=False)


def _sandbox_decide(identification: Identification, *, approved: bool) -> Identification:
    if not iron_settings.SANDBOX_ACTIONS:
        raise SandboxNotAllowedError(
            "Sandbox actions are off: they need IRON_KYC_SANDBOX_ACTIONS and a sandbox (or "
            f"loopback) IRON_KYC_BASE_URL, not {iron_settings.base_host}."
        )
    row = Identification.objects.get(pk=identification.pk)
    if row.iron_id is None:
        raise IdentificationStateError(
            f"Identification {row} does not exist at Iron yet; nothing to decide."
        )
    with get_client() as client:
        data = client.sandbox_decide(row.iron_id, approved=approved, idempotency_key=uuid.uuid4())
        remote = RemoteIdentification.from_api(data)
        result = apply_identification_state(row, remote, source=Source.SANDBOX)
        if result.status_changed:
            # Iron moved the customer too (Approved -> Active...). Whether the sandbox also
            # sends webhooks is undocumented, so fetch the customer rather than wait for one.
            customer_iron_id = Customer.objects.values_list("iron_id", flat=True).get(
                pk=row.customer_id
            )
            if customer_iron_id is not None:
                fetch_and_apply_customer(
                    client, row.customer_id, customer_iron_id, source=Source.SANDBOX
                )
    instance: Identification = result.instance
    return instance
