"""The admin of identifications: read-only, with refresh and the sandbox decisions.

The sandbox approve/decline actions and buttons exist only while
``iron_settings.SANDBOX_ACTIONS`` is on *and* the user holds ``iron_kyc.sandbox_decide``;
otherwise they are absent from the pages and a forged POST gets a 403 before anything is
sent to Iron. A decision asks for confirmation first and is written to Django's admin log
with the staff user.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from .. import services
from ..conf import iron_settings
from ..exceptions import IdentificationStateError, IronKycError, SandboxNotAllowedError
from ..models import Customer, Identification
from .base import (
    READ_ONLY_CONTEXT,
    IronModelAdmin,
    Tally,
    describe_error,
    fieldset_fields,
    refresh_customers,
    safe_link,
)
from .display import status_column

__all__ = ["IdentificationAdmin", "SupersededFilter"]

_SANDBOX_PERMISSION = "iron_kyc.sandbox_decide"
_SANDBOX_ACTION_NAMES = frozenset({"sandbox_approve", "sandbox_decline"})

_FOR_IDENTIFICATIONS = ngettext_lazy(
    "(for %(count)d identification)", "(for %(count)d identifications)", "count"
)
# The summary of a sandbox decision, by ``approve``.
_DECIDED = {
    True: ngettext_lazy(
        "%(count)d identification approved in sandbox",
        "%(count)d identifications approved in sandbox",
        "count",
    ),
    False: ngettext_lazy(
        "%(count)d identification declined in sandbox",
        "%(count)d identifications declined in sandbox",
        "count",
    ),
}


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


@admin.register(Identification)
class IdentificationAdmin(IronModelAdmin):
    """Identifications: everything read-only; refresh; approve/decline in sandbox."""

    list_display = (
        "__str__",
        "customer",
        "status_label",
        "with_edd",
        "superseded",
        "iron_updated_at",
        "created_at",
    )
    list_select_related = ("customer",)
    list_filter = ("status", SupersededFilter, "with_edd")
    search_fields = ("iron_id", "customer__iron_id")
    actions = ("refresh_from_iron", "sandbox_approve", "sandbox_decline")
    fieldsets = (
        (
            None,
            {"fields": ("customer", "status_label", "hosted_url", "with_edd", "review_comment")},
        ),
        (
            _("At Iron"),
            {"fields": ("iron_id", "iron_created_at", "iron_updated_at", "idempotency_key")},
        ),
        (
            _("Lifecycle"),
            {"fields": ("superseded_at", "failed_at", "last_error", "create_attempts")},
        ),
        (
            _("Polling"),
            {
                "classes": ("collapse",),
                "fields": ("next_poll_at", "last_polled_at", "poll_count", "stale_at"),
            },
        ),
        (_("Local"), {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )
    readonly_fields = fieldset_fields(fieldsets)
    status_label = status_column(Identification.Status)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Identifications start through services.start_identification (the customer actions).
        return False

    def has_sandbox_decide_permission(self, request: HttpRequest) -> bool:
        """Sandbox actions are on (setting and host) and the user may decide in sandbox."""
        return iron_settings.SANDBOX_ACTIONS and request.user.has_perm(_SANDBOX_PERMISSION)

    @admin.display(description=_("superseded"), boolean=True, ordering="superseded_at")
    def superseded(self, obj: Identification) -> bool:
        return obj.superseded_at is not None

    @admin.display(description=_("hosted URL"))
    def hosted_url(self, obj: Identification) -> SafeString | str:
        return safe_link(obj.url)

    # Actions ----------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The sandbox actions are not even offered to whoever may not use them; a forged POST
        # naming one is refused outright rather than answered with "no action selected".
        if (
            request.method == "POST"
            and request.POST.get("action") in _SANDBOX_ACTION_NAMES
            and not self.has_sandbox_decide_permission(request)
        ):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)

    @admin.action(description=_("Refresh from Iron"), permissions=("view",))
    def refresh_from_iron(self, request: HttpRequest, queryset: QuerySet[Identification]) -> None:
        customers = Customer.objects.filter(pk__in=queryset.values("customer_id")).order_by("pk")
        details = _FOR_IDENTIFICATIONS % {"count": queryset.count()}
        refresh_customers(self, request, customers, details=details)

    @admin.action(description=_("Approve in sandbox"), permissions=("sandbox_decide",))
    def sandbox_approve(
        self, request: HttpRequest, queryset: QuerySet[Identification]
    ) -> HttpResponse | None:
        return self._sandbox_action(request, queryset, approve=True)

    @admin.action(description=_("Decline in sandbox"), permissions=("sandbox_decide",))
    def sandbox_decline(
        self, request: HttpRequest, queryset: QuerySet[Identification]
    ) -> HttpResponse | None:
        return self._sandbox_action(request, queryset, approve=False)

    def _sandbox_action(
        self, request: HttpRequest, queryset: QuerySet[Identification], *, approve: bool
    ) -> HttpResponse | None:
        if not self.has_sandbox_decide_permission(request):
            raise PermissionDenied
        identifications = list(queryset.select_related("customer"))
        if request.POST.get("post") != "yes":
            return self._sandbox_confirmation(request, identifications, approve=approve)
        tally = Tally()
        for identification in identifications:
            self._sandbox_decide_one(request, identification, approve=approve, tally=tally)
        self.message_user(request, *tally.message(_DECIDED[approve]))
        return None

    def _sandbox_decide_one(
        self, request: HttpRequest, identification: Identification, *, approve: bool, tally: Tally
    ) -> None:
        if not identification.is_sandbox_decidable:
            tally.refused.append(
                gettext("%(identification)s is not pending at Iron")
                % {"identification": identification}
            )
            return
        decide = services.sandbox_approve if approve else services.sandbox_decline
        try:
            decide(identification)
        except SandboxNotAllowedError:
            raise PermissionDenied from None
        except IdentificationStateError as error:
            tally.refused.append(f"{identification}: {error}")
            return
        except IronKycError as error:
            tally.failed.append(f"{identification}: {describe_error(error)}")
            return
        identification.refresh_from_db()
        self.log_change(
            request,
            identification,
            (
                gettext("Approved in sandbox at Iron (status now %(status)s).")
                if approve
                else gettext("Declined in sandbox at Iron (status now %(status)s).")
            )
            % {"status": identification.status},
        )
        tally.done += 1

    def _sandbox_confirmation(
        self,
        request: HttpRequest,
        identifications: list[Identification],
        *,
        approve: bool,
        object_url: str | None = None,
    ) -> TemplateResponse:
        decidable = [i for i in identifications if i.is_sandbox_decidable]
        skipped = [i for i in identifications if not i.is_sandbox_decidable]
        return self.confirmation(
            request,
            "admin/iron_kyc/identification/sandbox_confirmation.html",
            {
                "title": gettext("Approve in sandbox?")
                if approve
                else gettext("Decline in sandbox?"),
                "approve": approve,
                "decision": gettext("approve") if approve else gettext("decline"),
                "action_name": "sandbox_approve" if approve else "sandbox_decline",
                "queryset": identifications,
                "decidable": decidable,
                "skipped": skipped,
                "iron_host": iron_settings.base_host,
                "object_url": object_url,
            },
        )

    # The sandbox buttons on the change page -----------------------------------------------

    object_views = (
        ("sandbox-approve", "sandbox_approve_view"),
        ("sandbox-decline", "sandbox_decline_view"),
    )
    change_view_context = READ_ONLY_CONTEXT

    def object_tools(self, request: HttpRequest, obj: Identification) -> dict[str, Any]:
        if not (obj.is_sandbox_decidable and self.has_sandbox_decide_permission(request)):
            return {}
        return {
            "iron_sandbox_approve_url": self.object_url("sandbox-approve", obj.pk),
            "iron_sandbox_decline_url": self.object_url("sandbox-decline", obj.pk),
        }

    def sandbox_approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._sandbox_view(request, object_id, approve=True)

    def sandbox_decline_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._sandbox_view(request, object_id, approve=False)

    def _sandbox_view(self, request: HttpRequest, object_id: str, *, approve: bool) -> HttpResponse:
        if not self.has_sandbox_decide_permission(request):
            raise PermissionDenied
        identification = self.get_object_or_404(request, object_id)
        # As Django's own object views: whoever may not see the identification may not
        # open its page here either (it shows the customer), let alone decide it.
        if not self.has_view_or_change_permission(request, identification):
            raise PermissionDenied
        change_url = self.object_url("change", identification.pk)
        if not identification.is_sandbox_decidable:
            self.message_user(
                request,
                gettext("%(identification)s is not pending at Iron: nothing was sent.")
                % {"identification": identification},
                messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        if request.method != "POST":
            return self._sandbox_confirmation(
                request, [identification], approve=approve, object_url=change_url
            )
        tally = Tally()
        self._sandbox_decide_one(request, identification, approve=approve, tally=tally)
        self.message_user(request, *tally.message(_DECIDED[approve]))
        return HttpResponseRedirect(change_url)
