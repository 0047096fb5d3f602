"""Iron's JSON, parsed in one place: API objects, webhook bodies, statuses, timestamps.

Everything that reads a value out of what Iron sent goes through here, and anything that is
not Iron's shape raises :class:`~django_iron_kyc.exceptions.InvalidPayloadError` (a
``ValueError``) with a message that names the field, never its value.

Importing this module needs no Django settings: the test kit builds events with
:class:`EventType` in projects that have none.
"""

from __future__ import annotations

import contextlib
import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.utils.dateparse import parse_datetime

from .exceptions import InvalidPayloadError

__all__ = [
    "STATUS_ALIASES",
    "EventType",
    "RemoteCustomer",
    "RemoteIdentification",
    "WebhookEvent",
    "normalize_identification_status",
    "parse_event",
    "parse_iron_datetime",
]


class EventType(str, enum.Enum):
    """The webhook event types this app acts on (any other type is stored and ignored)."""

    IDENTIFICATION_STATUS = "identification_status"
    CUSTOMER_STATUS = "customer_status"

    def __str__(self) -> str:
        return self.value


# How Iron may spell an identification status, and how it is stored (a model choice).
STATUS_ALIASES = {"Rejected": "Declined"}

# event_type and object_status columns.
_TEXT_LIMIT = 64


def normalize_identification_status(status: str) -> str:
    """Iron's status as we store it: exactly as spelled, except ``Rejected`` → ``Declined``."""
    return STATUS_ALIASES.get(status, status)


def parse_iron_datetime(value: Any, what: str = "timestamp") -> datetime | None:
    """One of Iron's ISO 8601 timestamps as an aware datetime in UTC (naive ones are UTC).

    ``None`` for ``None`` or ``""``; :class:`InvalidPayloadError` for anything else that is
    not a date-time (``what`` names it in the message).
    """
    if value is None or value == "":
        return None
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError, OverflowError):
            parsed = parse_datetime(value.strip())
    if parsed is None:
        raise InvalidPayloadError(f"{what} is not an ISO 8601 date-time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt_timezone.utc)
    try:
        # Years near 1 or 9999 with an offset have no UTC date-time (nor a column value).
        return parsed.astimezone(dt_timezone.utc)
    except OverflowError:
        raise InvalidPayloadError(f"{what} is not an ISO 8601 date-time") from None


def _uuid(value: Any, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise InvalidPayloadError(f"{what} must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidPayloadError(f"{what} is not a UUID") from None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidPayloadError(f"{what} must be a non-empty string")
    if len(value) > _TEXT_LIMIT:
        raise InvalidPayloadError(f"{what} is longer than {_TEXT_LIMIT} characters")
    if "\x00" in value or not value.isprintable():
        raise InvalidPayloadError(f"{what} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayloadError(f"{what} is not valid Unicode") from None
    return value


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidPayloadError(f"{what} must be a JSON object")
    return data


def _status(data: Mapping[str, Any], what: str) -> str:
    status = data.get("status")
    if not isinstance(status, str) or not status:
        raise InvalidPayloadError(f"{what} has no status")
    return status


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


@dataclass(frozen=True)
class RemoteIdentification:
    """Iron's view of one identification, from any source.

    Fields left ``None`` were not in what Iron sent and are not changed locally. Two clocks,
    never compared: ``updated_at`` is Iron's object time (an API answer's ``updated_at``);
    ``sent_at`` is when Iron sent a webhook (:meth:`from_webhook`), which carries only the
    id, the status and that send time.
    """

    iron_id: uuid.UUID
    status: str
    updated_at: datetime | None = None
    created_at: datetime | None = None
    customer_iron_id: uuid.UUID | None = None
    url: str | None = None
    review_comment: str | None = None
    with_edd: bool | None = None
    sent_at: datetime | None = None

    @property
    def from_a_webhook(self) -> bool:
        """A webhook's word (a send time, no object time) rather than Iron's object."""
        return self.updated_at is None and self.sent_at is not None

    @classmethod
    def from_webhook(cls, event: WebhookEvent) -> RemoteIdentification:
        """What an ``identification_status`` event says (its timestamp is the send time)."""
        assert event.object_iron_id is not None  # a handled event always names its object
        return cls(
            iron_id=event.object_iron_id,
            status=event.status,
            sent_at=event.timestamp,
            customer_iron_id=event.customer_iron_id,
        )

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RemoteIdentification:
        """Build from Iron's ``Identification`` JSON. Raises :class:`InvalidPayloadError`."""
        data = _object(data, "identification")
        customer = data.get("customer_id")
        with_edd = data.get("with_edd")
        return cls(
            iron_id=_uuid(data.get("id"), "identification id"),
            status=_status(data, "identification"),
            updated_at=parse_iron_datetime(data.get("updated_at"), "updated_at"),
            created_at=parse_iron_datetime(data.get("created_at"), "created_at"),
            customer_iron_id=_uuid(customer, "customer id") if customer else None,
            url=_optional_str(data, "url"),
            review_comment=_optional_str(data, "review_comment"),
            with_edd=bool(with_edd) if with_edd is not None else None,
        )


@dataclass(frozen=True)
class RemoteCustomer:
    """Iron's view of one customer (``None`` fields were not sent; clocks as for
    :class:`RemoteIdentification`)."""

    iron_id: uuid.UUID
    status: str
    updated_at: datetime | None = None
    created_at: datetime | None = None
    email: str | None = None
    name: str | None = None
    external_id: str | None = None
    customer_type: str | None = None
    sent_at: datetime | None = None

    @property
    def from_a_webhook(self) -> bool:
        """A webhook's word (a send time, no object time) rather than Iron's object."""
        return self.updated_at is None and self.sent_at is not None

    @classmethod
    def from_webhook(cls, event: WebhookEvent) -> RemoteCustomer:
        """What a ``customer_status`` event says (its timestamp is the send time)."""
        assert event.object_iron_id is not None  # a handled event always names its object
        return cls(iron_id=event.object_iron_id, status=event.status, sent_at=event.timestamp)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RemoteCustomer:
        """Build from Iron's ``Customer`` JSON. Raises :class:`InvalidPayloadError`."""
        data = _object(data, "customer")
        return cls(
            iron_id=_uuid(data.get("id"), "customer id"),
            status=_status(data, "customer"),
            updated_at=parse_iron_datetime(data.get("updated_at"), "updated_at"),
            created_at=parse_iron_datetime(data.get("created_at"), "created_at"),
            email=_optional_str(data, "email"),
            name=_optional_str(data, "name"),
            external_id=_optional_str(data, "external_id"),
            customer_type=_optional_str(data, "customer_type"),
        )


@dataclass(frozen=True)
class WebhookEvent:
    """What a delivery's body says, checked against Iron's container shape.

    ``customer_iron_id``, ``object_iron_id`` and ``status`` are always set for the types
    we act on (:attr:`handled`); for other types they are filled in when the body happens
    to carry them.
    """

    type: str
    timestamp: datetime
    customer_iron_id: uuid.UUID | None
    object_iron_id: uuid.UUID | None
    status: str

    @property
    def handled(self) -> bool:
        """Is this a type the app acts on (an :class:`EventType`)?"""
        return self.type in _HANDLED_TYPES

    @property
    def key(self) -> str:
        """``type:object id:status:timestamp``: the same event under another webhook id."""
        return ":".join(
            (self.type, str(self.object_iron_id or ""), self.status, self.timestamp.isoformat())
        )


_HANDLED_TYPES = frozenset(EventType)


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidPayloadError("timestamp must be an ISO 8601 string")
    parsed = parse_iron_datetime(value)
    if parsed is None:
        raise InvalidPayloadError("timestamp is not an ISO 8601 date-time")
    return parsed


def _message(value: Any) -> Mapping[str, Any]:
    """Iron's ``message``: flat ``{"id", "status"}`` or tagged ``{"AnyTag": {"id", ...}}``."""
    if not isinstance(value, dict):
        raise InvalidPayloadError("data.message must be an object")
    if "id" in value:
        return value
    if len(value) == 1:
        (inner,) = value.values()
        if isinstance(inner, dict):
            return inner
    raise InvalidPayloadError(
        'data.message must be {"id", "status"} or a single tag wrapping that object'
    )


def parse_event(body: str) -> WebhookEvent:
    """Check a delivery's body against Iron's shape. Raises :class:`InvalidPayloadError`.

    ``{"type", "timestamp", "data": {"customer_id", "message"}}``; for the types we act on
    the message must carry an ``id`` (UUID) and a ``status``. Other types only need a
    ``type`` and a ``timestamp``: they are stored and acknowledged, never refused.
    """
    try:
        payload = json.loads(body)
    except RecursionError:
        raise InvalidPayloadError("body is nested too deeply") from None
    except ValueError as exc:
        raise InvalidPayloadError(f"body is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise InvalidPayloadError("body must be a JSON object")
    event_type = _text(payload.get("type"), "type")
    timestamp = _timestamp(payload.get("timestamp"))
    data = payload.get("data")
    if not isinstance(data, dict):
        raise InvalidPayloadError("data must be an object")
    if event_type in _HANDLED_TYPES:
        message = _message(data.get("message"))
        return WebhookEvent(
            type=event_type,
            timestamp=timestamp,
            customer_iron_id=_uuid(data.get("customer_id"), "data.customer_id"),
            object_iron_id=_uuid(message.get("id"), "data.message.id"),
            status=_text(message.get("status"), "data.message.status"),
        )
    # A type we do not act on: keep whatever identifies it, never refuse it.
    customer_id = object_id = None
    status = ""
    with contextlib.suppress(InvalidPayloadError):
        customer_id = _uuid(data.get("customer_id"), "data.customer_id")
    try:
        message = _message(data.get("message"))
        object_id = _uuid(message.get("id"), "data.message.id")
        status = _text(message.get("status"), "data.message.status")
    except InvalidPayloadError:
        pass
    return WebhookEvent(event_type, timestamp, customer_id, object_id, status)
