"""The rules an ``IRON_KYC_*`` value must follow, each written once.

The system checks (``checks.py``), the client (``client.py``) and the webhook signer
(``signing.py``) all apply these rules, each wording the outcome its own way: a check message
with its ID and hint, an ``IronConfigurationError``, a ``ValueError``. A rule answers with a
:class:`Problem`, a phrase that completes "IRON_KYC_<NAME> ...", or ``None`` when the value
is fine. No problem repeats the value: it may be a secret.

Rules that only the checks apply (number ranges, the processing mode) live in ``checks.py``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from enum import Enum
from urllib.parse import unquote, urlsplit

__all__ = [
    "WHSEC_PREFIX",
    "Problem",
    "api_key_problem",
    "base_url_problem",
    "ca_bundle_problem",
    "is_loopback_host",
    "proxy_url_problem",
    "url_host",
    "webhook_secret_key",
    "webhook_secret_problem",
]

# A webhook secret written ``whsec_<base64>`` stands for the decoded bytes.
WHSEC_PREFIX = "whsec_"


class Problem(str, Enum):
    """What is wrong with a value; ``str(problem)`` completes "IRON_KYC_<NAME> ..."."""

    API_KEY_MISSING = "is missing or empty"
    API_KEY_NOT_A_HEADER = "contains spaces, control or non-ASCII characters"
    BASE_URL_NOT_HTTP = "is not an http(s) URL"
    BASE_URL_PLAIN_HTTP = "uses plain http to a host that is not a loopback address"
    PROXY_NOT_A_STRING = "is not a string"
    PROXY_NOT_A_URL = "is not a valid URL"
    PROXY_NOT_HTTP = "is not an http:// or https:// URL"
    PROXY_NO_HOST = "has no host"
    PROXY_CREDENTIALS_NOT_LATIN1 = "has a user name or password that is not Latin-1"
    CA_BUNDLE_NOT_A_FILE = "is not the path of an existing file"
    WEBHOOK_SECRET_EMPTY = "is empty"
    WEBHOOK_SECRET_NOT_BASE64 = f"starts with '{WHSEC_PREFIX}' but is empty or not base64"

    def __str__(self) -> str:
        return str(self.value)


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and any loopback IP address (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(url: object) -> str | None:
    """The host name of ``url``, or ``None`` if it is not a string or does not parse."""
    if not isinstance(url, str):
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def api_key_problem(key: object) -> Problem | None:
    """``IRON_KYC_API_KEY``: a non-empty string that can be sent as a header once stripped.

    requests would repeat a key it cannot send in its ``InvalidHeader`` message: such a key
    is refused before it gets there.
    """
    if not isinstance(key, str) or not key.strip():
        return Problem.API_KEY_MISSING
    key = key.strip()
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        return Problem.API_KEY_NOT_A_HEADER
    return None


def base_url_problem(url: object) -> Problem | None:
    """``IRON_KYC_BASE_URL``: an http(s) URL with a host, and https unless the host is a
    loopback address (the API key travels with every request)."""
    if not isinstance(url, str):
        return Problem.BASE_URL_NOT_HTTP
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return Problem.BASE_URL_NOT_HTTP
    if parts.scheme not in ("http", "https") or not host:
        return Problem.BASE_URL_NOT_HTTP
    if parts.scheme == "http" and not is_loopback_host(host):
        return Problem.BASE_URL_PLAIN_HTTP
    return None


def proxy_url_problem(url: object) -> Problem | None:
    """``IRON_KYC_PROXY``: an ``http://`` or ``https://`` URL with a host, whose credentials
    (if any) are Latin-1, the encoding requests sends them in."""
    if not isinstance(url, str):
        return Problem.PROXY_NOT_A_STRING
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises ValueError if not a number
    except ValueError:
        return Problem.PROXY_NOT_A_URL
    if parts.scheme not in ("http", "https"):
        return Problem.PROXY_NOT_HTTP
    if not host:
        return Problem.PROXY_NO_HOST
    try:
        f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode("latin-1")
    except UnicodeEncodeError:
        return Problem.PROXY_CREDENTIALS_NOT_LATIN1
    return None


def ca_bundle_problem(path: object) -> Problem | None:
    """``IRON_KYC_CA_BUNDLE``: the path of an existing file (``False`` is not a path, so TLS
    verification can never be turned off through it)."""
    if isinstance(path, (str, os.PathLike)) and os.path.isfile(path):
        return None
    return Problem.CA_BUNDLE_NOT_A_FILE


def webhook_secret_key(secret: str) -> bytes | None:
    """The HMAC key one ``IRON_KYC_WEBHOOK_SECRET`` stands for, or ``None`` if it has none.

    ``whsec_<base64>`` is base64-decoded; any other secret is its UTF-8 bytes. An empty key
    is no key: anyone could sign with it.
    """
    if not secret.startswith(WHSEC_PREFIX):
        return secret.encode("utf-8") or None
    try:
        return base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True) or None
    except (binascii.Error, ValueError):
        return None


def webhook_secret_problem(secret: str) -> Problem | None:
    """One ``IRON_KYC_WEBHOOK_SECRET``: see :func:`webhook_secret_key`."""
    if webhook_secret_key(secret) is not None:
        return None
    if secret.startswith(WHSEC_PREFIX):
        return Problem.WEBHOOK_SECRET_NOT_BASE64
    return Problem.WEBHOOK_SECRET_EMPTY
