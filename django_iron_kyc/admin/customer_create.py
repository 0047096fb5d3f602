"""Creating a customer at Iron from the admin, through ``services.create_customer``.

The customer admin's "Add" page: a form with what Iron needs, whose button says that it
creates the customer at Iron. Success lands on the new customer's page (to start an
identification); Iron's refusal, or Iron out of reach, is shown on the form with Iron's
message, as the other actions show theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import services
from ..exceptions import IronKycError
from ..models import Customer
from .base import IronModelAdmin, describe_error
from .display import customer_name, status_text

if TYPE_CHECKING:
    CustomerFormBase = forms.ModelForm[Customer]
else:
    CustomerFormBase = forms.ModelForm

__all__ = ["CreateCustomerForm", "create_customer_view"]

_FIELDS = ("email", "name", "customer_type", "external_id", "user")


class CreateCustomerForm(CustomerFormBase):
    """What ``services.create_customer`` needs; it never saves a row itself.

    ``user`` may not be a customer at Iron already. A user (or external id) whose earlier
    attempt Iron never confirmed is accepted: the service reuses that attempt's row and key.
    """

    class Meta:
        model = Customer
        fields = _FIELDS
        help_texts = {
            "external_id": _("Your own id for this person, if any. Sent to Iron as external_id."),
            "user": _(
                "The user of this site who is this customer, if any. With a user or an "
                "external id, creating again after an error reuses the first request, so Iron "
                "never gets two customers for one person."
            ),
        }

    def __init__(self, *args: Any, admin_site: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        relation = Customer._meta.get_field("user").remote_field
        self.fields["user"].widget = ForeignKeyRawIdWidget(relation, admin_site)

    def clean_user(self) -> Any:
        user = self.cleaned_data["user"]
        if user is not None:
            existing = Customer.objects.filter(user=user, iron_id__isnull=False).first()
            if existing is not None:
                raise ValidationError(
                    gettext("This user already is a customer at Iron: %(customer)s.")
                    % {"customer": customer_name(existing)}
                )
        return user

    def validate_unique(self) -> None:
        # The service decides what a repeated user or external id means (see above).
        return


def create_customer_view(
    model_admin: IronModelAdmin,
    request: HttpRequest,
    form_url: str = "",
    extra_context: dict[str, Any] | None = None,
) -> HttpResponse:
    """The customer admin's add view: create the customer at Iron, or say why not."""
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    data = request.POST if request.method == "POST" else None
    form = CreateCustomerForm(data, admin_site=model_admin.admin_site)
    if data is not None and form.is_valid():
        values = form.cleaned_data
        try:
            # Not in a transaction: the row and its idempotency key commit before the request.
            customer = services.create_customer(
                email=values["email"],
                name=values["name"],
                customer_type=values["customer_type"],
                external_id=values["external_id"] or None,
                user=values["user"],
            )
        except IronKycError as error:
            reason = describe_error(error)
            form.add_error(None, reason)
            model_admin.message_user(
                request,
                gettext("The customer was not created at Iron: %(reason)s") % {"reason": reason},
                messages.ERROR,
            )
        else:
            status = status_text(customer.status, Customer.Status)
            model_admin.log_addition(
                request, customer, gettext("Created at Iron (%(status)s).") % {"status": status}
            )
            model_admin.message_user(
                request,
                gettext(
                    "Customer %(customer)s created at Iron (%(status)s). Start an "
                    "identification from here."
                )
                % {"customer": customer_name(customer), "status": status},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(model_admin.object_url("change", customer.pk))
    adminform = helpers.AdminForm(
        form, [(None, {"fields": list(_FIELDS)})], {}, model_admin=model_admin
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Create a customer at Iron"),
        "subtitle": None,
        "adminform": adminform,
        "object_id": None,
        "original": None,
        "is_popup": False,
        "to_field": None,
        "media": model_admin.media + adminform.media,
        "inline_admin_formsets": [],
        "errors": helpers.AdminErrorList(form, []),
        "preserved_filters": model_admin.get_preserved_filters(request),
        "iron_kyc_submit_label": gettext("Create at Iron"),
        "iron_kyc_intro": gettext(
            "Saving asks Iron to create this customer (POST /api/customers). Iron keeps its "
            "customers: one created by mistake cannot be deleted there."
        ),
        **(extra_context or {}),
    }
    return model_admin.render_change_form(request, context, add=True, form_url=form_url)
