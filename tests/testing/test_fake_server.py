"""The fake's HTTP server (testing/fake/server.py, hosted_page.py): serving on loopback until
stopped, recording every request, and the hosted page a person can use."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from django_iron_kyc.testing import FakeIron
from tests.testing.support import API_KEY, new_customer, raw


def test_fake_serves_on_a_random_loopback_port_until_stopped():
    fake = FakeIron().start()
    try:
        assert fake.base_url.startswith("http://127.0.0.1:")
        assert fake.port != 0
        assert raw(fake, "GET", "/nowhere").status_code == 404
    finally:
        fake.stop()
    assert not fake.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{fake.port}/api/customers/x", timeout=2)


# --- request log ------------------------------------------------------------------------------


def test_every_request_is_recorded_with_headers_query_and_body(fake, client):
    customer = new_customer(client)
    list(client.iter_identifications(customer["id"], page_size=5))

    post, get = fake.requests
    assert (post.method, post.path) == ("POST", "/api/customers")
    assert post.headers["x-api-key"] == API_KEY
    assert uuid.UUID(post.idempotency_key)
    assert post.json == {"customer_type": "Person", "email": "ada@example.com"}
    assert json.loads(post.body) == post.json
    assert post.headers["content-type"] == "application/json; charset=utf-8"
    assert (get.method, get.query) == ("GET", {"page_size": ["5"]})
    assert get.body == b""
    assert get.json is None
    assert fake.requests_to("get", "/identifications$") == [get]
    assert fake.requests_to(None, "^/api/customers$") == [post]


# --- hosted page (for a person driving the fake by hand) --------------------------------------


def test_hosted_page_lets_a_person_decide_without_an_api_key(fake):
    identification = fake.add_identification(fake.add_customer()["id"])

    page = requests.get(identification["url"], timeout=5)
    assert page.status_code == 200
    assert "Pending" in page.text

    decided = requests.post(
        f"{fake.base_url}/verify/{identification['id']}",
        data={"status": "Approved"},
        timeout=5,
        allow_redirects=False,
    )
    assert decided.status_code == 303
    assert fake.identifications[identification["id"]]["status"] == "Approved"
    assert [d.type for d in fake.outbox] == ["identification_status", "customer_status"]
