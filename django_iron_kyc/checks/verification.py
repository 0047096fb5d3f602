"""System checks of the end-user endpoint and page's settings (``IRON_KYC_VERIFICATION_*``).

Each rule says what is wrong with a value that is set; unset or None means the default.
:func:`~django_iron_kyc.checks.settings.check_settings` runs them with the other settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils.module_loading import import_string

__all__ = ["VERIFICATION_SETTINGS"]


def _unless_none(rule: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else rule(value)


_RATE_RE = re.compile(r"^[1-9][0-9]*/[smhd][a-z]*$")  # a DRF rate: "20/hour", "5/m"


def _customer_data_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return None if callable(value) else "is not a dotted path or a callable"
    try:
        return None if callable(import_string(value)) else "does not name a callable"
    except ImportError:
        return "cannot be imported"


def _base_template_problem(value: Any) -> str | None:
    try:
        return None if isinstance(value, str) and value and get_template(value) else "is not a name"
    except TemplateDoesNotExist:
        return "is not found by your TEMPLATES"


def _redirect_wait_problem(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 30
    return None if ok else f"must be a number of seconds from 0 to 30, not {value!r}"


VERIFICATION_SETTINGS: tuple[tuple[str, Callable[[Any], str | None], str, str], ...] = tuple(
    (name, _unless_none(rule), check_id, hint)
    for name, rule, check_id, hint in (
    ("VERIFICATION_CUSTOMER_DATA", _customer_data_problem, "iron_kyc.E017",
     "Give the dotted path of a function of the user that returns a dict of email, name, "
     "customer_type and external_id."),
    ("VERIFICATION_ALLOW_EDD",
     lambda v: None if isinstance(v, bool) else f"must be True or False, not {v!r}",
     "iron_kyc.E018", "False (the default) refuses {'with_edd': true} from users."),
    ("VERIFICATION_THROTTLE_RATE",
     lambda v: None if isinstance(v, str) and _RATE_RE.match(v) else "is not a rate",
     "iron_kyc.E019", "Give a Django REST framework rate, e.g. '20/hour', or None."),
    ("VERIFICATION_BASE_TEMPLATE", _base_template_problem, "iron_kyc.E020",
     "Name a template with the blocks 'title' and 'content', or None for the default."),
    ("VERIFICATION_REDIRECT_WAIT", _redirect_wait_problem, "iron_kyc.E021",
     "The page's button holds a worker while it waits for Iron's hosted URL (default 3)."),
    )
)  # fmt: skip
