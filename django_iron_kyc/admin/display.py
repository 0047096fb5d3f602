"""How the admin pages name things and show values, the same way on every page.

People are named by name and email, never by a UUID; a status is spelled one way (its label,
or Iron's own spelling for a status this version does not know); ids are shortened; times
are shown to the second; stored text that may be anything is shown safely and briefly.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.db.models import TextChoices
from django.utils import timezone
from django.utils.dateformat import format as format_datetime
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from ..models import Customer, Identification

__all__ = [
    "BODY_DISPLAY_LIMIT",
    "customer_name",
    "customer_title",
    "identification_name",
    "identification_notes",
    "identification_title",
    "person",
    "pretty_json",
    "readable_text",
    "seconds",
    "seconds_column",
    "short_id",
    "short_person",
    "status_column",
    "status_text",
]

# Characters of a stored body or traceback shown on a page; the rest is counted, not shown.
BODY_DISPLAY_LIMIT = 20_000


def readable_text(text: str, limit: int = BODY_DISPLAY_LIMIT) -> str:
    """``text`` that any page can encode, cut at ``limit`` characters with the rest counted.

    A lone surrogate (which JSON's ``\\ud800`` escape can produce) cannot be encoded as
    UTF-8, so it is shown as its escape; so is a NUL.
    """
    readable = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if len(readable) <= limit:
        return readable
    rest = len(readable) - limit
    more = ngettext("%(count)d more character", "%(count)d more characters", rest) % {"count": rest}
    return f"{readable[:limit]}\n… ({more} not shown)"


def pretty_json(text: str, limit: int = BODY_DISPLAY_LIMIT) -> str:
    """``text`` indented as JSON if it parses, else as it is; always :func:`readable_text`.

    A body nested deeper than ``json`` can read (``RecursionError``) is shown raw.
    """
    with contextlib.suppress(ValueError, RecursionError):
        text = json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
    return readable_text(text, limit)


def status_text(value: str, choices: type[TextChoices]) -> str:
    """A status as staff read it: its label (``Pending review``), Iron's own spelling for a
    status this version does not know (never "-"), or "not at Iron yet" while empty."""
    if not value:
        return gettext("not at Iron yet")
    if value in choices.values:
        return str(choices(value).label)
    return value


def status_column(choices: type[TextChoices]) -> Callable[[Any, Any], str]:
    """A ModelAdmin method showing ``obj.status`` with :func:`status_text` (sorts by status)."""

    @admin.display(description=_("status"), ordering="status")
    def status_label(model_admin: Any, obj: Any) -> str:
        return status_text(obj.status, choices)

    return status_label


def seconds_column(field: str, description: Any) -> Callable[[Any, Any], str]:
    """A ModelAdmin method showing the time ``obj.<field>`` with :func:`seconds`."""

    @admin.display(description=description, ordering=field)
    def time_to_the_second(model_admin: Any, obj: Any) -> str:
        return seconds(getattr(obj, field))

    return time_to_the_second


def short_id(value: uuid.UUID | str | None) -> str:
    """The first 8 characters of an Iron id (enough to tell rows apart on a page)."""
    return str(value)[:8] if value else ""


def seconds(value: datetime | None) -> str:
    """A time in the current time zone, to the second: ``2025-03-13 14:05:09``."""
    if value is None:
        return "-"
    return format_datetime(timezone.localtime(value), "Y-m-d H:i:s")


def person(name: str, email: str, iron_id: uuid.UUID | str | None = None, pk: Any = None) -> str:
    """Who a customer is: ``Ada Lovelace <ada@example.com>``, or whichever of the two is set,
    else the start of their Iron id, else their row number."""
    name, email = name.strip(), email.strip()
    if name and email:
        return f"{name} <{email}>"
    if name or email:
        return name or email
    if iron_id:
        return gettext("customer %(id)s") % {"id": short_id(iron_id)}
    return gettext("customer #%(pk)s") % {"pk": pk}


def customer_name(customer: Customer) -> str:
    """:func:`person` for a customer row."""
    return person(customer.name, customer.email, customer.iron_id, customer.pk)


def short_person(name: str, email: str, pk: Any) -> str:
    """A list cell's name for a customer: the name, else the email, else the row number."""
    return name.strip() or email.strip() or gettext("customer #%(pk)s") % {"pk": pk}


def customer_title(customer: Customer) -> str:
    """A customer's page title: the person and their status at Iron."""
    return f"{customer_name(customer)} · {status_text(customer.status, Customer.Status)}"


def identification_name(iron_id: uuid.UUID | str | None, pk: Any) -> str:
    """``1a2b3c4d`` (its Iron id, shortened), or ``intent #5`` before Iron has created it."""
    return short_id(iron_id) if iron_id else gettext("intent #%(pk)s") % {"pk": pk}


def identification_notes(identification: Identification) -> list[str]:
    """What else staff must know at a glance: superseded, failed, stale, with EDD."""
    notes = []
    if identification.superseded_at:
        notes.append(gettext("superseded"))
    if identification.failed_at:
        notes.append(gettext("failed"))
    if identification.stale_at:
        notes.append(gettext("stale"))
    if identification.with_edd:
        notes.append(gettext("with EDD"))
    return notes


def identification_title(identification: Identification) -> str:
    """An identification's title: which one, whose, its status and what else matters."""
    state = ", ".join(
        [
            status_text(identification.status, Identification.Status),
            *identification_notes(identification),
        ]
    )
    return gettext("Identification %(name)s of %(person)s · %(state)s") % {
        "name": identification_name(identification.iron_id, identification.pk),
        "person": customer_name(identification.customer),
        "state": state,
    }
