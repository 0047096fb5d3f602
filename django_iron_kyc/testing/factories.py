# factory-boy ships a py.typed marker but no annotations, and does not re-export its names.
# mypy: disable-error-code="attr-defined,no-untyped-call"
"""factory-boy factories for django-iron-kyc's models (needs the ``factory-boy`` package).

::

    from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory

    IdentificationFactory()                  # Pending, known at Iron, with a new customer
    IdentificationFactory(approved=True)     # Approved
    IdentificationFactory(declined=True)     # Declined, with a review comment
    IdentificationFactory(unconfirmed=True)  # our intent only: no iron_id, no status yet
    CustomerFactory(unconfirmed=True)        # not created at Iron yet

A row made here exists only in the database. For rows a :class:`~.fake.FakeIron` knows too,
in the same state, use :mod:`~django_iron_kyc.testing.mirror`.
"""

from __future__ import annotations

import uuid
from typing import Any

import factory
from django.utils import timezone

from ..models import Customer, Identification

__all__ = ["CustomerFactory", "IdentificationFactory"]


class CustomerFactory(factory.django.DjangoModelFactory[Customer]):
    """A customer known at Iron, status ``IdentificationRequired``.

    Traits: ``active`` (status Active), ``unconfirmed`` (not at Iron yet: no ``iron_id``,
    empty status, no Iron timestamps).
    """

    class Meta:
        model = Customer

    iron_id = factory.LazyFunction(uuid.uuid4)
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    name = factory.Sequence(lambda n: f"Customer {n}")
    customer_type = Customer.CustomerType.PERSON
    status = Customer.Status.IDENTIFICATION_REQUIRED
    iron_created_at = factory.LazyFunction(timezone.now)
    iron_updated_at = factory.SelfAttribute("iron_created_at")

    class Params:
        active = factory.Trait(status=Customer.Status.ACTIVE)
        unconfirmed = factory.Trait(
            iron_id=None, status="", iron_created_at=None, iron_updated_at=None
        )


def _hosted_url(identification: Any) -> str:
    if identification.iron_id is None:
        return ""
    return f"https://verify.fake-iron.invalid/verify/{identification.iron_id}?token=test"


class IdentificationFactory(factory.django.DjangoModelFactory[Identification]):
    """A Link identification known at Iron, status ``Pending``, with a new customer.

    Traits: ``approved``, ``declined`` (with a ``review_comment``), ``expired``,
    ``processed``, ``superseded`` (``superseded_at`` set), ``unconfirmed`` (our intent
    only: no ``iron_id``, empty status, no url or Iron timestamps).
    """

    class Meta:
        model = Identification

    customer = factory.SubFactory(CustomerFactory)
    iron_id = factory.LazyFunction(uuid.uuid4)
    status = Identification.Status.PENDING
    url = factory.LazyAttribute(_hosted_url)
    with_edd = False
    iron_created_at = factory.LazyFunction(timezone.now)
    iron_updated_at = factory.SelfAttribute("iron_created_at")

    class Params:
        approved = factory.Trait(status=Identification.Status.APPROVED)
        declined = factory.Trait(
            status=Identification.Status.DECLINED,
            review_comment="The document photo is not readable.",
        )
        expired = factory.Trait(status=Identification.Status.EXPIRED)
        processed = factory.Trait(status=Identification.Status.PROCESSED)
        superseded = factory.Trait(superseded_at=factory.LazyFunction(timezone.now))
        unconfirmed = factory.Trait(
            iron_id=None, status="", url="", iron_created_at=None, iron_updated_at=None
        )
