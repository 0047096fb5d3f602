"""What the services share to talk to Iron: the client, a customer's listing, a refusal in words."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from ..client import IronClient
from ..exceptions import InvalidPayloadError, IronAPIError
from ..payloads import RemoteIdentification

__all__ = [
    "CLOCK_SKEW",
    "created_key",
    "created_since",
    "describe_failure",
    "get_client",
    "list_remote",
]

logger = logging.getLogger(__name__)

# How far Iron's clock may be behind ours when deciding whether an identification at Iron
# was created "after our intent" (reconciliation, adoption).
CLOCK_SKEW = timedelta(seconds=60)

_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_REFUSALS = {
    400: "Iron rejected the request as invalid (400)",
    401: "Iron refused the API key (401; check IRON_KYC_API_KEY)",
    403: "The API key may not do this (403 Forbidden; is it a read-only key?)",
    404: "Iron does not know this customer (404)",
}


def get_client() -> IronClient:
    """Build the Iron client from the ``IRON_KYC_*`` settings as they are now.

    The one place this app builds a client. Use it as a context manager so its connection
    pool is closed: ``with get_client() as client: ...``.
    """
    return IronClient()


def describe_failure(exc: IronAPIError, action: str) -> str:
    """Why Iron refused to ``action``, for ``last_error`` (a person reads it)."""
    if exc.is_idempotency_conflict:
        reason = (
            "Iron refused the idempotency key: it was already used for a different request "
            "(409); not retried"
        )
    else:
        reason = _REFUSALS.get(exc.status or 0, "Iron refused the request")
    return f"Could not {action}. {reason}. Iron said: {exc}"


def list_remote(client: IronClient, customer_iron_id: uuid.UUID) -> list[RemoteIdentification]:
    """One paginated list call: every identification Iron has for the customer."""
    remotes = []
    for item in client.iter_identifications(customer_iron_id):
        try:
            remotes.append(RemoteIdentification.from_api(item))
        except InvalidPayloadError as exc:
            logger.warning(
                "Skipping an identification of customer %s Iron listed in a bad shape: %s",
                customer_iron_id,
                exc,
            )
    return remotes


def created_key(remote: RemoteIdentification) -> datetime:
    """Sort key: when Iron created it (undated ones first)."""
    return remote.created_at or _EPOCH


def created_since(remote: RemoteIdentification, when: datetime) -> bool:
    """Did Iron create it at or after ``when``, allowing for :data:`CLOCK_SKEW`?"""
    return remote.created_at is not None and remote.created_at >= when - CLOCK_SKEW
