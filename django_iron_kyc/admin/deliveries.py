"""The admin of stored webhook deliveries: read-only, with a ``reprocess`` action.

Each delivery links to the customer and identification it names (when they are known
here), shows its times to the second and its error, and can be filtered down to the ones
that need someone: failed, or not acted on yet.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from .. import webhooks
from ..models import Customer, Identification, WebhookDelivery
from .base import IronModelAdmin, Tally, fieldset_fields, technical
from .display import (
    identification_name,
    person,
    pretty_json,
    readable_text,
    seconds_column,
    short_person,
    status_text,
)
from .filters import DeliveryAttentionFilter

__all__ = ["WebhookDeliveryAdmin"]

_REPROCESSED = ngettext_lazy(
    "%(count)d delivery reprocessed", "%(count)d deliveries reprocessed", "count"
)
# How much of an error the list shows (the delivery's page shows all of it).
_ERROR_COLUMN_CHARS = 40


def _outcome_text(outcome: str) -> str:
    if outcome in WebhookDelivery.Outcome.values:
        return str(WebhookDelivery.Outcome(outcome).label)
    return outcome


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(IronModelAdmin):
    """The stored deliveries: read-only, with a ``reprocess`` action.

    Nobody adds or edits a delivery: it is the record of what Iron sent. Superusers may
    delete (``iron_kyc_prune_webhooks`` is the usual way); reprocessing needs the change
    permission on deliveries.
    """

    list_display = ("received", "event", "outcome", "about", "error_summary")
    list_filter = (DeliveryAttentionFilter, "outcome", "event_type")
    search_fields = ("webhook_id", "customer_iron_id", "object_iron_id", "event_key")
    actions = ("reprocess",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "received",
                    "event_type",
                    "event_status",
                    "outcome",
                    "error",
                    "customer_link",
                    "identification_link",
                    "processed",
                    "attempts",
                )
            },
        ),
        (_("Body"), {"fields": ("pretty_body",)}),
        technical(
            "webhook_id",
            "signed",
            "event_time",
            "event_key",
            "customer_iron_id",
            "object_iron_id",
            "pretty_traceback",
        ),
    )
    readonly_fields = fieldset_fields(fieldsets)
    only_when_set = ("error",)
    received = seconds_column("received_at", _("received"))
    processed = seconds_column("processed_at", _("processed"))
    signed = seconds_column("signed_at", _("signed at"))
    event_time = seconds_column("event_timestamp", _("event timestamp"))

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        # What the links need, in the same query whatever the number of rows.
        customer = Customer.objects.filter(iron_id=OuterRef("customer_iron_id"))
        identification = Identification.objects.filter(iron_id=OuterRef("object_iron_id"))
        queryset: QuerySet[WebhookDelivery] = super().get_queryset(request)
        return queryset.annotate(
            customer_pk=Subquery(customer.values("pk")[:1]),
            customer_name=Subquery(customer.values("name")[:1]),
            customer_email=Subquery(customer.values("email")[:1]),
            identification_pk=Subquery(identification.values("pk")[:1]),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting the record of a delivery deletes only that record: nothing at Iron.
        return bool(request.user.is_active and request.user.is_superuser)

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("iron_kyc.change_webhookdelivery")

    def object_title(self, obj: WebhookDelivery) -> str:
        what = " ".join(
            filter(None, [obj.event_type or gettext("delivery"), self.event_status(obj)])
        )
        customer = self._customer_name(obj)
        if customer:
            what = gettext("%(event)s for %(customer)s") % {"event": what, "customer": customer}
        return f"{what} · {_outcome_text(obj.outcome)}"

    def _customer_name(self, obj: WebhookDelivery) -> str:
        pk = getattr(obj, "customer_pk", None)
        if pk is None:
            return ""
        return person(
            getattr(obj, "customer_name", "") or "", getattr(obj, "customer_email", "") or ""
        ) or gettext("customer #%(pk)s") % {"pk": pk}

    @admin.display(description=_("status in event"), ordering="object_status")
    def event_status(self, obj: WebhookDelivery) -> str:
        if not obj.object_status:
            return ""
        statuses = Customer.Status if obj.event_type == "customer_status" else Identification.Status
        return status_text(obj.object_status, statuses)

    @admin.display(description=_("event"), ordering="event_type")
    def event(self, obj: WebhookDelivery) -> SafeString:
        """The list's column: the type, and the status it carries under it."""
        return format_html("{}<br>{}", obj.event_type or "-", self.event_status(obj))

    @admin.display(description=_("about"))
    def about(self, obj: WebhookDelivery) -> SafeString | str:
        """The list's column: the customer it names, and the identification under it."""
        customer_pk = getattr(obj, "customer_pk", None)
        identification_pk = getattr(obj, "identification_pk", None)
        if customer_pk is None and identification_pk is None:
            return "-"
        customer = "-"
        if customer_pk is not None:
            name = short_person(
                getattr(obj, "customer_name", "") or "",
                getattr(obj, "customer_email", "") or "",
                customer_pk,
            )
            customer = self.object_link(name, customer_pk, Customer)
        if identification_pk is None:
            return customer
        identification = self.object_link(
            identification_name(obj.object_iron_id, identification_pk),
            identification_pk,
            Identification,
        )
        return format_html("{}<br>{}", customer, identification)

    @admin.display(description=_("customer"))
    def customer_link(self, obj: WebhookDelivery) -> SafeString | str:
        pk = getattr(obj, "customer_pk", None)
        if pk is None:
            return "-"
        return self.object_link(self._customer_name(obj), pk, Customer)

    @admin.display(description=_("identification"))
    def identification_link(self, obj: WebhookDelivery) -> SafeString | str:
        pk = getattr(obj, "identification_pk", None)
        if pk is None:
            return "-"
        return self.object_link(identification_name(obj.object_iron_id, pk), pk, Identification)

    @admin.display(description=_("error"))
    def error_summary(self, obj: WebhookDelivery) -> SafeString | str:
        if not obj.error:
            return "-"
        error = readable_text(obj.error)
        first_line = error.splitlines()[0] if error.strip() else error
        short = Truncator(first_line).chars(_ERROR_COLUMN_CHARS)
        return format_html('<span title="{}">{}</span>', error, short)

    @admin.display(description=_("raw body"))
    def pretty_body(self, obj: WebhookDelivery) -> SafeString:
        # Whatever was stored: pretty JSON if it parses, escaped raw text otherwise, capped.
        return format_html("<pre>{}</pre>", pretty_json(obj.body))

    @admin.display(description=_("traceback"))
    def pretty_traceback(self, obj: WebhookDelivery) -> SafeString | str:
        if not obj.traceback:
            return "-"
        return format_html("<pre>{}</pre>", readable_text(obj.traceback))

    @admin.action(description=_("Reprocess"), permissions=("reprocess",))
    def reprocess(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        tally = Tally()
        outcomes: dict[str, int] = {}
        for delivery in queryset.order_by("received_at", "pk"):
            # Never raises for a processing error: it records it on the row (outcome failed).
            outcome = webhooks.reprocess_delivery(delivery)
            delivery.refresh_from_db()
            label = _outcome_text(outcome)
            self.log_change(
                request, delivery, gettext("Reprocessed: %(outcome)s.") % {"outcome": label}
            )
            if outcome == WebhookDelivery.Outcome.FAILED:
                tally.failed.append(f"{delivery.webhook_id or delivery.pk}: {delivery.error}")
                continue
            tally.done += 1
            outcomes[label] = outcomes.get(label, 0) + 1
        counts = ", ".join(f"{n} {label}" for label, n in sorted(outcomes.items()))
        details = f"({counts})" if counts else ""
        self.message_user(request, *tally.message(_REPROCESSED, details))
