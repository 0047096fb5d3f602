"""What the reliability state machine (test_state_machine.py) records and checks.

- :class:`QueuedDrains`: the app's drain scheduler on the machine's clock, its messages
  queued here (the broker);
- :func:`guarded` and :func:`step`: the decorators of the machine's rules;
- :class:`MachineChecks`: the half of ``IronMachine`` that records every signal and checks
  the invariants test_state_machine.py's docstring lists, after every step and after
  settling. It reads what the machine records as it runs (the attributes below).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from celery import signals as celery_signals

from django_iron_kyc import signals
from django_iron_kyc.exceptions import IronTransientError
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.payloads import normalize_identification_status
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.fake import Creation
from django_iron_kyc.webhooks import drain as webhook_drain
from tests.reliability.stats import MACHINE

TERMINAL = Identification.TERMINAL_STATUSES
SIGNALLED_TERMINAL = {
    "Approved": "identification_approved",
    "Declined": "identification_declined",
    "Expired": "identification_expired",
}
FINAL_OUTCOMES = {"processed", "duplicate", "stale", "ignored", "unknown_object"}
# Deferred: stored, to be acted on by the drain, or the sweep's retry after a failure.
WAITING_OUTCOMES = {"received", "failed"}
F = TypeVar("F", bound=Callable[..., Any])


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

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
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

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        MACHINE.steps += 1
        MACHINE.rules[method.__name__] += 1
        return method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return guarded(wrapper)  # type: ignore[arg-type]


def normalized(status: str) -> str:
    return normalize_identification_status(status)


class MachineChecks:
    """Signal recording and the invariant checks of ``IronMachine`` (a mixin)."""

    # Set up by IronMachine (its __init__ and setup rule) and read here.
    fake: FakeIron
    mode: str
    deferred: bool
    customers: list[Customer]
    drains: QueuedDrains
    forced: set[int]  # intents started with force=True
    outside: set[str]  # identifications Iron made outside the app
    accepted: set[str]  # webhook ids answered 2xx
    failed_ids: set[str]  # webhook ids answered 5xx
    awaiting_drain: dict[str, int]  # answered received: the row's attempts then
    task_failures: list[tuple[str, BaseException]]
    # Kept here from one check to the next.
    signal_log: list[SignalEvent]
    signals_seen: int
    chain: dict[int, str]
    customer_chain: dict[int, str]
    customer_updated: dict[int, datetime | None]
    snapshot: dict[str, LocalRow]
    creations_seen: int
    _receivers: list[tuple[Any, str]]

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
