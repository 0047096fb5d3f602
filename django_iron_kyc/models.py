"""Models mirroring Iron's customers and identifications, and the webhook delivery log.

Data and state rules only: no HTTP here (see ``client.py``) and no state changes from
Iron's side either (see ``services``, the one place that applies Iron's state).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .statuses import TERMINAL_IDENTIFICATION_STATUSES, IdentificationStatus

__all__ = [
    "Customer",
    "Identification",
    "IdentificationQuerySet",
    "IdentificationStatus",
    "WebhookDelivery",
]


class Customer(models.Model):
    """A customer at Iron, optionally tied to one of the host project's users."""

    class Status(models.TextChoices):
        """Iron's ``CustomerStatus``, spelled exactly as Iron spells it."""

        USER_REQUIRED = "UserRequired", _("User required")
        SIGNINGS_REQUIRED = "SigningsRequired", _("Signings required")
        IDENTIFICATION_REQUIRED = "IdentificationRequired", _("Identification required")
        ACTIVE = "Active", _("Active")
        SUSPENDED = "Suspended", _("Suspended")
        ARCHIVED = "Archived", _("Archived")

    class CustomerType(models.TextChoices):
        PERSON = "Person", _("Person")
        BUSINESS = "Business", _("Business")

    iron_id = models.UUIDField(
        _("Iron id"),
        unique=True,
        null=True,
        blank=True,
        editable=False,
        help_text=_("Iron's customer id; empty until Iron has created the customer."),
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="iron_kyc_customer",
        verbose_name=_("user"),
    )
    customer_type = models.CharField(
        _("type"), max_length=16, choices=CustomerType.choices, default=CustomerType.PERSON
    )
    email = models.EmailField(_("email"), max_length=254, blank=True)
    name = models.CharField(_("name"), max_length=255, blank=True)
    external_id = models.CharField(_("external id"), max_length=255, blank=True, db_index=True)
    # Stored as Iron sends it; an unknown value is kept (and logged), never rejected.
    status = models.CharField(_("status"), max_length=64, blank=True, choices=Status.choices)
    idempotency_key = models.UUIDField(
        _("idempotency key"),
        unique=True,
        default=uuid.uuid4,
        editable=False,
        help_text=_("Sent with every attempt to create this customer at Iron."),
    )
    iron_created_at = models.DateTimeField(_("created at Iron"), null=True, blank=True)
    iron_updated_at = models.DateTimeField(_("updated at Iron"), null=True, blank=True)
    webhook_sent_at = models.DateTimeField(
        _("newest webhook sent at"),
        null=True,
        blank=True,
        help_text=_(
            "When Iron sent the newest webhook acted on for it (Iron's send time, another "
            "clock than Iron's 'updated at')."
        ),
    )
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        app_label = "iron_kyc"
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ("-created_at", "-pk")
        permissions = [
            ("forget_customer", _("Can forget a customer (delete what is stored about them)")),
        ]

    def __str__(self) -> str:
        label = self.email or self.name or (str(self.iron_id) if self.iron_id else f"#{self.pk}")
        return f"{label} ({self.status or 'not at Iron yet'})"

    @property
    def current_identification(self) -> Identification | None:
        """The newest identification that has not been superseded or failed locally."""
        return (
            self.identifications.filter(superseded_at__isnull=True, failed_at__isnull=True)
            .order_by("-created_at", "-pk")
            .first()
        )


# Not terminal, not superseded, not failed: Iron allows one per customer. Defined here, not
# in the class, for Meta's constraint to use it.
_IN_FLIGHT = Q(superseded_at__isnull=True, failed_at__isnull=True) & ~Q(
    status__in=TERMINAL_IDENTIFICATION_STATUSES
)


class IdentificationQuerySet(models.QuerySet["Identification"]):
    def in_flight(self) -> IdentificationQuerySet:
        """:attr:`Identification.IN_FLIGHT`: what blocks a new identification."""
        return self.filter(Identification.IN_FLIGHT)

    def pending(self) -> IdentificationQuerySet:
        """Known at Iron and still waiting for a decision (what the poller follows)."""
        return self.in_flight().filter(iron_id__isnull=False)

    def terminal(self) -> IdentificationQuerySet:
        return self.filter(status__in=Identification.TERMINAL_STATUSES)


class Identification(models.Model):
    """One hosted Link identification at Iron (or our intent to create one).

    A row exists before Iron is asked, holding the idempotency key every attempt reuses;
    ``iron_id`` and ``status`` stay empty until Iron has answered, so a row Iron never
    confirmed is never ``Pending``.
    """

    Status = IdentificationStatus

    TERMINAL_STATUSES: ClassVar[frozenset[str]] = frozenset(TERMINAL_IDENTIFICATION_STATUSES)
    """Statuses in which Iron has decided; a strictly newer update may step one up again."""
    IN_FLIGHT: ClassVar[Q] = _IN_FLIGHT
    """Neither terminal, superseded nor failed: the customer's one identification Iron
    counts as open (the constraint, :meth:`IdentificationQuerySet.in_flight` and the sync
    code use it; :attr:`is_in_flight` is its Python mirror)."""

    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="identifications",
        verbose_name=_("customer"),
    )
    iron_id = models.UUIDField(
        _("Iron id"),
        unique=True,
        null=True,
        blank=True,
        editable=False,
        help_text=_("Iron's identification id; empty until Iron has answered."),
    )
    status = models.CharField(
        _("status"),
        max_length=64,
        blank=True,
        default="",
        choices=Status.choices,
        help_text=_("Iron's status; empty until Iron has answered."),
    )
    url = models.URLField(_("hosted URL"), max_length=2048, blank=True)
    with_edd = models.BooleanField(_("with EDD"), default=False)
    review_comment = models.TextField(_("review comment"), blank=True)
    idempotency_key = models.UUIDField(
        _("idempotency key"),
        unique=True,
        default=uuid.uuid4,
        editable=False,
        help_text=_("Sent with every attempt to create this identification at Iron."),
    )
    iron_created_at = models.DateTimeField(_("created at Iron"), null=True, blank=True)
    iron_updated_at = models.DateTimeField(_("updated at Iron"), null=True, blank=True)
    webhook_sent_at = models.DateTimeField(
        _("newest webhook sent at"),
        null=True,
        blank=True,
        help_text=_(
            "When Iron sent the newest webhook acted on for it (Iron's send time, another "
            "clock than Iron's 'updated at')."
        ),
    )
    moved_back_at = models.DateTimeField(
        _("moved back at"),
        null=True,
        blank=True,
        help_text=_(
            "Iron confirmed a move back in its lifecycle (a step-up); every later webhook "
            "for it is confirmed with Iron before it is applied."
        ),
    )
    superseded_at = models.DateTimeField(
        _("superseded at"),
        null=True,
        blank=True,
        help_text=_("A newer identification replaced this one; nothing it does counts."),
    )
    failed_at = models.DateTimeField(
        _("failed at"),
        null=True,
        blank=True,
        help_text=_("Creating it at Iron failed for good; see the last error."),
    )
    last_error = models.TextField(_("last error"), blank=True)
    create_attempts = models.PositiveIntegerField(_("create attempts"), default=0)
    # Polling: when to look next, how often we looked, and when we gave up.
    next_poll_at = models.DateTimeField(_("next poll"), null=True, blank=True, db_index=True)
    last_polled_at = models.DateTimeField(_("last polled"), null=True, blank=True)
    poll_count = models.PositiveIntegerField(_("polls"), default=0)
    stale_at = models.DateTimeField(
        _("stale since"),
        null=True,
        blank=True,
        help_text=_("Still not decided after the maximum polling age; no longer polled."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = IdentificationQuerySet.as_manager()

    class Meta:
        app_label = "iron_kyc"
        verbose_name = _("identification")
        verbose_name_plural = _("identifications")
        ordering = ("-created_at", "-pk")
        permissions = [
            ("sandbox_decide", _("Can approve or decline identifications in sandbox")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=_IN_FLIGHT,
                name="iron_kyc_one_identification_in_flight",
                violation_error_message=_("This customer already has an identification in flight."),
            ),
        ]

    def __str__(self) -> str:
        label = str(self.iron_id) if self.iron_id else f"intent #{self.pk}"
        return f"{label} ({self.status or 'not at Iron yet'})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATUSES

    @property
    def is_superseded(self) -> bool:
        return self.superseded_at is not None

    @property
    def is_in_flight(self) -> bool:
        return not (self.is_terminal or self.superseded_at or self.failed_at)

    @property
    def is_sandbox_decidable(self) -> bool:
        """Known at Iron and waiting for a decision: the sandbox buttons apply to it."""
        return bool(self.iron_id) and self.is_in_flight


class WebhookDelivery(models.Model):
    """One verified webhook delivery from Iron, stored raw before it is acted on."""

    class Outcome(models.TextChoices):
        RECEIVED = "received", _("Received, not processed yet")
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored (type not handled)")
        DUPLICATE = "duplicate", _("Duplicate (already acted on)")
        STALE = "stale", _("Stale (older than stored state)")
        UNKNOWN_OBJECT = "unknown_object", _("Unknown customer or identification")
        INVALID = "invalid", _("Invalid body")
        FAILED = "failed", _("Failed (error while processing)")

    # NULL, not "", when there is no header: the unique constraint allows many NULLs.
    webhook_id = models.CharField(  # noqa: DJ001
        _("webhook id"), max_length=255, null=True, blank=True
    )
    signed_at = models.DateTimeField(_("signed at"), null=True, blank=True)
    # The columns a new delivery leaves empty have database defaults too (db_default), so
    # storing one can leave them out of its INSERT; ``default`` is what Python sees.
    event_type = models.CharField(_("type"), max_length=64, blank=True, default="", db_default="")
    event_timestamp = models.DateTimeField(_("event timestamp"), null=True, blank=True)
    customer_iron_id = models.UUIDField(_("customer Iron id"), null=True, blank=True)
    object_iron_id = models.UUIDField(_("object Iron id"), null=True, blank=True)
    object_status = models.CharField(
        _("status in event"), max_length=64, blank=True, default="", db_default=""
    )
    event_key = models.CharField(
        _("event key"),
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text=_("type, object id, status and timestamp: the same event under a new id."),
    )
    body = models.TextField(_("raw body"))
    outcome = models.CharField(
        _("outcome"),
        max_length=32,
        choices=Outcome.choices,
        default=Outcome.RECEIVED,
        db_default=Outcome.RECEIVED,
    )
    error = models.TextField(_("error"), blank=True, default="", db_default="")
    traceback = models.TextField(_("traceback"), blank=True, default="", db_default="")
    attempts = models.PositiveIntegerField(_("processing attempts"), default=0, db_default=0)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)

    class Meta:
        app_label = "iron_kyc"
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ("-received_at", "-pk")
        # Every delivery is inserted into each of these: only what the app's own queries
        # use, and none of the extra ``varchar_pattern_ops`` indexes ``unique=True`` and
        # ``db_index=True`` add on PostgreSQL (nothing here is queried with LIKE 'x%').
        constraints = [
            # One row per webhook-id: the arbiter of storing's INSERT ... ON CONFLICT.
            models.UniqueConstraint(fields=["webhook_id"], name="iron_kyc_delivery_webhook_id"),
        ]
        indexes = [
            # The same event under another webhook-id, looked up only among processed
            # deliveries: a delivery enters it when it is acted on, not when it is stored,
            # so storing one touches an index fewer.
            models.Index(
                fields=["event_key"],
                condition=models.Q(outcome="processed"),
                name="iron_kyc_delivery_event_key",
            ),
            # Deliveries that came for an identification before it was known here, acted on
            # when an intent gets it: a handful of rows, and none that storing a new
            # delivery touches.
            models.Index(
                fields=["object_iron_id"],
                condition=models.Q(outcome="unknown_object"),
                name="iron_kyc_delivery_parked",
            ),
            # Pruning, and the admin's default ordering.
            models.Index(fields=["received_at"], name="iron_kyc_delivery_received"),
            # The drain and the webhook sweep: the few deliveries not acted on yet.
            models.Index(
                fields=["id"],
                condition=models.Q(outcome__in=["received", "failed"]),
                name="iron_kyc_delivery_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type or 'delivery'} {self.webhook_id or self.pk} ({self.outcome})"

    def get_payload(self) -> Any:
        """The body decoded as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.body)
