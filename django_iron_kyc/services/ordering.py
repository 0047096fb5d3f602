"""The ordering rule: which word about a status to trust, and which to check with Iron first.

Our contract with Iron (Part A, item 5): Iron may deliver webhooks late, twice or out of
order, and a webhook's timestamp is when it was *sent*, so a retry of an old event can carry
a later time than a newer event. Two clocks, never compared: Iron's object time
(``updated_at`` of an API answer, kept in ``iron_updated_at``) and a webhook's send time
(kept in ``webhook_sent_at``).

- A webhook that moves an identification **forward** in its lifecycle
  (:func:`~django_iron_kyc.models.moves_forward`) is applied as it is. One that would move it
  backward, sideways between decisions or out of a decision is **confirmed**: Iron's current
  state is fetched and applied instead (a genuine step-up is applied that way). Once Iron
  has confirmed a move back (``moved_back_at``), every webhook for that identification is
  confirmed: a retry of an event from before the move would otherwise look forward.
- Iron's object (a poll, a refresh, an answer) older than the stored one is **stale**. A move
  forward is applied; any other is confirmed with a fresh fetch unless it *is* one. A
  delivery that waited while its identification was unknown here is confirmed too: the
  identification's state came from Iron since.
- A customer's status is not monotonic. A ``customer_status`` webhook that changes it is
  applied as it is only when it is what the customer's current identification implies and
  it was sent after the newest webhook acted on; otherwise it is confirmed.
"""

from __future__ import annotations

import enum
from datetime import datetime

from ..models import Customer, Identification
from ..payloads import RemoteCustomer, RemoteIdentification, normalize_identification_status
from ..statuses import moves_forward

__all__ = [
    "Verdict",
    "customer_verdict",
    "identification_verdict",
    "implied_customer_statuses",
    "is_newer",
]


class Verdict(enum.Enum):
    """What to do with a status that arrived."""

    APPLY = "apply"
    """Apply it now (a status equal to the stored one changes nothing)."""
    STALE = "stale"
    """Older than what is stored: drop it."""
    CONFIRM = "confirm"
    """Not trusted on its own: fetch Iron's current state and apply that instead."""


def identification_verdict(
    row: Identification, remote: RemoteIdentification, *, fresh: bool = False
) -> Verdict:
    """The verdict on ``remote`` for the stored ``row``.

    ``fresh``: ``remote`` is Iron's answer to a fetch made after ``row`` was read, and
    ``row`` has not changed since (a confirmation).
    """
    status = normalize_identification_status(remote.status)
    if remote.from_a_webhook:
        if status == row.status:
            return Verdict.APPLY
        if row.moved_back_at is None and moves_forward(row.status, status):
            return Verdict.APPLY
        return Verdict.CONFIRM
    if _older(remote.updated_at, row.iron_updated_at):
        return Verdict.STALE
    if status == row.status or moves_forward(row.status, status) or fresh:
        # A fresh answer is Iron's word now: even a move back (a stored status may have
        # come from a webhook, which leaves iron_updated_at alone, so no time can tell).
        return Verdict.APPLY
    return Verdict.CONFIRM


def implied_customer_statuses(identification_status: str) -> frozenset[str]:
    """The customer statuses that an identification in this status implies at Iron.

    Approved: signings are next, or the customer is active. Anything else known: the
    customer still needs an identification. An unknown status implies nothing.
    """
    if identification_status == Identification.Status.APPROVED:
        return frozenset({Customer.Status.SIGNINGS_REQUIRED, Customer.Status.ACTIVE})
    if identification_status in Identification.Status.values:
        return frozenset({Customer.Status.IDENTIFICATION_REQUIRED})
    return frozenset()


def customer_verdict(
    row: Customer, remote: RemoteCustomer, *, implied: frozenset[str] = frozenset()
) -> Verdict:
    """The verdict on ``remote`` for the stored customer ``row``.

    ``implied``: what the customer's current identification implies
    (:func:`implied_customer_statuses`), needed for a webhook only.
    """
    if remote.from_a_webhook:
        if remote.status == row.status:
            return Verdict.APPLY
        if remote.status in implied and is_newer(remote.sent_at, row.webhook_sent_at):
            return Verdict.APPLY
        return Verdict.CONFIRM
    if _older(remote.updated_at, row.iron_updated_at):
        return Verdict.STALE
    return Verdict.APPLY


def is_newer(candidate: datetime | None, stored: datetime | None) -> bool:
    """Is ``candidate`` strictly newer than ``stored`` (an undated one never is)?"""
    if candidate is None:
        return False
    return stored is None or candidate > stored


def _older(candidate: datetime | None, stored: datetime | None) -> bool:
    return candidate is not None and stored is not None and candidate < stored
