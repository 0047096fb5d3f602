"""``python example_project/manage.py iron_kyc_devserver``: explore the admin by hand.

Starts a fake Iron on 127.0.0.1:8765 that delivers its signed webhooks to this server as
they happen, creates a fresh SQLite database with a superuser (the credentials are printed)
and a few customers (two with a pending identification), then runs Django's development
server. Open ``/admin/``, approve or decline identifications with the sandbox actions, or
open an identification's hosted URL (the fake's page) and decide there: the webhook brings
the decision back, and the ``accounts`` receivers mark the user verified or not. A demo
user (credentials printed too) logs in at ``/accounts/login/`` and verifies themselves on
the app's page ``/iron/verify/``.

The fake keeps its state in memory only, so every start begins with a fresh database.
Celery runs tasks in-process. Stop with Ctrl-C.
"""

from __future__ import annotations

import secrets
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from django_iron_kyc import services
from django_iron_kyc.testing import FakeIron

from ...runtime import pointed_at, run_tasks_in_process, use_sqlite_file

CUSTOMERS = (
    # username, email, name, start an identification?
    ("ada", "ada@example.com", "Ada Lovelace", True),
    ("grace", "grace@example.com", "Grace Hopper", True),
    ("alan", "alan@example.com", "Alan Turing", False),
)
# Logs in and verifies herself on the app's page: no customer at Iron yet.
DEMO_USER = ("katherine", "katherine@example.com", "Katherine", "Johnson")


class Command(BaseCommand):
    help = (
        "Run the development server with a fake Iron alongside (webhooks delivered as they "
        "happen), a fresh database, a superuser and a few customers to try the admin on."
    )
    # runserver runs the checks once the settings point at the fake Iron.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "addrport",
            nargs="?",
            default="127.0.0.1:8000",
            help="address and port of the development server (default 127.0.0.1:8000)",
        )
        parser.add_argument(
            "--fake-port",
            type=int,
            default=8765,
            help="port of the fake Iron on 127.0.0.1 (default 8765; 0 = any free port)",
        )
        parser.add_argument(
            "--db",
            type=Path,
            metavar="PATH",
            help="SQLite file, created fresh at every start "
            "(default example_project/devserver.sqlite3)",
        )
        parser.add_argument(
            "--username", default="admin", help="the superuser's name (default admin)"
        )
        parser.add_argument(
            "--password", help="the superuser's password (default: a new random one, printed)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Ctrl-C, and `kill`, stop both servers cleanly, even when started from a script that
        # ignores SIGINT (background jobs of a non-interactive shell inherit that).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        addr, _, port = options["addrport"].rpartition(":")
        addr = addr or "127.0.0.1"
        if not port.isdigit():
            raise CommandError(f"{options['addrport']!r} is not an address:port or a port.")
        base_url = f"http://{addr}:{port}"
        path: Path = (options["db"] or Path(settings.BASE_DIR) / "devserver.sqlite3").resolve()
        for leftover in (path, *(Path(f"{path}{s}") for s in ("-journal", "-wal", "-shm"))):
            leftover.unlink(missing_ok=True)

        fake = FakeIron(
            api_key=settings.FAKE_IRON_API_KEY,
            webhook_secret=settings.FAKE_IRON_WEBHOOK_SECRET,
            webhook_url=base_url + reverse("iron_kyc:webhook"),
            port=options["fake_port"],
        )
        try:
            fake.start()
        except OSError as exc:
            raise CommandError(
                f"Cannot start the fake Iron on 127.0.0.1:{options['fake_port']} ({exc}); "
                "pass --fake-port 0 for any free port."
            ) from None
        try:
            with pointed_at(fake):
                use_sqlite_file(path)
                run_tasks_in_process()
                call_command("migrate", interactive=False, verbosity=0)
                password = self.create_superuser(options["username"], options["password"])
                demo_password = self.create_demo_user()
                seeded = self.seed()
                # What the seeding queued was applied from Iron's answers already.
                fake.outbox.clear()
                fake.auto_deliver = True
                self.explain(fake, base_url, path, options["username"], password, seeded)
                self.explain_demo_user(base_url, demo_password)
                call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            fake.stop()

    def create_superuser(self, username: str, password: str | None) -> str:
        password = password or secrets.token_urlsafe(9)
        get_user_model().objects.create_superuser(
            username, email=f"{username}@example.com", password=password
        )
        return password

    def create_demo_user(self) -> str:
        username, email, first_name, last_name = DEMO_USER
        password = secrets.token_urlsafe(9)
        get_user_model().objects.create_user(
            username, email=email, password=password, first_name=first_name, last_name=last_name
        )
        return password

    def explain_demo_user(self, base_url: str, password: str) -> None:
        say = self.stdout.write
        say(f"Demo user:  {base_url}{reverse('login')} (verifies herself at {base_url}/verify/)")
        say(f"  username: {DEMO_USER[0]}")
        say(f"  password: {password}")
        say("  'Verify my identity' leads to the fake Iron's hosted page; approve there, come")
        say("  back to /verify/ and it says 'Your identity is verified'.")
        say("")
        self.stdout.flush()

    def seed(self) -> list[tuple[str, Any]]:
        """Customers at the fake Iron; the first ones with a pending identification."""
        seeded = []
        for username, email, name, start in CUSTOMERS:
            user = get_user_model().objects.create_user(username, email=email)
            customer = services.create_customer(email=email, name=name, user=user)
            identification = services.start_identification(customer) if start else None
            if identification is not None:
                identification.refresh_from_db()
            seeded.append((email, identification))
        return seeded

    def explain(
        self,
        fake: FakeIron,
        base_url: str,
        path: Path,
        username: str,
        password: str,
        seeded: list[tuple[str, Any]],
    ) -> None:
        say = self.stdout.write
        say("")
        say(f"Fake Iron:  {fake.base_url} (webhooks go to {fake.webhook_url} as they happen)")
        say(f"Database:   {path} (fresh at every start: the fake forgets everything)")
        say(f"Admin:      {base_url}/admin/")
        say(f"  username: {username}")
        say(f"  password: {password}")
        say("Customers:")
        for email, identification in seeded:
            if identification is None:
                url = reverse("admin:iron_kyc_customer_changelist")
                say(f"  {email}: at Iron, no identification yet (start one: {base_url}{url})")
                continue
            change = reverse("admin:iron_kyc_identification_change", args=[identification.pk])
            say(
                f"  {email}: identification {identification.status or 'not at Iron yet'}, "
                f"admin {base_url}{change}"
            )
            say(f"    the customer's hosted page at the fake Iron: {identification.url}")
        say("Try: Iron KYC > Identifications > select > 'Approve in sandbox' (or Decline); or")
        say("open a hosted page and decide there: the webhook brings the decision back, and")
        say("Accounts > Users shows who is verified. Ctrl-C stops both servers.")
        say("")
        self.stdout.flush()
