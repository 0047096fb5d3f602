"""Counters the reliability suite prints at the end of the run (see ``conftest.py``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items()))


@dataclass
class MachineStats:
    """What the Hypothesis state machine ran, summed over every test that drove it."""

    examples: int = 0
    steps: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    settled: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    """Examples per webhook processing mode (``IRON_KYC_WEBHOOK_PROCESSING``)."""
    deliveries: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Per mode: what the webhook view answered."""
    acted: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Per mode: the outcomes of the drain task and of the webhook sweep, and failures
    injected into processing."""

    def summary(self) -> list[str]:
        if not self.examples:
            return []
        lines = [
            f"state machine: {self.examples} examples ({_counts(self.modes)}), {self.steps} "
            f"steps ({self.steps / self.examples:.1f} per example), {self.settled} settle checks",
            "  rules: " + _counts(self.rules),
        ]
        for mode in sorted(self.deliveries.keys() | self.acted.keys()):
            if self.deliveries[mode]:
                lines.append(f"  webhook answers, {mode}: " + _counts(self.deliveries[mode]))
            if self.acted[mode]:
                lines.append(f"  acted on later, {mode}: " + _counts(self.acted[mode]))
        return lines


MACHINE = MachineStats()
