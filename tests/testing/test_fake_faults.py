"""Faults the fake injects (testing/fake/faults.py): error answers, dropped connections,
delays, and what the client makes of them."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests

from django_iron_kyc.client import IronClient
from django_iron_kyc.exceptions import IronTransientError
from django_iron_kyc.testing import FakeIron
from tests.testing.support import API_KEY, new_customer, new_identification, raw


def test_fail_next_answers_503_once_then_works(fake, client):
    fake.fail_next()

    with pytest.raises(IronTransientError) as caught:
        new_customer(client)
    assert caught.value.status == 503
    assert fake.customers == {}

    assert new_customer(client)["status"] == "IdentificationRequired"


def test_fail_next_hits_only_matching_requests_and_counts_down(fake, client):
    customer = new_customer(client)
    fake.fail_next(2, status=502, method="POST", path=r"/identifications/v2$")

    client.get_customer(customer["id"])
    client.list_identifications(customer["id"])
    for _ in range(2):
        with pytest.raises(IronTransientError):
            new_identification(client, customer)
    new_identification(client, customer)

    assert [r.status for r in fake.requests_to("POST", "/identifications/v2")] == [502, 502, 201]
    assert all(r.fault is None for r in fake.requests_to("GET", "."))


def test_429_carries_retry_after(fake, client):
    customer = fake.add_customer()
    fake.fail_next(status=429, retry_after=7)

    with pytest.raises(IronTransientError) as caught:
        new_identification(client, customer)

    assert caught.value.status == 429
    assert caught.value.retry_after == 7
    assert caught.value.message == "Creation Rate Limit Exceeded"


def test_client_retries_through_faults_with_the_same_key(fake):
    customer = fake.add_customer()
    fake.fail_next(2, status=503, retry_after=0)

    with IronClient(
        api_key=API_KEY, base_url=fake.base_url, max_retries=3, backoff_factor=0
    ) as client:
        identification = new_identification(client, customer)

    sent = fake.requests_to("POST", "/identifications/v2")
    assert [r.status for r in sent] == [503, 503, 201]
    assert len({r.idempotency_key for r in sent}) == 1
    assert list(fake.identifications) == [identification["id"]]


def test_drop_before_does_no_work(fake, client):
    customer = fake.add_customer()
    key = uuid.uuid4()
    fake.fail_next(drop="before")

    with pytest.raises(IronTransientError):
        client.create_identification(customer["id"], idempotency_key=key)
    assert fake.identifications == {}
    assert fake.requests[-1].status is None

    client.create_identification(customer["id"], idempotency_key=key)
    assert len(fake.identifications) == 1


def test_drop_after_does_the_work_and_a_retry_replays_it(fake, client):
    customer = fake.add_customer()
    key = uuid.uuid4()
    fake.fail_next(drop="after")

    with pytest.raises(IronTransientError):
        client.create_identification(customer["id"], idempotency_key=key)
    [created] = fake.identifications.values()

    again = client.create_identification(customer["id"], idempotency_key=key)

    assert again == created
    assert len(fake.identifications) == 1
    assert fake.requests[-1].replayed


def test_slow_answer_times_out_and_the_retry_finds_one_identification(fake):
    customer = fake.add_customer()
    key = uuid.uuid4()
    release = threading.Event()
    fake.fail_next(delay=release)

    with IronClient(
        api_key=API_KEY, base_url=fake.base_url, max_retries=0, timeout=(2, 0.2)
    ) as client:
        with pytest.raises(IronTransientError):
            client.create_identification(customer["id"], idempotency_key=key)
        release.set()
        second = client.create_identification(customer["id"], idempotency_key=key)

    assert list(fake.identifications) == [second["id"]]


def test_delay_alone_gives_the_real_answer_late(fake, client):
    fake.fail_next(delay=0.01)

    assert new_customer(client)["status"] == "IdentificationRequired"
    assert fake.requests[-1].fault is not None


def test_stop_releases_a_request_held_by_a_delay():
    fake = FakeIron().start()
    fake.fail_next(delay=threading.Event())  # never set
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(raw(fake, "GET", "/api/customers/x").status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    while not fake.requests:  # the request has arrived and is being held
        threading.Event().wait(0.01)
    fake.stop()
    thread.join(timeout=5)

    assert not thread.is_alive()
    assert len(outcome) == 1


def test_faults_lists_the_armed_faults_until_they_are_used(fake, client):
    first = fake.fail_next(2, status=500)
    second = fake.fail_next(drop="before", path="/nowhere")
    assert fake.faults == [first, second]

    with pytest.raises(IronTransientError):
        client.get_customer(uuid.uuid4())
    assert [f.remaining for f in fake.faults] == [1, 1]

    fake.clear_faults()
    assert fake.faults == []


def test_fail_next_validates_drop():
    with pytest.raises(ValueError, match="drop"):
        FakeIron().fail_next(drop="sometimes")  # type: ignore[arg-type]
