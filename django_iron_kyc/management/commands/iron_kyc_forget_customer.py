"""``manage.py iron_kyc_forget_customer IRON_ID... [--archive-at-iron] [--yes]``: erasure.

Runs ``services.forget_customer`` for each customer, after saying what it deletes and
asking. It prints Iron ids and counts only, never a name or an email.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError

from ...exceptions import IronKycError
from ...models import Customer
from ...services import customer_data_counts, forget_customer


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in counts.items())


class Command(BaseCommand):
    help = (
        "Forget customers, given by their Iron ids: delete the customer, its identifications "
        "and the webhook deliveries that name it, and remove its name from the admin's history "
        "(services.forget_customer). With --archive-at-iron, archive each at Iron first, which "
        "cannot be undone; one Iron refuses is left as it was. Asks first unless --yes "
        "(needed when standard input is not a terminal)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("iron_ids", nargs="+", metavar="IRON_ID", help="Iron customer ids.")
        parser.add_argument(
            "--archive-at-iron",
            action="store_true",
            help="Archive each customer (and its identifications) at Iron first: irreversible.",
        )
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args: Any, iron_ids: list[str], **options: Any) -> None:
        customers = self._customers(iron_ids)
        archive = options["archive_at_iron"]
        for customer in customers:
            counts = _counts(customer_data_counts(customer))
            self.stdout.write(f"Customer {customer.iron_id}: {counts}.")
        if archive:
            self.stdout.write("Each is archived at Iron first: this cannot be undone.")
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError("Nothing forgotten: pass --yes to forget without being asked.")
            answer = input(f"Forget these {len(customers)} customers here? [y/N] ")
            if answer.strip().lower() not in {"y", "yes"}:
                self.stdout.write("Nothing forgotten.")
                return
        failed = 0
        for customer in customers:
            try:
                counts = _counts(forget_customer(customer, archive_at_iron=archive))
            except (IronKycError, ProtectedError, RestrictedError) as exc:
                failed += 1
                reason = exc.args[0] if isinstance(exc, IntegrityError) else exc
                self.stderr.write(f"Customer {customer.iron_id} not forgotten: {reason}")
                continue
            self.stdout.write(f"Forgot customer {customer.iron_id}: {counts}.")
        if failed:
            raise CommandError(f"{failed} of {len(customers)} customers not forgotten.")

    def _customers(self, iron_ids: list[str]) -> list[Customer]:
        try:
            wanted = list(dict.fromkeys(uuid.UUID(value) for value in iron_ids))
        except ValueError:
            raise CommandError("Every IRON_ID must be an Iron customer id (a UUID).") from None
        found = {c.iron_id: c for c in Customer.objects.filter(iron_id__in=wanted)}
        unknown = [str(iron_id) for iron_id in wanted if iron_id not in found]
        if unknown:
            raise CommandError(f"No customer here with Iron id {', '.join(unknown)}.")
        return [found[iron_id] for iron_id in wanted]
