"""Build and sign webhook deliveries the way Iron does (contract Part A, items 6 and 7).

The signature itself comes from :mod:`django_iron_kyc.signing`, the same code the webhook
view verifies with, so a delivery built here is exactly what the app accepts.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from .. import signing
from ..payloads import EventType

__all__ = [
    "CUSTOMER_STATUS",
    "IDENTIFICATION_STATUS",
    "MESSAGE_SHAPES",
    "MessageShape",
    "build_event",
    "encode_event",
    "iso_timestamp",
    "message_tag",
    "sign_webhook",
]

MessageShape = Literal["tagged", "flat"]
MESSAGE_SHAPES: tuple[str, ...] = ("tagged", "flat")

IDENTIFICATION_STATUS, CUSTOMER_STATUS = EventType.IDENTIFICATION_STATUS, EventType.CUSTOMER_STATUS


def message_tag(event_type: str) -> str:
    """The tag Iron wraps a message in: ``identification_status`` -> ``IdentificationStatus``."""
    return "".join(part[:1].upper() + part[1:] for part in event_type.split("_"))


def iso_timestamp(value: datetime | str | None = None) -> str:
    """A webhook container timestamp as Iron writes it: ``2025-06-02T14:59:26.769468+00:00``."""
    if isinstance(value, str):
        return value
    if value is None:
        value = datetime.now(timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def build_event(
    type: str,
    customer_id: uuid.UUID | str,
    message_id: uuid.UUID | str,
    status: str | None,
    *,
    timestamp: datetime | str | None = None,
    shape: MessageShape | str = "tagged",
) -> dict[str, Any]:
    """Iron's webhook container ``{"type", "timestamp", "data": {"customer_id", "message"}}``.

    ``shape="tagged"`` wraps the message as ``{"IdentificationStatus": {"id", "status"}}``
    (the tag is ``type`` in CamelCase); ``shape="flat"`` sends ``{"id", "status"}``. A
    ``status`` of ``None`` leaves ``status`` out (e.g. a ``ping``). ``timestamp`` defaults
    to now; a datetime is written in ISO 8601 with microseconds and ``+00:00``.
    """
    message: dict[str, Any] = {"id": str(message_id)}
    if status is not None:
        message["status"] = status
    if shape == "tagged":
        wrapped: dict[str, Any] = {message_tag(type): message}
    elif shape == "flat":
        wrapped = message
    else:
        raise ValueError(f"shape must be one of {MESSAGE_SHAPES}, not {shape!r}")
    return {
        "type": type,
        "timestamp": iso_timestamp(timestamp),
        "data": {"customer_id": str(customer_id), "message": wrapped},
    }


def encode_event(event: Any) -> bytes:
    """The raw body of a delivery: compact JSON, UTF-8."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_webhook(
    body: bytes | str,
    secret: str | bytes,
    timestamp: int | None = None,
    webhook_id: str | None = None,
) -> dict[str, str]:
    """The headers Iron sends with a delivery of ``body``.

    ``webhook-id`` (a new UUID4 unless given), ``webhook-timestamp`` (Unix seconds, now
    unless given), ``webhook-signature`` (``v1=<hex>`` over timestamp + body, see
    :mod:`django_iron_kyc.signing`) and ``content-type: application/json``.
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        signing.ID_HEADER: webhook_id or str(uuid.uuid4()),
        signing.TIMESTAMP_HEADER: str(ts),
        signing.SIGNATURE_HEADER: signing.sign(secret, ts, body),
        "content-type": "application/json",
    }
