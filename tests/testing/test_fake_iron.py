"""FakeIron, the facade (testing/fake/iron.py): running side by side, its options and
constructor, the settings it gives the app, and the helpers that move Iron's state."""

from __future__ import annotations

import uuid

import pytest

from django_iron_kyc.testing import FakeIron
from tests.testing.support import API_KEY, verify_delivery

# --- lifecycle and options --------------------------------------------------------------------


def test_two_fakes_run_side_by_side_with_separate_state():
    with FakeIron() as one, FakeIron() as two:
        one.add_customer(email="a@example.com")
        assert one.port != two.port
        assert len(one.customers) == 1
        assert two.customers == {}


def test_django_settings_point_the_app_at_the_fake(fake):
    assert fake.django_settings() == {
        "IRON_KYC_BASE_URL": fake.base_url,
        "IRON_KYC_API_KEY": API_KEY,
        "IRON_KYC_WEBHOOK_SECRET": "test_secret",
    }


def test_constructor_rejects_unknown_options():
    with pytest.raises(ValueError, match="message_shape"):
        FakeIron(message_shape="nested")
    with pytest.raises(ValueError, match="error_format"):
        FakeIron(error_format="xml")
    with pytest.raises(ValueError, match="list_order"):
        FakeIron(list_order="random")


def test_constructor_takes_only_the_api_key_by_position():
    assert FakeIron("k").api_key == "k"
    with pytest.raises(TypeError):
        FakeIron("k", "secret")  # type: ignore[misc]


def test_options_can_change_while_the_fake_runs(fake):
    fake.message_shape = "flat"
    fake.webhook_secret = "other"

    fake.set_customer_status(fake.add_customer()["id"], "Suspended")

    [delivery] = fake.outbox
    assert fake.options.message_shape == "flat"
    assert set(delivery.event["data"]["message"]) == {"id", "status"}
    assert verify_delivery(delivery.headers, delivery.body, secret="other")


# --- status helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "customer_status"),
    [
        ("Pending", "IdentificationRequired"),
        ("Processed", "IdentificationRequired"),
        ("PendingReview", "IdentificationRequired"),
        ("Approved", "Active"),
        ("Declined", "IdentificationRequired"),
        ("Expired", "IdentificationRequired"),
        ("Archived", "IdentificationRequired"),
    ],
)
def test_customer_status_follows_its_newest_identification(fake, client, status, customer_status):
    customer = fake.add_customer(status="Active")
    identification = fake.add_identification(customer["id"])

    fake.set_identification_status(identification["id"], status)

    assert client.get_identification(identification["id"])["status"] == status
    remote = client.get_customer(customer["id"])
    assert remote["status"] == customer_status
    assert remote["identification_status"] == status


def test_status_walk_bumps_updated_at_each_time(fake):
    identification = fake.add_identification(fake.add_customer()["id"])
    stamps = [identification["updated_at"]]

    for status in ("Processed", "PendingReview", "Approved"):
        stamps.append(fake.set_identification_status(identification["id"], status)["updated_at"])

    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 4
    assert fake.identifications[identification["id"]]["created_at"] == stamps[0]


def test_review_comment_is_set_and_served(fake, client):
    identification = fake.add_identification(fake.add_customer()["id"])

    fake.set_identification_status(identification["id"], "Declined", review_comment="Blurry ID")

    assert client.get_identification(identification["id"])["review_comment"] == "Blurry ID"


def test_unknown_status_is_kept_and_leaves_the_customer_alone(fake):
    customer = fake.add_customer(status="Active")
    identification = fake.add_identification(customer["id"], status="Approved")

    fake.set_identification_status(identification["id"], "OnHold")

    assert fake.identifications[identification["id"]]["status"] == "OnHold"
    assert fake.customers[customer["id"]]["status"] == "Active"


def test_set_customer_status_queues_a_customer_status_event(fake):
    customer = fake.add_customer()

    fake.set_customer_status(customer["id"], "Suspended")

    assert fake.customers[customer["id"]]["status"] == "Suspended"
    assert [d.event["data"]["message"] for d in fake.outbox] == [
        {"CustomerStatus": {"id": customer["id"], "status": "Suspended"}}
    ]


def test_state_can_be_looked_up_by_uuid_or_string(fake):
    customer = fake.add_customer()
    identification = fake.add_identification(customer["id"])
    key = uuid.UUID(identification["id"])

    assert fake.identifications[key] is fake.identifications[identification["id"]]
    assert key in fake.identifications
    assert fake.customers.get(uuid.UUID(customer["id"]))["id"] == customer["id"]
    assert fake.customers.get(uuid.uuid4()) is None


def test_state_mappings_are_snapshots_of_the_live_objects(fake):
    customer = fake.add_customer()
    snapshot = fake.customers

    fake.add_customer()
    fake.set_customer_status(customer["id"], "Suspended")

    assert list(snapshot) == [customer["id"]]  # safe to iterate while the fake changes
    assert snapshot[customer["id"]]["status"] == "Suspended"


def test_setting_status_of_unknown_identification_raises_key_error(fake):
    with pytest.raises(KeyError):
        fake.set_identification_status(uuid.uuid4(), "Approved")


def test_advance_moves_the_clock_and_timestamps(fake):
    before = fake.now
    moved = fake.advance(3600)

    assert 3600 <= (moved - before).total_seconds() < 3700
    customer = fake.add_customer()
    assert customer["created_at"] >= moved.strftime("%Y-%m-%dT%H:%M:%S")
