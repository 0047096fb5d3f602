"""A signed-in user's own verification: where it stands, and starting it.

The rules the end-user JSON endpoint (:mod:`django_iron_kyc.api`) and page
(:mod:`django_iron_kyc.views`) share: the :class:`Phase` a user is in, computed from their
customer and its current identification; whether starting now would start one; finding or
creating the user's customer from ``IRON_KYC_VERIFICATION_CUSTOMER_DATA``; and starting for
a user so that a double click, or two tabs at once, make one identification.

The user's customer is the :class:`~django_iron_kyc.models.Customer` whose ``user`` is them.
Everything Iron is asked goes through the services (:func:`create_customer`,
:func:`start_identification`), as for any other caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.db import models, transaction
from django.db.models import F, FilteredRelation, Q
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..conf import iron_settings
from ..exceptions import (
    IdentificationInFlightError,
    IronAPIError,
    IronConfigurationError,
    IronTransientError,
    VerificationRequestError,
)
from ..models import Customer, Identification
from .customers import create_customer
from .intents import start_identification

__all__ = [
    "IdentificationSummary",
    "Phase",
    "Reason",
    "StartResult",
    "VerificationStatus",
    "customer_data_for",
    "default_customer_data",
    "retry_after_seconds",
    "start_verification",
    "verification_status",
]

logger = logging.getLogger(__name__)


class Phase(models.TextChoices):
    """Where a user's verification stands, in terms a page or an app can act on."""

    NOT_STARTED = "not_started", _("Not started")
    STARTING = "starting", _("Starting")  # Iron has not answered the create yet
    IN_PROGRESS = "in_progress", _("In progress")  # Pending, with a hosted URL
    IN_REVIEW = "in_review", _("In review")  # Processed or PendingReview
    APPROVED = "approved", _("Approved")
    DECLINED = "declined", _("Declined")
    EXPIRED = "expired", _("Expired")
    ACTION_REQUIRED = "action_required", _("Action required")  # filled by issue 19
    UNAVAILABLE = "unavailable", _("Unavailable")


# The phase of the current identification once Iron knows it, by Iron's status. Pending
# without a hosted URL is STARTING; a status Iron adds later is IN_REVIEW (it is in flight).
# Archived is permanent: like Expired, the user starts again.
_PHASE_OF_STATUS: dict[str, Phase] = {
    Identification.Status.PENDING: Phase.IN_PROGRESS,
    Identification.Status.PROCESSED: Phase.IN_REVIEW,
    Identification.Status.PENDING_REVIEW: Phase.IN_REVIEW,
    Identification.Status.APPROVED: Phase.APPROVED,
    Identification.Status.DECLINED: Phase.DECLINED,
    Identification.Status.EXPIRED: Phase.EXPIRED,
    Identification.Status.ARCHIVED: Phase.EXPIRED,
}
# After these the user may start again; every other phase with an identification is in
# flight (or approved).
_RESTARTABLE = frozenset({Phase.DECLINED, Phase.EXPIRED})


@dataclass(frozen=True)
class Reason:
    """Why Iron said no: a stable ``code`` and a ``description`` to show."""

    code: str
    description: str


@dataclass(frozen=True)
class IdentificationSummary:
    """The current identification as Iron knows it: its id and status as Iron spells them,
    and Iron's timestamps (ours where Iron gave none)."""

    id: UUID
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VerificationStatus:
    """A user's verification, as the JSON endpoint and the page show it.

    ``hosted_url`` is set only while ``in_progress``. ``identification`` is the current one
    (never a superseded one), once Iron knows it. ``can_retry`` and ``reasons`` are left
    ``None`` and empty here: the requirements issue (issue 19) fills them in from Iron's
    requirements, as it does ``Phase.ACTION_REQUIRED``.
    """

    phase: Phase
    can_start: bool
    hosted_url: str | None = None
    identification: IdentificationSummary | None = None
    customer_status: str | None = None
    can_retry: bool | None = None
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class StartResult:
    """What :func:`start_verification` did: ``started`` is False when nothing new was
    started (one was in flight already, or the phase does not allow it)."""

    status: VerificationStatus
    started: bool


# --- where a user stands -----------------------------------------------------------------

_CUSTOMER_FIELDS = ("iron_id", "status", "last_error", "updated_at")
# The current identification's, read through the join as current__<name>.
_CURRENT_FIELDS = (
    *("pk", "iron_id", "status", "url", "failed_at", "created_at", "updated_at"),
    *("iron_created_at", "iron_updated_at"),
)


def verification_status(user: Any) -> VerificationStatus:
    """Where ``user``'s verification stands now. One query; changes nothing.

    The current identification is the customer's newest one that is not superseded (a
    failed intent included: it makes the phase ``unavailable``).
    """
    row = (
        Customer.objects.filter(user_id=user.pk)
        .annotate(
            current=FilteredRelation(
                "identifications", condition=Q(identifications__superseded_at__isnull=True)
            )
        )
        .order_by(
            F("current__created_at").desc(nulls_last=True),
            F("current__pk").desc(nulls_last=True),
        )
        .values(*_CUSTOMER_FIELDS, *(f"current__{name}" for name in _CURRENT_FIELDS))
        .first()
    )
    return _status_of(row)


def _status_of(row: Mapping[str, Any] | None) -> VerificationStatus:
    if row is None:
        return VerificationStatus(Phase.NOT_STARTED, can_start=True)
    if row["iron_id"] is None:
        # The customer is not at Iron yet: being created now, or creating it failed.
        if row["last_error"]:
            return VerificationStatus(Phase.UNAVAILABLE, can_start=True)
        if timezone.now() - row["updated_at"] < _customer_creation_window():
            return VerificationStatus(Phase.STARTING, can_start=False)
        return VerificationStatus(Phase.NOT_STARTED, can_start=True)
    customer_status = row["status"] or None
    if customer_status == Customer.Status.ARCHIVED:
        # Archiving at Iron is permanent: nothing can be started for this customer again.
        return VerificationStatus(Phase.UNAVAILABLE, False, customer_status=customer_status)
    if row["current__pk"] is None:
        return VerificationStatus(Phase.NOT_STARTED, True, customer_status=customer_status)
    if row["current__failed_at"] is not None:
        return VerificationStatus(Phase.UNAVAILABLE, True, customer_status=customer_status)
    if row["current__iron_id"] is None:
        return VerificationStatus(Phase.STARTING, False, customer_status=customer_status)
    status = row["current__status"]
    phase = _PHASE_OF_STATUS.get(status, Phase.IN_REVIEW)
    hosted_url = _hosted_url(row["current__url"]) if phase == Phase.IN_PROGRESS else None
    if phase == Phase.IN_PROGRESS and hosted_url is None:
        phase = Phase.STARTING
    return VerificationStatus(
        phase,
        can_start=phase in _RESTARTABLE,
        hosted_url=hosted_url,
        identification=IdentificationSummary(
            id=row["current__iron_id"],
            status=status,
            created_at=row["current__iron_created_at"] or row["current__created_at"],
            updated_at=row["current__iron_updated_at"] or row["current__updated_at"],
        ),
        customer_status=customer_status,
    )


def _hosted_url(url: str) -> str | None:
    """Iron's hosted URL, if it is one a browser may be sent to (http or https)."""
    try:
        return url if urlsplit(url).scheme in ("https", "http") else None
    except ValueError:
        return None


def _customer_creation_window() -> timedelta:
    """The longest ``POST /api/customers`` can take, retries included: a customer without
    an Iron id, and no error, is being created for that long after its row was saved."""
    connect, read = iron_settings.TIMEOUT
    retries = iron_settings.MAX_RETRIES
    seconds = (connect + read) * (retries + 1) + iron_settings.RETRY_AFTER_MAX * retries
    return timedelta(seconds=seconds)


# --- the user's customer -------------------------------------------------------------------

_CUSTOMER_DATA_KEYS = frozenset({"email", "name", "customer_type", "external_id"})


def default_customer_data(user: Any) -> dict[str, Any]:
    """The default ``IRON_KYC_VERIFICATION_CUSTOMER_DATA``: the user's email (the user
    model's ``EMAIL_FIELD``), full name, ``Person``, and primary key as ``external_id``."""
    email_field = user.get_email_field_name() if hasattr(user, "get_email_field_name") else "email"
    get_full_name = getattr(user, "get_full_name", None)
    return {
        "email": getattr(user, email_field, "") or "",
        "name": get_full_name() if callable(get_full_name) else "",
        "customer_type": Customer.CustomerType.PERSON,
        "external_id": str(user.pk),
    }


def _customer_data_function() -> Callable[[Any], Any]:
    setting = iron_settings.VERIFICATION_CUSTOMER_DATA
    if setting is None:
        return default_customer_data
    function = import_string(setting) if isinstance(setting, str) else setting
    if not callable(function):
        raise IronConfigurationError("IRON_KYC_VERIFICATION_CUSTOMER_DATA is not callable.")
    return function  # type: ignore[no-any-return]


def customer_data_for(user: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`create_customer` for ``user``, from the setting.

    Raises :class:`VerificationRequestError` (``email_required``) when there is no email,
    and :class:`~django_iron_kyc.exceptions.IronConfigurationError` when the setting's
    callable returns something else than a mapping of ``email``, ``name``,
    ``customer_type`` and ``external_id``.
    """
    data = _customer_data_function()(user)
    where = "IRON_KYC_VERIFICATION_CUSTOMER_DATA"
    if not isinstance(data, Mapping):
        raise IronConfigurationError(f"{where} must return a dict, not {type(data).__name__}.")
    unknown = set(data) - _CUSTOMER_DATA_KEYS
    if unknown:
        raise IronConfigurationError(
            f"{where} returned unknown keys {sorted(unknown)}; use {sorted(_CUSTOMER_DATA_KEYS)}."
        )
    customer_type = data.get("customer_type", Customer.CustomerType.PERSON)
    if customer_type not in Customer.CustomerType.values:
        raise IronConfigurationError(
            f"{where} returned customer_type {customer_type!r}; use 'Person' or 'Business'."
        )
    email = data.get("email")
    if not isinstance(email, str) or not email.strip():
        raise VerificationRequestError(
            gettext("Your account has no email address. Add one, then verify your identity."),
            code="email_required",
        )
    external_id = data.get("external_id")
    return {
        "email": email.strip(),
        "name": str(data.get("name") or ""),
        "customer_type": str(customer_type),
        "external_id": str(external_id) if external_id not in (None, "") else None,
    }


def _customer_at_iron(
    user: Any, data: Mapping[str, Any], existing: Customer | None
) -> Customer | None:
    """The user's customer (``existing``, as last read), created at Iron now if need be.

    ``None`` when another request is creating it at this moment: that request holds the
    customer row's lock while Iron answers, so two clicks never send two creations. The row
    (and its idempotency key) is committed before Iron is asked, so a retry after a
    failure reuses the key. Raises what :func:`create_customer` raises.
    """
    if existing is None:
        Customer.objects.get_or_create(
            user=user,
            defaults={**data, "external_id": data["external_id"] or ""},
        )
    failure: IronAPIError | None = None
    customer: Customer | None = None
    with transaction.atomic():
        row = Customer.objects.select_for_update(skip_locked=True).filter(user_id=user.pk).first()
        if row is None:
            return None
        if row.iron_id is not None:
            return row
        try:
            customer = create_customer(user=user, **data)
        except IronAPIError as exc:
            # Leave the block normally so the error create_customer recorded is committed.
            failure = exc
    if failure is not None:
        raise failure
    return customer


# --- starting -------------------------------------------------------------------------------


def start_verification(user: Any, *, with_edd: bool = False) -> StartResult:
    """Start ``user``'s verification if their phase allows it; call it outside a transaction.

    Creates the user's customer at Iron first if there is none (data from
    ``IRON_KYC_VERIFICATION_CUSTOMER_DATA``), then starts the identification through
    :func:`~django_iron_kyc.services.start_identification`. A double click or two tabs at
    once start one identification: the other request gets ``started=False`` and the one in
    flight.

    Raises :class:`VerificationRequestError` for a request that cannot be met as asked
    (no email, EDD not allowed) and :class:`~django_iron_kyc.exceptions.IronTransientError`
    when Iron cannot be reached to create the customer (nothing half-done: the retry reuses
    the stored key). Iron refusing the customer is not raised: the phase is then
    ``unavailable``.
    """
    if with_edd and not iron_settings.VERIFICATION_ALLOW_EDD:
        raise VerificationRequestError(
            gettext("Enhanced due diligence cannot be requested here."), code="edd_not_allowed"
        )
    status = verification_status(user)
    if not status.can_start:
        return StartResult(status, started=False)
    customer = Customer.objects.filter(user_id=user.pk).first()
    if customer is None or customer.iron_id is None:
        try:
            customer = _customer_at_iron(user, customer_data_for(user), customer)
        except IronTransientError:
            raise
        except IronAPIError as exc:
            # Iron's message may repeat what the user typed: log only where and how it failed.
            logger.warning(
                "Iron refused to create the customer of user #%s (HTTP %s, request id %s).",
                user.pk,
                exc.status,
                exc.request_id,
            )
            return StartResult(verification_status(user), started=False)
        if customer is None:
            return StartResult(verification_status(user), started=False)
    try:
        start_identification(customer, with_edd=with_edd)
    except IdentificationInFlightError:
        return StartResult(verification_status(user), started=False)
    return StartResult(verification_status(user), started=True)


def retry_after_seconds(exc: IronTransientError) -> int:
    """How long to tell the user to wait before trying again after ``exc``: Iron's own
    ``Retry-After`` when it sent one, else half a minute."""
    if exc.retry_after is not None and exc.retry_after > 0:
        return max(1, round(exc.retry_after))
    return 30
