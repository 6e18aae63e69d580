"""Conservation laws: quantities a run must neither create nor destroy.

A conservation law ties tables together: stock left plus stock held equals the
opening stock; money charged minus money refunded equals what the successful
orders are worth. No single request shows its violation (each one looks fine on
its own); the totals do. ``conserved`` states any such law, ``stock_conserved``
and ``money_conserved`` are the two every shop has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidParameterError
from ._common import (
    DatabaseName,
    FieldName,
    Invariant,
    InvariantBase,
    TableName,
    amount,
    creations,
    function,
    has_table,
    money,
    more,
    number,
    optional_text,
    plural,
    show,
    text,
    value_of,
    writes,
)
from .verdict import Verdict

if TYPE_CHECKING:
    from ..world import World

Number = int | float


# --- conservation ----------------------------------------------------------------------


def _measured(value: Any, what: str) -> Number | dict[Any, Number] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {k: number(v, f"{what}[{k!r}]", "return numbers") for k, v in value.items()}
    return number(value, what, "return a number, a dict of numbers, or None when the run cannot tell")


@dataclass(frozen=True, repr=False)
class _Conserved(InvariantBase):
    factory: ClassVar[str] = "conserved"
    label: str
    measure: Callable[[World], Any]
    expected: Any
    tolerance: float = 0

    def __post_init__(self) -> None:
        text("name", self.label, "money")
        function("measure", self.measure, "a function taking the world and returning a number")
        if not callable(self.expected):
            _measured(self.expected, "expected")
        amount("tolerance", self.tolerance)

    @property
    def name(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"conserved({self.label!r}, {show(self.measure)}, {show(self.expected)}, tolerance={self.tolerance!r})"

    def __call__(self, world: World) -> Verdict:
        measured = _measured(self.measure(world), "measure(world)")
        expected = _measured(self.expected(world) if callable(self.expected) else self.expected, "expected")
        if measured is None or expected is None:
            return Verdict.unknown(self.name, "the measure gave no value: the run did not get far enough to tell")
        if isinstance(measured, dict) and isinstance(expected, dict):
            return self._per_key(measured, expected)
        if isinstance(measured, dict) or isinstance(expected, dict):
            raise InvalidParameterError(
                f"{self.name}: measure gave {measured!r} and expected is {expected!r}; both must be numbers, "
                f"or both dicts of numbers"
            )
        if abs(measured - expected) <= self.tolerance:
            return Verdict.passing(self.name, f"{measured:g} as expected")
        return Verdict.failing(self.name, f"measured {measured:g}, expected {expected:g} ({measured - expected:+g})")

    def _per_key(self, measured: dict[Any, Number], expected: dict[Any, Number]) -> Verdict:
        keys = sorted(set(measured) | set(expected), key=str)
        off = []
        for k in keys:
            m, e = measured.get(k, 0), expected.get(k, 0)
            if abs(m - e) > self.tolerance:
                off.append(f"{k}: {m:g}, expected {e:g} ({m - e:+g})")
        if not off:
            return Verdict.passing(self.name, f"all {plural(len(keys), 'key')} as expected")
        return Verdict.failing(self.name, f"{len(off)} of {plural(len(keys), 'key')} off: {more(off, 2)}", tuple(off))


def conserved(
    name: str, measure: Callable[[World], Any], expected: Any, *, tolerance: float = 0
) -> Invariant:
    """A quantity the run must not create or destroy: ``measure(world)`` equals ``expected``.

    ``measure`` takes the finished world and returns a number, a dict of numbers
    (compared key by key, a missing key counting as 0), or None when the run
    cannot tell (the verdict is then UNKNOWN). ``expected`` is a number (or dict),
    or a function of the world giving one. Conservation laws catch lost updates
    and leaks that no single request shows: units that vanish between two tables,
    money that appears from nowhere.

    Example::

        total_units = conserved(
            "units", lambda w: sum(r["qty"] for r in w.database("inventory-db").rows("stock").values()), 17
        )

    Raises:
        InvalidParameterError: an empty name, a measure that is not callable, a negative tolerance;
            (when run) a measure giving something other than numbers.
    """
    return _Conserved(name, measure, expected, tolerance)


class Units(tuple):
    """Units per SKU as ``(sku, units)`` pairs (frozen, hashable), shown as the dict they came from."""

    def __repr__(self) -> str:
        return repr(dict(self))


def _initial(value: Any) -> Units | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidParameterError(
            f"initial={value!r}: give a dict sku -> units, or sku -> {{warehouse: units}} like order_system.INITIAL_STOCK"
        )
    out = []
    for sku, units in value.items():
        parts = units.values() if isinstance(units, Mapping) else [units]
        out.append((sku, sum(number(u, f"initial[{sku!r}]", "give whole units") for u in parts)))
    return Units(sorted(out, key=lambda item: str(item[0])))


@dataclass(frozen=True, repr=False)
class _StockConserved(InvariantBase):
    factory: ClassVar[str] = "stock_conserved"
    db: DatabaseName = "inventory-db"
    table: TableName = "stock"
    held_table: TableName | None = "reservations"
    held_db: DatabaseName | None = None
    sku: FieldName | None = "sku"
    qty: FieldName = "qty"
    initial: Units | None = None

    def __post_init__(self) -> None:
        text("db", self.db, "inventory-db")
        text("table", self.table, "stock")
        optional_text("held_table", self.held_table, "reservations")
        optional_text("held_db", self.held_db, "orders-db")
        optional_text("sku", self.sku, "sku")
        text("qty", self.qty, "qty")
        object.__setattr__(self, "initial", _initial(self.initial))

    def _units(self, rows: Mapping[Any, Any], where: str) -> dict[Any, Number]:
        out: dict[Any, Number] = {}
        for key, row in rows.items():
            sku = value_of(row, self.sku, key, f"{where} row")
            qty = number(value_of(row, self.qty, key, f"{where} row"), f"{where} {key} field {self.qty!r}", "pass qty=")
            out[sku] = out.get(sku, 0) + qty
        return out

    def __call__(self, world: World) -> Verdict:
        if not has_table(world, self.db, self.table):
            return Verdict.unknown(self.name, f"{self.db} has no table {self.table!r}: no stock was ever written")
        left = self._units(world.database(self.db).rows(self.table), f"{self.db}/{self.table}")
        held_db = self.held_db or self.db
        held: dict[Any, Number] = {}
        if self.held_table and has_table(world, held_db, self.held_table):
            held = self._units(world.database(held_db).rows(self.held_table), f"{held_db}/{self.held_table}")
        if self.initial is not None:
            start = dict(self.initial)
        else:
            firsts = {}
            for w in writes(world, self.db, self.table):
                if w.value is not None and w.key not in firsts:
                    firsts[w.key] = w.value
            start = self._units(firsts, f"{self.db}/{self.table} (first writes)")
        problems = []
        skus = sorted(set(start) | set(left) | set(held), key=str)
        for sku in skus:
            now, before = left.get(sku, 0) + held.get(sku, 0), start.get(sku, 0)
            if now == before:
                continue
            why = (
                f"{plural(now - before, 'unit')} more than there ever was: two orders took the same units (a lost update?)"
                if now > before
                else f"{plural(before - now, 'unit')} vanished: taken from stock but held by nothing"
            )
            problems.append(f"{sku}: {left.get(sku, 0):g} left + {held.get(sku, 0):g} held = {now:g}, "
                            f"but {before:g} at the start; {why}")
        if not problems:
            return Verdict.passing(self.name, f"stock left + held = opening stock for all {plural(len(skus), 'SKU')}")
        return Verdict.failing(self.name, f"stock is not conserved for {plural(len(problems), 'SKU')}: {problems[0]}",
                               tuple(problems))


def stock_conserved(
    db: DatabaseName = "inventory-db",
    table: TableName = "stock",
    held_table: TableName | None = "reservations",
    *,
    held_db: DatabaseName | None = None,
    sku: FieldName | None = "sku",
    qty: FieldName = "qty",
    initial: Mapping[Any, Any] | None = None,
) -> Invariant:
    """No unit of stock was created or lost: for every SKU, units left + units held = opening stock.

    Units left are the ``qty`` of the final rows of ``db``/``table`` (summed per
    ``sku`` field: several warehouses per SKU add up; None: the row key is the
    SKU); units held are the ``qty`` of the final rows of ``held_table`` (in
    ``held_db``, by default ``db``): reservations or orders that took them. The
    opening stock is ``initial`` (sku -> units, or sku -> {warehouse: units}), or
    else the first write of each stock row. A lost update (two requests read 1,
    both write 0, both reserve) shows as one unit more than there ever was.

    Example::

        stock_conserved(initial=order_system.INITIAL_STOCK)(world)
        # FAIL stock_conserved(initial=...): stock is not conserved for 1 SKU: kettle: 0 left + 6 held = 6,
        #   but 4 at the start; 2 units more than there ever was: two orders took the same units (a lost update?)

    Raises:
        InvalidParameterError: a name is not a non-empty str, ``initial`` is not a dict of units;
            (when run) a row lacks ``sku`` or ``qty``.
        UnknownNameError: (when run) the world has no database ``db`` or ``held_db``.
    """
    return _StockConserved(db, table, held_table, held_db, sku, qty, initial)  # type: ignore[arg-type]


@dataclass(frozen=True, repr=False)
class _MoneyConserved(InvariantBase):
    factory: ClassVar[str] = "money_conserved"
    charges_db: DatabaseName = "payments-db"
    charges_table: TableName = "charges"
    orders_db: DatabaseName = "orders-db"
    orders_table: TableName = "orders"
    key: FieldName | None = "order_id"
    amount: FieldName = "amount"
    order_id: FieldName | None = None
    order_amount: FieldName = "amount"
    refunds_table: TableName | None = None
    succeeded: Callable[[Any], bool] | None = None
    cents: bool = True

    def __post_init__(self) -> None:
        for name, example in (("charges_db", "payments-db"), ("charges_table", "charges"), ("orders_db", "orders-db"),
                              ("orders_table", "orders"), ("amount", "amount"), ("order_amount", "amount")):
            text(name, getattr(self, name), example)
        optional_text("key", self.key, "order_id")
        optional_text("order_id", self.order_id, "id")
        optional_text("refunds_table", self.refunds_table, "refunds")
        function("succeeded", self.succeeded, "a function order_row -> bool, or None", optional=True)

    def _sums(self, world: World, table: TableName) -> dict[Any, Number]:
        out: dict[Any, Number] = {}
        if not has_table(world, self.charges_db, table):
            return out
        for w in creations(world, self.charges_db, table):
            where = f"{self.charges_db}/{table} row"
            order = value_of(w.value, self.key, w.key, where)
            value = number(value_of(w.value, self.amount, w.key, where), f"{where} {w.key}", "pass amount=")
            out[order] = out.get(order, 0) + value
        return out

    def __call__(self, world: World) -> Verdict:
        has_orders = has_table(world, self.orders_db, self.orders_table)
        if not has_table(world, self.charges_db, self.charges_table) and not has_orders:
            return Verdict.unknown(self.name, "no charge and no order in this run: nothing to balance")
        charged = self._sums(world, self.charges_table)
        refunded = self._sums(world, self.refunds_table) if self.refunds_table else {}
        owed: dict[Any, Number] = {}
        where = f"{self.orders_db}/{self.orders_table} row"
        for key, row in (world.database(self.orders_db).rows(self.orders_table) if has_orders else {}).items():
            if self.succeeded is None or self.succeeded(row):
                order = value_of(row, self.order_id, key, where)
                owed[order] = owed.get(order, 0) + number(value_of(row, self.order_amount, key, where), f"{where} {key}",
                                                              "pass order_amount= the field holding its value")

        def m(value: Number) -> str:
            return money(value, self.cents)

        problems = []
        for order in sorted(set(charged) | set(refunded) | set(owed), key=str):
            paid, due = charged.get(order, 0) - refunded.get(order, 0), owed.get(order, 0)
            if paid == due:
                continue
            head = f"order {order}: charged {m(charged.get(order, 0))}, refunded {m(refunded.get(order, 0))}"
            if due == 0:
                problems.append(f"{head}, but no such order succeeded: {m(paid)} kept for nothing")
            else:
                diff = f"{m(abs(paid - due))} too {'much' if paid > due else 'little'}"
                problems.append(f"{head} for a {m(due)} order: {diff}")
        totals = (f"charged {m(sum(charged.values()))} - refunded {m(sum(refunded.values()))}, "
                  f"orders worth {m(sum(owed.values()))}")
        if not problems:
            return Verdict.passing(self.name, f"every order paid exactly what it is worth ({totals})")
        return Verdict.failing(
            self.name, f"money does not balance for {plural(len(problems), 'order')} ({totals}): {problems[0]}",
            tuple(problems),
        )


def money_conserved(
    charges_db: DatabaseName = "payments-db",
    charges_table: TableName = "charges",
    orders_db: DatabaseName = "orders-db",
    orders_table: TableName = "orders",
    *,
    key: FieldName | None = "order_id",
    amount: FieldName = "amount",
    order_id: FieldName | None = None,
    order_amount: FieldName = "amount",
    refunds_table: TableName | None = None,
    succeeded: Callable[[Any], bool] | None = None,
    cents: bool = True,
) -> Invariant:
    """Money charged minus money refunded equals the value of the orders that succeeded, order by order.

    Charges are the rows ever created in ``charges_db``/``charges_table`` (their
    ``key`` field names the order, ``amount`` the sum); refunds the rows created
    in ``refunds_table`` of the same database; orders the final rows of
    ``orders_db``/``orders_table`` (their id is the row key, or the ``order_id``
    field; their value ``order_amount``), those for which ``succeeded(row)`` is
    true (default: all). Balancing per order catches both a double charge and a
    charge kept for an order that failed (a missing compensation).

    Example::

        money_conserved(refunds_table="refunds", succeeded=lambda o: o["status"] == "confirmed")(world)
        # FAIL money_conserved(...): money does not balance for 1 order (charged $1,052.00 - refunded $0.00,
        #   orders worth $1,027.00): order ord-1ec803d790: charged $50.00, refunded $0.00 for a $25.00 order:
        #   $25.00 too much

    Raises:
        InvalidParameterError: a name is not a non-empty str, ``succeeded`` is not callable;
            (when run) a row lacks one of the fields, or its amount is not a number.
        UnknownNameError: (when run) the world has no such database.
    """
    return _MoneyConserved(charges_db, charges_table, orders_db, orders_table, key, amount, order_id, order_amount,
                           refunds_table, succeeded, cents)


