"""A Hypothesis state machine over the app and the fake Iron, trying to lose or double-count.

Each example starts from an empty database, a new ``FakeIron`` (which records, for every
identification it creates, which ones were in flight at that moment: ``fake.creations``)
and a few customers created through ``services.create_customer``. Celery is eager,
so ``start_identification`` creates at Iron right after its transaction commits, and the
fake's webhook deliveries reach the real view through Django's test client.

Each example runs in one webhook processing mode, drawn by Hypothesis
(``IRON_KYC_WEBHOOK_PROCESSING``): ``inline``, where the view acts on a delivery before
answering, or ``deferred``, where it only stores it (answer ``received``) and asks the
app's drain scheduler for a drain. The scheduler runs on the machine's clock and its
messages go to a queue here (the broker): a delivery is acted on only when a rule runs
one (``drain``, the Celery task ``process_received_webhooks``), and a message may be lost
(``lose_drain``); then the webhook sweep (``webhook_sweep``: ``retry_webhook_deliveries``
once the clock has moved past ``IRON_KYC_WEBHOOK_RETRY_DELAY``) catches up. In either mode
``next_processing_fails`` makes the next attempt to act on a delivery fail inside
``services.deliveries.act_on_event`` (an ``OperationalError`` after the state was applied,
so the rollback must take the change and its signals back): the delivery is recorded
``failed`` and answered 5xx (inline) or left to the sweep's retries with backoff
(deferred).

Rules interleave, at random: starting and force-restarting identifications; transient
faults on the next request (503, 500, 429, a connection dropped before or after Iron did
the work); sandbox decisions; status moves at Iron (step-ups back to Pending included) and
identifications made at Iron outside the app; webhook deliveries sent, held back and
released late, reordered, duplicated under the same ``webhook-id``, re-sent under new ids,
retried after a 5xx or an expired timestamp, or lost; poll sweeps and refreshes; time
passing for everyone (time-machine moves the app's clock, and with it the fake's) and
Iron's clock drifting on its own.

After every step:

- nothing older is applied: Iron's timestamp of each stored identification and customer
  never goes back (Iron delivers late, twice, out of order; polls race webhooks);
- at most one identification in flight per customer locally, and Iron never gets a second
  one in flight from the app unless it was forced (or the app could not know: the one at
  Iron was made elsewhere, or moved back to Pending unseen);
- no identification Iron created for one of the app's intents is lost: its intent is
  never failed, and it is never tracked under another customer;
- signals: each identification's ``identification_status_changed`` signals form one chain
  from ``""`` to the stored status (one per actual change); each entry into Approved,
  Declined or Expired is followed by exactly one terminal signal, unless superseded; no
  superseded identification is ever signalled as approved; customers likewise;
- every delivery answered 2xx or 5xx is stored under its ``webhook-id``, and nothing else;
- deferred: no 5xx (nothing here makes storing fail), every delivery answered
  ``received`` is stored, and a drain acts on every delivery answered ``received`` before
  it ran (what the answer promises); inline: no drain is ever asked for.

``settle`` (a rule, and the end of every example): faults cleared, time passes so the sweep
catches up, every delivery delivered (retried as Iron would) and, deferred, every queued
drain run and the clock moved until the webhook sweep has retried whatever is still
``received`` or ``failed``; then a refresh of every customer (and the same again); now
every identification at Iron is known locally and its local status equals Iron's, every
customer's status too, and no delivery is left ``received`` or ``failed``.

``IRON_KYC_RELIABILITY_EXAMPLES`` and ``IRON_KYC_RELIABILITY_STEPS`` raise the bounds for a
deep run; the counts are printed at the end of the pytest run.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, TypeVar
from unittest import mock

import pytest
import time_machine
from celery import Task
from celery import signals as celery_signals
from django.db import OperationalError
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from django_iron_kyc import services, signals, tasks
from django_iron_kyc.conf import WEBHOOK_DEFERRED, WEBHOOK_PROCESSING_MODES, iron_settings
from django_iron_kyc.exceptions import IdentificationInFlightError, IronAPIError, IronTransientError
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.payloads import WebhookEvent, normalize_identification_status
from django_iron_kyc.services import deliveries
from django_iron_kyc.testing import Delivery, FakeIron, WebhookSender
from django_iron_kyc.testing.fake import Creation
from django_iron_kyc.webhooks import drain as webhook_drain
from tests.celery import app as celery_app
from tests.reliability.stats import MACHINE

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("IRON_KYC_RELIABILITY_EXAMPLES", "50"))
STEPS = int(os.environ.get("IRON_KYC_RELIABILITY_STEPS", "40"))

TERMINAL = Identification.TERMINAL_STATUSES
SIGNALLED_TERMINAL = {
    "Approved": "identification_approved",
    "Declined": "identification_declined",
    "Expired": "identification_expired",
}
FINAL_OUTCOMES = {"processed", "duplicate", "stale", "ignored", "unknown_object"}
# Deferred: stored, to be acted on by the drain, or the sweep's retry after a failure.
WAITING_OUTCOMES = {"received", "failed"}
IRON_STATUSES = [
    "Processed",
    "PendingReview",
    "Approved",
    "Declined",
    "Rejected",
    "Expired",
    "Archived",
    "Pending",
]
FAULTS: list[dict[str, Any]] = [
    {"status": 503},
    {"status": 500},
    {"status": 429, "retry_after": 1},
    {"drop": "before"},
    {"drop": "after"},
]
CLOCK_STEPS = [1, 30, 61, 301, 3600, 6 * 3600, 25 * 3600]
MAX_SKEW = 50  # seconds Iron's clock may drift from ours (within the app's 60 s allowance)
MAX_ARMED_FAULTS = 3
# Fewer injected processing failures per example than the webhook sweep makes attempts, so
# its retries always get every delivery through.
MAX_PROCESSING_FAILURES = 4

F = TypeVar("F", bound=Callable[..., Any])

ACT = deliveries.act_on_event  # the app's, which each example wraps (IronMachine._act_or_fail)


def normalized(status: str) -> str:
    return normalize_identification_status(status)


class QueuedDrains(webhook_drain.DrainScheduler):
    """The app's drain scheduler on the machine's clock; the broker is a list here.

    What it sends is queued as the time (``time.time()``) from which a worker would run
    it: the ``drain`` rule runs the first one (waiting for it to be due) and ``lose_drain``
    drops one.
    """

    def __init__(self) -> None:
        super().__init__(clock=time.time, publish=self._queue)
        self.queue: list[float] = []
        self.sent = 0

    def _queue(self, countdown: float) -> None:
        self.sent += 1
        self.queue.append(self.clock() + countdown)


@dataclass(frozen=True)
class SignalEvent:
    name: str
    pk: int
    previous: str
    status: str
    superseded_instance: bool
    superseded_db: bool
    iron_superseded_by_tracked: bool = False


@dataclass(frozen=True)
class LocalRow:
    pk: int
    customer_id: int
    status: str
    superseded: bool
    failed: bool
    iron_updated_at: datetime | None = None

    @property
    def in_flight(self) -> bool:
        return not (self.superseded or self.failed or self.status in TERMINAL)


def local_rows() -> dict[int, dict[str, Any]]:
    """What the invariants read of every local identification, by pk."""
    fields = ("pk", "customer_id", "iron_id", "status", "superseded_at", "failed_at")
    values = Identification.objects.values(*fields, "idempotency_key", "iron_updated_at")
    return {row["pk"]: row for row in values}


def guarded(method: F) -> F:
    """Marks the machine broken when a step fails, so teardown does not settle on top."""

    def wrapper(self: IronMachine, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.broken = True
            raise

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper  # type: ignore[return-value]


def step(method: F) -> F:
    """A rule: counted, and guarded."""

    def wrapper(self: IronMachine, *args: Any, **kwargs: Any) -> Any:
        MACHINE.steps += 1
        MACHINE.rules[method.__name__] += 1
        return method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return guarded(wrapper)  # type: ignore[arg-type]


class IronMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        MACHINE.examples += 1
        self.broken = False
        self.ready = False
        WebhookDelivery.objects.all().delete()
        Identification.objects.all().delete()
        Customer.objects.all().delete()
        self.sender = WebhookSender()
        self.customers: list[Customer] = []
        self.forced: set[int] = set()
        self.outside: set[str] = set()
        self.held: list[Delivery] = []
        self.delivered: list[Delivery] = []
        self.retries: list[tuple[Delivery, bool]] = []  # (delivery, sign it again)
        self.lost = False
        self.accepted: set[str] = set()  # webhook ids answered 2xx
        self.failed_ids: set[str] = set()  # webhook ids answered 5xx
        self.skew = 0.0
        self.creations_seen = 0
        self.signal_log: list[SignalEvent] = []
        self.signals_seen = 0
        self.chain: dict[int, str] = {}
        self.customer_chain: dict[int, str] = {}
        self.customer_updated: dict[int, datetime | None] = {}
        self.snapshot: dict[str, LocalRow] = {}
        self.task_failures: list[tuple[str, BaseException]] = []
        self._receivers: list[tuple[Any, str]] = []
        self.mode = ""
        self.drains = QueuedDrains()
        self.awaiting_drain: dict[str, int] = {}  # answered received: the row's attempts then
        self.fail_next_act = False
        self.processing_failures = 0

    # --- setup and teardown -------------------------------------------------------------

    @initialize(
        processing=st.sampled_from(WEBHOOK_PROCESSING_MODES),
        conflict_on_pending=st.booleans(),
        message_shape=st.sampled_from(["tagged", "flat"]),
        list_order=st.sampled_from(["newest", "oldest"]),
        customers=st.integers(min_value=1, max_value=3),
    )
    @guarded
    def setup(
        self,
        processing: str,
        conflict_on_pending: bool,
        message_shape: str,
        list_order: str,
        customers: int,
    ) -> None:
        # The clock stands still unless a rule moves it: replays behave the same. The fake's
        # clock runs on it too (plus its own drift).
        self.traveller = time_machine.travel(
            datetime.now(dt_timezone.utc).replace(microsecond=0), tick=False
        )
        self.clock = self.traveller.start()
        self.fake = FakeIron(
            conflict_on_pending=conflict_on_pending,
            message_shape=message_shape,
            list_order=list_order,
        ).start()
        self.mode = processing
        MACHINE.modes[processing] += 1
        self.overrides = override_settings(
            **self.fake.django_settings(),
            IRON_KYC_MAX_RETRIES=0,
            IRON_KYC_SANDBOX_ACTIONS=True,
            IRON_KYC_WEBHOOK_PROCESSING=processing,
        )
        self.overrides.enable()
        # In both modes: inline, the view must never ask for a drain.
        self.patches = [
            mock.patch.object(webhook_drain, "drain_scheduler", self.drains),
            mock.patch.object(deliveries, "act_on_event", self._act_or_fail),
        ]
        for patch in self.patches:
            patch.start()
        # A task failure is recorded through Celery's task_failure signal and fails the
        # step, also where the task ran from a robust on-commit hook (a webhook's refresh)
        # that would only log a propagated exception.
        self.propagates = celery_app.conf.task_eager_propagates
        celery_app.conf.task_eager_propagates = False
        self._connect_signals()
        self.ready = True
        for n in range(customers):
            self.customers.append(services.create_customer(email=f"customer{n}@example.com"))
        self._take_snapshot()

    def teardown(self) -> None:
        try:
            if self.ready and not self.broken:
                self.settle_everything()
        finally:
            for signal, uid in self._receivers:
                signal.disconnect(dispatch_uid=uid)
            if self.ready:
                celery_app.conf.task_eager_propagates = self.propagates
                for patch in reversed(self.patches):
                    patch.stop()
                self.overrides.disable()
                self.fake.stop()
                self.traveller.stop()

    def _connect_signals(self) -> None:
        def changed(
            identification: Identification, previous_status: str, status: str, **kw: Any
        ) -> None:
            self.signal_log.append(
                SignalEvent(
                    "changed",
                    identification.pk,
                    previous_status,
                    status,
                    identification.superseded_at is not None,
                    self._superseded_in_db(identification.pk),
                )
            )

        def terminal(name: str) -> Callable[..., None]:
            def receive(identification: Identification, previous_status: str, **kw: Any) -> None:
                status = next(s for s, n in SIGNALLED_TERMINAL.items() if n == name)
                self.signal_log.append(
                    SignalEvent(
                        name,
                        identification.pk,
                        previous_status,
                        status,
                        identification.superseded_at is not None,
                        self._superseded_in_db(identification.pk),
                        self._superseded_at_iron_by_a_tracked_one(identification),
                    )
                )

            return receive

        def customer_changed(
            customer: Customer, previous_status: str, status: str, **kw: Any
        ) -> None:
            self.signal_log.append(
                SignalEvent("customer", customer.pk, previous_status, status, False, False)
            )

        def task_failed(
            sender: Any = None, exception: BaseException | None = None, **kw: Any
        ) -> None:
            assert exception is not None
            self.task_failures.append((getattr(sender, "name", str(sender)), exception))

        pairs: list[tuple[Any, Callable[..., None]]] = [
            (signals.identification_status_changed, changed),
            (signals.customer_status_changed, customer_changed),
            (celery_signals.task_failure, task_failed),
        ]
        for name in SIGNALLED_TERMINAL.values():
            pairs.append((getattr(signals, name), terminal(name)))
        for signal, receiver in pairs:
            uid = f"reliability-{id(self)}-{id(receiver)}"
            signal.connect(receiver, weak=False, dispatch_uid=uid)
            self._receivers.append((signal, uid))

    @staticmethod
    def _superseded_in_db(pk: int) -> bool:
        return Identification.objects.filter(pk=pk, superseded_at__isnull=False).exists()

    def _superseded_at_iron_by_a_tracked_one(self, identification: Identification) -> bool:
        """Iron no longer counts it, and the app tracks the identification that replaced it."""
        iron_id = str(identification.iron_id)
        if not self.fake.is_superseded(iron_id):
            return False
        customer = self.fake.identifications[iron_id]["customer_id"]
        newer = [
            i["id"]
            for i in self.fake.identifications_of(customer)
            if i["created_at"] > self.fake.identifications[iron_id]["created_at"]
        ]
        return Identification.objects.filter(iron_id__in=newer).exists()

    # --- helpers ------------------------------------------------------------------------

    @property
    def deferred(self) -> bool:
        return self.mode == WEBHOOK_DEFERRED

    def customer(self, index: int) -> Customer:
        return self.customers[index % len(self.customers)]

    def _act_or_fail(self, row: WebhookDelivery, event: WebhookEvent) -> str:
        """``act_on_event``, failing after it acted when ``next_processing_fails`` armed it."""
        outcome = ACT(row, event)
        if self.fail_next_act:
            self.fail_next_act = False
            MACHINE.acted[self.mode]["failures injected"] += 1
            raise OperationalError("could not serialize access (injected into act_on_event)")
        return outcome

    def iron_ids(self) -> list[str]:
        # In creation order: ids are random, an order by id would differ between replays.
        return list(self.fake.identifications)

    def armed_faults(self) -> int:
        return sum(f.remaining for f in self.fake.faults)

    def send(self, delivery: Delivery) -> None:
        """Deliver one webhook to the app; react to the answer as Iron would."""
        self.delivered.append(delivery)
        (response,) = self.fake.deliver_webhooks(send=self.sender.send, deliveries=[delivery])
        code = response.status_code
        answers = MACHINE.deliveries[self.mode]
        if code == 200:
            outcome = response.json()["outcome"]
            # Deferred: stored to be acted on later, or a repeat of one already acted on.
            expected = {"received", "duplicate"} if self.deferred else FINAL_OUTCOMES
            assert outcome in expected, (self.mode, outcome, delivery.event)
            self.accepted.add(delivery.webhook_id)
            if outcome == "received":
                attempts = WebhookDelivery.objects.filter(webhook_id=delivery.webhook_id)
                self.awaiting_drain[delivery.webhook_id] = attempts.values_list(
                    "attempts", flat=True
                ).get()
            answers[outcome] += 1
        elif code >= 500:
            # Nothing here makes storing fail: only acting on it can, and deferred does not.
            assert not self.deferred, (code, response.content)
            # Processing failed (stored as failed): Iron retries the same delivery.
            self.failed_ids.add(delivery.webhook_id)
            self.retries.append((delivery, False))
            answers[f"http {code}"] += 1
        elif code == 401:
            # Only an expired timestamp may be refused: Iron signs it again when it retries.
            age = abs(time.time() - delivery.timestamp)
            assert age > iron_settings.WEBHOOK_TOLERANCE - 5, (response.json(), age)
            self.retries.append((delivery, True))
            answers["http 401 (expired)"] += 1
        else:
            raise AssertionError(f"webhook answered {code}: {response.content!r}")

    def deliver_everything(self) -> None:
        """Every queued, held and retried delivery, until none is left (as Iron retries)."""
        for _ in range(10):
            for delivery, sign_again in self.retries:
                if sign_again:
                    self.fake.resend(delivery, new_id=True)
                else:
                    self.held.append(delivery)
            self.retries = []
            # What Iron held back arrives last, after newer deliveries.
            pending = list(self.fake.outbox) + list(self.held)
            self.held = []
            if not pending:
                return
            self.fake.outbox.clear()
            for delivery in pending:
                self.send(delivery)
        raise AssertionError(
            "deliveries still failing after 10 rounds of retries: "
            + ", ".join(f"{d.event['type']} {d.body[:200]!r}" for d, _ in self.retries)
            + "; stored errors: "
            + repr(
                list(
                    WebhookDelivery.objects.filter(outcome="failed").values_list("error", flat=True)
                )
            )
        )

    @staticmethod
    def run_task(task: Task) -> Any:
        """Run a task eagerly, as a worker would; its failure raised here."""
        result = task.apply()
        if result.failed():
            raise result.result
        return result.result

    def sweep(self) -> None:
        """The periodic poll sweep."""
        self.run_task(tasks.poll_pending_identifications)

    def run_drain(self) -> None:
        """A worker runs the first queued drain message, once it is due."""
        due = self.drains.queue.pop(0)
        if due > time.time():
            self.clock.shift(timedelta(seconds=due - time.time()))
        result = self.run_task(tasks.process_received_webhooks)
        for outcome, n in result["outcomes"].items():
            MACHINE.acted[self.mode][f"drain {outcome}"] += n
        self.check_answered_received_acted_on()

    def run_webhook_sweep(self) -> None:
        result = self.run_task(tasks.retry_webhook_deliveries)
        for outcome, n in result["outcomes"].items():
            MACHINE.acted[self.mode][f"sweep {outcome}"] += n

    def act_on_everything_stored(self) -> None:
        """Every queued drain runs; then time passes until the sweep retries what is left."""
        while self.drains.queue:
            self.run_drain()
        waiting = WebhookDelivery.objects.filter(outcome__in=WAITING_OUTCOMES)
        attempts = list(waiting.values_list("attempts", flat=True))
        if not attempts:
            return
        # A failed delivery is due its retry delay, doubled per attempt after the first,
        # after it arrived (at the latest: now).
        backoff = 2 ** max(0, max(attempts) - 1)
        self.clock.shift(iron_settings.WEBHOOK_RETRY_DELAY * backoff + timedelta(seconds=1))
        self.run_webhook_sweep()

    # --- rules: the app -----------------------------------------------------------------

    @rule(c=st.integers(0, 2), with_edd=st.booleans())
    @step
    def start(self, c: int, with_edd: bool) -> None:
        customer = self.customer(c)
        busy = Identification.objects.in_flight().filter(customer=customer).exists()
        try:
            services.start_identification(customer, with_edd=with_edd)
        except IdentificationInFlightError:
            assert busy, "refused although nothing is in flight"
        else:
            assert not busy, "started a second identification while one is in flight"

    @rule(c=st.integers(0, 2))
    @step
    def force_restart(self, c: int) -> None:
        row = services.start_identification(self.customer(c), force=True)
        self.forced.add(row.pk)

    @precondition(lambda self: Identification.objects.filter(iron_id__isnull=False).exists())
    @rule(pick=st.integers(0, 50), approve=st.booleans())
    @step
    def sandbox_decision(self, pick: int, approve: bool) -> None:
        rows = list(Identification.objects.filter(iron_id__isnull=False).order_by("pk"))
        row = rows[pick % len(rows)]
        decide = services.sandbox_approve if approve else services.sandbox_decline
        try:
            decide(row)
        except IronTransientError:
            pass
        except IronAPIError as exc:
            # Iron decides only what is still pending there.
            if exc.status != 400:
                raise

    @rule()
    @step
    def poll_sweep(self) -> None:
        self.sweep()

    @rule(c=st.integers(0, 2))
    @step
    def refresh(self, c: int) -> None:
        customer = self.customer(c)
        try:
            services.refresh_customer(customer)
        except IronTransientError:
            return
        self.check_customer_fully_known(customer)

    # --- rules: Iron --------------------------------------------------------------------

    @precondition(lambda self: self.armed_faults() < MAX_ARMED_FAULTS)
    @rule(fault=st.sampled_from(FAULTS), n=st.integers(1, 2))
    @step
    def fault_on_next_request(self, fault: dict[str, Any], n: int) -> None:
        self.fake.fail_next(n, **fault)

    @precondition(lambda self: bool(self.fake.identifications))
    @rule(pick=st.integers(0, 50), status=st.sampled_from(IRON_STATUSES))
    @step
    def iron_moves(self, pick: int, status: str) -> None:
        self._iron_moves(pick, status)

    def _iron_moves(self, pick: int, status: str) -> None:
        ids = self.iron_ids()
        self.fake.set_identification_status(ids[pick % len(ids)], status)

    # Status moves are what the rest reacts to: twice as likely as the other rules.
    @precondition(lambda self: bool(self.fake.identifications))
    @rule(pick=st.integers(0, 50), status=st.sampled_from(IRON_STATUSES))
    @step
    def iron_moves_another(self, pick: int, status: str) -> None:
        self._iron_moves(pick, status)

    @rule(c=st.integers(0, 2))
    @step
    def iron_creates_one_elsewhere(self, c: int) -> None:
        created = self.fake.add_identification(self.customer(c).iron_id, notify=True)
        self.outside.add(created["id"])

    # --- rules: webhook deliveries ------------------------------------------------------

    @precondition(lambda self: bool(self.fake.outbox))
    @rule(pick=st.integers(0, 50))
    @step
    def deliver_one(self, pick: int) -> None:
        self.send(self.fake.outbox[pick % len(self.fake.outbox)])

    @precondition(lambda self: bool(self.fake.outbox))
    @rule(pick=st.integers(0, 50))
    @step
    def deliver_another(self, pick: int) -> None:
        self.send(self.fake.outbox[pick % len(self.fake.outbox)])

    @precondition(lambda self: bool(self.fake.outbox))
    @rule()
    @step
    def deliver_all(self) -> None:
        for delivery in list(self.fake.outbox):
            self.send(delivery)

    @precondition(lambda self: bool(self.fake.outbox))
    @rule(pick=st.integers(0, 50))
    @step
    def hold_one_back(self, pick: int) -> None:
        delivery = self.fake.outbox.pop(pick % len(self.fake.outbox))
        self.held.append(delivery)

    @precondition(lambda self: bool(self.held))
    @rule(pick=st.integers(0, 50))
    @step
    def release_held(self, pick: int) -> None:
        self.send(self.held.pop(pick % len(self.held)))

    @precondition(lambda self: len(self.fake.outbox) > 1)
    @rule(seed=st.integers(0, 2**16))
    @step
    def reorder(self, seed: int) -> None:
        order = list(range(len(self.fake.outbox)))
        random.Random(seed).shuffle(order)
        self.fake.reorder_outbox(order)

    @rule(n=st.integers(1, 3))
    @step
    def duplicate_next_events(self, n: int) -> None:
        self.fake.duplicate_next_webhooks(n)

    @precondition(lambda self: bool(self.delivered))
    @rule(pick=st.integers(0, 50))
    @step
    def redeliver_same_id(self, pick: int) -> None:
        self.send(self.delivered[pick % len(self.delivered)])

    @precondition(lambda self: bool(self.delivered))
    @rule(pick=st.integers(0, 50))
    @step
    def resend_under_new_id(self, pick: int) -> None:
        self.fake.resend(self.delivered[pick % len(self.delivered)], new_id=True)

    @precondition(lambda self: bool(self.retries))
    @rule()
    @step
    def iron_retries_failed_deliveries(self) -> None:
        retries, self.retries = self.retries, []
        for delivery, sign_again in retries:
            if sign_again:
                self.fake.resend(delivery, new_id=True)
            else:
                self.send(delivery)

    @precondition(lambda self: bool(self.fake.outbox))
    @rule(pick=st.integers(0, 50))
    @step
    def iron_gives_up_on_one(self, pick: int) -> None:
        self.fake.outbox.pop(pick % len(self.fake.outbox))
        self.lost = True

    # --- rules: acting on stored deliveries (the drain, the webhook sweep) ---------------

    @precondition(lambda self: bool(self.drains.queue))
    @rule()
    @step
    def drain(self) -> None:
        self.run_drain()

    # Deferred, every delivery waits for a drain: twice as likely as losing one.
    @precondition(lambda self: bool(self.drains.queue))
    @rule()
    @step
    def drain_another(self) -> None:
        self.run_drain()

    @precondition(lambda self: bool(self.drains.queue))
    @rule(pick=st.integers(0, 50))
    @step
    def lose_drain(self, pick: int) -> None:
        """The message is lost (a broker restart, a purge): nothing runs."""
        self.drains.queue.pop(pick % len(self.drains.queue))

    @rule()
    @step
    def webhook_sweep(self) -> None:
        self.clock.shift(iron_settings.WEBHOOK_RETRY_DELAY + timedelta(seconds=1))
        self.run_webhook_sweep()

    @precondition(
        lambda self: not self.fail_next_act and self.processing_failures < MAX_PROCESSING_FAILURES
    )
    @rule()
    @step
    def next_processing_fails(self) -> None:
        self.fail_next_act = True
        self.processing_failures += 1

    # --- rules: clocks ------------------------------------------------------------------

    @rule(seconds=st.sampled_from(CLOCK_STEPS))
    @step
    def time_passes(self, seconds: int) -> None:
        self.clock.shift(timedelta(seconds=seconds))

    @rule(seconds=st.integers(-20, 20))
    @step
    def iron_clock_drifts(self, seconds: int) -> None:
        seconds = max(-MAX_SKEW - self.skew, min(MAX_SKEW - self.skew, seconds))
        self.skew += seconds
        self.fake.advance(seconds)

    # --- settling -----------------------------------------------------------------------

    @rule()
    @step
    def settle(self) -> None:
        self.settle_everything()

    def settle_everything(self) -> None:
        """No more faults, time passes, everything delivered, every customer refreshed."""
        MACHINE.settled += 1
        self.fake.clear_faults()
        self.fail_next_act = False
        # The sweep catches up with intents whose task gave up.
        self.clock.shift(iron_settings.CREATE_RECOVERY_DELAY + timedelta(seconds=1))
        self.sweep()
        self.deliver_everything()
        self.act_on_everything_stored()
        if not self.lost:
            self.check_local_equals_iron(known_only=True, when="after every delivery")
        for customer in self.customers:
            services.refresh_customer(customer)
        self.deliver_everything()
        self.act_on_everything_stored()
        self.check_nothing_left_waiting()
        for customer in self.customers:
            self.check_customer_fully_known(customer)
        self.check_local_equals_iron(known_only=False, when="after every delivery and a refresh")
        left = Identification.objects.filter(
            iron_id__isnull=True, failed_at__isnull=True, superseded_at__isnull=True
        )
        assert not left.exists(), f"intents neither created nor failed: {list(left.values())}"
        self.lost = False
        self.invariants_hold()

    def check_customer_fully_known(self, customer: Customer) -> None:
        at_iron = {i["id"] for i in self.fake.identifications_of(customer.iron_id)}
        tracked = {
            str(i)
            for i in Identification.objects.filter(
                customer=customer, iron_id__isnull=False
            ).values_list("iron_id", flat=True)
        }
        assert at_iron <= tracked, f"not known locally after a refresh: {at_iron - tracked}"

    def check_local_equals_iron(self, *, known_only: bool, when: str) -> None:
        local = {
            str(row.iron_id): row
            for row in Identification.objects.filter(iron_id__isnull=False).select_related(
                "customer"
            )
        }
        for iron_id, remote in self.fake.identifications.items():
            row = local.get(iron_id)
            if row is None:
                assert known_only, f"{iron_id} unknown locally {when}"
                continue
            assert str(row.customer.iron_id) == remote["customer_id"]
            assert row.status == normalized(remote["status"]), (
                f"{when}: identification {iron_id} is {row.status!r} here and "
                f"{remote['status']!r} at Iron (superseded here: {row.superseded_at is not None})"
            )
        if not known_only:
            for customer in Customer.objects.all():
                remote_customer = self.fake.customers[str(customer.iron_id)]
                assert customer.status == remote_customer["status"], (
                    f"{when}: customer {customer.iron_id} is {customer.status!r} here and "
                    f"{remote_customer['status']!r} at Iron"
                )

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    @guarded
    def invariants_hold(self) -> None:
        if not self.ready:
            return
        rows = local_rows()
        self.check_one_in_flight_locally(rows)
        self.check_nothing_older_applied(rows)
        self.check_no_second_identification_in_flight_at_iron(rows)
        self.check_nothing_iron_created_is_lost(rows)
        self.check_signals(rows)
        self.check_deliveries_stored()
        self.check_drains_asked_for_only_when_deferred()
        self.check_tasks_failed_only_for_iron_outages()
        self._take_snapshot(rows)

    def check_one_in_flight_locally(self, rows: dict[int, dict[str, Any]]) -> None:
        in_flight: dict[int, list[int]] = {}
        for row in rows.values():
            if (
                row["superseded_at"] is None
                and row["failed_at"] is None
                and (row["status"] not in TERMINAL)
            ):
                in_flight.setdefault(row["customer_id"], []).append(row["pk"])
        assert all(len(pks) == 1 for pks in in_flight.values()), in_flight

    def check_nothing_older_applied(self, rows: dict[int, dict[str, Any]]) -> None:
        """Iron's timestamp of what we store never goes back (late updates are dropped)."""
        for row in rows.values():
            if row["iron_id"] is None:
                continue
            before = self.snapshot.get(str(row["iron_id"]))
            if before is None or before.iron_updated_at is None:
                continue
            assert row["iron_updated_at"] is not None, row
            assert row["iron_updated_at"] >= before.iron_updated_at, (
                f"#{row['pk']} went back from Iron's state of {before.iron_updated_at} "
                f"({before.status}) to {row['iron_updated_at']} ({row['status']})"
            )
        for customer in Customer.objects.values("pk", "iron_updated_at", "status"):
            before_at = self.customer_updated.get(customer["pk"])
            if before_at is not None:
                assert customer["iron_updated_at"] is not None, customer
                assert customer["iron_updated_at"] >= before_at, (customer, before_at)
            self.customer_updated[customer["pk"]] = customer["iron_updated_at"]

    def api_creations(self) -> list[Creation]:
        """The identifications Iron created for the app's requests (not the ones added by hand)."""
        return [c for c in self.fake.creations if c.idempotency_key is not None]

    def check_no_second_identification_in_flight_at_iron(
        self, rows: dict[int, dict[str, Any]]
    ) -> None:
        """Iron got a second identification in flight only when forced, or the app was blind."""
        by_key = {str(r["idempotency_key"]): r for r in rows.values()}
        new = self.api_creations()[self.creations_seen :]
        self.creations_seen += len(new)
        for creation in new:
            created = creation.identification_id
            row = by_key.get(creation.idempotency_key)
            assert row is not None, f"Iron created {created} for no intent of ours"
            if row["pk"] in self.forced:
                continue
            for other in creation.in_flight_before:
                before = self.snapshot.get(other)
                if before is None:
                    assert other in self.outside, (
                        f"{created} created while {other} was in flight at Iron, "
                        "and the app did not know about that one"
                    )
                else:
                    assert not before.in_flight, (
                        f"{created} created without force while {other} was in "
                        f"flight here too ({before})"
                    )

    def check_nothing_iron_created_is_lost(self, rows: dict[int, dict[str, Any]]) -> None:
        by_key = {str(r["idempotency_key"]): r for r in rows.values()}
        tracked = {str(r["iron_id"]): r for r in rows.values() if r["iron_id"] is not None}
        customers = {c.pk: str(c.iron_id) for c in self.customers}
        for creation in self.api_creations():
            row = tracked.get(creation.identification_id)
            if row is not None:
                assert customers[row["customer_id"]] == creation.customer_id, (
                    f"{creation.identification_id} tracked under another customer"
                )
                continue
            intent = by_key[creation.idempotency_key]
            assert intent["failed_at"] is None or intent["iron_id"] is not None, (
                f"intent #{intent['pk']} failed although Iron created "
                f"{creation.identification_id} for it"
            )

    def check_signals(self, rows: dict[int, dict[str, Any]]) -> None:
        events = self.signal_log[self.signals_seen :]
        self.signals_seen = len(self.signal_log)
        expect_terminal: SignalEvent | None = None
        for event in events:
            if expect_terminal is not None:
                name = SIGNALLED_TERMINAL[expect_terminal.status]
                missing = (
                    f"entry into {expect_terminal.status} of #{expect_terminal.pk} not "
                    f"signalled once: next signal was {event}"
                )
                assert event.name == name, missing
                assert event.pk == expect_terminal.pk, missing
                expect_terminal = None
                assert not event.superseded_db, event
                assert not event.superseded_instance, event
                assert not event.iron_superseded_by_tracked, (
                    f"#{event.pk} signalled {event.status} although Iron replaced it with an "
                    "identification the app tracks"
                )
                continue
            if event.name == "changed":
                previous = self.chain.get(event.pk, "")
                assert event.previous == previous, (
                    f"#{event.pk}: signal says {event.previous!r} -> {event.status!r}, "
                    f"last signalled status was {previous!r}"
                )
                assert event.status != event.previous, event
                self.chain[event.pk] = event.status
                if event.status in SIGNALLED_TERMINAL and not event.superseded_instance:
                    expect_terminal = event
            elif event.name == "customer":
                previous = self.customer_chain.get(event.pk, "")
                assert event.previous == previous, event
                assert event.status != event.previous, event
                self.customer_chain[event.pk] = event.status
            else:
                raise AssertionError(f"terminal signal without its status change: {event}")
        assert expect_terminal is None, f"no terminal signal for {expect_terminal}"
        for row in rows.values():
            if row["status"]:
                assert self.chain.get(row["pk"]) == row["status"], (
                    f"#{row['pk']} is {row['status']!r}, signalled {self.chain.get(row['pk'])!r}"
                )
        for customer in Customer.objects.values("pk", "status"):
            if customer["status"]:
                assert self.customer_chain.get(customer["pk"]) == customer["status"], customer

    def check_tasks_failed_only_for_iron_outages(self) -> None:
        unexpected = [
            (name, exc)
            for name, exc in self.task_failures
            if not isinstance(exc, IronTransientError)
        ]
        assert not unexpected, f"tasks failed: {unexpected}"

    def check_deliveries_stored(self) -> None:
        stored = dict(WebhookDelivery.objects.values_list("webhook_id", "outcome"))
        assert self.accepted <= set(stored), f"accepted, not stored: {self.accepted - set(stored)}"
        assert set(stored) <= self.accepted | self.failed_ids, "stored a refused delivery"
        allowed = FINAL_OUTCOMES | WAITING_OUTCOMES if self.deferred else FINAL_OUTCOMES
        for webhook_id in self.accepted:
            assert stored[webhook_id] in allowed, (self.mode, webhook_id, stored[webhook_id])

    def check_drains_asked_for_only_when_deferred(self) -> None:
        assert self.deferred or not self.drains.sent, "inline processing asked for a drain"

    def check_answered_received_acted_on(self) -> None:
        """After a drain: it acted on every delivery answered ``received`` before it ran.

        The answer promises it ("stored, to be acted on by a Celery task moments later"),
        also for a delivery Iron sends again.
        """
        attempts = dict(
            WebhookDelivery.objects.filter(webhook_id__in=self.awaiting_drain).values_list(
                "webhook_id", "attempts"
            )
        )
        not_acted_on = {
            webhook_id: (before, attempts.get(webhook_id))
            for webhook_id, before in self.awaiting_drain.items()
            if attempts.get(webhook_id, 0) <= before
        }
        assert not not_acted_on, (
            "answered received, not acted on by the drain that ran after "
            f"(webhook-id: attempts when answered, now): {not_acted_on}; stored: "
            + repr(
                list(
                    WebhookDelivery.objects.filter(webhook_id__in=not_acted_on).values(
                        "webhook_id", "outcome", "attempts", "error"
                    )
                )
            )
        )
        self.awaiting_drain.clear()

    def check_nothing_left_waiting(self) -> None:
        """After settling: no delivery is left ``received`` (or ``failed``)."""
        waiting = list(
            WebhookDelivery.objects.filter(outcome__in=WAITING_OUTCOMES).values(
                "webhook_id", "outcome", "attempts", "error"
            )
        )
        assert not waiting, f"{self.mode}: left to act on after settling: {waiting}"
        self.awaiting_drain.clear()

    def _take_snapshot(self, rows: dict[int, dict[str, Any]] | None = None) -> None:
        if rows is None:
            rows = local_rows()
        self.snapshot = {
            str(r["iron_id"]): LocalRow(
                r["pk"],
                r["customer_id"],
                r["status"],
                r["superseded_at"] is not None,
                r["failed_at"] is not None,
                r["iron_updated_at"],
            )
            for r in rows.values()
            if r["iron_id"] is not None
        }


# A failure is shrunk before it is reported; Hypothesis shrinks for up to five minutes.
@pytest.mark.timeout(900)
def test_app_and_fake_iron_under_random_faults_keep_every_invariant() -> None:
    run_state_machine_as_test(
        IronMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    assert MACHINE.examples >= 1
