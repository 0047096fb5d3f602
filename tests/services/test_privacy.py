"""Access and erasure: export_customer holds everything about one customer and nothing of
another; forget_customer deletes everything and nothing else, archiving at Iron first if
asked; a webhook that comes after re-creates nothing."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from django_iron_kyc import services
from django_iron_kyc.exceptions import IronAPIError, IronTransientError
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.testing import FakeIron, SignalRecorder, build_event, encode_event
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.accounts.models import KycNote, Payout
from tests.support import run_together

pytestmark = pytest.mark.django_db

Outcome = WebhookDelivery.Outcome
ARCHIVE_PATH = r"^/api/customers/[^/]+/archive$"


@dataclass
class Person:
    """A customer with what the app stores about them: identifications, deliveries, history."""

    customer: Customer
    identifications: list[Identification]
    deliveries: list[WebhookDelivery]


def delivery(customer_id: Any, object_id: Any, outcome: str, **columns: Any) -> WebhookDelivery:
    """A stored delivery about ``object_id``; acted on ones name it in their columns too."""
    kind = "customer_status" if object_id == customer_id else "identification_status"
    event = build_event(kind, customer_id, object_id, "Approved")
    return WebhookDelivery.objects.create(
        webhook_id=str(uuid.uuid4()), body=encode_event(event).decode(), outcome=outcome, **columns
    )


def person(user: Any = None, **fields: Any) -> Person:
    customer = CustomerFactory(user=user, **fields)
    old = IdentificationFactory(customer=customer, declined=True, superseded_at=timezone.now())
    new = IdentificationFactory(customer=customer, approved=True)
    acted = {"outcome": Outcome.PROCESSED, "customer_iron_id": customer.iron_id}
    deliveries = [
        delivery(customer.iron_id, new.iron_id, **acted, object_iron_id=new.iron_id),
        delivery(customer.iron_id, customer.iron_id, **acted, object_iron_id=customer.iron_id),
        delivery(customer.iron_id, old.iron_id, Outcome.RECEIVED),  # only its body names it
    ]
    LogEntry.objects.create(
        user=get_user_model().objects.get_or_create(username="staff", is_staff=True)[0],
        content_type=ContentType.objects.get_for_model(Customer),
        object_id=str(customer.pk),
        object_repr=str(customer),
        action_flag=CHANGE,
        change_message="Started identification (Link).",
    )
    return Person(customer, [old, new], deliveries)


@pytest.fixture
def ada(django_user_model: Any) -> Person:
    user = django_user_model.objects.create_user("ada", "ada@example.com")
    return person(user, email="ada@example.com", name="Ada Lovelace")


@pytest.fixture
def bob() -> Person:
    return person(email="bob@example.com", name="Bob Bobson")


def pks(rows: list[Any]) -> set[int]:
    return {row.pk for row in rows}


# --- export ---------------------------------------------------------------------------------


def test_export_holds_everything_about_the_customer(ada: Person, bob: Person) -> None:
    exported = services.export_customer(ada.customer)

    assert exported["format"] == services.EXPORT_FORMAT
    assert exported["customer"]["email"] == "ada@example.com"
    assert exported["customer"]["name"] == "Ada Lovelace"
    assert exported["customer"]["iron_id"] == str(ada.customer.iron_id)
    assert exported["customer"]["user_id"] == ada.customer.user_id
    assert [i["id"] for i in exported["identifications"]] == [i.pk for i in ada.identifications]
    assert exported["identifications"][0]["review_comment"] == ada.identifications[0].review_comment
    assert {d["id"] for d in exported["webhook_deliveries"]} == pks(ada.deliveries)
    assert {d["body"] for d in exported["webhook_deliveries"]} == {d.body for d in ada.deliveries}
    assert [entry["message"] for entry in exported["admin_history"]] == [
        "Started identification (Link)."
    ]


def test_export_holds_nothing_of_another_customer(ada: Person, bob: Person) -> None:
    text = json.dumps(services.export_customer(ada.customer.pk))  # JSON as it is

    for value in ("bob@example.com", "Bob Bobson", str(bob.customer.iron_id)):
        assert value not in text
    for identification in bob.identifications:
        assert str(identification.iron_id) not in text


def test_export_of_a_customer_not_at_iron_yet_has_no_deliveries() -> None:
    customer = CustomerFactory(unconfirmed=True)
    delivery(uuid.uuid4(), uuid.uuid4(), Outcome.PROCESSED)

    exported = services.export_customer(customer)

    assert exported["identifications"] == exported["webhook_deliveries"] == []


# --- forget ---------------------------------------------------------------------------------


def test_forget_deletes_everything_about_the_customer_and_nothing_else(
    ada: Person, bob: Person, django_capture_on_commit_callbacks: Any
) -> None:
    expected = services.customer_data_counts(ada.customer)
    user = ada.customer.user
    assert user is not None

    with SignalRecorder() as signals, django_capture_on_commit_callbacks(execute=True):
        counts = services.forget_customer(ada.customer)

    assert (
        counts
        == expected
        == {
            "customers": 1,
            "identifications": 2,
            "webhook_deliveries": 3,
            "admin_log_entries": 1,
        }
    )
    assert list(Customer.objects.all()) == [bob.customer]
    assert pks(list(Identification.objects.all())) == pks(bob.identifications)
    assert pks(list(WebhookDelivery.objects.all())) == pks(bob.deliveries)
    user.refresh_from_db()  # the user is the host project's: left alone
    (entry, bobs) = LogEntry.objects.order_by("object_id")
    assert entry.object_repr == f"forgotten customer #{ada.customer.pk}"
    assert "ada" not in entry.object_repr
    assert bobs.object_repr == str(bob.customer)
    assert signals.names() == ["customer_forgotten"]
    assert signals.kwargs_of("customer_forgotten") == [
        {"sender": Customer, "iron_id": ada.customer.iron_id, "user_id": user.pk}
    ]


def test_forgetting_sends_nothing_when_its_transaction_rolls_back(
    ada: Person, django_capture_on_commit_callbacks: Any
) -> None:
    def forget_then_fail() -> None:
        with transaction.atomic():
            services.forget_customer(ada.customer)
            raise RuntimeError

    with (
        SignalRecorder() as signals,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
    ):
        forget_then_fail()

    assert signals.names() == []
    assert Customer.objects.filter(pk=ada.customer.pk).exists()


def test_forget_of_a_customer_not_at_iron_yet_never_calls_iron(iron: FakeIron) -> None:
    customer = CustomerFactory(unconfirmed=True)

    counts = services.forget_customer(customer, archive_at_iron=True)

    assert counts["customers"] == 1
    assert iron.requests == []


def test_forget_deletes_your_rows_that_cascade_and_counts_them_by_label(ada: Person) -> None:
    KycNote.objects.create(customer=ada.customer, text="called Ada back")

    counts = services.forget_customer(ada.customer)

    assert counts["accounts.KycNote"] == 1
    assert not KycNote.objects.exists()


def test_forget_deletes_nothing_when_your_rows_protect_the_customer(ada: Person) -> None:
    Payout.objects.create(customer=ada.customer)

    with pytest.raises(ProtectedError):
        services.forget_customer(ada.customer)

    assert Identification.objects.filter(customer=ada.customer).count() == 2
    assert WebhookDelivery.objects.count() == 3
    assert LogEntry.objects.get().object_repr == str(ada.customer)


# --- archiving at Iron ----------------------------------------------------------------------


@pytest.fixture
def at_iron(iron: FakeIron) -> Customer:
    customer = mirror_customer(iron, email="ada@example.com")
    mirror_identification(iron, customer)
    iron.outbox.clear()
    return customer


def test_forget_archives_at_iron_first_when_asked(iron: FakeIron, at_iron: Customer) -> None:
    counts = services.forget_customer(at_iron, archive_at_iron=True)

    assert counts["identifications"] == 1
    assert [r.status for r in iron.requests_to("PUT", ARCHIVE_PATH)] == [200]
    assert iron.customers[str(at_iron.iron_id)]["status"] == "Archived"
    assert not Customer.objects.exists()


def test_forget_without_archiving_never_calls_iron(iron: FakeIron, at_iron: Customer) -> None:
    services.forget_customer(at_iron)

    assert iron.requests == []
    assert iron.customers[str(at_iron.iron_id)]["status"] != "Archived"


@pytest.mark.parametrize(("status", "error"), [(403, IronAPIError), (503, IronTransientError)])
def test_forget_deletes_nothing_when_iron_refuses_or_is_down(
    iron: FakeIron, at_iron: Customer, status: int, error: type[Exception]
) -> None:
    iron.fail_next(status=status, path=ARCHIVE_PATH)

    with pytest.raises(error) as caught:
        services.forget_customer(at_iron, archive_at_iron=True)

    assert caught.value.status == status  # type: ignore[attr-defined]
    assert Customer.objects.filter(pk=at_iron.pk).exists()
    assert Identification.objects.filter(customer=at_iron).count() == 1
    assert iron.customers[str(at_iron.iron_id)]["status"] != "Archived"


def test_a_customer_your_rows_protect_is_not_archived_at_iron(
    iron: FakeIron, at_iron: Customer
) -> None:
    Payout.objects.create(customer=at_iron)

    with pytest.raises(ProtectedError):
        services.forget_customer(at_iron, archive_at_iron=True)

    assert iron.requests == []
    assert Customer.objects.filter(pk=at_iron.pk).exists()


def test_a_late_webhook_for_a_forgotten_customer_recreates_nothing_and_is_pruned(
    iron: FakeIron,
    at_iron: Customer,
    deliver_fake_webhooks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    services.forget_customer(at_iron, archive_at_iron=True)

    with SignalRecorder() as signals, django_capture_on_commit_callbacks(execute=True):
        answers = deliver_fake_webhooks()  # Iron's Archived webhooks, after the fact

    assert [a.json()["outcome"] for a in answers] == ["unknown_object", "unknown_object"]
    assert not Customer.objects.exists()
    assert not Identification.objects.exists()
    assert signals.names() == []
    later = timezone.now() + timedelta(days=31)
    assert services.apply_retention(now=later).deliveries_deleted == 2
    assert not WebhookDelivery.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_forget_racing_a_webhook_about_the_customer_neither_deadlocks_nor_recreates(
    iron: FakeIron, send_iron_webhook: Any
) -> None:
    for _ in range(10):
        customer = mirror_customer(iron)
        identification = mirror_identification(iron, customer)
        iron.outbox.clear()
        iron.set_identification_status(identification.iron_id, "Approved")
        webhooks = list(iron.outbox)
        iron.outbox.clear()

        _, *answers = run_together(
            lambda customer=customer: services.forget_customer(customer),
            *(lambda d=d: send_iron_webhook(d) for d in webhooks),
        )

        assert [answer.status_code for answer in answers] == [200, 200]

        assert not Customer.objects.filter(iron_id=customer.iron_id).exists()
        assert not Identification.objects.filter(iron_id=identification.iron_id).exists()
        left = WebhookDelivery.objects.filter(customer_iron_id=customer.iron_id)
        assert set(left.values_list("outcome", flat=True)) <= {Outcome.UNKNOWN_OBJECT}
