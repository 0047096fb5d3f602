"""The one parser of Iron's JSON: Remote* types, webhook bodies, statuses, timestamps."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

import pytest

from django_iron_kyc.exceptions import InvalidPayloadError, IronKycError
from django_iron_kyc.models import Identification
from django_iron_kyc.payloads import (
    STATUS_ALIASES,
    EventType,
    RemoteCustomer,
    RemoteIdentification,
    normalize_identification_status,
    parse_event,
    parse_iron_datetime,
)
from django_iron_kyc.testing import build_event, encode_event
from tests.support import IRON_FIXTURES

IRON_ID = uuid.UUID("6fefa0f0-2a53-4771-9be0-b199a8830323")
CUSTOMER_ID = uuid.UUID("27488075-1192-4846-9573-7b8e7d8d6e07")


def test_invalid_payload_error_is_in_the_family_and_a_value_error() -> None:
    assert issubclass(InvalidPayloadError, IronKycError)
    assert issubclass(InvalidPayloadError, ValueError)


def test_event_types_are_irons_strings() -> None:
    assert {str(t) for t in EventType} == {"identification_status", "customer_status"}
    assert EventType("identification_status") is EventType.IDENTIFICATION_STATUS


def test_status_aliases_map_onto_stored_statuses() -> None:
    assert set(STATUS_ALIASES.values()) <= set(Identification.Status.values)
    assert normalize_identification_status("Rejected") == Identification.Status.DECLINED
    assert normalize_identification_status("Approved") == "Approved"
    assert normalize_identification_status("SomethingNew") == "SomethingNew"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-15T10:00:00.123456Z", datetime(2026, 1, 15, 10, 0, 0, 123456, dt_timezone.utc)),
        ("2026-01-15T12:00:00+02:00", datetime(2026, 1, 15, 10, tzinfo=dt_timezone.utc)),
        ("2026-01-15T10:00:00", datetime(2026, 1, 15, 10, tzinfo=dt_timezone.utc)),
        (None, None),
        ("", None),
    ],
)
def test_parse_iron_datetime_gives_utc(value: Any, expected: datetime | None) -> None:
    parsed = parse_iron_datetime(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-13-01T00:00:00Z", 5, "0001-01-01T00:00+14:00"]
)
def test_parse_iron_datetime_refuses_what_is_not_a_date_time(value: Any) -> None:
    with pytest.raises(InvalidPayloadError, match="updated_at is not an ISO 8601 date-time"):
        parse_iron_datetime(value, "updated_at")


def test_remote_identification_from_api() -> None:
    remote = RemoteIdentification.from_api(
        {
            "id": str(IRON_ID),
            "customer_id": str(CUSTOMER_ID),
            "status": "Pending",
            "url": "https://example.com/verify",
            "with_edd": False,
            "created_at": "2026-01-15T10:00:00Z",
            "updated_at": "2026-01-15T10:00:01Z",
        }
    )
    assert remote.iron_id == IRON_ID
    assert remote.customer_iron_id == CUSTOMER_ID
    assert remote.status == "Pending"
    assert remote.with_edd is False
    assert remote.updated_at == datetime(2026, 1, 15, 10, 0, 1, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "identification must be a JSON object"),
        ({"id": str(IRON_ID)}, "identification has no status"),
        ({"id": "42", "status": "Pending"}, "identification id is not a UUID"),
        ({"id": 42, "status": "Pending"}, "identification id must be a UUID string"),
        (
            {"id": str(IRON_ID), "status": "Pending", "updated_at": "soon"},
            "updated_at is not an ISO 8601 date-time",
        ),
    ],
)
def test_remote_identification_from_api_refuses_another_shape(data: Any, message: str) -> None:
    with pytest.raises(InvalidPayloadError, match=message):
        RemoteIdentification.from_api(data)


def test_remote_customer_from_api_refuses_another_shape() -> None:
    assert RemoteCustomer.from_api({"id": str(CUSTOMER_ID), "status": "Active"}).status == "Active"
    with pytest.raises(InvalidPayloadError, match="customer has no status"):
        RemoteCustomer.from_api({"id": str(CUSTOMER_ID), "status": ""})


@pytest.mark.parametrize("shape", ["tagged", "flat"])
def test_parse_event_reads_both_message_shapes(shape: str) -> None:
    body = encode_event(
        build_event(
            EventType.IDENTIFICATION_STATUS,
            CUSTOMER_ID,
            IRON_ID,
            "Approved",
            timestamp="2026-01-15T10:00:00+00:00",
            shape=shape,
        )
    ).decode()

    event = parse_event(body)

    assert event.handled
    assert event.type == EventType.IDENTIFICATION_STATUS
    assert (event.customer_iron_id, event.object_iron_id, event.status) == (
        CUSTOMER_ID,
        IRON_ID,
        "Approved",
    )
    assert event.key == f"identification_status:{IRON_ID}:Approved:2026-01-15T10:00:00+00:00"


def test_parse_event_keeps_another_type_without_refusing_it() -> None:
    event = parse_event('{"type": "ping", "timestamp": "2026-01-15T10:00:00Z", "data": {}}')
    assert not event.handled
    assert (event.type, event.object_iron_id, event.status) == ("ping", None, "")


# --- Iron's documented payloads --------------------------------------------------------------


def as_json(value: Any) -> Any:
    """A parsed value as the fixtures' ``expect`` writes it."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def the_page_item(body: dict[str, Any]) -> RemoteIdentification:
    """The one identification of a page of ``GET /api/customers/{id}/identifications``."""
    (item,) = [RemoteIdentification.from_api(item) for item in body["items"]]
    return item


PARSERS: dict[str, Callable[[Any], Any]] = {
    "RemoteIdentification": RemoteIdentification.from_api,
    "RemoteIdentification page": the_page_item,
    "RemoteCustomer": RemoteCustomer.from_api,
    "parse_event": lambda body: parse_event(json.dumps(body)),
}


@pytest.mark.parametrize("path", sorted(IRON_FIXTURES.glob("*.json")), ids=lambda path: path.stem)
def test_documented_iron_payloads_parse(path: Path) -> None:
    """Each payload Iron documents (IRON_API.md Part B; the file says where from) parses into
    what it says."""
    fixture = json.loads(path.read_text())
    assert fixture["source"].startswith("IRON_API.md Part B")

    parsed = PARSERS[fixture["parse_with"]](fixture["body"])

    assert {name: as_json(getattr(parsed, name)) for name in fixture["expect"]} == fixture["expect"]


def test_every_kind_of_documented_payload_has_a_fixture() -> None:
    kinds = {json.loads(p.read_text())["parse_with"] for p in IRON_FIXTURES.glob("*.json")}
    assert kinds == set(PARSERS)
