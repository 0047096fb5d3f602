"""Approving and declining identifications in Iron's sandbox, from the admin.

The actions and the change page's buttons exist only while ``iron_settings.SANDBOX_ACTIONS``
is on *and* the user holds ``iron_kyc.sandbox_decide`` (and may see identifications);
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
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from .. import services
from ..conf import iron_settings
from ..exceptions import IdentificationStateError, IronKycError, SandboxNotAllowedError
from ..models import Identification
from .base import IronModelAdmin, Tally, Tool, describe_error
from .display import identification_title, status_text

__all__ = ["SandboxDecisions"]

_SANDBOX_PERMISSION = "iron_kyc.sandbox_decide"
_SANDBOX_ACTION_NAMES = frozenset({"sandbox_approve", "sandbox_decline"})

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


class SandboxDecisions(IronModelAdmin):
    """The identification admin's sandbox actions, buttons and confirmation pages."""

    sandbox_object_views = (
        ("sandbox-approve", "sandbox_approve_view"),
        ("sandbox-decline", "sandbox_decline_view"),
    )

    def has_sandbox_decide_permission(self, request: HttpRequest) -> bool:
        """Sandbox actions are on (setting and host) and the user may decide in sandbox."""
        return iron_settings.SANDBOX_ACTIONS and request.user.has_perm(_SANDBOX_PERMISSION)

    def sandbox_tools(self, request: HttpRequest, obj: Identification) -> list[Tool]:
        """The change page's approve/decline buttons, when they apply and are allowed."""
        if not (obj.is_sandbox_decidable and self.has_sandbox_decide_permission(request)):
            return []
        return [
            Tool(
                self.object_url("sandbox-approve", obj.pk),
                gettext("Approve in sandbox"),
                "iron-kyc-sandbox-approve",
            ),
            Tool(
                self.object_url("sandbox-decline", obj.pk),
                gettext("Decline in sandbox"),
                "iron-kyc-sandbox-decline",
            ),
        ]

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
        label = identification_title(identification)
        if not identification.is_sandbox_decidable:
            tally.refused.append(
                gettext("%(identification)s is not pending at Iron") % {"identification": label}
            )
            return
        decide = services.sandbox_approve if approve else services.sandbox_decline
        try:
            decide(identification)
        except SandboxNotAllowedError:
            raise PermissionDenied from None
        except IdentificationStateError as error:
            tally.refused.append(f"{label}: {error}")
            return
        except IronKycError as error:
            tally.failed.append(f"{label}: {describe_error(error)}")
            return
        identification.refresh_from_db()
        status = status_text(identification.status, Identification.Status)
        self.log_change(
            request,
            identification,
            (
                gettext("Approved in sandbox at Iron (status now %(status)s).")
                if approve
                else gettext("Declined in sandbox at Iron (status now %(status)s).")
            )
            % {"status": status},
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
                "decidable": [identification_title(i) for i in decidable],
                "skipped": [identification_title(i) for i in skipped],
                "iron_host": iron_settings.base_host,
                "object_url": object_url,
                "iron_kyc_title": identification_title(identifications[0])
                if identifications
                else "",
            },
        )

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
                % {"identification": identification_title(identification)},
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
