"""A real Celery worker process on Redis, killed with SIGKILL in the middle of its work.

The worker is a separate process (``celery -A tests.reliability.worker_app worker``, solo
pool) sharing the test database, so these tests need PostgreSQL (or a SQLite file set with
``SQLITE_TEST_PATH``) and Redis (``redis://127.0.0.1:6379/7``, or
``IRON_KYC_RELIABILITY_BROKER_URL``). The work is held at a known point: the fake Iron
keeps the worker's request waiting on a gate. Then the whole
worker is killed with SIGKILL (no warm shutdown, no acknowledgement) and a new worker is
started: Redis hands the unacknowledged task back after its visibility timeout (two
seconds here), the task runs again, and the end must be exactly one identification at Iron
and one signal.

- create, killed while its POST is held: Iron completes the held POST after the worker
  died (its answer lost), or drops it without doing anything;
- poll sweep, killed while its list call is held: Iron answers to nobody;
- the drain of deferred webhook deliveries (``process_received_webhooks``), killed while
  acting on a delivery, before its transaction commits (the worker asks Iron for the
  customer there, and that request is held): the redelivered drain, or the webhook sweep
  before it, acts on the delivery, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.db import connection, transaction

from django_iron_kyc import services, tasks
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import FakeIron, SignalRecorder, WebhookSender
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.celery import app as test_app
from tests.reliability.gate import Gate
from tests.reliability.support import run_webhook_sweep
from tests.support import CREATE_PATH, CUSTOMER_PATH, LIST_PATH, ROOT, checkout_first

# Database 7 unless told otherwise; other runs may share it: only this test's queue and
# messages are looked at or removed.
# Celery reads the CELERY_BROKER_URL environment variable before any setting (the producer
# here and the worker's settings alike), so when it is set (CI) it is the broker to watch.
_CELERY_BROKER = os.environ.get("CELERY_BROKER_URL", "")
BROKER_URL = os.environ.get(
    "IRON_KYC_RELIABILITY_BROKER_URL",
    _CELERY_BROKER if _CELERY_BROKER.startswith("redis://") else "redis://127.0.0.1:6379/7",
)
WAIT = 60  # seconds; each step normally takes a few


def _redis() -> Any:
    import redis

    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"needs Redis at {BROKER_URL} (a real broker for a real worker): {exc}")
    return client


def _shared_database_name() -> str:
    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "sqlite" and ("memory" in name or not name):
        pytest.skip(
            "the worker process must share the test database: run on PostgreSQL "
            "(DATABASE_URL=postgres://...) or with a SQLite file (SQLITE_TEST_PATH=...)"
        )
    return name


pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


class Workers:
    """Starts worker processes on one queue, kills them, and reads what they signalled."""

    def __init__(self, fake: FakeIron, redis: Any, database: str, logs: Path) -> None:
        self.redis = redis
        self.queue = f"iron-rel-{uuid.uuid4().hex[:8]}"
        self.signal_key = f"{self.queue}:signals"
        self.task_key = f"{self.queue}:tasks"
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []
        self.env = checkout_first(
            {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.reliability.worker_settings",
                "IRON_RELIABILITY_DB_NAME": database,
                "IRON_RELIABILITY_BROKER_URL": BROKER_URL,
                "CELERY_BROKER_URL": BROKER_URL,
                "IRON_RELIABILITY_QUEUE": self.queue,
                "IRON_RELIABILITY_SIGNAL_KEY": self.signal_key,
                "IRON_RELIABILITY_TASK_KEY": self.task_key,
                "IRON_KYC_BASE_URL": fake.base_url,
                "IRON_KYC_API_KEY": fake.api_key,
            }
        )
        self.producer = Celery("iron_rel_producer", set_as_current=False)
        self.producer.conf.update(
            broker_url=BROKER_URL,
            task_always_eager=False,
            task_default_queue=self.queue,
            result_backend=None,
        )

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.reliability.worker_app",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-Q",
                self.queue,
                "--loglevel=INFO",
                f"--hostname=rel{len(self.processes)}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole
        )
        log.close()
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's process group: no warm shutdown, nothing acknowledged."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(WAIT)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Warm shutdown: the worker finishes what it runs, then exits."""
        process.send_signal(signal.SIGTERM)
        process.wait(WAIT)

    def enqueue(self) -> Any:
        """While in use, the app's tasks are sent to this queue (not run eagerly)."""
        return _Current(self.producer)

    def next_signal(self) -> dict[str, Any]:
        return self._next(self.signal_key, "signal")

    def next_task(self) -> dict[str, Any]:
        """The next task a worker finished: ``{"task": name, "result": ...}``."""
        return self._next(self.task_key, "finished task")

    def _next(self, key: str, what: str) -> dict[str, Any]:
        popped = self.redis.blpop([key], timeout=WAIT)
        if popped is None:
            raise AssertionError(f"no {what} from the worker in {WAIT}s; logs: {self.log_tail()}")
        return json.loads(popped[1])

    def remaining_signals(self) -> list[dict[str, Any]]:
        return [json.loads(s) for s in self.redis.lrange(self.signal_key, 0, -1)]

    def unacknowledged(self) -> list[Any]:
        """Messages of this queue delivered to a worker and not acknowledged yet."""
        entries = [json.loads(v) for v in self.redis.hvals("unacked")]
        return [e for e in entries if e[2] == self.queue]

    def queue_is_empty(self) -> bool:
        return self.redis.llen(self.queue) == 0 and not self.unacknowledged()

    def log_tail(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-3000:] for path in sorted(self.logs.glob("*.log"))
        )

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(WAIT)
        self.redis.delete(self.queue, self.signal_key, self.task_key)
        self.producer.close()


class _Current:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def __enter__(self) -> Celery:
        self.app.set_current()
        return self.app

    def __exit__(self, *exc: object) -> None:
        test_app.set_current()


@pytest.fixture
def workers(fake_iron: FakeIron, tmp_path: Path) -> Iterator[Workers]:
    redis = _redis()
    database = _shared_database_name()
    pool = Workers(fake_iron, redis, database, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


@pytest.mark.parametrize("iron_after_the_kill", ["completes the held POST", "drops it"])
def test_worker_killed_during_create_is_redelivered_and_makes_one_identification(
    fake_iron: FakeIron, workers: Workers, iron_after_the_kill: str
) -> None:
    customer = mirror_customer(fake_iron)
    gate = Gate()
    drops = iron_after_the_kill == "drops it"
    fake_iron.fail_next(
        method="POST", path=CREATE_PATH, delay=gate, drop="before" if drops else None
    )
    first = workers.start()
    with workers.enqueue():
        row = services.start_identification(customer)

    assert gate.reached.wait(WAIT), f"the worker never sent the POST: {workers.log_tail()}"
    workers.kill(first)
    assert len(workers.unacknowledged()) == 1  # acks_late: the dead worker never acked it
    gate.set()  # Iron goes on with the request of a worker that no longer exists
    second = workers.start()
    sent = workers.next_signal()
    workers.stop(second)

    assert sent == {
        "signal": "identification_status_changed",
        "pk": row.pk,
        "previous_status": "",
        "status": "Pending",
        "source": "create",
    }
    assert workers.remaining_signals() == []
    assert workers.queue_is_empty()
    row.refresh_from_db()
    assert row.status == "Pending"
    assert row.url.startswith(fake_iron.base_url)
    assert len(fake_iron.identifications) == 1
    assert str(row.iron_id) in fake_iron.identifications
    posts = fake_iron.requests_to("POST", CREATE_PATH)
    assert len(posts) == 2  # the one killed with its worker, the redelivered one
    assert {p.idempotency_key for p in posts} == {str(row.idempotency_key)}
    assert posts[1].replayed is not drops


def test_worker_killed_during_a_poll_is_redelivered_and_signals_once(
    fake_iron: FakeIron, workers: Workers
) -> None:
    customer = mirror_customer(fake_iron)
    row = mirror_identification(fake_iron, customer)
    Identification.objects.filter(pk=row.pk).update(next_poll_at=row.created_at)
    fake_iron.set_identification_status(row.iron_id, "Approved", notify=False)
    gate = Gate()
    fake_iron.fail_next(method="GET", path=LIST_PATH, delay=gate)
    first = workers.start()
    with workers.enqueue():
        tasks.poll_pending_identifications.delay()

    assert gate.reached.wait(WAIT), f"the worker never polled: {workers.log_tail()}"
    workers.kill(first)
    assert len(workers.unacknowledged()) == 1
    gate.set()  # Iron answers a worker that no longer exists
    second = workers.start()
    changed = workers.next_signal()
    approved = workers.next_signal()
    workers.stop(second)

    assert changed["signal"] == "identification_status_changed"
    assert (changed["pk"], changed["status"], changed["source"]) == (row.pk, "Approved", "poll")
    assert approved["signal"] == "identification_approved"
    assert approved["pk"] == row.pk
    assert workers.remaining_signals() == []
    assert workers.queue_is_empty()
    row.refresh_from_db()
    assert row.status == "Approved"
    assert len(fake_iron.requests_to("GET", LIST_PATH)) == 2


def wait_for_the_killed_session(delivery: WebhookDelivery) -> None:
    """Block until the killed worker's database session is gone, and its row lock with it.

    Its transaction is rolled back when the server sees the connection close; until then a
    drain or a sweep would skip the row as busy (``skip_locked``).
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '60s'")
        WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)


@pytest.mark.usefixtures("deferred")
@pytest.mark.parametrize("who_acts", ["the redelivered drain", "the webhook sweep"])
def test_worker_killed_while_draining_webhooks_acts_on_the_delivery_once(
    fake_iron: FakeIron,
    workers: Workers,
    send_iron_webhook: WebhookSender,
    iron_signals: SignalRecorder,
    time_machine: Any,
    who_acts: str,
) -> None:
    customer = mirror_customer(fake_iron)
    row = mirror_identification(fake_iron, customer)
    fake_iron.set_identification_status(row.iron_id, "Approved")
    (delivery,) = [d for d in fake_iron.outbox if d.type == "identification_status"]
    gate = Gate()
    fake_iron.fail_next(method="GET", path=CUSTOMER_PATH, delay=gate)
    workers.env["IRON_RELIABILITY_ASK_IRON_WHILE_ACTING"] = "1"
    first = workers.start()
    with workers.enqueue():
        answer = send_iron_webhook(delivery)  # stored; the drain goes to the worker

    assert answer.json() == {"outcome": "received"}
    assert gate.reached.wait(WAIT), f"the worker never acted on it: {workers.log_tail()}"
    workers.kill(first)  # after acting, before the commit
    assert len(workers.unacknowledged()) == 1
    gate.set()  # Iron answers a worker that no longer exists
    stored = WebhookDelivery.objects.get(webhook_id=delivery.webhook_id)
    wait_for_the_killed_session(stored)
    stored.refresh_from_db()
    assert (stored.outcome, stored.attempts) == ("received", 0)  # rolled back with it
    row.refresh_from_db()
    assert row.status == "Pending"

    if who_acts == "the webhook sweep":
        assert run_webhook_sweep(time_machine) == {"outcomes": {"processed": 1}, "more": False}
    second = workers.start()
    drained = workers.next_task()  # the drain, redelivered
    if who_acts == "the redelivered drain":
        changed = workers.next_signal()
        approved = workers.next_signal()
    workers.stop(second)

    assert drained["task"] == "django_iron_kyc.tasks.process_received_webhooks"
    if who_acts == "the redelivered drain":
        assert drained["result"] == {"outcomes": {"processed": 1}, "more": False}
        assert (changed["signal"], changed["pk"], changed["status"]) == (
            "identification_status_changed",
            row.pk,
            "Approved",
        )
        assert (approved["signal"], approved["pk"]) == ("identification_approved", row.pk)
        assert not iron_signals.kwargs_of("identification_approved")
    else:
        assert drained["result"] == {"outcomes": {}, "more": False}  # nothing left to do
        assert [
            kw["identification"].pk for kw in iron_signals.kwargs_of("identification_approved")
        ] == [row.pk]
    assert workers.remaining_signals() == []
    assert workers.queue_is_empty()
    stored.refresh_from_db()
    assert (stored.outcome, stored.attempts) == ("processed", 1)
    row.refresh_from_db()
    assert row.status == "Approved"
    assert len(fake_iron.requests_to("GET", CUSTOMER_PATH)) == (
        2 if who_acts == "the redelivered drain" else 1
    )
