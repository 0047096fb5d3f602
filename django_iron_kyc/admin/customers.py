"""The admin of customers: start identifications (also superseding one), refresh from Iron.

Starting one calls ``services.start_identification`` and is written to Django's admin log
with the staff user; the "start a new identification" button supersedes the one in flight
after a confirmation page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from .. import services
from ..exceptions import IdentificationInFlightError, IdentificationStateError, IronKycError
from ..models import Customer, Identification
from .base import IronModelAdmin, Tally, describe_error, fieldset_fields, refresh_customers
from .display import status_column, status_text

if TYPE_CHECKING:
    IdentificationInlineBase = admin.TabularInline[Identification, Customer]
else:
    IdentificationInlineBase = admin.TabularInline

__all__ = ["CustomerAdmin", "IdentificationInline"]


_STARTED = ngettext_lazy(
    "%(count)d identification started", "%(count)d identifications started", "count"
)


@dataclass(frozen=True)
class _StartOutcome:
    """What starting one identification came to: started, refused here, or failed."""

    identification: Identification | None = None
    refused: str | None = None  # why nothing was sent to Iron
    failed: str | None = None  # why Iron (or the way to it) failed it

    @property
    def reason(self) -> str | None:
        """Why no identification was started, if none was."""
        return self.refused or self.failed


def _identification_label(iron_id: Any, pk: Any) -> str:
    return str(iron_id) if iron_id else gettext("intent #%(pk)s") % {"pk": pk}


class IdentificationInline(IdentificationInlineBase):
    """The customer's identifications, newest first, read-only (links to each one)."""

    model = Identification
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "iron_id",
        "status_label",
        "with_edd",
        "superseded_at",
        "failed_at",
        "iron_updated_at",
    )
    readonly_fields = fields
    ordering = ("-created_at", "-pk")
    status_label = status_column(Identification.Status)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(IronModelAdmin):
    """Customers at Iron: start identifications (also superseding), refresh from Iron."""

    list_display = (
        "__str__",
        "iron_id",
        "user",
        "status_label",
        "customer_type",
        "current_identification_link",
        "current_identification_status",
        "created_at",
    )
    list_select_related = ("user",)
    list_filter = ("status", "customer_type")
    raw_id_fields = ("user",)
    actions = ("start_identification", "start_identification_with_edd", "refresh_from_iron")
    inlines = (IdentificationInline,)
    fieldsets = (
        (None, {"fields": ("user", "current_identification_display")}),
        (
            _("At Iron (read-only)"),
            {
                "fields": (
                    "iron_id",
                    "status_label",
                    "customer_type",
                    "email",
                    "name",
                    "external_id",
                    "iron_created_at",
                    "iron_updated_at",
                    "idempotency_key",
                    "last_error",
                )
            },
        ),
        (_("Local"), {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = fieldset_fields(fieldsets, exclude=("user",))
    status_label = status_column(Customer.Status)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        user_model = get_user_model()
        fields = ["email", "name", "external_id", "iron_id"]
        for name in (user_model.USERNAME_FIELD, user_model.get_email_field_name()):
            lookup = f"user__{name}"
            if name and lookup not in fields:
                try:
                    user_model._meta.get_field(name)
                except Exception:  # noqa: S112 - a custom user model without that field
                    continue
                fields.append(lookup)
        return fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        current = Identification.objects.filter(
            customer=OuterRef("pk"), superseded_at__isnull=True, failed_at__isnull=True
        ).order_by("-created_at", "-pk")
        queryset: QuerySet[Customer] = super().get_queryset(request)
        return queryset.annotate(
            current_identification_pk=Subquery(current.values("pk")[:1]),
            current_identification_iron_id=Subquery(current.values("iron_id")[:1]),
            current_identification_status_value=Subquery(current.values("status")[:1]),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A row added here would not exist at Iron: customers come from services.create_customer.
        return False

    @admin.display(description=_("current identification"))
    def current_identification_link(self, obj: Customer) -> SafeString | str:
        pk = getattr(obj, "current_identification_pk", None)
        if pk is None:
            return "-"
        url = self.object_url("change", pk, Identification)
        label = _identification_label(getattr(obj, "current_identification_iron_id", None), pk)
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(
        description=_("identification status"), ordering="current_identification_status_value"
    )
    def current_identification_status(self, obj: Customer) -> str:
        if getattr(obj, "current_identification_pk", None) is None:
            return "-"
        value = getattr(obj, "current_identification_status_value", "") or ""
        return status_text(value, Identification.Status)

    @admin.display(description=_("current identification"))
    def current_identification_display(self, obj: Customer) -> SafeString | str:
        identification = obj.current_identification
        if identification is None:
            return "-"
        url = self.object_url("change", identification.pk, Identification)
        return format_html('<a href="{}">{}</a>', url, str(identification))

    # Actions ----------------------------------------------------------------------------

    @admin.action(description=_("Start an identification (Link)"), permissions=("change",))
    def start_identification(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        self._start_identifications(request, queryset, with_edd=False)

    @admin.action(description=_("Start an identification with EDD (Link)"), permissions=("change",))
    def start_identification_with_edd(
        self, request: HttpRequest, queryset: QuerySet[Customer]
    ) -> None:
        self._start_identifications(request, queryset, with_edd=True)

    def _start_one(
        self, request: HttpRequest, customer: Customer, *, with_edd: bool, force: bool
    ) -> _StartOutcome:
        """Start one identification for ``customer`` and log it on the customer's history."""
        try:
            identification = services.start_identification(customer, with_edd=with_edd, force=force)
        except IdentificationInFlightError:
            return _StartOutcome(
                refused=gettext("customer %(customer)s already has an identification in flight")
                % {"customer": customer}
            )
        except IdentificationStateError as error:
            return _StartOutcome(refused=str(error))
        except IronKycError as error:
            return _StartOutcome(failed=f"{customer}: {describe_error(error)}")
        identification.refresh_from_db()
        kind = gettext("with EDD") if with_edd else gettext("Link")
        text = (
            gettext(
                "Started identification %(identification)s (%(kind)s), superseding the one "
                "in flight."
            )
            if force
            else gettext("Started identification %(identification)s (%(kind)s).")
        ) % {"identification": identification, "kind": kind}
        self.log_change(request, customer, text)
        if identification.failed_at is not None:
            # Celery ran the creation at once (eager) and Iron refused it.
            return _StartOutcome(identification, failed=f"{customer}: {identification.last_error}")
        return _StartOutcome(identification)

    def _start_identifications(
        self, request: HttpRequest, queryset: QuerySet[Customer], *, with_edd: bool
    ) -> None:
        tally = Tally()
        for customer in queryset:
            outcome = self._start_one(request, customer, with_edd=with_edd, force=False)
            if outcome.refused:
                tally.refused.append(outcome.refused)
            elif outcome.failed:
                tally.failed.append(outcome.failed)
            else:
                tally.done += 1
        self.message_user(request, *tally.message(_STARTED))

    @admin.action(description=_("Refresh from Iron"), permissions=("view",))
    def refresh_from_iron(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        refresh_customers(self, request, queryset)

    # The "start a new identification" button ----------------------------------------------

    object_views = (("start-identification", "supersede_view"),)

    def object_tools(self, request: HttpRequest, obj: Customer) -> dict[str, Any]:
        if not self.has_change_permission(request, obj):
            return {}
        return {"iron_start_identification_url": self.object_url("start-identification", obj.pk)}

    def supersede_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, then start a new identification with ``force=True``."""
        customer = self.get_object_or_404(request, object_id)
        if not self.has_change_permission(request, customer):
            raise PermissionDenied
        change_url = self.object_url("change", customer.pk)
        if request.method == "POST":
            with_edd = request.POST.get("with_edd") in {"on", "1", "true", "yes"}
            outcome = self._start_one(request, customer, with_edd=with_edd, force=True)
            if outcome.reason:
                self.message_user(
                    request,
                    gettext("No identification started: %(reason)s") % {"reason": outcome.reason},
                    messages.ERROR,
                )
            else:
                self.message_user(
                    request,
                    gettext("Identification %(identification)s started for %(customer)s.")
                    % {"identification": outcome.identification, "customer": customer},
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(change_url)
        in_flight = (
            Identification.objects.in_flight().filter(customer=customer).order_by("-created_at")
        )
        return self.confirmation(
            request,
            "admin/iron_kyc/customer/start_identification_confirmation.html",
            {
                "title": gettext("Start a new identification?"),
                "object": customer,
                "in_flight": list(in_flight),
                "change_url": change_url,
            },
        )
