"""What to draw in colour: the operations and messages a caller (or a checker's verdict) points at."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameterError
from ..history import Op
from ._run import Run, WireMessage


@dataclass(frozen=True)
class Highlight:
    """What to draw in colour: client operations, the messages they caused, moments of interest."""

    pairs: tuple[tuple[Op, Op | None], ...] = ()
    positions: frozenset[int] = frozenset()
    times: tuple[float, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pairs or self.positions or self.times)

    def span(self, run_end: float) -> tuple[float, float] | None:
        """From the first highlighted moment to the last (None if nothing is highlighted)."""
        moments = [t for invoke, done in self.pairs for t in (invoke.time, run_end if done is None else done.time)]
        moments += list(self.times)
        return (min(moments), max(moments)) if moments else None


def resolve_highlight(run: Run, highlight: Any) -> Highlight:
    """Turn what the caller gave (a Verdict, Ops, message ids, WireMessages...) into a ``Highlight``.

    Raises:
        InvalidParameterError: an item that names no operation, message or time.
    """
    if highlight is None:
        return Highlight()
    items = getattr(highlight, "evidence", highlight)
    if isinstance(items, (Op, int, WireMessage)) or not isinstance(items, Iterable) or isinstance(items, str):
        items = [items]
    history = run.world.history
    pairs_by_index: dict[int, tuple[Op, Op | None]] = {}
    for pair in history.pairs():
        for op in pair:
            if op is not None:
                pairs_by_index[op.index] = pair
    pairs: dict[int, tuple[Op, Op | None]] = {}
    msg_ids: set[int] = set()
    times: list[float] = []
    for item in items:
        if isinstance(item, Op):
            pair = pairs_by_index.get(item.index)
            if pair is None or item not in pair:
                pair = next((p for p in history.pairs() if any(
                    op is not None and (op.process, op.f, op.time) == (item.process, item.f, item.time) for op in p
                )), None)
            if pair is not None:
                pairs[pair[0].index] = pair
            else:
                times.append(item.time)
            continue
        if isinstance(item, bool):
            raise InvalidParameterError(f"highlight item {item!r}: give Ops, message ids or a Verdict")
        if isinstance(item, int):
            msg_ids.add(item)
            continue
        found = item.get("msg_id") if isinstance(item, Mapping) else getattr(item, "msg_id", None)
        when = item.get("time") if isinstance(item, Mapping) else getattr(item, "time", None)
        if isinstance(found, int):
            msg_ids.add(found)
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            times.append(float(when))
        if found is None and when is None and not hasattr(highlight, "evidence"):
            raise InvalidParameterError(
                f"highlight item {item!r}: give sandbox.Op items (from world.history), message ids (ints), "
                f"or a checker's Verdict"
            )
    positions: set[int] = set()
    for invoke, completion in pairs.values():
        positions |= run.messages_of(invoke, completion)
    positions |= {i for msg_id in msg_ids for i in run._by_id.get(msg_id, ())}
    return Highlight(tuple(pairs[k] for k in sorted(pairs)), frozenset(positions), tuple(sorted(times)))
