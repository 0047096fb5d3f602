"""What the fake answers: one HTTP answer, Iron's error bodies, and a refused request."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HTML_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "Answer",
    "RefusedError",
    "error_answer",
    "json_answer",
    "path_id",
]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"

# The envelope format's ``code`` for each 4xx status (5xx: ``server_error``).
_ENVELOPE_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "rate_limited",
}


@dataclass
class Answer:
    """One HTTP answer: status, body, ``Content-Type`` (``None``: none) and other headers."""

    status: int
    body: bytes = b""
    content_type: str | None = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)


class RefusedError(Exception):
    """A request the fake refuses: answered with ``status`` and Iron's error body."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def json_answer(status: int, data: Any) -> Answer:
    return Answer(status, json.dumps(data).encode("utf-8"), JSON_CONTENT_TYPE)


def error_answer(status: int, message: str, error_format: str) -> Answer:
    """An error as Iron sends it: 401 plain text, other 4xx a JSON string, 5xx
    ``{"message", "trace_id"}``; or, with the ``"envelope"`` format, every error as
    ``{"error": {"code", "message", "request_id"}}``."""
    if error_format == "envelope":
        code = _ENVELOPE_CODES.get(status, "server_error" if status >= 500 else "error")
        if status == 409:
            pending = "pending identification" in message.lower()
            code = "has_pending_identification" if pending else "idempotency_conflict"
        return json_answer(
            status, {"error": {"code": code, "message": message, "request_id": str(uuid.uuid4())}}
        )
    if status >= 500:
        return json_answer(status, {"message": message, "trace_id": uuid.uuid4().hex})
    if status == 401:
        return Answer(401, message.encode("utf-8"), TEXT_CONTENT_TYPE)
    return json_answer(status, message)


def path_id(value: str) -> str:
    """An object id from a URL path; refused with 400 unless it is a UUID."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise RefusedError(400, f"Invalid URL: {value!r} is not a UUID") from None
    return value
