"""Fixtures of the end-user tests: signed-in clients, rows mirrored at the fake Iron, races.

Helpers are fixtures (``mirror``, ``together``, ``gate``, ``make_user``), so no test module
imports another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.services import RemoteIdentification, apply_identification_state
from django_iron_kyc.testing import FakeIron

JOIN_TIMEOUT = 60


@pytest.fixture(autouse=True)
def _fresh_throttle_budget() -> None:
    """The throttle counts in the cache, which outlives a test, and users' pks come back."""
    cache.clear()


@pytest.fixture
def iron(fake_iron: FakeIron, settings: Any) -> FakeIron:
    settings.IRON_KYC_MAX_RETRIES = 0
    return fake_iron


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    def make(username: str, password: str | None = None, **fields: Any) -> Any:
        """No password unless given: hashing one costs most of a test's time."""
        fields.setdefault("email", f"{username}@example.com")
        return django_user_model.objects.create_user(username, password=password, **fields)

    return make


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user("ada", first_name="Ada", last_name="Lovelace")


@pytest.fixture
def api(user: Any) -> APIClient:
    """The JSON endpoint's client, signed in as ``user`` by session."""
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def browser_client(user: Any) -> Client:
    """A browser's client, signed in as ``user``, with CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


class Mirror:
    """Customers and identifications that exist at the fake Iron and here, alike."""

    def __init__(self, fake: FakeIron) -> None:
        self.fake = fake

    def customer(self, user: Any = None, **fields: Any) -> Customer:
        fields.setdefault("email", getattr(user, "email", "") or "someone@example.com")
        remote = self.fake.add_customer(**fields)
        return Customer.objects.create(
            user=user, iron_id=remote["id"], email=remote["email"], status=remote["status"]
        )

    def identification(
        self, customer: Customer, status: str = "Pending", **fields: Any
    ) -> Identification:
        """Applied as a poll would apply it."""
        remote = self.fake.add_identification(str(customer.iron_id), status=status, **fields)
        identification = Identification.objects.create(customer=customer)
        apply_identification_state(
            identification, RemoteIdentification.from_api(remote), source="refresh"
        )
        identification.refresh_from_db()
        return identification


@pytest.fixture
def mirror(iron: FakeIron) -> Mirror:
    return Mirror(iron)


def _together(*calls: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            results[index] = call()
        except BaseException as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a racing call hung"
    return results


@pytest.fixture
def together() -> Callable[..., list[Any]]:
    """``together(call, call, ...)``: each call on its own thread and connection, released at
    once by a barrier; returns each result, or the exception it raised."""
    return _together


class Gate(threading.Event):
    """``fake.fail_next(..., delay=gate)`` holds the next matching request at the fake Iron
    until ``gate.set()``; ``gate.reached`` is set as soon as one is held there."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.reached.set()
        return super().wait(timeout)


@pytest.fixture
def gate() -> Gate:
    return Gate()
