"""What the Iron KYC ModelAdmins share: result counting, error wording, links, object views.

``IronModelAdmin`` titles each object's pages, turns ``object_views`` into per-object URLs
(the change page's buttons, "Refresh from Iron" among them) and renders the "are you
sure?" pages; ``Tally`` counts what an action did to each object for its one summary
message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from .. import services
from ..exceptions import IronAPIError, IronKycError
from ..models import Customer
from .display import customer_name

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

    ModelAdminBase = admin.ModelAdmin[Any]
else:
    ModelAdminBase = admin.ModelAdmin

__all__ = [
    "IronModelAdmin",
    "ModelAdminBase",
    "Tally",
    "Tool",
    "describe_error",
    "fieldset_fields",
    "refresh_customers",
    "safe_link",
    "technical",
]

_REFUSED = ngettext_lazy(
    "%(count)d refused (%(reasons)s)", "%(count)d refused (%(reasons)s)", "count"
)
_FAILED = ngettext_lazy("%(count)d failed (%(reasons)s)", "%(count)d failed (%(reasons)s)", "count")
_CUSTOMERS_REFRESHED = ngettext_lazy(
    "%(count)d customer refreshed from Iron", "%(count)d customers refreshed from Iron", "count"
)


def describe_error(error: Exception) -> str:
    """A readable one-line reason for a failure, with Iron's own message when Iron answered."""
    if isinstance(error, IronAPIError):
        if error.status is None:
            return gettext("Iron could not be reached: %(message)s") % {"message": error.message}
        return gettext("Iron answered %(status)s: %(message)s") % {
            "status": error.status,
            "message": error.message,
        }
    return str(error)


class Tally:
    """Counts what an action did to each object, for one summary message."""

    def __init__(self) -> None:
        self.done = 0
        self.refused: list[str] = []
        self.failed: list[str] = []

    def message(self, done: StrPromise, details: str = "") -> tuple[str, int]:
        """The summary and its message level.

        ``done`` is the plural message of the done count (``ngettext_lazy(..., "count")``);
        ``details``, if any, follows it; then the refused and failed ones with their reasons.
        """
        parts = [" ".join(filter(None, (done % {"count": self.done}, details)))]
        for reasons, text in ((self.refused, _REFUSED), (self.failed, _FAILED)):
            if reasons:
                parts.append(text % {"count": len(reasons), "reasons": "; ".join(reasons)})
        if not self.refused and not self.failed:
            level = messages.SUCCESS
        elif self.done:
            level = messages.WARNING
        else:
            level = messages.ERROR
        return "; ".join(parts), level


def technical(*fields: str) -> Any:
    """The collapsed "Technical" fieldset: ids, keys and counters staff rarely need."""
    return (_("Technical"), {"classes": ("collapse",), "fields": fields})


def fieldset_fields(fieldsets: Any, *, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every field named in ``fieldsets``, in order, less ``exclude``: the read-only ones."""
    return tuple(f for _, options in fieldsets for f in options["fields"] if f not in exclude)


def safe_link(url: str) -> SafeString | str:
    """An ``http(s)`` URL as a link opening in a new tab; anything else as plain text."""
    if not url:
        return "-"
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in {"http", "https"}:
        return url
    return format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, url)


@dataclass(frozen=True)
class Tool:
    """A button at the top of a change page: a link, or a form that POSTs (``post=True``)."""

    url: str
    label: str
    css_class: str
    post: bool = False


class IronModelAdmin(ModelAdminBase):
    """What our ModelAdmins share: page titles, per-object views (the buttons), confirmation
    pages, and no Delete for what Iron owns.

    ``object_title(obj)`` names the object in the page's title, its breadcrumbs and its
    history page (a person and a status, not a UUID); ``only_when_set`` fields are left off
    the page while empty. ``object_views`` maps a URL segment
    to the name of a view method; each becomes ``<object_id>/<segment>/`` named
    ``iron_kyc_<model>_<segment with underscores>``, wrapped in ``admin_site.admin_view``
    (staff login, CSRF). ``object_tools()`` returns the change page's buttons.
    """

    object_views: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Fields of the change page left out while they are empty (an error, a failure time).
    only_when_set: ClassVar[tuple[str, ...]] = ()
    # More context for every change page (e.g. which save buttons to show).
    change_view_context: ClassVar[dict[str, Any]] = {}
    object_history_template = "admin/iron_kyc/object_history.html"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        unset = {name for name in self.only_when_set if obj is None or not getattr(obj, name)}
        if not unset:
            return fieldsets
        return [
            (title, {**options, "fields": [f for f in options["fields"] if f not in unset]})
            for title, options in fieldsets
        ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A row deleted here would still exist at Iron: no Delete button that would lie.
        return False

    def object_title(self, obj: Any) -> str:
        """How the object is named on its pages (override)."""
        return str(obj)

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                f"<path:object_id>/{segment}/",
                self.admin_site.admin_view(getattr(self, method)),
                name=self.url_name(segment),
            )
            for segment, method in self.object_views
        ]
        return [*custom, *super().get_urls()]

    def url_name(self, view: str, model: type[Model] | None = None) -> str:
        opts = (model or self.model)._meta
        return f"{opts.app_label}_{opts.model_name}_{view.replace('-', '_')}"

    def object_url(self, view: str, pk: Any, model: type[Model] | None = None) -> str:
        """The admin URL of ``view`` (``change``, ``sandbox-approve``...) for one object."""
        return reverse(f"{self.admin_site.name}:{self.url_name(view, model)}", args=[quote(pk)])

    def object_link(self, label: str, pk: Any, model: type[Model] | None = None) -> SafeString:
        """``label`` as a link to the change page of one object (of ``model``, or this one)."""
        return format_html('<a href="{}">{}</a>', self.object_url("change", pk, model), label)

    def object_tools(self, request: HttpRequest, obj: Any) -> list[Tool]:
        """The buttons of ``obj``'s change page (override)."""
        return []

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {**self.change_view_context, **(extra_context or {})}
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            title = self.object_title(obj)
            context.update(
                subtitle=title,
                iron_kyc_title=title,
                iron_kyc_tools=self.object_tools(request, obj),
            )
        return super().change_view(request, object_id, form_url, context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            title = self.object_title(obj)
            context.update(
                title=gettext("Change history: %(object)s") % {"object": title},
                iron_kyc_title=title,
            )
        return super().history_view(request, object_id, context)

    def customer_of(self, obj: Any) -> Customer:
        """The customer that "Refresh from Iron" on ``obj``'s page refreshes (override)."""
        raise NotImplementedError

    def refresh_tool(self, request: HttpRequest, obj: Any) -> list[Tool]:
        """The "Refresh from Iron" button, for whoever may see ``obj`` (an object view
        ``("refresh", "refresh_view")`` must be in ``object_views``)."""
        if not self.has_view_or_change_permission(request, obj):
            return []
        url = self.object_url("refresh", obj.pk)
        return [Tool(url, gettext("Refresh from Iron"), "iron-kyc-refresh", post=True)]

    def refresh_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: refresh the object's customer from Iron now, then back to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object_or_404(request, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        refresh_customers(self, request, [self.customer_of(obj)])
        return HttpResponseRedirect(self.object_url("change", obj.pk))

    def get_object_or_404(self, request: HttpRequest, object_id: str) -> Any:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(
                gettext("No %(name)s with this id.") % {"name": self.model._meta.verbose_name}
            )
        return obj

    def confirmation(
        self, request: HttpRequest, template: str, context: dict[str, Any]
    ) -> TemplateResponse:
        """An intermediate "are you sure?" page, like Django's delete confirmation."""
        opts = self.model._meta
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": opts,
                "app_label": opts.app_label,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "media": self.media,
                **context,
            },
        )


def refresh_customers(
    model_admin: ModelAdminBase,
    request: HttpRequest,
    customers: Iterable[Customer],
    *,
    details: str = "",
) -> None:
    """Both admins' "Refresh from Iron": refresh each customer, then one message with counts.

    Calls ``services.refresh_customer`` per customer (one not at Iron yet is refused);
    ``details`` follows the done count in the message.
    """
    tally = Tally()
    for customer in customers:
        if customer.iron_id is None:
            tally.refused.append(
                gettext("%(customer)s is not at Iron yet") % {"customer": customer_name(customer)}
            )
            continue
        try:
            services.refresh_customer(customer)
        except IronKycError as error:
            tally.failed.append(f"{customer_name(customer)}: {describe_error(error)}")
        else:
            tally.done += 1
    model_admin.message_user(request, *tally.message(_CUSTOMERS_REFRESHED, details))
