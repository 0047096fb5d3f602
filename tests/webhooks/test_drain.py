"""Deferred processing's drain and the webhook sweep (webhooks.drain): the DrainScheduler that
asks Celery for drains, the drain (``process_received_deliveries``) and its task, and the
sweep (``retry_deliveries``) that picks up what was lost or failed.

Unless a test says otherwise, no drain reaches Celery: ``sent_drains`` records what the
scheduler would send. Clocks are faked (``FakeClock``, ``time_machine``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from celery import Celery

from django_iron_kyc import signals, tasks
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.services import deliveries
from django_iron_kyc.testing import SignalRecorder, encode_event
from django_iron_kyc.testing.factories import IdentificationFactory
from django_iron_kyc.webhooks.drain import (
    DeliverySweepResult,
    DrainScheduler,
    deliveries_due_for_retry,
    drain_scheduler,
    process_received_deliveries,
    retry_deliveries,
)
from tests.celery import app as test_app
from tests.celery import broker_down as dead_broker
from tests.support import LONG_AGO, NEVER_LOGGED, NOW, Waiter, identification_event, run_together
from tests.webhooks.support import APPROVED, approved, countdowns, store

Outcome = WebhookDelivery.Outcome


# --- DrainScheduler ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def not_eager(settings: Any) -> None:
    """Tasks go to a broker (as in production), not run in the calling thread."""
    settings.CELERY_TASK_ALWAYS_EAGER = False


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def scheduler(clock: FakeClock, not_eager: None) -> DrainScheduler:
    return DrainScheduler(window=1.0, clock=clock)


def test_drain_scheduler_sends_at_once_then_once_at_the_window_end_then_nothing(
    scheduler: DrainScheduler, clock: FakeClock, sent_drains: list[dict[str, Any]]
) -> None:
    scheduler.request()
    assert countdowns(sent_drains) == [None]

    clock.now += 0.25
    scheduler.request()
    assert countdowns(sent_drains) == [None, 0.75]

    for step in (0.25, 0.25, 0.2499):
        clock.now += step
        scheduler.request()
    assert countdowns(sent_drains) == [None, 0.75]

    clock.now = 1001.0  # the window is over
    scheduler.request()
    assert countdowns(sent_drains) == [None, 0.75, None]

    clock.now += 0.5
    scheduler.request()
    scheduler.request()
    assert countdowns(sent_drains) == [None, 0.75, None, 0.5]


def test_drain_scheduler_lone_requests_each_send_at_once(
    scheduler: DrainScheduler, clock: FakeClock, sent_drains: list[dict[str, Any]]
) -> None:
    for _ in range(3):
        scheduler.request()
        clock.now += 5

    assert countdowns(sent_drains) == [None, None, None]


def test_drain_scheduler_reset_forgets_the_window(
    scheduler: DrainScheduler, clock: FakeClock, sent_drains: list[dict[str, Any]]
) -> None:
    scheduler.request()
    scheduler.request()
    scheduler.reset()
    scheduler.request()

    assert countdowns(sent_drains) == [None, 1.0, None]


@pytest.mark.parametrize("failing", [0, 1], ids=["immediate-send-fails", "trailing-send-fails"])
def test_drain_scheduler_failed_send_is_logged_and_the_next_request_sends_at_once(
    scheduler: DrainScheduler,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    failing: int,
) -> None:
    calls: list[dict[str, Any]] = []

    def apply_async(args: Any = (), kwargs: Any = None, **options: Any) -> None:
        calls.append(options)
        if len(calls) == failing + 1:
            raise ConnectionRefusedError("broker unreachable")

    with mock.patch.object(tasks.process_received_webhooks, "apply_async", apply_async):
        for _ in range(failing + 1):
            scheduler.request()
            clock.now += 0.1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        scheduler.request()

    assert countdowns(calls)[-1] is None  # within the old window, yet at once
    assert len(calls) == failing + 2
    [warning] = warnings
    assert warning.name == "django_iron_kyc.webhooks.drain"
    assert "retry_webhook_deliveries" in warning.getMessage()
    assert warning.exc_info is not None
    logged = logging.Formatter("%(message)s").format(warning)
    assert "broker unreachable" in logged  # the traceback is there
    for secret in NEVER_LOGGED:
        assert secret not in logged


def test_drain_scheduler_many_threads_at_once_send_two_drains(
    scheduler: DrainScheduler, sent_drains: list[dict[str, Any]]
) -> None:
    run_together(*[scheduler.request] * 8)

    assert sorted(countdowns(sent_drains), key=lambda c: c or 0) == [None, 1.0]


# --- Broker down, eager, real worker ----------------------------------------------------------


@pytest.fixture
def broker_down() -> Iterator[Celery]:
    """A non-eager app, current in this thread, whose broker nothing listens to.

    Celery's default connection settings, as a host project has them (unlike
    tests/reliability's broker_down, which shortens them).
    """
    with dead_broker() as app:
        yield app


@pytest.mark.django_db(transaction=True)
def test_deferred_delivery_with_the_broker_down_is_kept_for_the_sweep(
    deferred: None,
    broker_down: Celery,
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = encode_event(identification_event(identification))

    response = send(body)

    assert response.status_code == 200
    assert response.json() == {"outcome": "received"}
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.RECEIVED
    [warning] = [
        r for r in caplog.records if r.name.startswith("django_iron_kyc") and r.levelno >= 30
    ]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith("Could not enqueue")
    logged = logging.Formatter("%(message)s").format(warning)
    assert "Connection refused" in logged  # the traceback is there
    for secret in [*NEVER_LOGGED, body.decode()]:
        assert secret not in logged

    delay = timedelta(seconds=60)  # IRON_KYC_WEBHOOK_RETRY_DELAY's default
    with time_machine.travel(row.received_at + delay - timedelta(seconds=1), tick=False):
        assert tasks.retry_webhook_deliveries.apply().get() == {"outcomes": {}, "more": False}
    row.refresh_from_db()
    assert row.outcome == Outcome.RECEIVED
    assert iron_signals.names() == []

    with time_machine.travel(row.received_at + delay, tick=False):
        result = retry_deliveries()

    assert result.outcomes == Counter({"processed": 1})
    row.refresh_from_db()
    assert (row.outcome, row.attempts) == (Outcome.PROCESSED, 1)
    assert iron_signals.names() == APPROVED
    identification.refresh_from_db()
    assert identification.status == Identification.Status.APPROVED


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("deferred", "broker_down")
def test_deferred_deliveries_with_the_broker_down_are_answered_at_once(
    send: Callable[..., Any], identification: Identification
) -> None:
    """One connection attempt, not kombu's connection retries (about 6 s with Celery's
    defaults), for each delivery: every one tries again, since none got through."""
    elapsed = []
    for status in ("Processed", "Approved"):
        started = time.monotonic()
        response = send(identification_event(identification, status))
        elapsed.append(time.monotonic() - started)
        assert response.json() == {"outcome": "received"}

    assert max(elapsed) < 2.0, elapsed


def test_eager_celery_drains_the_delivery_after_commit(
    deferred: None,
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    """The suite's CELERY_TASK_ALWAYS_EAGER=True; ``send`` runs the on-commit callbacks."""
    assert test_app.conf.task_always_eager is True

    response = send(identification_event(identification))

    assert response.json() == {"outcome": "received"}
    assert WebhookDelivery.objects.get().outcome == Outcome.PROCESSED
    identification.refresh_from_db()
    assert identification.status == Identification.Status.APPROVED
    assert iron_signals.names() == APPROVED


@pytest.mark.usefixtures("deferred")
def test_eager_celery_drains_every_delivery_of_a_window(
    send: Callable[..., Any],
    db: None,
    iron_signals: SignalRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An eager drain runs when it is sent, whatever its countdown: none may be left for the
    end of the window (a host project's tests send several deliveries within a second)."""
    monkeypatch.setattr(drain_scheduler, "clock", FakeClock())  # all within one window
    identifications = [IdentificationFactory(iron_created_at=LONG_AGO) for _ in range(4)]

    responses = [send(identification_event(i)) for i in identifications]

    assert [r.json() for r in responses] == [{"outcome": "received"}] * 4
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {Outcome.PROCESSED}
    assert sorted(i.pk for i in approved(iron_signals)) == sorted(i.pk for i in identifications)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_worker_drains_a_deferred_delivery(
    deferred: None,
    worker_app: Celery,
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    waiter = Waiter(signals.identification_approved, identification=identification)

    response = send(identification_event(identification))

    assert response.json() == {"outcome": "received"}
    assert waiter.wait(), "the worker did not drain the delivery"
    assert WebhookDelivery.objects.get().outcome == Outcome.PROCESSED
    assert approved(iron_signals) == [identification]


# --- The drain task ---------------------------------------------------------------------------


@pytest.fixture
def drain_limit(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``drain_limit(n)``: the drain task handles at most ``n`` deliveries a run."""

    def set_limit(limit: int) -> None:
        real = process_received_deliveries
        monkeypatch.setattr(
            "django_iron_kyc.webhooks.process_received_deliveries",
            functools.partial(real, limit=limit),
        )

    return set_limit


def test_drain_task_enqueues_itself_again_while_deliveries_remain(
    db: None, drain_limit: Callable[[int], None], sent_drains: list[dict[str, Any]]
) -> None:
    drain_limit(2)
    for _ in range(3):
        store()

    first = tasks.process_received_webhooks()  # called directly: a worker's (not eager) request
    assert first == {"outcomes": {"ignored": 2}, "more": True}
    assert sent_drains == [{}]

    second = tasks.process_received_webhooks()
    assert second == {"outcomes": {"ignored": 1}, "more": False}
    assert sent_drains == [{}]


def test_drain_task_run_eagerly_does_not_enqueue_itself(
    db: None, drain_limit: Callable[[int], None], sent_drains: list[dict[str, Any]]
) -> None:
    drain_limit(2)
    for _ in range(3):
        store()

    result = tasks.process_received_webhooks.apply().get()

    assert result == {"outcomes": {"ignored": 2}, "more": True}
    assert sent_drains == []


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_worker_drains_everything_in_several_runs_through_the_broker(
    worker_app: Celery,
    drain_limit: Callable[[int], None],
    iron_signals: SignalRecorder,
) -> None:
    drain_limit(2)
    identifications = [IdentificationFactory(iron_created_at=LONG_AGO) for _ in range(5)]
    with mock.patch.object(drain_scheduler, "request"):
        for identification in identifications:
            store(identification)
    waiters = [Waiter(signals.identification_approved, identification=i) for i in identifications]

    tasks.process_received_webhooks.delay()

    assert all(waiter.wait() for waiter in waiters), "the drain did not reach every delivery"
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {Outcome.PROCESSED}
    assert sorted(i.pk for i in approved(iron_signals)) == sorted(i.pk for i in identifications)


# --- The drain and the webhook sweep ----------------------------------------------------------


def test_drain_works_in_batches_up_to_the_limit(db: None) -> None:
    for _ in range(130):
        store()

    first = process_received_deliveries(limit=120)
    second = process_received_deliveries(limit=120)

    assert (first.outcomes, first.more) == (Counter({"ignored": 120}), True)
    assert (second.outcomes, second.more) == (Counter({"ignored": 10}), False)
    waiting = WebhookDelivery.objects.filter(outcome=Outcome.RECEIVED)
    assert not waiting.exists()
    assert process_received_deliveries(limit=1).more is False


def test_drain_takes_the_oldest_first_and_leaves_the_newest_waiting(db: None) -> None:
    rows = [store() for _ in range(3)]

    result = process_received_deliveries(limit=2)

    assert result.more is True
    waiting = WebhookDelivery.objects.filter(outcome=Outcome.RECEIVED)
    assert list(waiting.values_list("pk", flat=True)) == [rows[-1].pk]


def test_drain_limit_exactly_reached_says_no_more(db: None) -> None:
    for _ in range(2):
        store()

    assert process_received_deliveries(limit=2).more is False


def test_sweep_processes_received_deliveries_once_the_delay_has_passed(
    identification: Identification, iron_signals: SignalRecorder
) -> None:
    row = store(identification, at=NOW)

    not_yet = retry_deliveries(now=NOW + timedelta(seconds=59.999))
    assert not_yet.outcomes == Counter()
    assert WebhookDelivery.objects.get().outcome == Outcome.RECEIVED

    due = retry_deliveries(now=NOW + timedelta(seconds=60))

    assert due.outcomes == Counter({"processed": 1})
    row.refresh_from_db()
    assert row.outcome == Outcome.PROCESSED


def test_sweep_leaves_deliveries_younger_than_the_delay(db: None, settings: Any) -> None:
    settings.IRON_KYC_WEBHOOK_RETRY_DELAY = 10
    old = store(at=NOW)
    young = store(at=NOW + timedelta(seconds=5))

    result = retry_deliveries(now=NOW + timedelta(seconds=12))

    assert result.outcomes == Counter({"ignored": 1})
    old.refresh_from_db()
    young.refresh_from_db()
    assert (old.outcome, young.outcome) == (Outcome.IGNORED, Outcome.RECEIVED)


@pytest.mark.parametrize(
    ("attempts", "due_after"),
    [(1, 60), (2, 120), (3, 240), (4, 480), (5, None), (6, None)],
)
def test_sweep_retries_failed_deliveries_with_doubling_delays_by_default(
    db: None, attempts: int, due_after: int | None
) -> None:
    row = WebhookDelivery.objects.create(
        body="{}", outcome=Outcome.FAILED, attempts=attempts, received_at=NOW
    )

    def due(seconds: float) -> bool:
        return row in deliveries_due_for_retry(NOW + timedelta(seconds=seconds))

    if due_after is None:
        assert not due(10**8)
    else:
        assert not due(due_after - 0.001)
        assert due(due_after)


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("processing on fire")


def test_sweep_retries_a_failing_delivery_at_delay_2x_4x_then_gives_up(
    identification: Identification, iron_signals: SignalRecorder, settings: Any
) -> None:
    settings.IRON_KYC_WEBHOOK_RETRY_DELAY = 10
    settings.IRON_KYC_WEBHOOK_MAX_ATTEMPTS = 4
    row = store(identification, at=NOW)
    second = timedelta(seconds=1)
    delay = timedelta(seconds=10)

    with mock.patch.object(deliveries, "act_on_event", _boom):
        assert process_received_deliveries().outcomes == Counter({"failed": 1})
        history = []
        for now in [
            NOW + delay - second,
            NOW + delay,
            NOW + delay,
            NOW + 2 * delay - second,
            NOW + 2 * delay,
            NOW + 4 * delay - second,
            NOW + 4 * delay,
            NOW + 1000 * delay,
        ]:
            result = retry_deliveries(now=now)
            row.refresh_from_db()
            history.append((dict(result.outcomes), row.attempts))

    assert history == [
        ({}, 1),
        ({"failed": 1}, 2),
        ({}, 2),
        ({}, 2),
        ({"failed": 1}, 3),
        ({}, 3),
        ({"failed": 1}, 4),
        ({}, 4),
    ]
    assert row.outcome == Outcome.FAILED
    assert row.error == "RuntimeError: processing on fire"
    assert iron_signals.names() == []


def test_sweep_retry_of_a_failed_delivery_applies_it_once(
    identification: Identification,
    iron_signals: SignalRecorder,
    django_capture_on_commit_callbacks: Any,
) -> None:
    row = store(identification, at=NOW)
    with mock.patch.object(deliveries, "act_on_event", _boom):
        process_received_deliveries()

    with django_capture_on_commit_callbacks(execute=True):
        first = retry_deliveries(now=NOW + timedelta(seconds=60))
        again = retry_deliveries(now=NOW + timedelta(days=1))

    assert first.outcomes == Counter({"processed": 1})
    assert again.outcomes == Counter()
    row.refresh_from_db()
    assert (row.outcome, row.attempts, row.error, row.traceback) == (
        Outcome.PROCESSED,
        2,
        "",
        "",
    )
    assert iron_signals.names() == APPROVED


@pytest.mark.usefixtures("deferred")
def test_irons_resend_of_a_failed_delivery_is_drained_again_at_once(
    send: Callable[..., Any],
    drain: Callable[[], DeliverySweepResult],
    identification: Identification,
    iron_signals: SignalRecorder,
    sent_drains: list[dict[str, Any]],
) -> None:
    event = identification_event(identification)
    assert send(event, webhook_id="msg_failed").status_code == 200
    with mock.patch.object(deliveries, "act_on_event", _boom):
        assert drain().outcomes == Counter({"failed": 1})
    drain_scheduler.reset()

    answer = send(event, webhook_id="msg_failed")

    assert (answer.status_code, answer.json()) == (200, {"outcome": "received"})
    assert WebhookDelivery.objects.get().outcome == Outcome.RECEIVED
    assert countdowns(sent_drains) == [None, None]
    assert drain().outcomes == Counter({"processed": 1})
    row = WebhookDelivery.objects.get()
    assert (row.outcome, row.attempts) == (Outcome.PROCESSED, 2)
    assert iron_signals.names() == APPROVED


def test_sweep_limit_says_more(db: None) -> None:
    for _ in range(3):
        store(at=NOW)
    later = NOW + timedelta(minutes=5)

    first = retry_deliveries(now=later, limit=2)
    second = retry_deliveries(now=later, limit=2)

    assert (first.outcomes, first.more) == (Counter({"ignored": 2}), True)
    assert (second.outcomes, second.more) == (Counter({"ignored": 1}), False)
    assert first.as_dict() == {"outcomes": {"ignored": 2}, "more": True}
