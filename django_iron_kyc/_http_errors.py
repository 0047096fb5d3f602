"""How the client turns a failed exchange with Iron into an ``IronAPIError``. Private to
``client.py``.

An error answer is read whatever its shape; the client's secrets are blanked out of its
message and body (an error page may echo the request headers).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from .exceptions import IronAPIError, IronTransientError

REDACTED = "********"
# Failures that got no (complete) answer: worth retrying later, like a timeout.
_NO_ANSWER = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.RetryError,
    requests.exceptions.ChunkedEncodingError,  # the connection dropped mid-body
)


class Redactor:
    """Blanks out what the client must never show: the API key and the proxy's credentials,
    in every form a server (Iron or a proxy echoing the request) could send them back in."""

    def __init__(self, api_key: str, proxy: str | None = None) -> None:
        found = {api_key, *_proxy_credentials(proxy or "")} - {""}
        # Longest first, so that no secret is left half-replaced by a shorter one inside it.
        self._secrets = sorted(found, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return value

    def holds_secret(self, value: Any) -> bool:
        """True if decoded JSON, written out again, holds a secret."""
        text = json.dumps(value, default=str)
        return any(secret in text for secret in self._secrets)


def error_from_response(
    response: requests.Response, *, method: str, path: str, redactor: Redactor
) -> IronAPIError:
    """The exception for a 4xx/5xx answer: ``IronTransientError`` for 429 and 5xx."""
    message, code, request_id, body = parse_error_body(response)
    message = redactor.text(message)
    if isinstance(body, str):
        body = redactor.text(body)
    elif body is not None and redactor.holds_secret(body):
        body = None
    request_id = request_id or response.headers.get("x-request-id")
    fields: dict[str, Any] = {
        "status": response.status_code,
        "code": code,
        "request_id": request_id,
        "method": method,
        "path": path,
        "body": body,
    }
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return IronTransientError(message, retry_after=retry_after, **fields)
    return IronAPIError(message, **fields)


def parse_error_body(response: requests.Response) -> tuple[str, str | None, str | None, Any]:
    """Read any of Iron's error shapes into ``(message, code, request_id, body)``.

    Shapes seen in Iron's documents: plain text (``authorization error``), a JSON string,
    ``{"error": {"code", "message", "request_id"}}``, and ``{"message", "trace_id"}``.
    """
    text = response.text.strip() if response.content else ""
    reason = response.reason or "error"
    if not text:
        return (reason, None, None, None)
    try:
        body: Any = json.loads(text)
    except ValueError:
        return (text[:500], None, None, text[:2000])
    if isinstance(body, str):
        return (body[:500] or reason, None, None, body)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return (
                str(error.get("message") or reason)[:500],
                _str_or_none(error.get("code")),
                _str_or_none(error.get("request_id") or body.get("request_id")),
                body,
            )
        if isinstance(error, str) and "message" not in body:
            code = _str_or_none(body.get("code"))
            return (error[:500], code, _str_or_none(body.get("request_id")), body)
        message = body.get("message") or body.get("detail") or reason
        return (
            str(message)[:500],
            _str_or_none(body.get("code")),
            _str_or_none(body.get("trace_id") or body.get("request_id")),
            body,
        )
    return (text[:500], None, None, body)


def error_from_exception(exc: requests.RequestException, *, method: str, path: str) -> IronAPIError:
    """The exception for a request that got no answer: ``IronTransientError`` for a timeout,
    a refused or dropped connection, or retries used up."""
    transient = isinstance(exc, _NO_ANSWER)
    error_class = IronTransientError if transient else IronAPIError
    return error_class(f"{describe(exc)} talking to Iron", method=method, path=path)


def describe(exc: Exception) -> str:
    """Exception class names only: requests' messages carry URLs and connection details."""
    name = type(exc).__name__
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return f"{name} ({type(reason).__name__})" if isinstance(reason, Exception) else name


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), at most a day; ``None`` if
    absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return min(seconds, 86400.0)


def _proxy_credentials(proxy: str) -> set[str]:
    """The credentials in a proxy URL, in each form a response could echo them in.

    The user name alone is not among them (it is not secret, and a short one would blank out
    words of every message); with the password, or as the whole user part, it is.
    """
    parts = urlsplit(proxy)
    if parts.username is None:
        return set()
    user, password = unquote(parts.username), unquote(parts.password or "")
    # requests sends them as "Proxy-Authorization: Basic <base64 of user:password>".
    token = base64.b64encode(f"{user}:{password}".encode("latin-1")).decode()
    found = {parts.netloc.rpartition("@")[0], f"{user}:{password}", token}
    found.update(p for p in (parts.password, password) if p)
    return found


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
