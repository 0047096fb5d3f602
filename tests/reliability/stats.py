"""Counters the reliability suite prints at the end of the run (see ``conftest.py``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class MachineStats:
    """What the Hypothesis state machine ran, summed over every test that drove it."""

    examples: int = 0
    steps: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    settled: int = 0

    def summary(self) -> list[str]:
        if not self.examples:
            return []
        lines = [
            f"state machine: {self.examples} examples, {self.steps} steps "
            f"({self.steps / self.examples:.1f} per example), {self.settled} settle checks",
            "  rules: " + ", ".join(f"{name} {n}" for name, n in sorted(self.rules.items())),
        ]
        if self.deliveries:
            lines.append(
                "  webhook answers: "
                + ", ".join(f"{name} {n}" for name, n in sorted(self.deliveries.items()))
            )
        return lines


MACHINE = MachineStats()
