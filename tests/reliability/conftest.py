"""Prints what the reliability suite ran (examples and steps of the state machine)."""

from __future__ import annotations

import pytest

from tests.reliability.stats import MACHINE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = MACHINE.summary()
    if lines:
        terminalreporter.write_sep("-", "django-iron-kyc reliability")
        for line in lines:
            terminalreporter.write_line(line)
