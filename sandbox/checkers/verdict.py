"""The result of checking one invariant on one run."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.Enum):
    """PASS: the invariant held. FAIL: it was broken (see the evidence). UNKNOWN: no decision."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    """One invariant's outcome on one run, with the evidence that decided it.

    ``bool(verdict)`` is True only for PASS, so ``assert verdict`` and ``if not
    verdict`` treat UNKNOWN as the failure to prove that it is.

    Example::

        verdict = check_linearizability(world.history, RegisterModel(), time_limit=1.0)
        if not verdict:
            print(verdict)          # FAIL linearizability: ... (with the operations involved)
    """

    invariant: str
    outcome: Outcome
    summary: str
    evidence: tuple[Any, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        lines = [f"{self.outcome.name} {self.invariant}: {self.summary}"]
        lines += [f"  - {item}" for item in self.evidence[:20]]
        if len(self.evidence) > 20:
            lines.append(f"  ... and {len(self.evidence) - 20} more")
        return "\n".join(lines)

    @classmethod
    def passing(cls, invariant: str, summary: str, evidence: tuple[Any, ...] = ()) -> Verdict:
        return cls(invariant, Outcome.PASS, summary, tuple(evidence))

    @classmethod
    def failing(cls, invariant: str, summary: str, evidence: tuple[Any, ...] = ()) -> Verdict:
        return cls(invariant, Outcome.FAIL, summary, tuple(evidence))

    @classmethod
    def unknown(cls, invariant: str, summary: str, evidence: tuple[Any, ...] = ()) -> Verdict:
        return cls(invariant, Outcome.UNKNOWN, summary, tuple(evidence))
