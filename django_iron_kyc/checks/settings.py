"""System checks of the ``IRON_KYC_*`` settings' values.

Each problem has a stable ID (``iron_kyc.E001``...) and a hint. Silence a warning you
accept with ``SILENCED_SYSTEM_CHECKS = ["iron_kyc.W002"]``.

The rules the client and the webhook signer apply too live in :mod:`django_iron_kyc.validators`;
this module words their answers as check messages. Rules only a check applies (number ranges,
the processing mode, cross-setting ones) are written here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from ..conf import (
    DEFAULT_BASE_URL,
    KNOWN_HOSTS,
    PRODUCTION_HOST,
    SANDBOX_HOST,
    WEBHOOK_PROCESSING_MODES,
)
from ..validators import (
    Problem,
    api_key_problem,
    base_url_problem,
    ca_bundle_problem,
    is_loopback_host,
    proxy_url_problem,
    url_host,
    webhook_secret_problem,
)
from .verification import VERIFICATION_SETTINGS

__all__ = ["check_settings"]

_MISSING = object()


def _setting(name: str) -> Any:
    return getattr(settings, "IRON_KYC_" + name, _MISSING)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@register(Tags.compatibility, "iron_kyc")
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Validate every ``IRON_KYC_*`` setting."""
    errors: list[CheckMessage] = []
    errors += _check_api_key()
    errors += _check_base_url()
    errors += _check_webhook_secret()
    errors += _check_numbers()
    errors += _check_other_numbers()
    for name, problem, check_id, hint in (*_OPTIONAL_SETTINGS, *VERIFICATION_SETTINGS):
        errors += _check_optional(name, problem, check_id, hint)
    return errors


def _check_api_key() -> list[CheckMessage]:
    value = _setting("API_KEY")
    problem = api_key_problem(value)
    if problem is Problem.API_KEY_MISSING and (value in (_MISSING, None) or isinstance(value, str)):
        # A warning, not an error: a project whose key is not in the environment yet still
        # migrates and runs; each call to Iron raises IronConfigurationError meanwhile.
        return [
            Warning(
                "IRON_KYC_API_KEY is not set: every call to Iron will fail until it is.",
                hint="Set the IRON_KYC_API_KEY environment variable to your Iron API key (the "
                "settings read it with os.environ.get; never commit it). To develop against "
                "the fake Iron instead, see the README: Develop against the fake Iron.",
                id="iron_kyc.W004",
            )
        ]
    if problem is Problem.API_KEY_MISSING:
        return [
            Error(
                f"IRON_KYC_API_KEY must be a string; got {type(value).__name__}.",
                hint="Set IRON_KYC_API_KEY to your Iron API key, a string (read it from the "
                "environment, never commit it).",
                id="iron_kyc.E001",
            )
        ]
    if problem is not None:
        # The message never repeats the key.
        return [
            Error(
                f"IRON_KYC_API_KEY {problem}.",
                hint="Copy the key again from Iron's dashboard; it cannot be sent as a header.",
                id="iron_kyc.E013",
            )
        ]
    return []


def _check_base_url() -> list[CheckMessage]:
    value = _setting("BASE_URL")
    if value is _MISSING:
        value = DEFAULT_BASE_URL
    problem = base_url_problem(value)
    if problem is Problem.BASE_URL_NOT_HTTP:
        return [
            Error(
                f"IRON_KYC_BASE_URL {value!r} is not an http(s) URL.",
                hint=f"Use 'https://{SANDBOX_HOST}' or 'https://{PRODUCTION_HOST}'.",
                id="iron_kyc.E002",
            )
        ]
    host, parts = url_host(value), urlsplit(value)
    errors: list[CheckMessage] = []
    if problem is Problem.BASE_URL_PLAIN_HTTP:
        errors.append(
            Error(
                f"IRON_KYC_BASE_URL uses plain http to {host}; the API key would travel "
                "unencrypted.",
                hint="Use https. Plain http is allowed only to a loopback address (a fake Iron).",
                id="iron_kyc.E003",
            )
        )
    if parts.path.rstrip("/") or parts.query or parts.fragment:
        errors.append(
            Error(
                f"IRON_KYC_BASE_URL {value!r} has a path, query or fragment.",
                hint="Give the host only, e.g. 'https://api.sandbox.iron.xyz'; the client adds "
                "the '/api/...' paths itself.",
                id="iron_kyc.E004",
            )
        )
    sandbox_setting = _setting("SANDBOX_ACTIONS")
    if (
        sandbox_setting is not _MISSING
        and sandbox_setting
        and not (host == SANDBOX_HOST or is_loopback_host(host))
    ):
        errors.append(
            Error(
                f"IRON_KYC_SANDBOX_ACTIONS is on, but IRON_KYC_BASE_URL points at {host}.",
                hint="Sandbox approve/decline only exists on Iron's sandbox; remove "
                "IRON_KYC_SANDBOX_ACTIONS or point IRON_KYC_BASE_URL at the sandbox.",
                id="iron_kyc.E005",
            )
        )
    if host not in KNOWN_HOSTS and not is_loopback_host(host):
        errors.append(
            Warning(
                f"IRON_KYC_BASE_URL points at {host}, which is not an Iron API host.",
                hint=f"Iron's hosts are {SANDBOX_HOST} and {PRODUCTION_HOST}.",
                id="iron_kyc.W002",
            )
        )
    return errors


def _check_webhook_secret() -> list[CheckMessage]:
    value = _setting("WEBHOOK_SECRET")
    if value is _MISSING or value in (None, "", [], ()):
        return [
            Warning(
                "IRON_KYC_WEBHOOK_SECRET is not set: every webhook delivery will be refused.",
                hint="Copy the secret shown when you created the webhook in Iron's dashboard.",
                id="iron_kyc.W001",
            )
        ]
    secrets = [value] if isinstance(value, str) else value
    if not isinstance(secrets, (list, tuple)) or not all(isinstance(s, str) and s for s in secrets):
        return [
            Error(
                "IRON_KYC_WEBHOOK_SECRET must be a string or a list of non-empty strings.",
                hint="Use a list only while rotating: ['new-secret', 'old-secret'].",
                id="iron_kyc.E006",
            )
        ]
    if any(webhook_secret_problem(secret) for secret in secrets):
        return [
            Error(
                "An IRON_KYC_WEBHOOK_SECRET starting with 'whsec_' is empty or not base64.",
                hint="Copy the secret exactly as Iron shows it.",
                id="iron_kyc.E007",
            )
        ]
    return []


def _check_numbers() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    tolerance = _setting("WEBHOOK_TOLERANCE")
    if tolerance is not _MISSING and not (
        isinstance(tolerance, int) and not isinstance(tolerance, bool) and tolerance > 0
    ):
        errors.append(
            Error(
                "IRON_KYC_WEBHOOK_TOLERANCE must be a positive whole number of seconds.",
                hint="The default is 300 (5 minutes).",
                id="iron_kyc.E008",
            )
        )
    timeout = _setting("TIMEOUT")
    if timeout is not _MISSING and not (
        _number(timeout)
        or (
            isinstance(timeout, (list, tuple))
            and len(timeout) == 2
            and all(_number(t) for t in timeout)
        )
    ):
        errors.append(
            Error(
                "IRON_KYC_TIMEOUT must be a positive number of seconds or a (connect, read) pair.",
                hint="The default is (5, 30).",
                id="iron_kyc.E009",
            )
        )
    return errors


# Every other numeric setting: (whole numbers only, smallest allowed value).
_NUMBER_SETTINGS: dict[str, tuple[bool, float]] = {
    "MAX_RETRIES": (True, 0),
    "RETRY_BACKOFF": (False, 0),
    "RETRY_AFTER_MAX": (False, 0),
    "IDEMPOTENCY_KEY_MAX_AGE": (False, 1),
    "WEBHOOK_MAX_BODY_SIZE": (True, 1),
    "POLL_FIRST_DELAY": (False, 0),
    "POLL_MAX_INTERVAL": (False, 1),
    "POLL_MAX_AGE": (False, 1),
    "POLL_BATCH_SIZE": (True, 1),
    "TASK_MAX_RETRIES": (True, 0),
    "TASK_RETRY_BACKOFF": (False, 0),
    "TASK_RETRY_BACKOFF_MAX": (False, 0),
    "CREATE_MAX_ATTEMPTS": (True, 1),
    "CREATE_RECOVERY_DELAY": (False, 1),
    "WEBHOOK_RETRY_DELAY": (False, 1),
    "WEBHOOK_MAX_ATTEMPTS": (True, 1),
}

# Iron forgets idempotency keys after 24 hours: one sent later could create a duplicate.
_IRON_KEY_LIFETIME_SECONDS = 24 * 3600


def _check_other_numbers() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, (whole, minimum) in _NUMBER_SETTINGS.items():
        value = _setting(name)
        if value is _MISSING:
            continue
        valid_type = isinstance(value, int) if whole else isinstance(value, (int, float))
        if isinstance(value, bool) or not valid_type or not value >= minimum:
            kind = "a whole number" if whole else "a number of seconds"
            errors.append(
                Error(
                    f"IRON_KYC_{name} must be {kind}, at least {minimum:g}; got {value!r}.",
                    hint=f"Remove IRON_KYC_{name} to use the default.",
                    id="iron_kyc.E010",
                )
            )
    max_age = _setting("IDEMPOTENCY_KEY_MAX_AGE")
    if _number(max_age) and max_age >= _IRON_KEY_LIFETIME_SECONDS:
        errors.append(
            Error(
                "IRON_KYC_IDEMPOTENCY_KEY_MAX_AGE must be shorter than 24 hours.",
                hint="Iron forgets idempotency keys after 24 hours; a key sent later could "
                "create a second identification. The default is 23 hours (82800).",
                id="iron_kyc.E011",
            )
        )
    return errors


def _check_optional(
    name: str, problem: Callable[[Any], str | None], check_id: str, hint: str
) -> list[CheckMessage]:
    """One Error when ``IRON_KYC_<name>`` is set and ``problem`` finds fault with its value."""
    value = _setting(name)
    found = None if value is _MISSING else problem(value)
    if found is None:
        return []
    return [Error(f"IRON_KYC_{name} {found}.", hint=hint, id=check_id)]


def _sandbox_actions_problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return f"must be True, False or None; got {value!r}"


def _webhook_processing_problem(value: Any) -> str | None:
    if value in WEBHOOK_PROCESSING_MODES:
        return None
    return f"must be 'inline' or 'deferred'; got {value!r}"


def _proxy_problem(value: Any) -> str | None:
    # Never repeats the URL: it may carry the proxy's credentials.
    if value is None or value == "":
        return None
    problem = proxy_url_problem(value)
    return None if problem is None else str(problem)


def _ca_bundle_problem(value: Any) -> str | None:
    if value is None or value == "":
        return None
    problem = ca_bundle_problem(value)
    return None if problem is None else f"{value!r} {problem}"


# A delivery stored before its identification was known here waits for it for up to a day
# (the idempotency key's lifetime at Iron): retention must not delete it sooner.
_SHORTEST_RETENTION = timedelta(days=1)


def _retention_problem(value: Any) -> str | None:
    if value is None:
        return None
    if _number(value) and value >= _SHORTEST_RETENTION.total_seconds():
        return None if value <= timedelta.max.total_seconds() else f"is too long; got {value!r}"
    if isinstance(value, timedelta) and value >= _SHORTEST_RETENTION:
        return None
    return f"must be a timedelta of at least one day, or None; got {value!r}"


# The settings that may be left unset, each checked by one rule: (name, rule, ID, hint).
_OPTIONAL_SETTINGS: tuple[tuple[str, Callable[[Any], str | None], str, str], ...] = (
    (
        "SANDBOX_ACTIONS",
        _sandbox_actions_problem,
        "iron_kyc.E012",
        "None (the default) turns sandbox actions on only for Iron's sandbox host and loopback "
        "addresses.",
    ),
    (
        "WEBHOOK_PROCESSING",
        _webhook_processing_problem,
        "iron_kyc.E016",
        "'inline' (the default) acts on a delivery before answering Iron; 'deferred' answers "
        "once it is stored and acts on it in a Celery task.",
    ),
    (
        "PROXY",
        _proxy_problem,
        "iron_kyc.E014",
        "Give one proxy URL such as 'http://proxy.internal:3128' or "
        "'http://user:password@proxy.internal:3128', or None for no proxy.",
    ),
    (
        "CA_BUNDLE",
        _ca_bundle_problem,
        "iron_kyc.E015",
        "Give the path of a PEM file of certificate authorities, or None for certifi's bundle. "
        "TLS verification cannot be turned off.",
    ),
    (
        "DELIVERY_RETENTION",
        _retention_problem,
        "iron_kyc.E022",
        "timedelta(days=30) is the default; None keeps every delivery and review comment. A "
        "delivery that came before its identification was known here is kept for it a day.",
    ),
)
