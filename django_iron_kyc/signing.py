"""Iron's webhook signature scheme (Part A item 6 of our contract with Iron).

Iron signs ``webhook-timestamp + raw body`` (nothing between them) with HMAC-SHA256 and
sends the **hex** digest as ``webhook-signature: v1=<hex>``. This is *not* the Standard
Webhooks scheme (``id.timestamp.body``, base64, ``v1,<b64>``), whatever Iron's prose says.

- A secret written ``whsec_<base64>`` is base64-decoded; any other secret is used as its
  UTF-8 bytes.
- The header may carry several space-separated signatures; one match is enough.
- Several secrets may be configured (rotation); any of them may match.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

from .exceptions import WebhookVerificationError
from .validators import webhook_secret_key, webhook_secret_problem

__all__ = [
    "ID_HEADER",
    "MAX_SIGNATURES",
    "MAX_SIGNATURE_HEADER_LENGTH",
    "SIGNATURE_HEADER",
    "SIGNATURE_VERSION",
    "TIMESTAMP_HEADER",
    "MalformedSignatureError",
    "SignatureError",
    "compute_signature",
    "parse_signatures",
    "parse_timestamp",
    "secret_bytes",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "webhook-signature"
TIMESTAMP_HEADER = "webhook-timestamp"
ID_HEADER = "webhook-id"
SIGNATURE_VERSION = "v1"
# A signature header longer than this is refused without looking at it.
MAX_SIGNATURE_HEADER_LENGTH = 4096
MAX_SIGNATURES = 16


class SignatureError(WebhookVerificationError, ValueError):
    """The signature headers are missing, malformed, stale or do not match.

    ``reason`` is safe to show to the sender (it never contains the secret). Also a
    ``ValueError``, as it always was.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class MalformedSignatureError(SignatureError):
    """The signature headers are missing or not in Iron's format (rather than stale or
    not matching): the sender, not the signature, is at fault."""


def secret_bytes(secret: str | bytes) -> bytes:
    """The HMAC key for a configured secret: ``whsec_`` secrets are base64-decoded.

    Raises ``ValueError`` for a secret with no usable key (``whsec_`` not followed by
    base64, or an empty key): anyone could sign with an empty one.
    """
    if isinstance(secret, bytes):
        return secret
    key = webhook_secret_key(secret)
    if key is None:
        raise ValueError(f"a webhook secret {webhook_secret_problem(secret)}")
    return key


def compute_signature(secret: str | bytes, timestamp: str | int, body: bytes | str) -> str:
    """The hex HMAC-SHA256 of ``timestamp + body`` under ``secret`` (without ``v1=``)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    message = str(timestamp).encode("ascii") + body
    return hmac.new(secret_bytes(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, timestamp: str | int, body: bytes | str) -> str:
    """The ``webhook-signature`` header value for one secret: ``v1=<hex>``."""
    return f"{SIGNATURE_VERSION}={compute_signature(secret, timestamp, body)}"


def parse_timestamp(value: str | None) -> int:
    """Parse ``webhook-timestamp`` (Unix seconds). Raises :class:`MalformedSignatureError`."""
    if value is None or value == "":
        raise MalformedSignatureError(f"missing {TIMESTAMP_HEADER} header")
    value = value.strip()
    # isdigit() alone would let Unicode digits ("²", "١٢٣") through to int() and encode().
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise MalformedSignatureError(f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    return int(value)


def parse_signatures(header: str | None) -> list[str]:
    """The hex digests in a ``webhook-signature`` header.

    Raises :class:`MalformedSignatureError`.
    """
    if header is None or not header.strip():
        raise MalformedSignatureError(f"missing {SIGNATURE_HEADER} header")
    if len(header) > MAX_SIGNATURE_HEADER_LENGTH:
        raise MalformedSignatureError(f"{SIGNATURE_HEADER} header is too long")
    found: list[str] = []
    for part in header.split():
        version, sep, value = part.partition("=")
        # compare_digest refuses non-ASCII str: such a value cannot be a hex digest anyway.
        if sep and version == SIGNATURE_VERSION and value and value.isascii():
            found.append(value.strip().lower())
    if not found:
        if header.strip().startswith(f"{SIGNATURE_VERSION},"):
            raise MalformedSignatureError(
                f"{SIGNATURE_HEADER} uses the Standard Webhooks 'v1,<base64>' form; "
                "Iron signs as 'v1=<hex>'"
            )
        raise MalformedSignatureError(f"{SIGNATURE_HEADER} has no 'v1=<hex>' signature")
    return found[:MAX_SIGNATURES]


def verify(
    *,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    secrets: Iterable[str | bytes],
    tolerance: int,
    now: float | None = None,
) -> int:
    """Check one delivery; return its timestamp, or raise :class:`SignatureError`.

    The timestamp must be within ``tolerance`` seconds of ``now`` in either direction, and
    one of the signatures must match one of the secrets (compared in constant time).
    Headers that are missing or malformed raise :class:`MalformedSignatureError` (a
    subclass), checked before the time and the signatures.
    """
    keys = [secret_bytes(s) for s in secrets]
    if not keys:
        raise SignatureError("no webhook secret is configured")
    timestamp = parse_timestamp(timestamp_header)
    signatures = parse_signatures(signature_header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"{TIMESTAMP_HEADER} is outside the {tolerance}s tolerance")
    # Sign over the header exactly as sent (parse_timestamp allows only ASCII digits).
    message = str(timestamp_header).strip().encode("ascii") + body
    matched = False
    for key in keys:
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        for candidate in signatures:
            # Check every pair: the time taken does not depend on which one matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("signature does not match")
    return timestamp
