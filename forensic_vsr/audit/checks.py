"""A verification check's result, the view of a verified chain, and the guard that turns any
exception inside a check into a FAIL line naming that check."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

CRASHED = "could not be checked"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS | FAIL | INCOMPLETE | NOT VERIFIED (a check the auditor's inputs cannot run: not a failure)
    reason: str

    @classmethod
    def passed(cls, name: str, reason: str) -> Check:
        return cls(name, "PASS", reason)

    @classmethod
    def failed(cls, name: str, reason: str) -> Check:
        return cls(name, "FAIL", reason)

    @classmethod
    def not_verified(cls, name: str, reason: str) -> Check:
        return cls(name, "NOT VERIFIED", reason)

    @property
    def ok(self) -> bool:
        return self.status in ("PASS", "NOT VERIFIED")

    def line(self) -> str:
        return f"{self.status:<10} {self.name}: {self.reason}"


@dataclass
class ChainView:
    """Records in file order: the payload of each record whose signature verified, else None."""

    lines: list[bytes] = field(default_factory=list)
    payloads: list[dict[str, Any] | None] = field(default_factory=list)

    def first(self, record_type: str) -> dict[str, Any] | None:
        for p in self.payloads:
            if p is not None and p.get("type") == record_type:
                body = p.get("body")
                return body if isinstance(body, dict) else None
        return None


def guarded(name: str, produce: Callable[[], Iterable[Check]]) -> Iterator[Check]:
    """The checks `produce` yields; if it raises, one more FAIL named `name` that says so.

    A verifier meets hostile input by definition: whatever a check did not foresee must still
    be a FAIL line, never a crash that loses the lines printed before it."""
    try:
        yield from produce()
    except Exception as exc:  # the point of the guard: hostile input must not crash verify
        yield Check.failed(name, f"{CRASHED} on this input ({type(exc).__name__}: {str(exc)[:200]})")
