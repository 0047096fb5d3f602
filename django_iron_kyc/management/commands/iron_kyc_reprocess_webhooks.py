"""``manage.py iron_kyc_reprocess_webhooks``: process stored webhook deliveries again."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from ...models import WebhookDelivery
from ...services.deliveries import reprocess_delivery

Outcome = WebhookDelivery.Outcome


class Command(BaseCommand):
    help = (
        "Process stored Iron webhook deliveries again, through the same code as the webhook "
        "view. By default every delivery whose processing failed; --id and --outcome choose "
        "others. Safe to repeat: stale or repeated states change nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--id",
            dest="ids",
            nargs="+",
            default=[],
            metavar="ID",
            help="Delivery primary keys or webhook-ids (any outcome unless --outcome is given).",
        )
        parser.add_argument(
            "--outcome",
            dest="outcomes",
            nargs="+",
            default=[],
            choices=Outcome.values,
            help="Only deliveries with these outcomes (default: failed, when no --id is given).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be processed; change nothing."
        )

    def handle(self, *args: Any, ids: list[str], outcomes: list[str], **options: Any) -> None:
        deliveries = WebhookDelivery.objects.all()
        if ids:
            pks = [int(value) for value in ids if value.isascii() and value.isdigit()]
            deliveries = deliveries.filter(
                Q(webhook_id__in=ids) | Q(pk__in=[pk for pk in pks if pk < 2**63])
            )
        if outcomes or not ids:
            deliveries = deliveries.filter(outcome__in=outcomes or [Outcome.FAILED])
        rows = list(
            deliveries.order_by("received_at", "pk").values_list("pk", "webhook_id", "outcome")
        )
        if ids:
            found = {str(pk) for pk, _, _ in rows} | {wid for _, wid, _ in rows if wid}
            for value in ids:
                if value not in found:
                    self.stderr.write(f"No delivery matches {value!r}.")

        if options["dry_run"]:
            for pk, webhook_id, outcome in rows:
                self.stdout.write(
                    f"Would reprocess #{pk} ({webhook_id or 'no webhook-id'}, {outcome})."
                )
            self.stdout.write(f"{len(rows)} deliveries would be reprocessed.")
            return

        tally: Counter[str] = Counter()
        for pk, webhook_id, before in rows:
            outcome = reprocess_delivery(pk)
            tally[outcome] += 1
            if options["verbosity"] >= 2:
                self.stdout.write(f"#{pk} ({webhook_id or 'no webhook-id'}): {before} -> {outcome}")
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(tally.items()))
        self.stdout.write(
            f"Reprocessed {len(rows)} deliveries" + (f": {summary}." if rows else ".")
        )
        if tally[Outcome.FAILED]:
            raise CommandError(
                f"{tally[Outcome.FAILED]} deliveries failed again; their error and traceback "
                "are on the delivery rows (admin: Webhook deliveries)."
            )
