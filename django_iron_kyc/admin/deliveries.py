"""The admin of stored webhook deliveries: read-only, with a ``reprocess`` action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from .. import webhooks
from ..models import WebhookDelivery
from .base import ModelAdminBase, Tally, fieldset_fields
from .display import pretty_json, readable_text

__all__ = ["WebhookDeliveryAdmin"]

_REPROCESSED = ngettext_lazy(
    "%(count)d delivery reprocessed", "%(count)d deliveries reprocessed", "count"
)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ModelAdminBase):
    """The stored deliveries: read-only, with a ``reprocess`` action.

    Nobody adds or edits a delivery: it is the record of what Iron sent. Superusers may
    delete (``iron_kyc_prune_webhooks`` is the usual way); reprocessing needs the change
    permission on deliveries.
    """

    list_display = (
        "received_at",
        "webhook_id",
        "event_type",
        "outcome",
        "object_status",
        "customer_iron_id",
        "object_iron_id",
        "attempts",
    )
    list_filter = ("outcome", "event_type")
    search_fields = ("webhook_id", "customer_iron_id", "object_iron_id", "event_key")
    actions = ("reprocess",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "webhook_id",
                    "event_type",
                    "outcome",
                    "error",
                    "attempts",
                    "received_at",
                    "processed_at",
                )
            },
        ),
        (
            _("Event"),
            {
                "fields": (
                    "signed_at",
                    "event_timestamp",
                    "customer_iron_id",
                    "object_iron_id",
                    "object_status",
                    "event_key",
                    "pretty_body",
                )
            },
        ),
        (_("Traceback"), {"classes": ("collapse",), "fields": ("pretty_traceback",)}),
    )
    readonly_fields = fieldset_fields(fieldsets)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("iron_kyc.change_webhookdelivery")

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
            label = (
                str(WebhookDelivery.Outcome(outcome).label)
                if outcome in WebhookDelivery.Outcome.values
                else outcome
            )
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
