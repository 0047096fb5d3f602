"""Storing a delivery (webhooks.storage.store_delivery): one INSERT that sends only what the
delivery brings (the deferred view stores with that statement alone, building no model
instance), builds its row without reading it back, and leaves the caller's transaction
usable; the ORM on a database vendor it does not know."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext

from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import encode_event
from django_iron_kyc.webhooks.receive import receive_delivery
from django_iron_kyc.webhooks.storage import store_delivery
from tests.support import LONG_AGO, identification_event

Outcome = WebhookDelivery.Outcome


@pytest.mark.usefixtures("deferred", "sent_drains")
def test_deferred_delivery_is_stored_with_one_sql_statement(
    send: Callable[..., Any], identification: Identification
) -> None:
    for status in ("Processed", "PendingReview", "Approved"):
        with CaptureQueriesContext(connection) as queries:
            response = send(identification_event(identification, status))

        assert response.json() == {"outcome": "received"}
        assert len(queries) == 1, [q["sql"] for q in queries]
        sql = queries[0]["sql"]
        assert sql.startswith("INSERT INTO")
        assert "ON CONFLICT" in sql
        # Only what the delivery brings: the database fills in the rest (db_default, NULL).
        columns = sql[sql.index("(") + 1 : sql.index(")")].replace('"', "").split(", ")
        assert columns == ["webhook_id", "signed_at", "body", "received_at"]
    assert WebhookDelivery.objects.filter(outcome=Outcome.RECEIVED).count() == 3


@pytest.mark.usefixtures("deferred", "sent_drains")
def test_the_view_stores_a_deferred_delivery_without_building_a_model_instance(
    send: Callable[..., Any], identification: Identification
) -> None:
    built: list[WebhookDelivery] = []

    def record(sender: type[WebhookDelivery], instance: WebhookDelivery, **kwargs: Any) -> None:
        built.append(instance)

    post_init.connect(record, sender=WebhookDelivery)
    try:
        response = send(identification_event(identification))
        assert response.json() == {"outcome": "received"}
        assert built == []  # its answer needs the outcome alone
        # receive_delivery() still gives the row, as stored, when asked for it.
        body = encode_event(identification_event(identification, "Approved"))
        receipt = receive_delivery(body=body, webhook_id="wh-row", signed_at=None, deferred=True)
        assert built == []
        row = receipt.row
        assert [b.pk for b in built] == [row.pk]
    finally:
        post_init.disconnect(record, sender=WebhookDelivery)
    assert receipt.outcome == Outcome.RECEIVED
    assert WebhookDelivery.objects.get(webhook_id="wh-row").body == row.body


def test_what_the_insert_leaves_to_the_database_is_what_python_would_have_set(
    db: None,
) -> None:
    """A field left out of the INSERT must get there what ``Model()`` gives it in Python."""
    received_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with CaptureQueriesContext(connection) as queries:
        store_delivery({"body": "{}", "received_at": received_at})

    (insert,) = [q["sql"] for q in queries]
    columns = insert.split("(", 1)[1].split(")", 1)[0]
    assert sorted(c.strip(' "') for c in columns.split(",")) == ["body", "received_at"]
    in_python = WebhookDelivery(body="{}", received_at=received_at)
    stored = WebhookDelivery.objects.get()
    for f in WebhookDelivery._meta.concrete_fields:
        if not f.primary_key:
            assert getattr(stored, f.attname) == getattr(in_python, f.attname), f.name


def _new(webhook_id: str | None, body: str | None = "{}") -> dict[str, Any]:
    return {"webhook_id": webhook_id, "body": body}


KOLKATA = timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    "values",
    [
        {"webhook_id": "wh-as-arrived", "signed_at": LONG_AGO, "body": "{}"},
        {
            "webhook_id": "wh-offset",
            # Microseconds and an offset other than UTC: the same instant once stored.
            "signed_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=KOLKATA),
            "body": "{}",
            "received_at": datetime(2026, 1, 2, 3, 4, 6, 1, tzinfo=KOLKATA),
        },
        {
            "webhook_id": "wh-invalid",
            "body": "[]",
            "outcome": Outcome.INVALID,
            "error": "body must be a JSON object",
            "attempts": 1,
            "processed_at": LONG_AGO,
        },
    ],
    ids=["as-arrived", "offset", "invalid"],
)
def test_the_row_insert_returns_is_the_row_stored(db: None, values: dict[str, Any]) -> None:
    """store_delivery builds its row without reading it back: every field as stored."""
    stored_delivery = store_delivery(dict(values))
    row = stored_delivery.row

    stored = WebhookDelivery.objects.get()
    assert stored_delivery.created is True
    assert (stored_delivery.alias, stored_delivery.pk) == ("default", stored.pk)
    assert not row._state.adding
    assert row._state.db == "default"
    for f in WebhookDelivery._meta.concrete_fields:
        assert getattr(row, f.attname) == getattr(stored, f.attname), f.name
    assert stored.received_at is not None
    for name in ("signed_at", "received_at"):
        if name in values:
            assert getattr(stored, name) == values[name]


def another_vendor() -> contextlib.AbstractContextManager[Any]:
    """The default database as a vendor the hand-written INSERT does not know: the ORM."""
    return mock.patch.object(connections["default"], "vendor", "unknown")


def test_orm_repeat_finds_the_stored_row_and_leaves_the_transaction_usable(
    db: None,
) -> None:
    with another_vendor(), transaction.atomic():
        first = store_delivery(_new("wh-orm"))
        repeat = store_delivery(_new("wh-orm"))
        after = store_delivery(_new("wh-orm-2"))

    assert first.pk is not None
    assert (first.created, repeat.created, after.created) == (True, False, True)
    assert repeat.pk == first.pk
    assert sorted(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == [
        "wh-orm",
        "wh-orm-2",
    ]


def test_orm_stores_deliveries_without_a_webhook_id(db: None) -> None:
    with another_vendor():
        rows = [store_delivery(_new(None)) for _ in range(2)]

    assert [row.created for row in rows] == [True, True]
    assert all(row.pk is not None for row in rows)
    assert list(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == [None, None]


def test_insert_on_another_database_vendor_goes_through_the_orm(db: None) -> None:
    with another_vendor(), CaptureQueriesContext(connection) as queries:
        stored = store_delivery(_new("wh-vendor"))
        repeat = store_delivery(_new("wh-vendor"))

    assert (stored.created, repeat.created) == (True, False)
    assert repeat.pk == stored.pk
    assert repeat.row.pk == stored.row.pk
    assert not any("ON CONFLICT" in q["sql"] for q in queries)
    assert WebhookDelivery.objects.get().pk == stored.pk


def test_insert_in_a_transaction_uses_on_conflict_and_keeps_the_transaction(db: None) -> None:
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        stored = store_delivery(_new("wh-in-transaction"))
        repeat = store_delivery(_new("wh-in-transaction"))
        store_delivery(_new("wh-in-transaction-2"))

    inserts = [q["sql"] for q in queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 3
    assert all("ON CONFLICT" in sql for sql in inserts)
    assert (stored.created, repeat.created, repeat.pk) == (True, False, stored.pk)
    assert WebhookDelivery.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_insert_outside_a_transaction_is_a_plain_insert_and_a_repeat_reads_the_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with CaptureQueriesContext(connection) as queries:
        stored = store_delivery(_new("wh-autocommit"))
    (insert,) = [q["sql"] for q in queries]
    assert insert.startswith("INSERT")
    assert "ON CONFLICT" not in insert

    other = _new("wh-autocommit", '{"another": "body"}')
    with CaptureQueriesContext(connection) as queries:
        repeat = store_delivery(other)

    assert (stored.created, repeat.created, repeat.pk) == (True, False, stored.pk)
    assert repeat.row.body == "{}"  # the first one stands
    assert [q["sql"].split()[0] for q in queries] == ["INSERT", "SELECT"]
    assert "arrived again with a different body" in caplog.text
    # Still in autocommit, nothing left open: the next one is stored and committed.
    assert store_delivery(_new("wh-autocommit-2")).created is True
    assert not connection.in_atomic_block
    assert WebhookDelivery.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("webhook_id", [None, "wh-not-stored"])
def test_insert_raises_an_integrity_error_that_is_not_a_repeat(webhook_id: str | None) -> None:
    broken = _new(webhook_id, None)  # body is NOT NULL

    with pytest.raises(IntegrityError) as raised:
        store_delivery(broken)

    assert "vanished" not in str(raised.value)
    assert WebhookDelivery.objects.count() == 0
