"""Byte accounting for the compute device.

Every placement (resident weights, streaming slots, the activation reserve of a running stage)
is charged here *before* memory is allocated, so the budget is enforced by construction; tests
and benchmarks read ``peak`` and subscribe to changes to prove it was never exceeded.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import OutOfMemoryError
from .devices import GiB, MiB


def gib(nbytes: float) -> str:
    """Human-readable size (GiB for model-sized numbers, smaller units for tiny test models)."""
    if abs(nbytes) >= GiB / 10:
        return f"{nbytes / GiB:.2f} GiB"
    if abs(nbytes) >= MiB:
        return f"{nbytes / MiB:.1f} MiB"
    return f"{nbytes / 1024:.1f} KiB"


class DeviceLedger:
    def __init__(self, budget: int | None = None):
        self.budget = budget  # None: unlimited (plain CPU)
        self.used = 0
        self.peak = 0
        self._owners: dict[str, int] = {}
        self.observers: list[Callable[[str, str, int, int], None]] = []  # (event, owner, nbytes, used)

    def charge(self, owner: str, nbytes: int, advice: str = "") -> None:
        """Account ``nbytes`` for ``owner``; refuses (nothing charged) if that would exceed the budget."""
        if self.budget is not None and self.used + nbytes > self.budget:
            raise OutOfMemoryError(
                f"{owner} needs {gib(nbytes)} on the compute device but only {gib(self.budget - self.used)} of the "
                f"{gib(self.budget)} budget is left (in use: {self.describe()}). {advice}".rstrip())
        self._owners[owner] = self._owners.get(owner, 0) + nbytes
        self.used += nbytes
        self.peak = max(self.peak, self.used)
        self._notify("charge", owner, nbytes)

    def credit(self, owner: str, nbytes: int) -> None:
        held = self._owners.get(owner, 0)
        if nbytes > held:
            raise RuntimeError(f"ledger: {owner} returns {nbytes} bytes but holds {held}")
        if held == nbytes:
            del self._owners[owner]
        else:
            self._owners[owner] = held - nbytes
        self.used -= nbytes
        self._notify("credit", owner, nbytes)

    def held(self, owner: str) -> int:
        return self._owners.get(owner, 0)

    def owners(self) -> dict[str, int]:
        return dict(self._owners)

    def describe(self) -> str:
        if not self._owners:
            return "nothing"
        return ", ".join(f"{k} {gib(v)}" for k, v in sorted(self._owners.items(), key=lambda kv: -kv[1]))

    def _notify(self, event: str, owner: str, nbytes: int) -> None:
        for observer in self.observers:
            observer(event, owner, nbytes, self.used)
