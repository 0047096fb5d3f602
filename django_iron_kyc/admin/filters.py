"""The list filters of the Iron KYC admin pages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet, TextChoices
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..models import WebhookDelivery

__all__ = [
    "DeliveryAttentionFilter",
    "IdentificationAttentionFilter",
    "StatusFilter",
    "SupersededFilter",
]


class StatusFilter(admin.SimpleListFilter):
    """Status, with its labels, plus any status Iron sent that this version does not know.

    Subclass with ``statuses`` set to the model's ``Status``. The URL parameter stays
    Django's own ``status__exact``.
    """

    title = _("status")
    parameter_name = "status__exact"
    statuses: type[TextChoices]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        known = list(self.statuses.choices)
        others = (
            model_admin.model._default_manager.exclude(status__in=[*self.statuses.values, ""])
            .order_by("status")
            .values_list("status", flat=True)
            .distinct()
        )
        return known + [(value, value) for value in others]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(status=value) if value else queryset


class SupersededFilter(admin.SimpleListFilter):
    """Superseded (a newer identification replaced it) or not."""

    title = _("superseded")
    parameter_name = "superseded"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Superseded")), ("no", _("Not superseded"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(superseded_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(superseded_at__isnull=True)
        return queryset


class IdentificationAttentionFilter(admin.SimpleListFilter):
    """Identifications that need someone: failed (Iron never created them) or stale."""

    title = _("needs attention")
    parameter_name = "attention"
    _CONDITIONS = {
        "failed": Q(failed_at__isnull=False),
        "stale": Q(stale_at__isnull=False),
        "either": Q(failed_at__isnull=False) | Q(stale_at__isnull=False),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("either", _("Failed or stale")),
            ("failed", _("Failed (Iron never created it)")),
            ("stale", _("Stale (undecided too long, no longer polled)")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        condition = self._CONDITIONS.get(self.value() or "")
        return queryset if condition is None else queryset.filter(condition)


class DeliveryAttentionFilter(admin.SimpleListFilter):
    """Deliveries that need someone: processing failed, or not acted on yet."""

    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Failed or not acted on yet"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() != "yes":
            return queryset
        return queryset.filter(
            outcome__in=[WebhookDelivery.Outcome.FAILED, WebhookDelivery.Outcome.RECEIVED]
        )
