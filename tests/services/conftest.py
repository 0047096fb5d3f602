"""Fixtures of the services tests."""

from __future__ import annotations

import pytest

from django_iron_kyc.models import Customer
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.mirror import mirror_customer


@pytest.fixture
def customer(iron: FakeIron) -> Customer:
    """A customer at the fake Iron and here, in the same state."""
    return mirror_customer(iron, email="ada@example.com")
