"""The fake's idempotency keys (testing/fake/api.py): replayed, refused when reused with
another body, scoped per path, expired after 24 hours, safe under concurrent requests."""

from __future__ import annotations

import contextlib
import functools
import uuid

import pytest

from django_iron_kyc.client import IronClient
from django_iron_kyc.exceptions import IronAPIError
from django_iron_kyc.testing import FakeIron
from tests.support import run_together
from tests.testing.support import API_KEY, new_customer, raw


def test_post_without_idempotency_key_is_400_and_does_nothing(fake):
    response = raw(
        fake,
        "POST",
        "/api/customers",
        body={"customer_type": "Person", "email": "a@b.co"},
        key=None,
    )

    assert response.status_code == 400
    assert "IDEMPOTENCY-KEY" in response.json()
    assert fake.customers == {}


def test_idempotency_key_must_be_a_uuid(fake):
    response = raw(
        fake, "POST", "/api/customers", body={"customer_type": "Person", "email": "a@b.co"}, key="1"
    )
    assert response.status_code == 400


def test_same_key_and_body_replays_the_first_response(fake, client):
    customer = new_customer(client)
    key = uuid.uuid4()

    first = client.create_identification(customer["id"], idempotency_key=key)
    fake.set_identification_status(first["id"], "Processed", notify=False)
    second = client.create_identification(customer["id"], idempotency_key=key)

    assert second == first  # the stored answer, not the current state
    assert len(fake.identifications) == 1
    replays = [r.replayed for r in fake.requests_to("POST", "/identifications/v2")]
    assert replays == [False, True]


def test_replay_ignores_json_formatting(fake):
    customer = fake.add_customer()
    path = f"/api/customers/{customer['id']}/identifications/v2"
    key = str(uuid.uuid4())

    first = raw(fake, "POST", path, body=b'{"type": "Link"}', key=key)
    second = raw(fake, "POST", path, body=b'{"type":"Link"}', key=key)

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["x-fake-iron-replayed"] == "true"


def test_same_key_with_another_body_is_409_and_never_retried(fake, client):
    customer = new_customer(client)
    key = uuid.uuid4()
    client.create_identification(customer["id"], idempotency_key=key)

    with pytest.raises(IronAPIError) as caught:
        client.create_identification(customer["id"], idempotency_key=key, with_edd=True)

    assert caught.value.status == 409
    assert caught.value.is_idempotency_conflict
    assert not caught.value.is_pending_identification_conflict
    assert str(key) in caught.value.message
    assert len(fake.identifications) == 1


def test_keys_are_scoped_per_path(fake, client):
    key = uuid.uuid4()
    customer = client.create_customer(email="a@example.com", idempotency_key=key)

    identification = client.create_identification(customer["id"], idempotency_key=key)

    assert identification["status"] == "Pending"


def test_a_rejected_request_leaves_the_key_unused(fake):
    customer = fake.add_customer()
    path = f"/api/customers/{customer['id']}/identifications/v2"
    key = str(uuid.uuid4())

    assert raw(fake, "POST", path, body={"type": "Token"}, key=key).status_code == 400
    assert raw(fake, "POST", path, body={"type": "Link"}, key=key).status_code == 201


def test_key_still_replays_just_before_24_hours(fake, client):
    customer = new_customer(client)
    key = uuid.uuid4()
    first = client.create_identification(customer["id"], idempotency_key=key)

    fake.advance(24 * 3600 - 1)

    assert client.create_identification(customer["id"], idempotency_key=key) == first
    assert len(fake.identifications) == 1


def test_key_expires_after_24_hours_and_the_same_key_creates_again(fake, client):
    customer = new_customer(client)
    key = uuid.uuid4()
    first = client.create_identification(customer["id"], idempotency_key=key)

    fake.advance(24 * 3600 + 1)
    second = client.create_identification(customer["id"], idempotency_key=key)

    assert second["id"] != first["id"]
    assert len(fake.identifications) == 2
    assert fake.is_superseded(first["id"])


def test_concurrent_requests_with_one_key_create_exactly_one_identification(fake):
    customer = fake.add_customer()
    key = uuid.uuid4()
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(IronClient(api_key=API_KEY, base_url=fake.base_url, max_retries=0))
            for _ in range(6)
        ]
        results = run_together(
            *(
                functools.partial(client.create_identification, customer["id"], idempotency_key=key)
                for client in clients
            ),
            return_exceptions=True,
        )

    assert all(isinstance(r, dict) for r in results), results
    assert len({r["id"] for r in results}) == 1
    assert len(fake.identifications) == 1
    assert sum(not r.replayed for r in fake.requests_to("POST", "/identifications/v2")) == 1


def test_concurrent_requests_with_different_keys_and_conflict_switch_create_one():
    with FakeIron(conflict_on_pending=True) as fake:
        customer = fake.add_customer()

        def create() -> int:
            response = raw(
                fake,
                "POST",
                f"/api/customers/{customer['id']}/identifications/v2",
                body={"type": "Link"},
            )
            return response.status_code

        statuses = run_together(*[create] * 4)

        assert sorted(statuses) == [201, 409, 409, 409]
        assert len(fake.identifications) == 1
