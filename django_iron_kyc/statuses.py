"""Iron's identification statuses, as Iron spells them, and their lifecycle.

The lifecycle's order is our contract with Iron (Part A, item 5): Pending < Processed <
PendingReview < a decision (Approved, Declined, Expired) < Archived. The models and the
ordering rule of the services both read it from here.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["TERMINAL_IDENTIFICATION_STATUSES", "IdentificationStatus", "moves_forward"]


class IdentificationStatus(models.TextChoices):
    """Iron's ``IdentificationStatus``, spelled exactly as Iron spells it
    (``Identification.Status``)."""

    PENDING = "Pending", _("Pending")
    PROCESSED = "Processed", _("Processed")
    PENDING_REVIEW = "PendingReview", _("Pending review")
    APPROVED = "Approved", _("Approved")
    DECLINED = "Declined", _("Declined")
    EXPIRED = "Expired", _("Expired")
    ARCHIVED = "Archived", _("Archived")


# Where each status stands in an identification's lifecycle (Part A item 5 of our contract
# with Iron): Pending < Processed < PendingReview < a decision < Archived.
_LIFECYCLE_RANK = {
    IdentificationStatus.PENDING.value: 0,
    IdentificationStatus.PROCESSED.value: 1,
    IdentificationStatus.PENDING_REVIEW.value: 2,
    IdentificationStatus.APPROVED.value: 3,
    IdentificationStatus.DECLINED.value: 3,
    IdentificationStatus.EXPIRED.value: 3,
    IdentificationStatus.ARCHIVED.value: 4,
}


def moves_forward(previous: str, status: str) -> bool:
    """Does ``previous`` -> ``status`` move an identification forward in its lifecycle?

    Forward is a higher rank: Pending < Processed < PendingReview < Approved, Declined or
    Expired (one rank: a move between decisions is sideways) < Archived; anything is forward
    from no status yet. A move to or from a status this version does not know is not forward.
    """
    if status not in _LIFECYCLE_RANK:
        return False
    if previous == "":
        return True
    return previous in _LIFECYCLE_RANK and _LIFECYCLE_RANK[status] > _LIFECYCLE_RANK[previous]


# Iron has decided (Iron may still step one up again: the ordering rule confirms that).
TERMINAL_IDENTIFICATION_STATUSES = [
    IdentificationStatus.APPROVED.value,
    IdentificationStatus.DECLINED.value,
    IdentificationStatus.EXPIRED.value,
    IdentificationStatus.ARCHIVED.value,
]
