"""``manage.py iron_kyc_prune_webhooks --older-than DAYS``: delete old webhook deliveries."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from ...models import WebhookDelivery

Outcome = WebhookDelivery.Outcome
# Not acted on yet: kept unless --include-failed, so nothing is lost unnoticed.
UNFINISHED = (Outcome.FAILED, Outcome.RECEIVED)


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError("--older-than must be at least 1 day")
    return days


class Command(BaseCommand):
    help = (
        "Delete stored Iron webhook deliveries received more than DAYS days ago. Failed "
        "(and never processed) deliveries are kept unless --include-failed is given. "
        "Keep at least as many days as Iron may take to retry a delivery: a pruned "
        "webhook-id is no longer recognised as a duplicate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", dest="days", type=_days, required=True, metavar="DAYS")
        parser.add_argument(
            "--include-failed",
            action="store_true",
            help="Also delete failed and never-processed deliveries.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, days: int, **options: Any) -> None:
        old = WebhookDelivery.objects.filter(received_at__lt=timezone.now() - timedelta(days=days))
        doomed = old if options["include_failed"] else old.exclude(outcome__in=UNFINISHED)
        kept = 0 if options["include_failed"] else old.filter(outcome__in=UNFINISHED).count()
        if options["dry_run"]:
            self.stdout.write(f"Would delete {doomed.count()} deliveries older than {days} days.")
        else:
            deleted, _ = doomed.delete()
            self.stdout.write(f"Deleted {deleted} deliveries older than {days} days.")
        if kept:
            self.stdout.write(
                f"Kept {kept} failed or unprocessed deliveries older than that "
                "(reprocess them with iron_kyc_reprocess_webhooks, or pass --include-failed)."
            )
