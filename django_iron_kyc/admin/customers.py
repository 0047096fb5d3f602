"""The admin of customers: create one at Iron, start identifications, refresh from Iron.

Creating calls ``services.create_customer`` (:mod:`.customer_create`); starting calls
``services.start_identification`` after a confirmation page that says whether it supersedes
the identification in flight. Both are written to Django's admin log with the staff user.
Only the link to one of this site's users is editable; nothing is deleted here but by the
*Forget* action (:mod:`.privacy`), behind its own permission.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from .. import services
from ..exceptions import IdentificationInFlightError, IdentificationStateError, IronKycError
from ..models import Customer, Identification
from .base import (
    Tally,
    Tool,
    describe_error,
    fieldset_fields,
    refresh_customers,
    technical,
)
from .customer_create import create_customer_view
from .display import (
    customer_name,
    customer_title,
    identification_name,
    identification_notes,
    identification_title,
    seconds_column,
    status_column,
    status_text,
)
from .filters import StatusFilter
from .privacy import CustomerPrivacy

if TYPE_CHECKING:
    IdentificationInlineBase = admin.TabularInline[Identification, Customer]
else:
    IdentificationInlineBase = admin.TabularInline

__all__ = ["CustomerAdmin", "CustomerStatusFilter", "IdentificationInline"]


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


class CustomerStatusFilter(StatusFilter):
    statuses = Customer.Status


class IdentificationInline(IdentificationInlineBase):
    """The customer's identifications, newest first, read-only (links to each one)."""

    model = Identification
    template = "admin/iron_kyc/customer/identifications_inline.html"
    extra = 0
    can_delete = False
    fields = ("identification", "status_label", "notes", "updated_at_iron")
    readonly_fields = fields
    ordering = ("-created_at", "-pk")
    status_label = status_column(Identification.Status)
    updated_at_iron = seconds_column("iron_updated_at", _("updated at Iron"))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("identification"))
    def identification(self, obj: Identification) -> str:
        return identification_name(obj.iron_id, obj.pk)

    @admin.display(description=_("notes"))
    def notes(self, obj: Identification) -> str:
        return ", ".join(identification_notes(obj)) or "-"


@admin.register(Customer)
class CustomerAdmin(CustomerPrivacy):
    """Customers at Iron: create, start identifications (also superseding), refresh; export
    and forget (:mod:`.privacy`)."""

    list_display = ("customer", "status_label", "current_identification_link", "user", "created")
    list_select_related = ("user",)
    list_filter = (CustomerStatusFilter, "customer_type")
    raw_id_fields = ("user",)
    actions = (
        "start_identification",
        "start_identification_with_edd",
        "refresh_from_iron",
        "export_as_json",
        "forget_customers",
    )
    inlines = (IdentificationInline,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "user",
                    "email",
                    "name",
                    "status_label",
                    "customer_type",
                    "external_id",
                    "current_identification_display",
                    "last_error",
                )
            },
        ),
        technical(
            "iron_id",
            "idempotency_key",
            "iron_created_at",
            "iron_updated_at",
            "created_at",
            "updated_at",
        ),
    )
    readonly_fields = fieldset_fields(fieldsets, exclude=("user",))
    only_when_set = ("last_error",)
    # Adding is creating at Iron, a page of its own: no "Save and add another" here.
    change_view_context = {"show_save_and_add_another": False}
    status_label = status_column(Customer.Status)
    created = seconds_column("created_at", _("created"))
    object_views = (
        ("start-identification", "start_view"),
        ("refresh", "refresh_view"),
    )

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        user_model = get_user_model()
        fields = ["email", "name", "external_id", "iron_id"]
        for name in (user_model.USERNAME_FIELD, user_model.get_email_field_name()):
            lookup = f"user__{name}"
            if name and lookup not in fields:
                try:
                    user_model._meta.get_field(name)
                except FieldDoesNotExist:  # a custom user model without that field
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

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Creates the customer at Iron through services.create_customer, not a bare row.
        return create_customer_view(self, request, form_url, extra_context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "iron_kyc_add_label": gettext("Create a customer at Iron"),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def object_title(self, obj: Customer) -> str:
        return customer_title(obj)

    def customer_of(self, obj: Customer) -> Customer:
        return obj

    @admin.display(description=_("customer"), ordering="email")
    def customer(self, obj: Customer) -> str:
        return customer_name(obj)

    @admin.display(
        description=_("current identification"), ordering="current_identification_status_value"
    )
    def current_identification_link(self, obj: Customer) -> SafeString | str:
        pk = getattr(obj, "current_identification_pk", None)
        if pk is None:
            return "-"
        name = identification_name(getattr(obj, "current_identification_iron_id", None), pk)
        status = getattr(obj, "current_identification_status_value", "") or ""
        return self.object_link(
            f"{name} · {status_text(status, Identification.Status)}", pk, Identification
        )

    @admin.display(description=_("current identification"))
    def current_identification_display(self, obj: Customer) -> SafeString | str:
        identification = obj.current_identification
        if identification is None:
            return "-"
        return self.object_link(
            identification_title(identification), identification.pk, Identification
        )

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
                % {"customer": customer_name(customer)}
            )
        except IdentificationStateError as error:
            return _StartOutcome(refused=str(error))
        except IronKycError as error:
            return _StartOutcome(failed=f"{customer_name(customer)}: {describe_error(error)}")
        identification.refresh_from_db()
        kind = gettext("with EDD") if with_edd else gettext("Link")
        text = (
            gettext(
                "Started identification %(identification)s (%(kind)s), superseding the one "
                "in flight."
            )
            if force
            else gettext("Started identification %(identification)s (%(kind)s).")
        ) % {
            "identification": identification_name(identification.iron_id, identification.pk),
            "kind": kind,
        }
        self.log_change(request, customer, text)
        if identification.failed_at is not None:
            # Celery ran the creation at once (eager) and Iron refused it.
            return _StartOutcome(
                identification, failed=f"{customer_name(customer)}: {identification.last_error}"
            )
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

    # The change page's buttons ------------------------------------------------------------

    def object_tools(self, request: HttpRequest, obj: Customer) -> list[Tool]:
        tools = []
        if self.has_change_permission(request, obj):
            in_flight = Identification.objects.in_flight().filter(customer=obj).exists()
            label = (
                gettext("Start a new identification (supersedes the one in flight)")
                if in_flight
                else gettext("Start an identification")
            )
            url = self.object_url("start-identification", obj.pk)
            tools.append(Tool(url, label, "iron-kyc-start-identification"))
        return [*tools, *self.refresh_tool(request, obj)]

    def start_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, then start an identification (superseding the one in flight if the
        confirmation page said so)."""
        customer = self.get_object_or_404(request, object_id)
        if not self.has_change_permission(request, customer):
            raise PermissionDenied
        change_url = self.object_url("change", customer.pk)
        if request.method == "POST":
            with_edd = request.POST.get("with_edd") in {"on", "1", "true", "yes"}
            # Supersede only what the staff member saw on the confirmation page: one that
            # went in flight meanwhile is refused, not superseded by surprise.
            force = request.POST.get("supersede") == "yes"
            outcome = self._start_one(request, customer, with_edd=with_edd, force=force)
            if outcome.reason or outcome.identification is None:
                self.message_user(
                    request,
                    gettext("No identification started: %(reason)s") % {"reason": outcome.reason},
                    messages.ERROR,
                )
            else:
                started = outcome.identification
                self.message_user(
                    request,
                    gettext(
                        "Identification %(identification)s started for %(customer)s (%(status)s)."
                    )
                    % {
                        "identification": identification_name(started.iron_id, started.pk),
                        "customer": customer_name(customer),
                        "status": status_text(started.status, Identification.Status),
                    },
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
                "title": gettext("Start a new identification?")
                if in_flight
                else gettext("Start an identification?"),
                "object": customer,
                "customer_name": customer_name(customer),
                "iron_kyc_title": customer_title(customer),
                "in_flight": [identification_title(i) for i in in_flight],
                "change_url": change_url,
            },
        )
