"""Deferred webhook processing (``IRON_KYC_WEBHOOK_PROCESSING = "deferred"``): the view only
stores, the drain (``process_received_deliveries``) acts, the ``DrainScheduler`` asks Celery for
drains, and the webhook sweep (``retry_deliveries``) picks up what was lost or failed.

Unless a test says otherwise, no drain reaches Celery: ``sent_drains`` records what the scheduler
would send. Clocks are faked (``FakeClock``, ``time_machine``); races use a ``Barrier``. The
autouse ``no_secrets_in_logs`` (from tests/test_webhooks.py) scans every test's log records.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
import time_machine
from celery import Celery
from django.db import IntegrityError, connection, connections, transaction
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext
from django.urls import include, path

from django_iron_kyc import signals, tasks
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.services import deliveries
from django_iron_kyc.testing import build_event, encode_event
from django_iron_kyc.testing.factories import IdentificationFactory
from django_iron_kyc.testing.pytest_plugin import SignalRecorder, WebhookSender
from django_iron_kyc.webhooks import IronWebhookView
from django_iron_kyc.webhooks.drain import (
    DeliverySweepResult,
    DrainScheduler,
    deliveries_due_for_retry,
    drain_scheduler,
    process_received_deliveries,
    retry_deliveries,
)
from django_iron_kyc.webhooks.receive import receive_delivery
from django_iron_kyc.webhooks.storage import store_delivery
from tests.celery import app as test_app
from tests.celery import broker_down as dead_broker
from tests.test_celery_worker import Waiter, worker_app  # noqa: F401 (worker_app is a fixture)
from tests.test_webhooks import (  # noqa: F401 (no_secrets_in_logs is an autouse fixture)
    INVALID_BODIES,
    LONG_AGO,
    NEVER_LOGGED,
    NOW,
    as_body,
    identification_event,
    no_secrets_in_logs,
    signed_headers,
)
from tests.test_webhooks_concurrency import post_together, run_together

Outcome = WebhookDelivery.Outcome
APPROVED = ["identification_status_changed", "identification_approved"]

# For the tests marked @pytest.mark.urls(__name__): one URL per processing mode.
urlpatterns = [
    path("deferred/", IronWebhookView.as_view(processing="deferred")),
    path("inline/", IronWebhookView.as_view(processing="inline")),
    path("setting/", IronWebhookView.as_view()),
    path("iron/", include("django_iron_kyc.urls")),
]


@pytest.fixture(autouse=True)
def fresh_drain_scheduler() -> Iterator[None]:
    """The process-wide scheduler starts and ends each test with no window open."""
    drain_scheduler.reset()
    yield
    drain_scheduler.reset()


@pytest.fixture
def identification(db: None) -> Identification:
    return IdentificationFactory(iron_created_at=LONG_AGO)


@pytest.fixture
def deliver(
    send_iron_webhook: WebhookSender, django_capture_on_commit_callbacks: Any
) -> Callable[..., Any]:
    """Sign and POST a delivery (to ``url``, default the app's); run the on-commit callbacks
    as a real commit would. The signature and body join the log scan's list."""

    def deliver(
        event: dict[str, Any] | bytes, *, webhook_id: str | None = None, url: str | None = None
    ) -> Any:
        body = as_body(event)
        headers = signed_headers(body, webhook_id=webhook_id)
        with django_capture_on_commit_callbacks(execute=True):
            return send_iron_webhook.send(headers, body, url=url)

    return deliver


@pytest.fixture
def drain(django_capture_on_commit_callbacks: Any) -> Callable[[], DeliverySweepResult]:
    """``drain()``: run the drain; its on-commit callbacks (signals) run as a commit would."""

    def drain() -> DeliverySweepResult:
        with django_capture_on_commit_callbacks(execute=True):
            return process_received_deliveries()

    return drain


@pytest.fixture
def deferred(settings: Any) -> None:
    settings.IRON_KYC_WEBHOOK_PROCESSING = "deferred"


@pytest.fixture
def sent_drains() -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every drain the scheduler sends; none reaches Celery."""
    sent: list[dict[str, Any]] = []

    def record(args: Any = (), kwargs: Any = None, **options: Any) -> None:
        assert not args
        assert not kwargs
        sent.append(options)

    with mock.patch.object(tasks.process_received_webhooks, "apply_async", record):
        yield sent


def countdowns(sent: list[dict[str, Any]]) -> list[float | None]:
    """What each recorded drain waits before running (None: at once), each sent without
    kombu's publish retries."""
    assert all(kwargs["retry"] is False for kwargs in sent)
    return [kwargs.get("countdown") for kwargs in sent]


def store(
    identification: Identification | None = None,
    *,
    at: datetime | None = None,
    webhook_id: str | None = None,
) -> WebhookDelivery:
    """Store an event as the deferred view does (a ``ping`` without an identification),
    ``received`` at ``at``; the drain it asks for on commit is not run."""
    if identification is None:
        body = encode_event(build_event("ping", uuid.uuid4(), uuid.uuid4(), None))
    else:
        body = encode_event(identification_event(identification, timestamp=at or NOW))
    with time_machine.travel(at or NOW, tick=False):
        receipt = receive_delivery(body=body, webhook_id=webhook_id, signed_at=None, deferred=True)
    assert receipt.outcome == Outcome.RECEIVED
    return receipt.row


def approved(iron_signals: SignalRecorder) -> list[Identification]:
    return [
        kwargs["identification"] for kwargs in iron_signals.kwargs_of("identification_approved")
    ]


# --- The deferred view --------------------------------------------------------------------


@pytest.mark.usefixtures("deferred")
def test_deferred_delivery_is_stored_received_then_the_drain_acts_on_it_once(
    deliver: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
    sent_drains: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    timestamp = "2026-03-01T12:00:00.123456+00:00"
    event = identification_event(identification, timestamp=timestamp)

    response = deliver(event, webhook_id="wh-deferred")

    assert response.status_code == 200
    assert response.json() == {"outcome": "received"}
    row = WebhookDelivery.objects.get()
    assert row.webhook_id == "wh-deferred"
    assert row.body == encode_event(event).decode()
    assert row.outcome == Outcome.RECEIVED
    # Stored as it arrived: what the body says is filled in when the drain acts on it.
    described = ("event_type", "event_timestamp", "customer_iron_id", "object_iron_id")
    described += ("object_status", "event_key")
    assert [getattr(row, name) for name in described] == ["", None, None, None, "", ""]
    assert (row.attempts, row.processed_at, row.error, row.traceback) == (0, None, "", "")
    assert countdowns(sent_drains) == [None]  # on commit, at once
    assert iron_signals.names() == []
    identification.refresh_from_db()
    assert identification.status == Identification.Status.PENDING

    with django_capture_on_commit_callbacks(execute=True):
        result = process_received_deliveries()
        assert iron_signals.names() == []  # not before the commit

    assert result.outcomes == Counter({"processed": 1})
    assert result.more is False
    assert iron_signals.names() == APPROVED
    assert {kwargs["source"] for _, kwargs in iron_signals} == {"webhook"}
    identification.refresh_from_db()
    assert identification.status == Identification.Status.APPROVED
    row.refresh_from_db()
    assert (row.outcome, row.attempts) == (Outcome.PROCESSED, 1)
    assert row.processed_at is not None
    assert row.event_type == "identification_status"
    assert row.event_timestamp == datetime.fromisoformat(timestamp)
    assert row.customer_iron_id == identification.customer.iron_id
    assert row.object_iron_id == identification.iron_id
    assert row.object_status == "Approved"
    assert row.event_key == f"identification_status:{identification.iron_id}:Approved:{timestamp}"
    assert process_received_deliveries().outcomes == Counter()


@pytest.mark.usefixtures("deferred", "sent_drains")
def test_deferred_delivery_is_stored_with_one_sql_statement(
    deliver: Callable[..., Any], identification: Identification
) -> None:
    for status in ("Processed", "PendingReview", "Approved"):
        with CaptureQueriesContext(connection) as queries:
            response = deliver(identification_event(identification, status))

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
    deliver: Callable[..., Any], identification: Identification
) -> None:
    built: list[WebhookDelivery] = []

    def record(sender: type[WebhookDelivery], instance: WebhookDelivery, **kwargs: Any) -> None:
        built.append(instance)

    post_init.connect(record, sender=WebhookDelivery)
    try:
        response = deliver(identification_event(identification))
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


def test_deferred_delivery_asks_for_a_drain_only_once_it_is_committed(
    identification: Identification,
    sent_drains: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    body = encode_event(identification_event(identification))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        receive_delivery(body=body, webhook_id="wh-commit", signed_at=None, deferred=True)
    assert sent_drains == []

    for callback in callbacks:
        callback()
    assert countdowns(sent_drains) == [None]


@pytest.mark.usefixtures("deferred", "sent_drains")
def test_deferred_repeats_are_stored_once_and_acted_on_once(
    deliver: Callable[..., Any],
    drain: Callable[[], DeliverySweepResult],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    event = identification_event(identification)

    waiting = [deliver(event, webhook_id="wh-a").json() for _ in range(2)]
    assert WebhookDelivery.objects.count() == 1
    first_drain = drain()
    same_id_after = deliver(event, webhook_id="wh-a")
    same_event_new_id = deliver(event, webhook_id="wh-b")
    second_drain = drain()

    assert waiting == [{"outcome": "received"}] * 2
    assert first_drain.outcomes == Counter({"processed": 1})
    assert same_id_after.status_code == 200
    assert same_id_after.json() == {"outcome": "duplicate"}
    assert same_event_new_id.json() == {"outcome": "received"}
    assert second_drain.outcomes == Counter({"duplicate": 1})
    rows = {row.webhook_id: (row.outcome, row.attempts) for row in WebhookDelivery.objects.all()}
    assert rows == {"wh-a": (Outcome.PROCESSED, 1), "wh-b": (Outcome.DUPLICATE, 1)}
    assert iron_signals.names() == APPROVED


@pytest.mark.parametrize("body", [b for _, b in INVALID_BODIES], ids=[n for n, _ in INVALID_BODIES])
@pytest.mark.usefixtures("deferred")
def test_deferred_signed_invalid_body_is_400_stored_invalid_and_never_drained(
    deliver: Callable[..., Any],
    db: None,
    body: bytes,
    settings: Any,
    sent_drains: list[dict[str, Any]],
) -> None:
    settings.IRON_KYC_WEBHOOK_MAX_BODY_SIZE = 200_000

    first = deliver(body, webhook_id="wh-invalid")
    again = deliver(body, webhook_id="wh-invalid")

    assert (first.status_code, again.status_code) == (400, 400)
    assert first.json()["detail"]
    assert again.json() == first.json()
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.INVALID
    assert row.error == first.json()["detail"]
    assert row.attempts == 1
    assert row.processed_at is not None
    assert sent_drains == []
    assert process_received_deliveries().outcomes == Counter()
    assert retry_deliveries(now=NOW + timedelta(days=365)).outcomes == Counter()
    assert WebhookDelivery.objects.get().attempts == 1


@pytest.mark.usefixtures("deferred", "sent_drains")
def test_deferred_invalid_body_answers_the_reason(deliver: Callable[..., Any], db: None) -> None:
    response = deliver(b'{"type": "ping", "timestamp": "yesterday", "data": {}}')

    assert response.json() == {"detail": "timestamp is not an ISO 8601 date-time"}


@pytest.mark.usefixtures("deferred", "sent_drains")
def test_deferred_unhandled_event_type_is_received_then_drained_as_ignored(
    deliver: Callable[..., Any], db: None, iron_signals: SignalRecorder
) -> None:
    event = build_event("transaction", uuid.uuid4(), uuid.uuid4(), None)

    response = deliver(event)
    result = process_received_deliveries()

    assert response.json() == {"outcome": "received"}
    assert result.outcomes == Counter({"ignored": 1})
    row = WebhookDelivery.objects.get()
    assert (row.outcome, row.event_type, row.event_key) == (Outcome.IGNORED, "transaction", "")
    assert iron_signals.names() == []


# --- Processing per URL -------------------------------------------------------------------


@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    ("setting", "url", "outcome"),
    [
        ("inline", "/deferred/", "received"),
        ("deferred", "/inline/", "processed"),
        ("inline", "/setting/", "processed"),
        ("deferred", "/setting/", "received"),
        ("deferred", "/iron/webhook/", "received"),
    ],
)
def test_as_view_processing_overrides_the_setting(
    deliver: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
    sent_drains: list[dict[str, Any]],
    settings: Any,
    setting: str,
    url: str,
    outcome: str,
) -> None:
    settings.IRON_KYC_WEBHOOK_PROCESSING = setting

    response = deliver(identification_event(identification), url=url)

    assert response.status_code == 200
    assert response.json() == {"outcome": outcome}
    assert WebhookDelivery.objects.get().outcome == outcome
    identification.refresh_from_db()
    if outcome == "processed":
        assert identification.status == Identification.Status.APPROVED
        assert iron_signals.names() == APPROVED
        assert sent_drains == []
    else:
        assert identification.status == Identification.Status.PENDING
        assert iron_signals.names() == []
        assert countdowns(sent_drains) == [None]


@pytest.mark.parametrize("processing", ["bogus", "Deferred", "", True, 0])
def test_as_view_refuses_an_unknown_processing_mode(processing: Any) -> None:
    with pytest.raises(ValueError, match="processing must be 'inline', 'deferred' or None"):
        IronWebhookView.as_view(processing=processing)


# --- DrainScheduler -----------------------------------------------------------------------


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
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            scheduler.request()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert sorted(countdowns(sent_drains), key=lambda c: c or 0) == [None, 1.0]


# --- Broker down, eager, real worker ------------------------------------------------------


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
    deliver: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = encode_event(identification_event(identification))

    response = deliver(body)

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
    deliver: Callable[..., Any], identification: Identification
) -> None:
    """One connection attempt, not kombu's connection retries (about 6 s with Celery's
    defaults), for each delivery: every one tries again, since none got through."""
    elapsed = []
    for status in ("Processed", "Approved"):
        started = time.monotonic()
        response = deliver(identification_event(identification, status))
        elapsed.append(time.monotonic() - started)
        assert response.json() == {"outcome": "received"}

    assert max(elapsed) < 2.0, elapsed


def test_eager_celery_drains_the_delivery_after_commit(
    deferred: None,
    deliver: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    """The suite's CELERY_TASK_ALWAYS_EAGER=True; ``deliver`` runs the on-commit callbacks."""
    assert test_app.conf.task_always_eager is True

    response = deliver(identification_event(identification))

    assert response.json() == {"outcome": "received"}
    assert WebhookDelivery.objects.get().outcome == Outcome.PROCESSED
    identification.refresh_from_db()
    assert identification.status == Identification.Status.APPROVED
    assert iron_signals.names() == APPROVED


@pytest.mark.usefixtures("deferred")
def test_eager_celery_drains_every_delivery_of_a_window(
    deliver: Callable[..., Any],
    db: None,
    iron_signals: SignalRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An eager drain runs when it is sent, whatever its countdown: none may be left for the
    end of the window (a host project's tests send several deliveries within a second)."""
    monkeypatch.setattr(drain_scheduler, "clock", FakeClock())  # all within one window
    identifications = [IdentificationFactory(iron_created_at=LONG_AGO) for _ in range(4)]

    responses = [deliver(identification_event(i)) for i in identifications]

    assert [r.json() for r in responses] == [{"outcome": "received"}] * 4
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {Outcome.PROCESSED}
    assert sorted(i.pk for i in approved(iron_signals)) == sorted(i.pk for i in identifications)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_worker_drains_a_deferred_delivery(
    deferred: None,
    worker_app: Celery,  # noqa: F811
    deliver: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    waiter = Waiter(signals.identification_approved, identification=identification)

    response = deliver(identification_event(identification))

    assert response.json() == {"outcome": "received"}
    assert waiter.wait(), "the worker did not drain the delivery"
    assert WebhookDelivery.objects.get().outcome == Outcome.PROCESSED
    assert approved(iron_signals) == [identification]


# --- The drain task -----------------------------------------------------------------------


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
    worker_app: Celery,  # noqa: F811
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


# --- The drain and the webhook sweep ------------------------------------------------------


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
    deliver: Callable[..., Any],
    drain: Callable[[], DeliverySweepResult],
    identification: Identification,
    iron_signals: SignalRecorder,
    sent_drains: list[dict[str, Any]],
) -> None:
    event = identification_event(identification)
    assert deliver(event, webhook_id="msg_failed").status_code == 200
    with mock.patch.object(deliveries, "act_on_event", _boom):
        assert drain().outcomes == Counter({"failed": 1})
    drain_scheduler.reset()

    answer = deliver(event, webhook_id="msg_failed")

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


# --- Storing: one statement, no broken transaction ----------------------------------------


@pytest.mark.parametrize("deferred_", [False, True], ids=["inline", "deferred"])
def test_same_webhook_id_inside_a_callers_transaction_leaves_it_usable(
    identification: Identification, deferred_: bool
) -> None:
    body = encode_event(identification_event(identification))

    with transaction.atomic():
        first = receive_delivery(
            body=body, webhook_id="wh-atomic", signed_at=None, deferred=deferred_
        ).outcome
        second = receive_delivery(
            body=body, webhook_id="wh-atomic", signed_at=None, deferred=deferred_
        ).outcome
        # Would raise TransactionManagementError (or "current transaction is aborted")
        # had the repeat failed an INSERT in this transaction.
        assert WebhookDelivery.objects.count() == 1
        Identification.objects.filter(pk=identification.pk).update(url="https://x.invalid/")

    expected = ["received", "received"] if deferred_ else ["processed", "duplicate"]
    assert [first, second] == expected
    identification.refresh_from_db()
    assert identification.url == "https://x.invalid/"


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


# --- PostgreSQL: two connections at once --------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_two_drains_at_once_act_on_each_delivery_once(
    iron_signals: SignalRecorder, sent_drains: list[dict[str, Any]], round_: int
) -> None:
    identifications = [IdentificationFactory(iron_created_at=LONG_AGO) for _ in range(40)]
    for each in identifications:
        store(each)

    results = run_together(process_received_deliveries, process_received_deliveries)

    total = sum((r.outcomes for r in results), Counter())
    assert total["processed"] == 40
    assert set(total) <= {"processed", "busy", "duplicate"}
    assert not any(r.more for r in results)
    rows = WebhookDelivery.objects.all()
    assert {(row.outcome, row.attempts) for row in rows} == {(Outcome.PROCESSED, 1)}
    assert Counter(i.pk for i in approved(iron_signals)) == Counter(
        {i.pk: 1 for i in identifications}
    )
    assert set(Identification.objects.values_list("status", flat=True)) == {"Approved"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_deferred_same_webhook_id_on_two_connections_at_once_is_stored_once(
    deferred: None, sent_drains: list[dict[str, Any]], round_: int
) -> None:
    identification = IdentificationFactory(iron_created_at=LONG_AGO)
    body = encode_event(identification_event(identification))
    headers = signed_headers(body, webhook_id=f"wh-deferred-race-{round_}")

    responses = post_together([(body, headers), (body, headers)])

    assert [r.status_code for r in responses] == [200, 200]
    assert [r.json() for r in responses] == [{"outcome": "received"}] * 2
    assert WebhookDelivery.objects.get().outcome == Outcome.RECEIVED
