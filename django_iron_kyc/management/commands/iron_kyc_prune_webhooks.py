"""``manage.py iron_kyc_prune_webhooks [--older-than DAYS]``: delete old webhook deliveries.

Without ``--older-than`` it prunes by ``IRON_KYC_DELIVERY_RETENTION``, as the hourly
``apply_retention`` task does: both run ``services.prune_deliveries``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...conf import iron_settings
from ...services import prune_deliveries


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError("--older-than must be at least 1 day")
    return days


def _age(period: timedelta) -> str:
    if period % timedelta(days=1):
        return str(period)
    return f"{period.days} day" if period.days == 1 else f"{period.days} days"


class Command(BaseCommand):
    help = (
        "Delete stored Iron webhook deliveries received more than DAYS days ago (default: "
        "IRON_KYC_DELIVERY_RETENTION). Failed (and never processed) deliveries are kept "
        "unless --include-failed is given. Keep at least as many days as Iron may take to "
        "retry a delivery: a pruned webhook-id is no longer recognised as a duplicate. Asks "
        "first when run from a terminal, unless --no-input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            dest="days",
            type=_days,
            default=None,
            metavar="DAYS",
            help="Default: IRON_KYC_DELIVERY_RETENTION.",
        )
        parser.add_argument(
            "--include-failed",
            action="store_true",
            help="Also delete failed and never-processed deliveries.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="Do not ask before deleting (never asked when standard input is no terminal).",
        )

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        older_than = timedelta(days=days) if days else iron_settings.DELIVERY_RETENTION
        if older_than is None:
            self.stdout.write(
                "IRON_KYC_DELIVERY_RETENTION is None: every delivery is kept. Give "
                "--older-than DAYS to prune anyway."
            )
            return
        include, dry_run = options["include_failed"], options["dry_run"]
        if not dry_run and options["interactive"] and sys.stdin.isatty():
            preview = prune_deliveries(
                older_than=older_than, include_unfinished=include, dry_run=True
            )
            question = f"Delete {preview.deleted} deliveries older than {_age(older_than)}? [y/N] "
            if preview.deleted and input(question).strip().lower() not in {"y", "yes"}:
                self.stdout.write("Nothing deleted.")
                return
        result = prune_deliveries(
            older_than=older_than, include_unfinished=include, dry_run=dry_run
        )
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {result.deleted} deliveries older than {_age(older_than)}.")
        if result.kept_unfinished:
            self.stdout.write(
                f"Kept {result.kept_unfinished} failed or unprocessed deliveries older than that "
                "(reprocess them with iron_kyc_reprocess_webhooks, or pass --include-failed)."
            )
