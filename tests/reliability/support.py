"""Helpers shared by the reliability tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from django_iron_kyc import tasks
from django_iron_kyc.conf import iron_settings


def run_webhook_sweep(time_machine: Any | None = None) -> dict[str, Any]:
    """The webhook sweep's task, run here; with ``time_machine``, once the retry delay passed.

    Its result is read without ``EagerResult.get()``: that refuses to run while Celery's
    process-wide "inside a task" flag is set, and eager tasks run on several threads at
    once (test_races.py) leave it set.
    """
    if time_machine is not None:
        time_machine.move_to(
            timezone.now() + iron_settings.WEBHOOK_RETRY_DELAY + timedelta(seconds=1), tick=False
        )
    result = tasks.retry_webhook_deliveries.apply()
    assert result.successful(), result.traceback
    swept: dict[str, Any] = result.result
    return swept
