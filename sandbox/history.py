"""Jepsen-style histories: what the clients of a system asked for and what they saw.

Every operation a workload client performs is recorded twice: an ``invoke`` when
it starts, then exactly one completion: ``ok`` (it happened), ``fail`` (it
certainly did not happen) or ``info`` (the client cannot tell: a timeout, a lost
reply). Checkers read histories; an ``info`` operation may or may not have taken
effect, which is what makes distributed systems hard to check and to build.

Example::

    for op in world.history:
        print(op)
    # 0.0000 client-0 invoke place-order {'sku': 'lamp', 'qty': 1}
    # 0.0052 client-0 ok     place-order {'order_id': 'o-1'}
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

OpType = Literal["invoke", "ok", "fail", "info"]
OP_TYPES = ("invoke", "ok", "fail", "info")


@dataclass(frozen=True)
class Op:
    """One history entry: ``process`` did ``f`` with ``value``, of ``type``, at virtual ``time``."""

    index: int
    time: float
    process: str
    type: OpType
    f: str
    value: Any = None
    error: str | None = None

    def __str__(self) -> str:
        extra = f"  ({self.error})" if self.error else ""
        return f"{self.time:9.4f} {self.process} {self.type:<6} {self.f} {stable_repr(self.value)}{extra}"

    def __repr__(self) -> str:  # the dataclass's, with the value's stable_repr: world.fingerprint() hashes it
        return (
            f"Op(index={self.index!r}, time={self.time!r}, process={self.process!r}, type={self.type!r}, "
            f"f={self.f!r}, value={stable_repr(self.value)}, error={self.error!r})"
        )


def stable_repr(value: Any) -> str:
    """``repr(value)``, but the same in every process and every run: a set's items sorted (a set of strings
    iterates in an order that follows the process's hash seed), and an object that keeps ``object``'s own repr
    named by its class alone (that repr holds its memory address). For plain values it is ``repr`` itself.
    """
    kind = type(value)
    if kind in (str, int, float, bool, bytes) or value is None:
        return repr(value)
    if kind is dict:
        return "{" + ", ".join(f"{stable_repr(k)}: {stable_repr(v)}" for k, v in value.items()) + "}"
    if kind is list:
        return "[" + ", ".join(stable_repr(item) for item in value) + "]"
    if kind is tuple:
        return "(" + ", ".join(stable_repr(item) for item in value) + ("," if len(value) == 1 else "") + ")"
    if kind is set or kind is frozenset:
        items = ", ".join(sorted(stable_repr(item) for item in value))
        if kind is set:
            return "{" + items + "}" if items else "set()"
        return f"frozenset({{{items}}})" if items else "frozenset()"
    if kind.__repr__ is object.__repr__:
        return f"<{kind.__module__}.{kind.__qualname__} object>"
    return repr(value)


class History:
    """The ordered list of operations of one run, with invoke/completion pairing."""

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._open: dict[str, Op] = {}

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops)

    def __getitem__(self, index: int) -> Op:
        return self._ops[index]

    def invoke(self, time: float, process: str, f: str, value: Any = None) -> Op:
        """Record the start of an operation; a process has at most one open at a time.

        ``value`` is copied, so changing the object later does not rewrite history.
        """
        if process in self._open:
            open_op = self._open[process]
            raise ValueError(
                f"process {process!r} invoked {f!r} while its {open_op.f!r} (index {open_op.index}) is still open; "
                f"a process does one operation at a time: finish one `async with client.operation(...)` block "
                f"before the next, or run concurrent operations from separate clients"
            )
        op = Op(len(self._ops), time, process, "invoke", f, copy.deepcopy(value))
        self._ops.append(op)
        self._open[process] = op
        return op

    def complete(self, time: float, process: str, type: OpType, value: Any = None, error: str | None = None) -> Op:
        """Record the completion (ok / fail / info) of ``process``'s open operation."""
        if type not in ("ok", "fail", "info"):
            raise ValueError(f"type={type!r}: a completion is 'ok', 'fail' or 'info'")
        invoked = self._open.pop(process, None)
        if invoked is None:
            raise ValueError(f"process {process!r} has no open operation to complete")
        op = Op(len(self._ops), time, process, type, invoked.f, copy.deepcopy(value), error)
        self._ops.append(op)
        return op

    def pairs(self) -> list[tuple[Op, Op | None]]:
        """Each invocation with its completion (None if it never completed), in invoke order."""
        out: list[tuple[Op, Op | None]] = []
        waiting: dict[str, int] = {}
        for op in self._ops:
            if op.type == "invoke":
                waiting[op.process] = len(out)
                out.append((op, None))
            else:
                slot = waiting.pop(op.process)
                out[slot] = (out[slot][0], op)
        return out

    def to_dicts(self) -> list[dict[str, Any]]:
        """The history as a list of plain dicts (for JSON, or Jepsen's tools)."""
        return [asdict(op) for op in self._ops]

    @classmethod
    def from_ops(cls, ops: list[dict[str, Any]] | list[Op]) -> History:
        """Rebuild a history from ``Op``s or dicts with process, type, f, value, time."""
        history = cls()
        for raw in ops:
            op = raw if isinstance(raw, Op) else Op(len(history._ops), **{k: v for k, v in raw.items() if k != "index"})
            if op.type == "invoke":
                history.invoke(op.time, op.process, op.f, op.value)
            else:
                history.complete(op.time, op.process, op.type, op.value, op.error)
        return history
