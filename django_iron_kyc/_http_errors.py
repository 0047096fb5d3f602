"""How the client turns a failed exchange with Iron into an ``IronAPIError``. Private to
``client.py``.

An error answer is read whatever its shape, and every field the exception will carry (message,
code, request id, body, and what came from a header) has the client's secrets blanked out in
:func:`error_from_response`, before anything is cut to length: a secret straddling the cut would
otherwise leave its first part behind.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
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
# How much of each field an IronAPIError keeps.
MESSAGE_LIMIT = 500
BODY_TEXT_LIMIT = 2000
ID_LIMIT = 200


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
        """True if any key or value of decoded JSON, at any depth, holds a secret."""
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                pending += [*item.keys(), *item.values()]
            elif isinstance(item, list):
                pending += item
            elif item is not None and any(secret in str(item) for secret in self._secrets):
                return True
        return False


class _ErrorBody(NamedTuple):
    message: str
    code: str | None
    request_id: str | None
    body: Any


def error_from_response(
    response: requests.Response, *, method: str, path: str, redactor: Redactor
) -> IronAPIError:
    """The exception for a 4xx/5xx answer: ``IronTransientError`` for 429 and 5xx."""
    read = _read_error_body(response)
    request_id = read.request_id or response.headers.get("x-request-id")
    body = read.body
    if isinstance(body, str):
        body = _shown(body, BODY_TEXT_LIMIT, redactor)
    elif redactor.holds_secret(body):
        body = None  # a JSON body is kept whole or not at all
    fields: dict[str, Any] = {
        "status": response.status_code,
        "code": read.code and _shown(read.code, ID_LIMIT, redactor),
        "request_id": request_id and _shown(request_id, ID_LIMIT, redactor),
        "method": method,
        "path": path,
        "body": body,
    }
    message = _shown(read.message, MESSAGE_LIMIT, redactor)
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return IronTransientError(message, retry_after=retry_after, **fields)
    return IronAPIError(message, **fields)


def _read_error_body(response: requests.Response) -> _ErrorBody:
    """Any of Iron's error shapes, read whole (nothing is cut here).

    Shapes seen in Iron's documents: plain text (``authorization error``), a JSON string,
    ``{"error": {"code", "message", "request_id"}}``, and ``{"message", "trace_id"}``.
    """
    text = response.text.strip() if response.content else ""
    reason = response.reason or "error"
    if not text:
        return _ErrorBody(reason, None, None, None)
    try:
        body: Any = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to read
        return _ErrorBody(text, None, None, text)
    if isinstance(body, str):
        return _ErrorBody(body or reason, None, None, body)
    if not isinstance(body, dict):
        return _ErrorBody(text, None, None, body)
    error = body.get("error")
    if isinstance(error, dict):
        return _ErrorBody(
            str(error.get("message") or reason),
            _str_or_none(error.get("code")),
            _str_or_none(error.get("request_id") or body.get("request_id")),
            body,
        )
    if isinstance(error, str) and "message" not in body:
        code = _str_or_none(body.get("code"))
        return _ErrorBody(error, code, _str_or_none(body.get("request_id")), body)
    return _ErrorBody(
        str(body.get("message") or body.get("detail") or reason),
        _str_or_none(body.get("code")),
        _str_or_none(body.get("trace_id") or body.get("request_id")),
        body,
    )


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


def _shown(value: str, limit: int, redactor: Redactor) -> str:
    """What an error may carry of a text from the answer: the secrets blanked out first, then
    what a database text column refuses (NUL, a lone surrogate) replaced, then cut."""
    value = redactor.text(value).replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8")[:limit]


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
