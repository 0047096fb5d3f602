"""How the admin pages show values: stored text that may be anything, safely and briefly."""

from __future__ import annotations

import contextlib
import json

from django.utils.translation import ngettext

__all__ = ["BODY_DISPLAY_LIMIT", "pretty_json", "readable_text"]

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
