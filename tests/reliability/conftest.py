"""Prints what the reliability suite ran (examples and steps of the state machine)."""

from __future__ import annotations

from typing import Any

import pytest

from django_iron_kyc.webhooks import drain
from tests.reliability.stats import MACHINE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = MACHINE.summary()
    if lines:
        terminalreporter.write_sep("-", "django-iron-kyc reliability")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def deferred(settings: Any, monkeypatch: pytest.MonkeyPatch) -> drain.DrainScheduler:
    """``IRON_KYC_WEBHOOK_PROCESSING = "deferred"`` with a drain scheduler of this test's own.

    It has no window: every stored delivery sends a drain, so with eager Celery the drain
    runs as soon as the delivery is stored (the process's scheduler would send nothing for
    a third delivery within a second, whatever test sent the first two).
    """
    settings.IRON_KYC_WEBHOOK_PROCESSING = "deferred"
    scheduler = drain.DrainScheduler(window=0)
    monkeypatch.setattr(drain, "drain_scheduler", scheduler)
    return scheduler
