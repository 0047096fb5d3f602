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
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from unittest import mock

import pytest
import time_machine
from celery import Task
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

from django_iron_kyc import services, tasks
from django_iron_kyc.conf import WEBHOOK_DEFERRED, WEBHOOK_PROCESSING_MODES, iron_settings
from django_iron_kyc.exceptions import IdentificationInFlightError, IronAPIError, IronTransientError
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.payloads import WebhookEvent
from django_iron_kyc.services import deliveries
from django_iron_kyc.testing import Delivery, FakeIron, WebhookSender
from django_iron_kyc.webhooks import drain as webhook_drain
from tests.celery import app as celery_app
from tests.reliability.machine import (
    FINAL_OUTCOMES,
    WAITING_OUTCOMES,
    LocalRow,
    MachineChecks,
    QueuedDrains,
    SignalEvent,
    guarded,
    local_rows,
    step,
)
from tests.reliability.stats import MACHINE

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("IRON_KYC_RELIABILITY_EXAMPLES", "50"))
STEPS = int(os.environ.get("IRON_KYC_RELIABILITY_STEPS", "40"))

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
# Iron's lifecycle, written here for the machine's Iron (not the app's rule, which it tests).
LIFECYCLE_RANK = {
    "Pending": 0,
    "Processed": 1,
    "PendingReview": 2,
    **dict.fromkeys(["Approved", "Declined", "Rejected", "Expired"], 3),
    "Archived": 4,
}


def lawful_move(current: str, status: str) -> bool:
    """Forward in the lifecycle, a step-up from a decision back to Pending, or Archived."""
    if LIFECYCLE_RANK[status] > LIFECYCLE_RANK[current]:
        return True
    return LIFECYCLE_RANK[current] == 3 and status == "Pending"


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


ACT = deliveries.act_on_event  # the app's, which each example wraps (IronMachine._act_or_fail)


class IronMachine(MachineChecks, RuleBasedStateMachine):
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

    # --- helpers ------------------------------------------------------------------------

    @property
    def deferred(self) -> bool:
        return self.mode == WEBHOOK_DEFERRED

    def customer(self, index: int) -> Customer:
        return self.customers[index % len(self.customers)]

    def _act_or_fail(
        self, row: WebhookDelivery, event: WebhookEvent, *args: Any, **kwargs: Any
    ) -> str:
        """``act_on_event``, failing after it acted when ``next_processing_fails`` armed it."""
        outcome = ACT(row, event, *args, **kwargs)
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
        """Iron moves one identification, as its lifecycle allows (our contract, Part A item
        5): forward, or from a decision back to Pending (a step-up), or to Archived."""
        ids = self.iron_ids()
        iron_id = ids[pick % len(ids)]
        current = self.fake.identifications[iron_id]["status"]
        if lawful_move(current, status):
            self.fake.set_identification_status(iron_id, status)

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

    @precondition(lambda self: bool(self.delivered))
    @rule(pick=st.integers(0, 50))
    @step
    def resend_old_event_with_a_new_timestamp(self, pick: int) -> None:
        """Iron retries an old event with a later send time in its body too (its
        timestamps are send times): never trusted over a newer decision."""
        delivery = self.delivered[pick % len(self.delivered)]
        self.fake.resend(delivery, new_id=True, new_timestamp=True)

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
