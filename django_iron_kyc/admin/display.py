"""How the admin pages show values: stored text that may be anything, safely and briefly."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import TextChoices
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

__all__ = ["BODY_DISPLAY_LIMIT", "pretty_json", "readable_text", "status_column", "status_text"]

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
