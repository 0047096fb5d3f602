"""Celery tasks (eager here; tests/test_celery_worker.py runs a real worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from celery.exceptions import Retry

from django_iron_kyc import enqueue, services, tasks
from django_iron_kyc.exceptions import IronAPIError, IronTransientError
from django_iron_kyc.models import Identification
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.factories import CustomerFactory
from django_iron_kyc.testing.mirror import mirror_customer
from tests.celery import app
from tests.support import CREATE_PATH

pytestmark = pytest.mark.django_db

ALL_TASKS = (
    tasks.create_identification,
    tasks.refresh_customer,
    tasks.poll_pending_identifications,
    tasks.process_received_webhooks,
    tasks.retry_webhook_deliveries,
    tasks.apply_retention,
)


@pytest.fixture
def recorded_retries(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], list[dict[str, Any]]]:
    """``recorded_retries(task)``: from now on ``task.retry(...)`` raises ``Retry`` at once
    instead of enqueueing the retry; the list it returns fills with each call's kwargs."""

    def record(task: Any) -> list[dict[str, Any]]:
        retries: list[dict[str, Any]] = []

        def record_retry(self: Any, **kwargs: Any) -> Retry:
            retries.append(kwargs)
            return Retry("recorded", when=kwargs["countdown"])

        monkeypatch.setattr(type(task._get_current_object()), "retry", record_retry)
        return retries

    return record


def intent(iron: FakeIron) -> Identification:
    return Identification.objects.create(customer=mirror_customer(iron))


@pytest.mark.parametrize("task", ALL_TASKS, ids=lambda t: t.name)
def test_tasks_are_late_acked_and_registered_under_stable_names(task: Any) -> None:
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.name.startswith("django_iron_kyc.tasks.")
    assert task.name in app.tasks


def test_services_and_webhooks_enqueue_each_task_by_its_registered_name() -> None:
    names = {
        enqueue.CREATE_IDENTIFICATION,
        enqueue.REFRESH_CUSTOMER,
        enqueue.POLL_PENDING_IDENTIFICATIONS,
        enqueue.PROCESS_RECEIVED_WEBHOOKS,
        enqueue.RETRY_WEBHOOK_DELIVERIES,
        enqueue.APPLY_RETENTION,
    }
    assert names == {task.name for task in ALL_TASKS}


def test_enqueue_runs_the_registered_task_eagerly(iron: FakeIron) -> None:
    result = enqueue.enqueue(enqueue.CREATE_IDENTIFICATION, 987654)
    assert result.get() == "missing"


def test_beat_schedule_runs_both_sweeps_every_minute_and_retention_every_hour() -> None:
    entries = {entry["task"]: entry for entry in tasks.BEAT_SCHEDULE.values()}
    sweeps = {tasks.poll_pending_identifications.name, tasks.retry_webhook_deliveries.name}
    assert set(entries) == {*sweeps, tasks.apply_retention.name}
    for name, entry in entries.items():
        assert entry["schedule"] <= (60 if name in sweeps else 3600)
        assert entry["options"]["expires"] < entry["schedule"]


def test_beat_schedule_can_be_imported_from_a_settings_module() -> None:
    # A settings module runs before Django's apps are loaded: importing the tasks module
    # must not import models.
    code = (
        "import sys; from django_iron_kyc.tasks import BEAT_SCHEDULE; "
        "assert 'django_iron_kyc.models' not in sys.modules; print(len(BEAT_SCHEDULE))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_eager_create_task_leaves_a_transient_error_to_the_sweep(
    iron: FakeIron, time_machine: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # Run eagerly, a retry would hammer Iron at once (ignoring Retry-After) or raise
    # Retry at the caller: the intent waits for the sweep instead, with the same key.
    row = intent(iron)
    iron.fail_next(method="POST", status=429, retry_after=120)
    assert tasks.create_identification.delay(row.pk).get() == "pending"
    row.refresh_from_db()
    assert row.is_in_flight
    assert row.iron_id is None
    assert "429" in row.last_error
    assert row.next_poll_at is not None

    time_machine.move_to(row.next_poll_at, tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.poll_due_identifications().recovered == 1
    row.refresh_from_db()
    assert row.status == "Pending"
    first, second = iron.requests_to("POST", CREATE_PATH)
    assert first.idempotency_key == second.idempotency_key == str(row.idempotency_key)


def test_start_identification_survives_an_eager_transient_failure(
    iron: FakeIron, django_capture_on_commit_callbacks: Any
) -> None:
    customer = mirror_customer(iron)
    iron.fail_next(method="POST", status=503)
    with django_capture_on_commit_callbacks(execute=True):
        row = services.start_identification(customer)
    row.refresh_from_db()
    assert row.is_in_flight
    assert "503" in row.last_error


def test_start_identification_commits_even_when_the_broker_is_down(
    iron: FakeIron,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(
        type(tasks.create_identification._get_current_object()), "apply_async", broker_down
    )
    customer = mirror_customer(iron)
    with django_capture_on_commit_callbacks(execute=True):
        row = services.start_identification(customer)
    # The enqueue failed after commit: logged, and the intent waits for the sweep.
    assert Identification.objects.get(pk=row.pk).next_poll_at is not None
    assert "broker down" in caplog.text


def test_create_task_does_not_retry_a_refusal(iron: FakeIron) -> None:
    row = intent(iron)
    iron.fail_next(method="POST", status=400)
    assert tasks.create_identification.delay(row.pk).get() == "failed"
    assert len(iron.requests_to("POST", CREATE_PATH)) == 1


def test_create_task_leaves_the_intent_to_the_sweep_when_retries_run_out(
    iron: FakeIron, settings: Any
) -> None:
    settings.IRON_KYC_TASK_MAX_RETRIES = 2
    row = intent(iron)
    iron.fail_next(method="POST", status=502)
    task = tasks.create_identification._get_current_object()
    task.push_request(retries=2)  # as in a worker, on the last allowed retry
    try:
        assert task(row.pk) == "pending"
    finally:
        task.pop_request()
    row.refresh_from_db()
    assert row.create_attempts == 1
    assert row.is_in_flight
    assert row.iron_id is None
    assert row.failed_at is None
    assert row.next_poll_at is not None  # when the sweep enqueues it again
    assert "502" in row.last_error


def test_redelivery_is_capped_by_create_attempts(iron: FakeIron, settings: Any) -> None:
    # A message redelivered again and again (a worker dying mid-request each time) ends.
    settings.IRON_KYC_TASK_MAX_RETRIES = 0
    settings.IRON_KYC_CREATE_MAX_ATTEMPTS = 3
    row = intent(iron)
    iron.fail_next(10, method="POST", drop="before")
    outcomes = [tasks.create_identification.delay(row.pk).get() for _ in range(5)]
    assert outcomes == ["pending", "pending", "pending", "failed", "failed"]
    assert len(iron.requests_to("POST", CREATE_PATH)) == 3
    row.refresh_from_db()
    assert "Gave up after 3 attempts" in row.last_error


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [({"superseded_at": "2026-01-01T00:00:00Z"}, "superseded"), ({}, "confirmed")],
)
def test_create_task_outcomes(iron: FakeIron, fields: dict[str, Any], outcome: str) -> None:
    row = Identification.objects.create(customer=mirror_customer(iron), **fields)
    assert tasks.create_identification.delay(row.pk).get() == outcome


def test_create_task_for_a_deleted_row_does_nothing(iron: FakeIron) -> None:
    assert tasks.create_identification.delay(987654).get() == "missing"
    assert iron.requests == []


def test_create_task_retry_countdown_honours_retry_after(
    iron: FakeIron, recorded_retries: Callable[[Any], list[dict[str, Any]]]
) -> None:
    retries = recorded_retries(tasks.create_identification)
    row = intent(iron)
    iron.fail_next(method="POST", status=429, retry_after=300)
    with pytest.raises(Retry):
        tasks.create_identification(row.pk)  # called directly: no eager re-run
    [retry] = retries
    assert retry["countdown"] >= 300
    assert retry["exc"].retry_after == 300
    row.refresh_from_db()
    assert row.next_poll_at is not None
    # The sweep will not enqueue a second copy while the retry waits.
    assert (row.next_poll_at - row.updated_at).total_seconds() >= 300


def test_retry_countdown_backs_off_with_jitter_and_a_cap(settings: Any) -> None:
    settings.IRON_KYC_TASK_RETRY_BACKOFF = 10
    settings.IRON_KYC_TASK_RETRY_BACKOFF_MAX = 600
    third = [tasks.retry_countdown(3) for _ in range(50)]
    assert all(40 <= c <= 80 for c in third)
    assert len(set(third)) > 1  # jittered
    assert all(300 <= tasks.retry_countdown(20) <= 600 for _ in range(20))
    assert tasks.retry_countdown(0, retry_after=900) >= 900


def test_refresh_task_retries_transient_errors(
    iron: FakeIron, recorded_retries: Callable[[Any], list[dict[str, Any]]]
) -> None:
    retries = recorded_retries(tasks.refresh_customer)
    customer = mirror_customer(iron)
    iron.fail_next(method="GET", status=503, retry_after=42)
    with pytest.raises(Retry):
        tasks.refresh_customer(customer.pk)
    [retry] = retries
    assert retry["countdown"] >= 42


def test_eager_refresh_task_raises_the_transient_error(iron: FakeIron) -> None:
    customer = mirror_customer(iron)
    iron.fail_next(method="GET", status=503)
    with pytest.raises(IronTransientError):
        tasks.refresh_customer.delay(customer.pk).get()


def test_refresh_task_raises_a_refusal_and_ignores_a_deleted_customer(iron: FakeIron) -> None:
    with pytest.raises(IronAPIError):
        tasks.refresh_customer.delay(CustomerFactory().pk).get()  # unknown at Iron: 404
    tasks.refresh_customer.delay(987654).get()
    assert len(iron.requests) == 1
