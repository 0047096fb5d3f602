"""What the Iron KYC ModelAdmins share: result counting, error wording, links, object views.

``IronModelAdmin`` turns ``object_views`` into per-object URLs (the change page's buttons)
and renders the "are you sure?" pages; ``Tally`` counts what an action did to each object
for its one summary message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext_lazy

from .. import services
from ..exceptions import IronAPIError, IronKycError
from ..models import Customer

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

    ModelAdminBase = admin.ModelAdmin[Any]
else:
    ModelAdminBase = admin.ModelAdmin

__all__ = [
    "READ_ONLY_CONTEXT",
    "IronModelAdmin",
    "ModelAdminBase",
    "Tally",
    "describe_error",
    "fieldset_fields",
    "refresh_customers",
    "safe_link",
]

_REFUSED = ngettext_lazy(
    "%(count)d refused (%(reasons)s)", "%(count)d refused (%(reasons)s)", "count"
)
_FAILED = ngettext_lazy("%(count)d failed (%(reasons)s)", "%(count)d failed (%(reasons)s)", "count")
_CUSTOMERS_REFRESHED = ngettext_lazy(
    "%(count)d customer refreshed from Iron", "%(count)d customers refreshed from Iron", "count"
)

# Change-page context that hides the save buttons (every field is read-only).
READ_ONLY_CONTEXT = {
    "show_save": False,
    "show_save_and_continue": False,
    "show_save_and_add_another": False,
}


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


class IronModelAdmin(ModelAdminBase):
    """What our ModelAdmins share: per-object views (the buttons) and confirmation pages.

    ``object_views`` maps a URL segment to the name of a view method; each becomes
    ``<object_id>/<segment>/`` named ``iron_kyc_<model>_<segment with underscores>``,
    wrapped in ``admin_site.admin_view`` (staff login, CSRF). ``object_tools()`` returns
    the extra context of the change page (the buttons' URLs).
    """

    object_views: ClassVar[tuple[tuple[str, str], ...]] = ()
    change_view_context: ClassVar[dict[str, Any]] = {}

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

    def object_tools(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        """Extra change-page context for ``obj`` (override)."""
        return {}

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
            context.update(self.object_tools(request, obj))
        return super().change_view(request, object_id, form_url, context)

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
                gettext("%(customer)s is not at Iron yet") % {"customer": customer}
            )
            continue
        try:
            services.refresh_customer(customer)
        except IronKycError as error:
            tally.failed.append(f"{customer}: {describe_error(error)}")
        else:
            tally.done += 1
    model_admin.message_user(request, *tally.message(_CUSTOMERS_REFRESHED, details))
