"""The admin of identifications: read-only for everyone, with refresh and sandbox decisions.

Nothing here is saved or deleted: an identification is Iron's, and starts through the
customer's page (``services.start_identification``). "Refresh from Iron" (a list action
and a button) refreshes its customer; the sandbox decisions live in :mod:`.sandbox`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from ..models import Customer, Identification
from .base import Tool, fieldset_fields, refresh_customers, safe_link, technical
from .display import (
    customer_name,
    identification_name,
    identification_notes,
    identification_title,
    seconds_column,
    short_person,
    status_column,
)
from .filters import IdentificationAttentionFilter, StatusFilter, SupersededFilter
from .sandbox import SandboxDecisions

__all__ = ["IdentificationAdmin", "IdentificationStatusFilter"]

_FOR_IDENTIFICATIONS = ngettext_lazy(
    "(for %(count)d identification)", "(for %(count)d identifications)", "count"
)


class IdentificationStatusFilter(StatusFilter):
    statuses = Identification.Status


@admin.register(Identification)
class IdentificationAdmin(SandboxDecisions):
    """Identifications: everything read-only; refresh; approve/decline in sandbox."""

    list_display = (
        "identification",
        "customer_column",
        "status_label",
        "notes",
        "updated_at_iron",
        "created",
    )
    list_select_related = ("customer",)
    list_filter = (
        IdentificationStatusFilter,
        IdentificationAttentionFilter,
        SupersededFilter,
        "with_edd",
    )
    search_fields = ("iron_id", "customer__iron_id", "customer__email", "customer__name")
    actions = ("refresh_from_iron", "sandbox_approve", "sandbox_decline")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "customer_link",
                    "status_label",
                    "hosted_url",
                    "with_edd",
                    "review_comment",
                    "last_error",
                )
            },
        ),
        (
            _("Lifecycle"),
            {
                "fields": (
                    "created",
                    "updated_at_iron",
                    "superseded_at",
                    "failed_at",
                    "stale_at",
                )
            },
        ),
        technical(
            "iron_id",
            "idempotency_key",
            "iron_created_at",
            "create_attempts",
            "next_poll_at",
            "last_polled_at",
            "poll_count",
            "updated_at",
        ),
    )
    readonly_fields = fieldset_fields(fieldsets)
    # What happened to it (superseded, failed, stale, an error) only when it did.
    only_when_set = ("last_error", "review_comment", "superseded_at", "failed_at", "stale_at")
    status_label = status_column(Identification.Status)
    updated_at_iron = seconds_column("iron_updated_at", _("updated at Iron"))
    created = seconds_column("created_at", _("created"))
    object_views = (("refresh", "refresh_view"), *SandboxDecisions.sandbox_object_views)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Identifications start through services.start_identification (the customer's page).
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Everything on the page is Iron's: a Save button would lie. Django's view
        # permission still counts a user's change permission as leave to see it.
        return False

    def object_title(self, obj: Identification) -> str:
        return identification_title(obj)

    def customer_of(self, obj: Identification) -> Customer:
        return obj.customer

    def object_tools(self, request: HttpRequest, obj: Identification) -> list[Tool]:
        return [*self.refresh_tool(request, obj), *self.sandbox_tools(request, obj)]

    @admin.display(description=_("identification"), ordering="iron_id")
    def identification(self, obj: Identification) -> str:
        return identification_name(obj.iron_id, obj.pk)

    @admin.display(description=_("customer"), ordering="customer__name")
    def customer_column(self, obj: Identification) -> SafeString:
        customer = obj.customer
        name = short_person(customer.name, customer.email, customer.pk)
        return self.object_link(name, customer.pk, Customer)

    @admin.display(description=_("customer"))
    def customer_link(self, obj: Identification) -> SafeString:
        return self.object_link(customer_name(obj.customer), obj.customer_id, Customer)

    @admin.display(description=_("notes"))
    def notes(self, obj: Identification) -> str:
        return ", ".join(identification_notes(obj)) or "-"

    @admin.display(description=_("hosted URL"))
    def hosted_url(self, obj: Identification) -> SafeString | str:
        return safe_link(obj.url)

    @admin.action(description=_("Refresh from Iron"), permissions=("view",))
    def refresh_from_iron(self, request: HttpRequest, queryset: QuerySet[Identification]) -> None:
        customers = Customer.objects.filter(pk__in=queryset.values("customer_id")).order_by("pk")
        details = _FOR_IDENTIFICATIONS % {"count": queryset.count()}
        refresh_customers(self, request, customers, details=details)
