"""Arbitrary headers and bodies, signed and unsigned: the webhook view (webhooks.views) never
answers 5xx.

Bodies range from random bytes through random JSON to Iron-shaped events with random
fields around a known customer and identification (so some of them are applied through
the services). Headers are signed correctly, signed and then mangled, or made up.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta, timezone
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from django_iron_kyc import signing
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.testing import FakeIron, build_event, encode_event
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory
from tests.support import LONG_AGO, post, signed_headers

CUSTOMER_ID = uuid.UUID("2ff3e394-978b-4489-8795-0a4e769a04c6")
IDENTIFICATION_ID = uuid.UUID("c3d4e5f6-a7b8-9012-cdef-345678901234")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def mostly(valid: st.SearchStrategy[Any], garbage: st.SearchStrategy[Any]) -> Any:
    """Valid three times in four, so most examples get past the shape checks.

    (``st.one_of(valid, valid, valid, garbage)`` would not do: it drops repeated branches.)
    """
    return st.integers(0, 3).flatmap(lambda n: valid if n else garbage)


ids = mostly(
    st.sampled_from([str(CUSTOMER_ID), str(IDENTIFICATION_ID)]) | st.uuids().map(str),
    st.text(max_size=40) | json_values,
)
statuses = mostly(
    st.sampled_from([*Identification.Status.values, *Customer.Status.values, "Rejected"]),
    st.text(max_size=80) | json_values,
)
timestamps = mostly(
    st.datetimes(
        timezones=st.sampled_from(
            [timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
        )
    ).map(lambda d: d.isoformat()),
    st.text(max_size=40) | json_values,
)
messages = st.fixed_dictionaries({"id": ids}, optional={"status": statuses, "kind": st.text()})
wrapped_messages = mostly(
    messages | st.dictionaries(st.text(max_size=25), messages, min_size=1, max_size=2),
    json_values,
)
iron_events = st.fixed_dictionaries(
    {
        "type": mostly(
            st.sampled_from(["identification_status", "customer_status", "transaction", "ping"]),
            st.text(max_size=80) | json_values,
        ),
        "timestamp": timestamps,
        "data": mostly(
            st.fixed_dictionaries({"customer_id": ids, "message": wrapped_messages}),
            json_values,
        ),
    }
)
# Well-formed events about the known objects, so examples reach the services.
valid_events = st.builds(
    build_event,
    st.sampled_from(["identification_status", "customer_status"]),
    st.just(CUSTOMER_ID),
    st.sampled_from([IDENTIFICATION_ID, CUSTOMER_ID]) | st.uuids(),
    st.sampled_from([*Identification.Status.values, *Customer.Status.values, "Rejected"]),
    timestamp=st.datetimes(timezones=st.just(timezone.utc)),
    shape=st.sampled_from(["tagged", "flat"]),
)
bodies = st.integers(0, 3).flatmap(
    lambda n: [
        valid_events.map(encode_event),
        iron_events.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
        iron_events.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
        st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    ][n]
)
header_values = st.one_of(st.text(max_size=120), st.sampled_from(["", " ", "v1=", "0", "-1"]))
header_names = st.sampled_from(
    [
        signing.ID_HEADER,
        signing.TIMESTAMP_HEADER,
        signing.SIGNATURE_HEADER,
        "content-length",
        "content-type",
        "accept",
        "x-forwarded-for",
    ]
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    body = draw(bodies)
    mode = draw(st.sampled_from(["signed", "signed", "signed", "mangled", "unsigned"]))
    headers: dict[str, str] = {}
    if mode in ("signed", "mangled"):
        webhook_id = draw(mostly(st.uuids().map(str), st.none() | st.text(max_size=20)))
        headers = signed_headers(body, webhook_id=webhook_id or None)
    if mode != "signed":
        headers.update(draw(st.dictionaries(header_names, header_values, max_size=4)))
    return body, headers


@pytest.fixture
def known_objects(db: None, iron: FakeIron) -> None:
    """A customer and an identification known here and at a (fake) Iron that answers: an
    event that must be confirmed with Iron is confirmed (Iron down would rightly be 5xx)."""
    iron.add_customer(id=str(CUSTOMER_ID))
    iron.add_identification(str(CUSTOMER_ID), id=str(IDENTIFICATION_ID))
    IdentificationFactory(
        customer=CustomerFactory(iron_id=CUSTOMER_ID, iron_created_at=LONG_AGO),
        iron_id=IDENTIFICATION_ID,
        iron_created_at=LONG_AGO,
    )


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_webhook_never_answers_5xx_to_anything_sent(
    known_objects: None, delivery: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = delivery

    response = post(Client(enforce_csrf_checks=True), body, headers)

    assert response.status_code < 500, response.content
    event(f"{response.status_code} {response.json()}"[:40])  # --hypothesis-show-statistics
    assert response["Content-Type"] == "application/json"
    if response.status_code == 200:
        assert response.json()["outcome"] in WebhookDelivery.Outcome.values
    else:
        assert response.json()["detail"]
