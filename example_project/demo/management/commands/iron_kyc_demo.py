"""``python example_project/manage.py iron_kyc_demo``: the whole flow, over real HTTP.

A fake Iron (``django_iron_kyc.testing.FakeIron``) and this project's own web server listen
on free ports of 127.0.0.1; the fake POSTs its signed webhooks to the project's webhook URL.
In a fresh SQLite database, with Celery running tasks in-process:

1. customer 1 is created at Iron, gets a Link identification (its hosted URL is printed),
   is approved through the sandbox endpoint, and Iron's webhooks are delivered: the
   ``accounts`` receivers mark the user verified;
2. customer 2 the same way, declined;
3. customer 3 is approved at Iron with no webhook at all: the poll sweep finds it;
4. user 4 verifies themselves: logs in, presses "Verify my identity" on the app's page,
   approves on the fake Iron's hosted page and comes back to "verified" (``journey.py``).

Every outcome is checked, not only printed. Exit status 0 with a summary, or 1 with the
step that failed. No Iron account and no network beyond loopback.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import tempfile
import time
import traceback
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from django_iron_kyc import services, tasks
from django_iron_kyc.conf import iron_settings
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.testing import FakeIron, SignalRecorder

from ...journey import SelfService
from ...runtime import (
    WebServer,
    pointed_at,
    run_tasks_in_process,
    use_sqlite_file,
)

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

PEOPLE = (
    ("ada", "ada@example.com", "Ada Lovelace"),
    ("grace", "grace@example.com", "Grace Hopper"),
    ("alan", "alan@example.com", "Alan Turing"),
)
# Verifies herself through the app's page: no code of the host project starts anything.
SELF_SERVICE = ("katherine", "katherine@example.com", "Katherine Johnson")


class DemoFailed(Exception):
    """An expected outcome did not happen."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


class LogCollector(logging.Handler):
    """Holds log records (from any thread) until the step they belong to is printed."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self.lock:  # type: ignore[union-attr]
            self.lines.append(line)

    def drain(self) -> list[str]:
        with self.lock:  # type: ignore[union-attr]
            lines, self.lines = self.lines, []
        return lines


class Command(BaseCommand):
    help = (
        "Run django-iron-kyc's whole flow against a fake Iron over real HTTP on 127.0.0.1 "
        "(approved by sandbox + webhook, declined, approved found by polling) and check it."
    )
    # The checks run once the settings point at the demo's fake Iron and database.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--db",
            type=Path,
            metavar="PATH",
            help="SQLite file to use: created fresh (an existing one is replaced) and kept "
            "afterwards. Default: a temporary file, removed at the end.",
        )

    def handle(self, *args: Any, db: Path | None = None, **options: Any) -> None:
        self.started = time.monotonic()
        self.step_no = 0
        self.step_title = "starting"
        self.verbosity = int(options.get("verbosity", 1))
        tmp_dir: str | None = None
        if db is None:
            tmp_dir = tempfile.mkdtemp(prefix="iron-kyc-demo-")
            path = Path(tmp_dir) / "demo.sqlite3"
        else:
            path = db.resolve()
            for leftover in (path, *(Path(f"{path}{s}") for s in ("-journal", "-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
        self.db_path = path
        self.logs = LogCollector()
        try:
            with ExitStack() as stack:
                self.run(stack)
        except DemoFailed as exc:
            self.show_logs()
            raise CommandError(
                f"Demo FAILED at step {self.step_no + 1} ({self.step_title}): {exc}"
            ) from None
        except Exception as exc:
            self.show_logs()
            self.stderr.write(traceback.format_exc())
            raise CommandError(
                f"Demo FAILED at step {self.step_no + 1} ({self.step_title}): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        finally:
            connections.close_all()
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)

    # --- output -----------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def step(self, text: str) -> None:
        """One line per step done (then what the host project logged during it)."""
        self.step_no += 1
        self.say(f"[{self.step_no:2d}] {text}")
        self.show_logs()

    def show_logs(self) -> None:
        for line in self.logs.drain():
            self.say(f"       log {line}")

    def begin(self, title: str) -> None:
        """Name the step about to run: a failure in it is reported under this title."""
        self.step_title = title

    # --- the flow ---------------------------------------------------------------------------

    def run(self, stack: ExitStack) -> None:
        self.say(
            "django-iron-kyc demo: the whole flow over real HTTP on 127.0.0.1; no Iron account"
        )

        self.begin("start the fake Iron")
        # Credentials made up for this run; the project's settings get the same ones.
        fake = FakeIron(api_key=secrets.token_urlsafe(24), webhook_secret=secrets.token_urlsafe(24))
        stack.enter_context(fake)
        stack.enter_context(pointed_at(fake))
        self.fake = fake
        self.step(f"fake Iron listening at {fake.base_url}")

        self.begin("create the database")
        use_sqlite_file(self.db_path)
        run_tasks_in_process()
        call_command("migrate", interactive=False, verbosity=0)
        self.check()
        self.step(
            f"database: fresh SQLite file {self.db_path}, migrated; Celery runs tasks in-process",
        )

        self.begin("start the web server")
        server = WebServer().start()
        stack.callback(server.stop)
        fake.webhook_url = server.webhook_url
        self.step(
            f"this project served at {server.base_url} (threaded WSGI); "
            f"Iron's webhooks go to {server.webhook_url}",
        )

        if self.verbosity < 2:
            # The app's own INFO lines repeat the steps below; -v 2 shows them. (Set after the
            # web server started: loading the WSGI application configures logging again.)
            logging.getLogger("django_iron_kyc").setLevel(logging.WARNING)

        # What the accounts receivers log is shown under the step that caused it.
        host_logger = logging.getLogger("accounts")
        handlers, propagate = host_logger.handlers[:], host_logger.propagate
        host_logger.handlers, host_logger.propagate = [self.logs], False
        stack.callback(setattr, host_logger, "handlers", handlers)
        stack.callback(setattr, host_logger, "propagate", propagate)

        self.recorder = stack.enter_context(SignalRecorder())
        self.deliveries: Counter[str] = Counter()

        ada, grace, alan = PEOPLE
        self.say(f"Customer 1: {ada[1]}, approved through the sandbox endpoint, then webhooks")
        self.decided_in_sandbox(ada, approve=True)
        self.say(f"Customer 2: {grace[1]}, declined through the sandbox endpoint, then webhooks")
        self.decided_in_sandbox(grace, approve=False)
        self.say(f"Customer 3: {alan[1]}, approved at Iron with no webhook: found by polling")
        self.found_by_polling(alan)
        self.say(
            f"Customer 4: {SELF_SERVICE[1]} verifies herself: the page "
            f"{reverse('iron_kyc:verify')}, then Iron's hosted page"
        )
        SelfService(self, fake, server.base_url, expect).run(SELF_SERVICE)

        self.begin("final checks")
        expect(not fake.outbox, f"{len(fake.outbox)} webhook(s) were never delivered")
        stored = WebhookDelivery.objects.count()
        sent = sum(self.deliveries.values())
        expect(stored == sent, f"{sent} webhook(s) delivered but {stored} stored")
        failed = WebhookDelivery.objects.filter(outcome=WebhookDelivery.Outcome.FAILED).count()
        expect(not failed, f"{failed} webhook delivery(ies) failed to process")
        self.summary()

    def create(self, person: tuple[str, str, str]) -> tuple[Any, Customer, Identification]:
        username, email, name = person
        self.begin(f"{username}: create the customer at Iron")
        user = get_user_model().objects.create_user(username, email=email)
        customer = services.create_customer(email=email, name=name, user=user)
        expect(customer.iron_id, f"{email} has no Iron id after create_customer")
        expect(
            customer.status == Customer.Status.IDENTIFICATION_REQUIRED,
            f"{email}: Iron status {customer.status!r}, expected IdentificationRequired",
        )
        self.step(
            f"{username}: created at Iron (POST /api/customers): customer {customer.iron_id}, "
            f"{customer.status}",
        )

        self.begin(f"{username}: start a Link identification")
        identification = services.start_identification(customer)
        identification.refresh_from_db()
        expect(
            identification.iron_id and identification.status == Identification.Status.PENDING,
            f"{email}: identification is {identification}, expected Pending at Iron "
            f"({identification.last_error or 'no error recorded'})",
        )
        expect(identification.url, f"{email}: Iron gave no hosted URL")
        self.step(
            f"{username}: Link identification {identification.iron_id} Pending "
            f"(Celery task create_identification); hosted URL: {identification.url}",
        )
        return user, customer, identification

    def decided_in_sandbox(self, person: tuple[str, str, str], *, approve: bool) -> None:
        username, email, _ = person
        user, customer, identification = self.create(person)
        expected = Identification.Status.APPROVED if approve else Identification.Status.DECLINED
        verb = "approve" if approve else "decline"

        self.begin(f"{username}: sandbox {verb}")
        decide = services.sandbox_approve if approve else services.sandbox_decline
        identification = decide(identification)
        expect(
            identification.status == expected,
            f"{email}: status {identification.status!r} after sandbox {verb}, expected {expected}",
        )
        self.step(
            f"{username}: sandbox {verb} (POST /api/sandbox/identification/{{id}}): Iron "
            f"answers {identification.status}, applied at once",
        )

        self.deliver_webhooks(username)

        self.begin(f"{username}: the host project's receiver")
        user.refresh_from_db()
        customer.refresh_from_db()
        signal = "identification_approved" if approve else "identification_declined"
        received = self.received(signal, email)
        expect(len(received) == 1, f"{email}: {signal} received {len(received)} times, not once")
        want = user.KycStatus.VERIFIED if approve else user.KycStatus.DECLINED
        expect(
            user.kyc_status == want,
            f"{email}: user is {user.kyc_status!r}, expected {want.value!r}",
        )
        want_customer = (
            Customer.Status.ACTIVE if approve else Customer.Status.IDENTIFICATION_REQUIRED
        )
        expect(
            customer.status == want_customer,
            f"{email}: customer is {customer.status!r} at Iron, expected {want_customer}",
        )
        customer_changes = self.received("customer_status_changed", email)
        self.step(
            f"{username}: user {username!r} is {user.kyc_status}: {signal} was sent once "
            f"(via {received[0]['source']}; the webhook repeating it changed nothing); "
            f"customer {customer.status} (via {customer_changes[-1]['source']})",
        )

    def deliver_webhooks(self, username: str) -> None:
        self.begin(f"{username}: deliver Iron's webhooks")
        queued = list(self.fake.outbox)
        expect(queued, "the fake Iron queued no webhook for this decision")
        for delivery in queued:
            [result] = self.fake.deliver_webhooks(deliveries=[delivery])
            message = delivery.event["data"]["message"]  # flat, or tagged {"Tag": {...}}
            inner = message if "status" in message else next(iter(message.values()), {})
            status = inner.get("status", "?")
            try:
                outcome = json.loads(result.body).get("outcome", "")
            except ValueError:
                outcome = ""
            self.step(
                f"{username}: webhook {delivery.type} ({status}) POSTed, signed, to the web "
                f"server -> HTTP {result.status_code} {outcome}".rstrip(),
            )
            expect(
                result.status_code == 200,
                f"webhook {delivery.type} answered {result.status_code} "
                f"({result.error or result.body[:200]!r})",
            )
            self.deliveries[outcome] += 1

    def found_by_polling(self, person: tuple[str, str, str]) -> None:
        username, email, _ = person
        user, customer, identification = self.create(person)

        self.begin(f"{username}: Iron decides, no webhook")
        self.fake.set_identification_status(
            identification.iron_id, Identification.Status.APPROVED, notify=False
        )
        expect(not self.fake.outbox, "the fake Iron queued a webhook; this step needs none")
        identification.refresh_from_db()
        user.refresh_from_db()
        expect(
            identification.status == Identification.Status.PENDING and not user.is_verified,
            f"{email}: changed locally without any webhook or poll",
        )
        self.step(
            f"{username}: Iron approves it on its side and no webhook arrives; here it is still "
            f"{identification.status}, user {user.kyc_status}",
        )

        self.begin(f"{username}: make the poll due")
        first = iron_settings.POLL_FIRST_DELAY.total_seconds()
        Identification.objects.filter(pk=identification.pk).update(next_poll_at=timezone.now())
        self.step(
            f"{username}: its first poll is due {first:g} s after creation; the demo makes it "
            "due now instead of waiting",
        )

        self.begin("the poll sweep")
        result = tasks.poll_pending_identifications.delay().get()
        expect(
            result.get("polled") == 1 and result.get("changed") == 1,
            f"the sweep polled {result.get('polled')} and changed {result.get('changed')}, "
            "expected 1 and 1",
        )
        self.step(
            f"poll sweep (Celery task poll_pending_identifications, every minute under beat): "
            f"polled {result['polled']}, changed {result['changed']}",
        )

        self.begin(f"{username}: the host project's receiver")
        identification.refresh_from_db()
        user.refresh_from_db()
        customer.refresh_from_db()
        received = self.received("identification_approved", email)
        expect(
            identification.status == Identification.Status.APPROVED,
            f"{email}: identification {identification.status!r} after the poll, expected Approved",
        )
        expect(
            len(received) == 1 and received[0]["source"] == "poll",
            f"{email}: identification_approved received {[r['source'] for r in received]}, "
            "expected once from the poll",
        )
        expect(user.is_verified, f"{email}: user is {user.kyc_status!r} after the poll")
        expect(
            customer.status == Customer.Status.ACTIVE,
            f"{email}: customer is {customer.status!r} at Iron, expected Active",
        )
        self.step(
            f"{username}: user {username!r} is {user.kyc_status}: identification_approved was "
            f"sent once (via poll); customer {customer.status} (via poll)",
        )

    # --- what the host project received -----------------------------------------------------

    def received(self, name: str, email: str) -> list[dict[str, Any]]:
        """The kwargs of each ``name`` signal sent about the customer with this email."""
        return [kw for kw in self.recorder.kwargs_of(name) if kw["customer"].email == email]

    def sources(self, name: str) -> Counter[str]:
        """How many ``name`` signals came from each source (webhook, poll...)."""
        return Counter(kw["source"] for kw in self.recorder.kwargs_of(name))

    # --- summary ----------------------------------------------------------------------------

    def summary(self) -> None:
        rows = []
        for _, email, _ in (*PEOPLE, SELF_SERVICE):
            customer = Customer.objects.select_related("user").get(email=email)
            current = customer.current_identification
            status = customer.user.kyc_status
            rows.append(
                (
                    email,
                    customer.status,
                    current.status if current else "-",
                    "yes" if status == "verified" else f"no ({status})",
                )
            )
        self.say()
        self.say("Summary")
        self.table(("customer", "Iron status", "identification", "verified?"), rows)

        self.say()
        self.say("Signals received by the host project")
        counts = Counter(self.recorder.names())
        self.table(
            ("signal", "count", "sources"),
            [
                (
                    name,
                    str(count),
                    ", ".join(f"{s} {n}" for s, n in sorted(self.sources(name).items())),
                )
                for name, count in sorted(counts.items())
            ],
        )

        self.say()
        self.say("Iron calls made (as the fake Iron recorded them)")
        calls: Counter[str] = Counter(
            f"{r.method:4} {UUID_RE.sub('{id}', r.path)}" for r in self.fake.requests
        )
        self.table(("call", "count"), [(call, str(n)) for call, n in calls.items()])

        self.say()
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(self.deliveries.items()))
        self.say(
            f"Webhooks: {sum(self.deliveries.values())} delivered over HTTP, "
            f"all answered 200 ({outcomes})"
        )
        self.say(f"Time taken: {time.monotonic() - self.started:.1f} s")
        self.say()
        self.say("Result: OK")
        self.say(f"  approved: {PEOPLE[0][1]} (sandbox, then webhook)")
        self.say(f"  declined: {PEOPLE[1][1]} (sandbox, then webhook)")
        self.say(f"  polled:   {PEOPLE[2][1]} (approved at Iron, no webhook, found by polling)")
        self.say(f"  herself:  {SELF_SERVICE[1]} (the verify page, then Iron's hosted page)")

    def table(self, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
        for row in (header, *rows):
            self.say(
                "  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )
