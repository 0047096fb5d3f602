"""Fixtures of the test kit's tests: a fake of their own and a client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_iron_kyc.client import IronClient
from django_iron_kyc.testing import FakeIron
from tests.testing.support import API_KEY


@pytest.fixture
def fake() -> Iterator[FakeIron]:
    """A running fake Iron, without Django settings pointed at it."""
    with FakeIron() as server:
        yield server


@pytest.fixture
def client(fake: FakeIron) -> Iterator[IronClient]:
    """The app's client, talking to :func:`fake`, without retries."""
    with IronClient(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as iron:
        yield iron
