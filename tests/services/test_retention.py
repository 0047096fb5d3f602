"""Retention: deliveries acted on are deleted after IRON_KYC_DELIVERY_RETENTION, outdated review
comments cleared; in batches, and safe to run twice at once (PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_iron_kyc import services, tasks
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import build_event, encode_event
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory
from tests.support import run_together

Outcome = WebhookDelivery.Outcome
ACTED_ON = sorted(set(Outcome.values) - {Outcome.RECEIVED, Outcome.FAILED})
DAY = timedelta(days=1)


def delivery(outcome: str = Outcome.PROCESSED, *, age: timedelta = 31 * DAY) -> WebhookDelivery:
    event = build_event("identification_status", uuid.uuid4(), uuid.uuid4(), "Pending")
    return WebhookDelivery.objects.create(
        webhook_id=str(uuid.uuid4()),
        body=encode_event(event).decode(),
        outcome=outcome,
        received_at=timezone.now() - age,
    )


def left() -> set[int]:
    return set(WebhookDelivery.objects.values_list("pk", flat=True))


# --- deliveries -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_retention_deletes_exactly_the_deliveries_acted_on_before_it() -> None:
    old_acted_on = {delivery(outcome).pk for outcome in ACTED_ON}
    old_unfinished = {delivery(Outcome.RECEIVED).pk, delivery(Outcome.FAILED).pk}
    recent = {delivery(outcome, age=29 * DAY).pk for outcome in Outcome.values}

    result = services.apply_retention()

    assert left() == old_unfinished | recent
    assert result.deliveries_deleted == len(old_acted_on)


@pytest.mark.django_db
def test_retention_follows_the_setting(settings: Any) -> None:
    settings.IRON_KYC_DELIVERY_RETENTION = timedelta(days=7)
    week_old, day_old = delivery(age=8 * DAY), delivery(age=6 * DAY)

    services.apply_retention()

    assert left() == {day_old.pk}
    assert week_old.pk not in left()


@pytest.mark.django_db
def test_retention_none_keeps_every_delivery(settings: Any) -> None:
    settings.IRON_KYC_DELIVERY_RETENTION = None
    kept = {delivery(age=3650 * DAY).pk, delivery(Outcome.IGNORED, age=400 * DAY).pk}

    result = services.apply_retention()

    assert left() == kept
    assert result.as_dict() == {"deliveries_deleted": 0, "free_text_cleared": {}}


@pytest.mark.django_db
def test_retention_deletes_in_batches_of_short_transactions() -> None:
    for _ in range(5):
        delivery()

    with CaptureQueriesContext(connection) as queries:
        result = services.prune_deliveries(batch_size=2)

    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 2 + 2 + 1
    assert result.deleted == 5
    assert left() == set()


@pytest.mark.django_db
def test_prune_counts_without_deleting_in_a_dry_run() -> None:
    old, unfinished = delivery(), delivery(Outcome.FAILED)

    result = services.prune_deliveries(dry_run=True)

    assert (result.deleted, result.kept_unfinished, result.dry_run) == (1, 1, True)
    assert left() == {old.pk, unfinished.pk}


@pytest.mark.django_db
def test_prune_deletes_unfinished_deliveries_only_when_asked() -> None:
    delivery(Outcome.RECEIVED), delivery(Outcome.FAILED)

    result = services.prune_deliveries(older_than=DAY, include_unfinished=True)

    assert result.deleted == 2
    assert left() == set()


@pytest.mark.django_db
def test_the_retention_task_is_in_the_beat_schedule_and_runs_the_service() -> None:
    old = delivery()
    entry = next(e for e in tasks.BEAT_SCHEDULE.values() if e["task"] == tasks.apply_retention.name)

    result = tasks.apply_retention.delay().get()

    assert entry["schedule"] == 3600
    assert result == {"deliveries_deleted": 1, "free_text_cleared": {"review_comments": 0}}
    assert old.pk not in left()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_retention_runs_at_once_delete_each_delivery_once_without_deadlock() -> None:
    doomed = {delivery(outcome).pk for outcome in ACTED_ON for _ in range(40)}
    kept = {delivery(Outcome.FAILED).pk, delivery(age=DAY).pk}

    results = run_together(
        lambda: services.prune_deliveries(batch_size=7),
        lambda: services.prune_deliveries(batch_size=7),
    )

    assert sum(result.deleted for result in results) == len(doomed)
    assert left() == kept


# --- free text ------------------------------------------------------------------------------


def aged(identification: Identification, age: timedelta = 31 * DAY) -> Identification:
    """``identification`` as if it last changed ``age`` ago."""
    Identification.objects.filter(pk=identification.pk).update(updated_at=timezone.now() - age)
    identification.refresh_from_db()
    return identification


def comment(identification: Identification) -> str:
    identification.refresh_from_db()
    return identification.review_comment


@pytest.mark.django_db
def test_retention_clears_review_comments_of_identifications_that_no_longer_count() -> None:
    customer = CustomerFactory()
    now = timezone.now()
    older = aged(IdentificationFactory(customer=customer, declined=True, created_at=now - 90 * DAY))
    superseded = aged(
        IdentificationFactory(
            customer=customer, declined=True, superseded_at=now, created_at=now - 60 * DAY
        )
    )
    failed = aged(
        IdentificationFactory(
            customer=customer, review_comment="x", failed_at=now, created_at=now - 50 * DAY
        )
    )
    current = aged(IdentificationFactory(customer=customer, declined=True, created_at=now))
    other_customer = aged(IdentificationFactory(declined=True))
    updated_at = {i.pk: i.updated_at for i in (older, superseded, failed)}

    result = services.apply_retention()

    assert result.free_text_cleared == {"review_comments": 3}
    assert [comment(i) for i in (older, superseded, failed)] == ["", "", ""]
    assert comment(current)  # each customer's current one is kept
    assert comment(other_customer)
    for identification in (older, superseded, failed):
        assert identification.updated_at == updated_at[identification.pk]


@pytest.mark.django_db
def test_retention_keeps_recent_review_comments_of_older_identifications() -> None:
    customer = CustomerFactory()
    older = aged(
        IdentificationFactory(
            customer=customer, declined=True, created_at=timezone.now() - 90 * DAY
        ),
        age=29 * DAY,
    )
    IdentificationFactory(customer=customer)

    services.apply_retention()

    assert comment(older)


@pytest.mark.django_db
def test_retention_none_keeps_every_review_comment(settings: Any) -> None:
    settings.IRON_KYC_DELIVERY_RETENTION = None
    superseded = aged(IdentificationFactory(declined=True, superseded_at=timezone.now()), 999 * DAY)

    assert services.clear_outdated_free_text() == {}
    assert comment(superseded)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_retention_runs_at_once_clear_each_comment_without_deadlock() -> None:
    superseded = [
        aged(IdentificationFactory(declined=True, superseded_at=timezone.now())) for _ in range(30)
    ]

    results = run_together(
        lambda: services.clear_outdated_free_text(batch_size=4),
        lambda: services.clear_outdated_free_text(batch_size=4),
    )

    assert sum(result["review_comments"] for result in results) == len(superseded)
    assert not Identification.objects.exclude(review_comment="").exists()
