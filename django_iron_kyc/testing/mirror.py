"""Rows that exist both at a fake Iron and in the local database, in the same state.

For tests that start from a customer or an identification the app already knows (needs
``factory-boy``, as :mod:`~django_iron_kyc.testing.factories` does)::

    from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification

    customer = mirror_customer(fake_iron, email="ada@example.com")
    identification = mirror_identification(fake_iron, customer)
    fake_iron.set_identification_status(identification.iron_id, "Approved")
"""

from __future__ import annotations

import uuid
from typing import Any

from ..models import Customer, Identification
from .factories import CustomerFactory, IdentificationFactory
from .fake import FakeIron
from .fake.clock import parse_iron_time

__all__ = ["mirror_customer", "mirror_identification"]


def mirror_customer(fake: FakeIron, **fields: Any) -> Customer:
    """A customer created at ``fake`` (``fields`` as for ``fake.add_customer``) and saved
    locally with the same id, email, status and Iron timestamps."""
    remote = fake.add_customer(**fields)
    customer: Customer = CustomerFactory.create(email=remote["email"], **_as_at_iron(remote))
    return customer


def mirror_identification(fake: FakeIron, customer: Customer, **fields: Any) -> Identification:
    """An identification of ``customer`` created at ``fake`` (``fields`` as for
    ``fake.add_identification``: a status, timestamps...) and saved locally in the same state.

    ``customer`` must be known at the fake (e.g. from :func:`mirror_customer`).
    """
    if customer.iron_id is None:
        raise ValueError(f"customer {customer.pk} is not at Iron yet (it has no iron_id)")
    remote = fake.add_identification(customer.iron_id, **fields)
    identification: Identification = IdentificationFactory.create(
        customer=customer, url=remote["url"], **_as_at_iron(remote)
    )
    return identification


def _as_at_iron(remote: dict[str, Any]) -> dict[str, Any]:
    """The model fields every Iron object's JSON gives: id, status and Iron's timestamps."""
    return {
        "iron_id": uuid.UUID(remote["id"]),
        "status": remote["status"],
        "iron_created_at": parse_iron_time(remote["created_at"]),
        "iron_updated_at": parse_iron_time(remote["updated_at"]),
    }
