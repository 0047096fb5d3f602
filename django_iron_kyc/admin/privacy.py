"""The customer admin's personal-data actions: export one as JSON, forget customers.

*Export as JSON* (whoever may see customers) downloads ``services.export_customer``.
*Forget* needs the ``iron_kyc.forget_customer`` permission: it is not offered to anyone else,
and a forged POST naming it gets a 403. It shows what will be deleted, with a separate,
unticked box to archive at Iron too (irreversible), then calls ``services.forget_customer``
for each customer and records each in the admin log, without the person's name.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import ProtectedError, QuerySet, RestrictedError
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from .. import services
from ..exceptions import IronKycError
from ..models import Customer
from .base import IronModelAdmin, Tally, describe_error
from .display import customer_name

__all__ = ["CustomerPrivacy"]

_FORGET_PERMISSION = "iron_kyc.forget_customer"
_FORGET_ACTION = "forget_customers"
_FORGOTTEN = ngettext_lazy("%(count)d customer forgotten", "%(count)d customers forgotten", "count")


class CustomerPrivacy(IronModelAdmin):
    """The customer admin's *Export as JSON* and *Forget* actions."""

    def has_forget_permission(self, request: HttpRequest) -> bool:
        """May forget customers (``iron_kyc.forget_customer``); what the action requires."""
        return request.user.has_perm(_FORGET_PERMISSION)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Not offered to whoever may not forget; a forged POST naming it is refused outright
        # rather than answered with "no action selected".
        if (
            request.method == "POST"
            and request.POST.get("action") == _FORGET_ACTION
            and not self.has_forget_permission(request)
        ):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)

    @admin.action(
        description=_("Export as JSON (everything stored about them)"), permissions=("view",)
    )
    def export_as_json(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse:
        customers = list(queryset)
        exports = [services.export_customer(customer) for customer in customers]
        for customer in customers:
            self.log_change(request, customer, gettext("Exported as JSON."))
        if len(customers) == 1:
            data: Any = exports[0]
            filename = f"iron-kyc-customer-{customers[0].iron_id or customers[0].pk}.json"
        else:
            data, filename = exports, "iron-kyc-customers.json"
        response = HttpResponse(
            json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @admin.action(
        description=_("Forget (delete what is stored about them)"), permissions=("forget",)
    )
    def forget_customers(
        self, request: HttpRequest, queryset: QuerySet[Customer]
    ) -> HttpResponse | None:
        if not self.has_forget_permission(request):
            raise PermissionDenied
        customers = list(queryset)
        if request.POST.get("post") != "yes":
            return self._forget_confirmation(request, customers)
        archive = request.POST.get("archive_at_iron") == "yes"
        tally = Tally()
        for customer in customers:
            label = customer_name(customer)
            try:
                self._forget_one(request, customer, archive=archive)
            except (ProtectedError, RestrictedError) as error:  # your rows refer to it
                tally.refused.append(f"{label}: {error.args[0]}")
            except IronKycError as error:
                tally.failed.append(f"{label}: {describe_error(error)}")
            else:
                tally.done += 1
        self.message_user(request, *tally.message(_FORGOTTEN))
        return None

    def _forget_confirmation(self, request: HttpRequest, customers: list[Customer]) -> HttpResponse:
        rows = [(customer_name(c), services.customer_data_counts(c)) for c in customers]
        return self.confirmation(
            request,
            "admin/iron_kyc/customer/forget_confirmation.html",
            {
                "title": gettext("Forget these customers?"),
                "queryset": customers,
                "rows": rows,
                "totals": {
                    kind: sum(counts[kind] for _, counts in rows)
                    for kind in (rows[0][1] if rows else {})
                },
                "action_name": _FORGET_ACTION,
            },
        )

    def _forget_one(self, request: HttpRequest, customer: Customer, *, archive: bool) -> None:
        """Forget ``customer`` and record who did it in the admin log, or neither.

        The record is written first, in the same transaction: forgetting then takes the
        person's name out of it, as out of every other entry about them.
        """
        with transaction.atomic():
            LogEntry.objects.log_actions(
                user_id=request.user.pk,  # type: ignore[arg-type]  # staff: signed in
                queryset=[customer],
                action_flag=DELETION,
                change_message=gettext("Forgotten; archived at Iron.")
                if archive
                else gettext("Forgotten."),
            )
            services.forget_customer(customer, archive_at_iron=archive)
