"""Models: defaults, the one-in-flight constraint, querysets, permissions and migrations."""

from __future__ import annotations

import itertools
import json
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from django_iron_kyc.models import Customer, Identification, WebhookDelivery

S = Identification.Status
TERMINAL = [S.APPROVED, S.DECLINED, S.EXPIRED, S.ARCHIVED]
NOT_TERMINAL = ["", S.PENDING, S.PROCESSED, S.PENDING_REVIEW]

pytestmark = pytest.mark.django_db


def make_customer() -> Customer:
    return Customer.objects.create(iron_id=uuid.uuid4())


# --- Customer -----------------------------------------------------------------------------


def test_customer_can_be_created_from_iron_id_alone():
    iron_id = uuid.uuid4()
    customer = Customer.objects.create(iron_id=iron_id)
    customer.refresh_from_db()
    assert customer.iron_id == iron_id
    assert customer.status == ""
    assert customer.user is None
    assert customer.customer_type == Customer.CustomerType.PERSON
    assert isinstance(customer.idempotency_key, uuid.UUID)
    assert customer.created_at is not None
    assert str(customer)


def test_customer_can_exist_before_iron_knows_it():
    first, second = Customer.objects.create(), Customer.objects.create()
    assert first.iron_id is second.iron_id is None  # NULLs do not clash on unique
    assert "not at Iron yet" in str(first)


def test_customer_iron_id_is_unique():
    iron_id = uuid.uuid4()
    Customer.objects.create(iron_id=iron_id)
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(iron_id=iron_id)


def test_customer_is_tied_to_at_most_one_user(django_user_model):
    user = django_user_model.objects.create_user(username="ada", password="x")
    customer = Customer.objects.create(iron_id=uuid.uuid4(), user=user)
    assert user.iron_kyc_customer == customer
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(iron_id=uuid.uuid4(), user=user)


def test_customer_keeps_an_unknown_status_as_iron_spelled_it():
    customer = Customer.objects.create(iron_id=uuid.uuid4(), status="SomethingNew")
    customer.refresh_from_db()
    assert customer.status == "SomethingNew"


def test_status_values_are_irons_spelling():
    assert set(Customer.Status.values) == {
        "UserRequired",
        "SigningsRequired",
        "IdentificationRequired",
        "Active",
        "Suspended",
        "Archived",
    }
    assert set(Identification.Status.values) == {
        "Pending",
        "Processed",
        "PendingReview",
        "Approved",
        "Declined",
        "Expired",
        "Archived",
    }
    assert Identification.Status.APPROVED == "Approved"


# --- idempotency keys ---------------------------------------------------------------------


def test_idempotency_key_exists_before_the_row_is_saved():
    intent = Identification(customer=make_customer())
    key = intent.idempotency_key
    assert isinstance(key, uuid.UUID)
    intent.save()
    intent.refresh_from_db()
    assert intent.idempotency_key == key


def test_idempotency_keys_are_unique_per_row():
    customer = make_customer()
    rows = [Identification.objects.create(customer=customer, status=S.DECLINED) for _ in range(5)]
    keys = {row.idempotency_key for row in rows}
    assert len(keys) == 5
    assert all(key.version == 4 for key in keys)
    assert customer.idempotency_key not in keys


def test_a_reused_idempotency_key_is_refused_by_the_database():
    first = Identification.objects.create(customer=make_customer())
    with pytest.raises(IntegrityError), transaction.atomic():
        Identification.objects.create(
            customer=make_customer(), idempotency_key=first.idempotency_key
        )


def test_new_identification_is_not_pending_until_iron_answers():
    intent = Identification.objects.create(customer=make_customer())
    assert intent.status == ""
    assert intent.iron_id is None
    assert intent.is_in_flight
    assert not intent.is_sandbox_decidable
    assert "not at Iron yet" in str(intent)


# --- one identification in flight per customer --------------------------------------------


@pytest.mark.parametrize("first_status", NOT_TERMINAL)
def test_second_in_flight_identification_is_refused(first_status):
    customer = make_customer()
    Identification.objects.create(customer=customer, status=first_status)

    with pytest.raises(IntegrityError), transaction.atomic():
        Identification.objects.create(customer=customer)
    assert customer.identifications.count() == 1


@pytest.mark.parametrize("first_status", TERMINAL)
def test_new_identification_allowed_after_a_terminal_one(first_status):
    customer = make_customer()
    Identification.objects.create(customer=customer, status=first_status)

    Identification.objects.create(customer=customer)
    assert customer.identifications.count() == 2


@pytest.mark.parametrize("mark", ["superseded_at", "failed_at"])
def test_new_identification_allowed_after_the_first_is_superseded_or_failed(mark):
    customer = make_customer()
    Identification.objects.create(customer=customer, status=S.PENDING, **{mark: timezone.now()})

    Identification.objects.create(customer=customer, status=S.PENDING)
    assert customer.identifications.in_flight().count() == 1


def test_leaving_a_terminal_status_is_refused_while_another_is_in_flight():
    customer = make_customer()
    old = Identification.objects.create(customer=customer, status=S.APPROVED)
    Identification.objects.create(customer=customer, status=S.PENDING)

    old.status = S.PENDING  # e.g. a step-up on the old one
    with pytest.raises(IntegrityError), transaction.atomic():
        old.save()


def test_other_customers_are_not_affected():
    Identification.objects.create(customer=make_customer(), status=S.PENDING)
    Identification.objects.create(customer=make_customer(), status=S.PENDING)
    assert Identification.objects.in_flight().count() == 2


def test_constraint_is_reported_by_full_clean():
    customer = make_customer()
    Identification.objects.create(customer=customer, status=S.PENDING)
    with pytest.raises(ValidationError, match="already has an identification in flight"):
        Identification(customer=customer).full_clean()


def test_constraint_and_terminal_statuses_agree():
    """The constraint spells the terminal statuses out; it must match TERMINAL_STATUSES."""
    (constraint,) = Identification._meta.constraints
    text = str(constraint.condition)
    assert set(Identification.TERMINAL_STATUSES) == set(TERMINAL)
    for status in Identification.Status.values:
        assert (f"'{status}'" in text) is (status in Identification.TERMINAL_STATUSES)


# --- querysets and state helpers ----------------------------------------------------------


def test_querysets_in_flight_pending_terminal():
    now = timezone.now()
    rows = {
        "intent": Identification.objects.create(customer=make_customer()),
        "pending": Identification.objects.create(
            customer=make_customer(), iron_id=uuid.uuid4(), status=S.PENDING
        ),
        "review": Identification.objects.create(
            customer=make_customer(), iron_id=uuid.uuid4(), status=S.PENDING_REVIEW
        ),
        "approved": Identification.objects.create(
            customer=make_customer(), iron_id=uuid.uuid4(), status=S.APPROVED
        ),
        "expired": Identification.objects.create(
            customer=make_customer(), iron_id=uuid.uuid4(), status=S.EXPIRED
        ),
        "superseded": Identification.objects.create(
            customer=make_customer(), iron_id=uuid.uuid4(), status=S.PENDING, superseded_at=now
        ),
        "failed": Identification.objects.create(customer=make_customer(), failed_at=now),
    }
    by_pk = {row.pk: name for name, row in rows.items()}

    def names(qs):
        return {by_pk[pk] for pk in qs.values_list("pk", flat=True)}

    assert names(Identification.objects.in_flight()) == {"intent", "pending", "review"}
    assert names(Identification.objects.pending()) == {"pending", "review"}
    assert names(Identification.objects.terminal()) == {"approved", "expired"}
    assert rows["review"].is_sandbox_decidable
    assert not rows["superseded"].is_in_flight
    assert rows["superseded"].is_superseded
    assert rows["approved"].is_terminal
    assert not rows["approved"].is_sandbox_decidable


def test_current_identification_skips_superseded_and_failed():
    customer = make_customer()
    assert customer.current_identification is None
    done = Identification.objects.create(customer=customer, status=S.DECLINED)
    assert customer.current_identification == done
    Identification.objects.create(customer=customer, failed_at=timezone.now())
    assert customer.current_identification == done
    newest = Identification.objects.create(customer=customer, status=S.PENDING)
    assert customer.current_identification == newest


# --- webhook deliveries -------------------------------------------------------------------


def test_webhook_id_is_unique_but_may_be_missing():
    WebhookDelivery.objects.create(webhook_id="w-1", body="{}")
    WebhookDelivery.objects.create(webhook_id=None, body="{}")
    WebhookDelivery.objects.create(webhook_id=None, body="{}")
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.create(webhook_id="w-1", body="{}")


def test_webhook_delivery_decodes_its_body():
    delivery = WebhookDelivery.objects.create(body=json.dumps({"type": "ping"}))
    assert delivery.get_payload() == {"type": "ping"}
    assert delivery.outcome == WebhookDelivery.Outcome.RECEIVED
    assert "delivery" in str(delivery)


# --- app, permissions, migrations ---------------------------------------------------------


def test_app_label_and_tables_are_pinned():
    config = apps.get_app_config("iron_kyc")
    assert config.name == "django_iron_kyc"
    assert Customer._meta.db_table == "iron_kyc_customer"
    assert Identification._meta.db_table == "iron_kyc_identification"
    assert Identification._meta.get_field("customer").remote_field.related_name == (
        "identifications"
    )


def test_sandbox_decide_permission_exists():
    permission = Permission.objects.get(
        codename="sandbox_decide", content_type__app_label="iron_kyc"
    )
    assert permission.name == "Can approve or decline identifications in sandbox"
    assert permission.content_type.model == "identification"


def test_forget_customer_permission_exists():
    permission = Permission.objects.get(
        codename="forget_customer", content_type__app_label="iron_kyc"
    )
    assert permission.name == "Can forget a customer (delete what is stored about them)"
    assert permission.content_type.model == "customer"


def test_no_migration_is_missing():
    out = StringIO()
    call_command("makemigrations", "iron_kyc", "--check", "--dry-run", stdout=out, stderr=out)
    assert "No changes detected" in out.getvalue()


def test_missing_migration_check_fails_when_a_model_changes(monkeypatch):
    """The guard above can fail: a model change without its migration is caught."""
    field = Customer._meta.get_field("name")
    monkeypatch.setattr(field, "max_length", field.max_length + 1)
    with pytest.raises(SystemExit) as info:
        call_command("makemigrations", "iron_kyc", "--check", "--dry-run", stdout=StringIO())
    assert info.value.code == 1


def test_migrations_are_named_for_what_they_do():
    folder = Path(apps.get_app_config("iron_kyc").path) / "migrations"
    names = sorted(p.stem for p in folder.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert names[0] == "0001_initial"
    assert not [name for name in names if "_auto_" in name]
    numbers = [int(name[:4]) for name in names]
    assert numbers == sorted(set(numbers)), "one migration per number"
    # Linear: each depends on the one before it (a number may be left free for a migration
    # another branch adds; merging both makes this fail until one is renumbered).
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    for before, after in itertools.pairwise(names):
        node = graph.node_map[("iron_kyc", after)]
        parents = {parent[1] for parent in node.parents if parent[0] == "iron_kyc"}
        assert parents == {before}, f"migrations must stay linear: {after} after {before}"
