"""What the invariant checkers share: the Invariant protocol and base class, parameter checks,
readers of the world's event log, and the few formats every verdict uses."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from ..errors import InvalidParameterError
from .verdict import Verdict

if TYPE_CHECKING:
    from ..history import Op
    from ..storage import Key
    from ..world import World

#: Names of the domain, so that signatures say what they take.
DatabaseName = str
TableName = str
FieldName = str


@runtime_checkable
class Invariant(Protocol):
    """What an invariant is: a ``name``, and a call on a finished world that returns a ``Verdict``.

    Every factory of ``sandbox.checkers`` returns one; write your own with any
    object (or small frozen dataclass) that has both.

    Example::

        @dataclass(frozen=True)
        class NoEmptyOrders:
            name: str = "no_empty_orders"

            def __call__(self, world: sandbox.World) -> Verdict:
                empty = [k for k, o in world.database("orders-db").rows("orders").items() if not o["qty"]]
                if empty:
                    return Verdict.failing(self.name, f"{len(empty)} orders have no items", tuple(empty))
                return Verdict.passing(self.name, "every order has items")
    """

    @property
    def name(self) -> str: ...

    def __call__(self, world: World) -> Verdict: ...


@dataclass(frozen=True, repr=False)
class InvariantBase:
    """Base of the library's invariants: ``name`` and ``repr`` read as the call that built it,
    showing only the arguments that differ from their defaults (``no_double_charge(db='pay-db')``)."""

    factory: ClassVar[str] = "invariant"

    @property
    def name(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and _same(value, f.default):
                continue
            shown.append(f"{f.name}={show(value)}")
        return f"{self.factory}({', '.join(shown)})"

    def __repr__(self) -> str:
        return self.name


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # an argument whose == misbehaves is simply shown
        return False


def show(value: Any) -> str:
    """``repr`` of a value, but functions by name (a lambda as ``<lambda>``)."""
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    return repr(value)


# --- parameter checks ------------------------------------------------------------------


def text(name: str, value: Any, example: str) -> str:
    """``value`` if it is a non-empty str, else InvalidParameterError naming ``name``."""
    if isinstance(value, str) and value:
        return value
    if type(value).__name__ == "World":
        raise InvalidParameterError(
            f"{name}={value!r}: the world was passed to the factory; build the invariant first, then "
            f"call it on the world, e.g. no_double_charge()(world), or check(world, [no_double_charge()])"
        )
    raise InvalidParameterError(f"{name}={value!r}: give a non-empty str, e.g. {example!r}")


def optional_text(name: str, value: Any, example: str) -> str | None:
    return None if value is None else text(name, value, example)


def whole(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParameterError(f"{name}={value!r}: use a whole number >= {minimum}")
    return value


def amount(name: str, value: Any, *, optional: bool = False) -> float | None:
    """A finite number >= 0 (or None if ``optional``), else InvalidParameterError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        extra = ", or None" if optional else ""
        raise InvalidParameterError(f"{name}={value!r}: use a finite number >= 0{extra}")
    return value


def function(name: str, value: Any, hint: str, *, optional: bool = False) -> Callable[..., Any] | None:
    if value is None and optional:
        return None
    if not callable(value):
        raise InvalidParameterError(f"{name}={value!r} is not callable: pass {hint}")
    return value


def names(name: str, value: Any, example: str) -> tuple[str, ...]:
    """A tuple of non-empty strs from a list or tuple of them (a lone str is refused: it is a
    sequence of letters, and ``("ab")`` is easily mistaken for ``("ab",)``)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InvalidParameterError(f"{name}={value!r}: give a tuple of names, e.g. {example}")
    for item in value:
        text(name, item, "name")
    return tuple(value)


# --- reading the world -----------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One committed write of the event log: ``value`` is None when the row was deleted."""

    time: float
    db: str
    table: str
    key: Key
    version: int
    value: Any

    def where(self) -> str:
        return f"{self.db}/{self.table} {self.key}"


def writes(world: World, db: DatabaseName, table: TableName) -> list[Write]:
    """Every committed write of ``db``/``table`` in the order it happened (``db.write`` log entries)."""
    return [
        Write(e[0], db, table, e[4], e[5], e[6])
        for e in world.recorder.log
        if e[1] == "db.write" and e[2] == db and e[3] == table
    ]


def creations(world: World, db: DatabaseName, table: TableName) -> list[Write]:
    """The writes that created a row (its first write, or the first after it was deleted)."""
    present: set[Any] = set()
    out = []
    for w in writes(world, db, table):
        if w.value is None:
            present.discard(w.key)
        elif w.key not in present:
            present.add(w.key)
            out.append(w)
    return out


def has_table(world: World, db: DatabaseName, table: TableName) -> bool:
    """True if ``table`` was ever written in ``db`` (UnknownNameError if there is no such database)."""
    return table in world.database(db).table_names()


def value_of(row: Any, name: FieldName | None, key: Any, where: str, none_means: str = "to use the row's key") -> Any:
    """``row[name]``, or the row's ``key`` when ``name`` is None.

    Raises:
        InvalidParameterError: the row is no dict, or has no such field (the parameters do not fit the data).
    """
    if name is None:
        return key
    if not isinstance(row, Mapping) or name not in row:
        fields = sorted(row) if isinstance(row, Mapping) else type(row).__name__
        raise InvalidParameterError(
            f"{where} {key!r} has no field {name!r} (its fields: {fields}); pass the name of the field that "
            f"holds it, or None {none_means}"
        )
    return row[name]


def open_ops(world: World, t: float) -> list[Op]:
    """The history operations invoked at or before ``t`` and not completed before ``t``."""
    return [
        invoke
        for invoke, done in world.history.pairs()
        if invoke.time <= t and (done is None or done.time >= t)
    ]


def quiet(world: World) -> bool:
    """True once every workload client finished and every injected fault healed: from then on
    nothing new is asked of the system, so what is still unfinished will stay unfinished."""
    chaos = getattr(world, "chaos", None)
    return world.clients_done and (chaos is None or bool(getattr(chaos, "healed", True)))


def crashes(world: World) -> dict[str, list[float]]:
    """Each node that crashed during the run, with the times it crashed."""
    out: dict[str, list[float]] = {}
    for e in world.recorder.log:
        if e[1] == "node.crash":
            out.setdefault(e[2], []).append(e[0])
    return out


# --- formats ---------------------------------------------------------------------------


def at(t: float) -> str:
    return f"t={t:.4f}"


def money(value: Any, cents: bool) -> str:
    """``2500`` -> ``$25.00`` when amounts are cents; other values as they are."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    if cents:
        sign = "-" if value < 0 else ""
        return f"{sign}${abs(value) / 100:,.2f}"
    return f"{value:g}"


def times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def more(items: list[str], limit: int = 3) -> str:
    """``"a; b; c"``, then ``" (and 4 more)"`` past ``limit`` items."""
    shown = "; ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def number(value: Any, where: str, hint: str) -> int | float:
    """``value`` if it is an int or float, else InvalidParameterError saying where it came from."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameterError(f"{where} is {value!r}, not a number; {hint}")
    return value
