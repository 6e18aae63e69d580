"""Invariants: the promises a system keeps, checked on a finished run.

An invariant is a callable ``invariant(world) -> Verdict`` with a ``name``. Each
function below builds one from a few keyword arguments (table and field names,
limits); calling it on a finished world reads what the run left behind (its
history, its databases, its event log, its domain events, its spans) and returns
PASS, FAIL or UNKNOWN with the evidence. UNKNOWN means the run could not decide
(tracing was off, nothing was charged, the run stopped mid-way) and never counts
as a pass. ``check(world, [...])`` runs several and never lets a checker's own
error escape::

    from sandbox.checkers import check, no_double_charge, stock_never_negative

    world = order_system.run_to_completion(order_system.build_world(2))
    for verdict in check(world, [no_double_charge(), stock_never_negative()]):
        print(verdict)
    # FAIL no_double_charge(): order ord-1ec803d790 was charged twice: $25.00 at t=1.0175 + $25.00 at t=1.0311
    #   - t=1.0175 payments-db/charges ch-35778dcbeb: order ord-1ec803d790, $25.00
    #   - t=1.0311 payments-db/charges ch-11454bff06: order ord-1ec803d790, $25.00
    # FAIL stock_never_negative(): inventory-db/stock desk/west went to qty -1 at t=0.8008 (and 1 more ...

The library:

================================  ===========================================================
data (this module)                ``no_double_charge``, ``stock_never_negative``, ``exactly_once``
conservation (``conservation``)   ``conserved``, ``stock_conserved``, ``money_conserved``
resilience (``resilience``)       ``saga_completed_or_compensated``, ``breaker_transitions_legal``,
                                  ``retries_within_budget``
tracing (``traces``)              ``connected_traces``
================================  ===========================================================

Data invariants read the ``db.write`` entries of the event log, so they see every
state a row went through, not only the last one: a charge later deleted still
happened, a level that dipped below zero and came back still dipped.

What service code reports, for the resilience invariants (``sandbox.event``)
-------------------------------------------------------------------------------

Sagas. Each step of a saga reports once, right after its effect is committed,
and each compensation once, right after the step is undone::

    sandbox.event("saga", saga=order_id, step="reserve", action="do")
    sandbox.event("saga", saga=order_id, step="charge", action="do")
    sandbox.event("saga", saga=order_id, step="ship", action="do")        # completed

    sandbox.event("saga", saga=other_id, step="reserve", action="do")
    sandbox.event("saga", saga=other_id, step="charge", action="do")
    # shipping is impossible: compensate what was done, in reverse order
    sandbox.event("saga", saga=other_id, step="charge", action="undo")    # the refund
    sandbox.event("saga", saga=other_id, step="reserve", action="undo")   # compensated

``saga`` is the saga's id (any scalar, unique per saga), ``step`` one of the
steps given to ``saga_completed_or_compensated(steps=...)``, ``action`` is
``"do"`` or ``"undo"``. A step that failed without effect (a declined charge)
reports nothing: there is nothing to undo.

Circuit breakers. Each change of state reports where it came from and went to;
a breaker starts ``"closed"`` (and again after its replica restarts, since it
lives in memory), and the states are ``"closed"``, ``"open"`` and ``"half_open"``::

    sandbox.event("breaker", name="payments", before="closed", after="open")
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..broker import BROKER_NODE
from ..errors import InvalidParameterError
from ._common import (
    DatabaseName,
    FieldName,
    Invariant,
    InvariantBase,
    TableName,
    Write,
    at,
    creations,
    has_table,
    money,
    number,
    open_ops,
    optional_text,
    plural,
    quiet,
    show,
    text,
    times,
    value_of,
    writes,
)
from .conservation import conserved, money_conserved, stock_conserved
from .resilience import (
    breaker_transitions_legal,
    retries_within_budget,
    saga_completed_or_compensated,
)
from .traces import connected_traces
from .verdict import Verdict

if TYPE_CHECKING:
    from ..world import World

__all__ = [
    "Invariant",
    "check",
    "no_double_charge",
    "stock_never_negative",
    "conserved",
    "stock_conserved",
    "money_conserved",
    "exactly_once",
    "saga_completed_or_compensated",
    "breaker_transitions_legal",
    "retries_within_budget",
    "connected_traces",
]

Number = int | float


def check(world: World, invariants: Iterable[Invariant]) -> list[Verdict]:
    """Run each invariant on ``world``; return their verdicts, in the same order.

    A checker that raises (a bug in it, or parameters that do not fit this world)
    gives an UNKNOWN verdict with the error in its summary instead of crashing
    the caller, so one broken checker never hides the verdicts of the others.

    Example::

        verdicts = check(world, [no_double_charge(), stock_never_negative()])
        assert all(verdicts), "\\n".join(map(str, verdicts))

    Raises:
        InvalidParameterError: ``invariants`` is not a list of invariants (a factory itself,
            ``no_double_charge`` instead of ``no_double_charge()``, or a lone invariant).
    """
    if callable(invariants) or isinstance(invariants, (str, bytes)) or not isinstance(invariants, Iterable):
        raise InvalidParameterError(
            f"invariants={invariants!r}: give a list of invariants, e.g. check(world, [no_double_charge()])"
        )
    items = list(invariants)
    for i, item in enumerate(items):
        if any(item is f for f in _FACTORIES):
            raise InvalidParameterError(
                f"invariants[{i}] is the factory {item.__name__} itself; call it to build the invariant: "
                f"{item.__name__}()"
            )
        if not callable(item):
            raise InvalidParameterError(
                f"invariants[{i}]={item!r} is not an invariant: give callables taking the world, "
                f"such as no_double_charge()"
            )
    overran = getattr(world, "overran", None)
    if overran:  # stopped by its wall-clock limit: no verdict can say what the code would have done
        return [Verdict.failing(str(getattr(item, "name", None) or show(item)), f"the run never finished: {overran}")
                for item in items]
    verdicts = []
    for item in items:
        name = str(getattr(item, "name", None) or show(item))
        try:
            verdict = item(world)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            verdicts.append(
                Verdict.unknown(
                    name,
                    f"the checker raised {type(exc).__name__}: {exc}",
                    (f"raised at {where.filename}:{where.lineno} in {where.name}",),
                )
            )
            continue
        if not isinstance(verdict, Verdict):
            verdict = Verdict.unknown(name, f"the checker returned {verdict!r}, not a Verdict")
        verdicts.append(verdict)
    return verdicts


# --- charges ---------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _NoDoubleCharge(InvariantBase):
    factory: ClassVar[str] = "no_double_charge"
    db: DatabaseName = "payments-db"
    table: TableName = "charges"
    key: FieldName | None = "order_id"
    amount: FieldName | None = "amount"
    refunds_table: TableName | None = None
    cents: bool = True

    def __post_init__(self) -> None:
        text("db", self.db, "payments-db")
        text("table", self.table, "charges")
        optional_text("key", self.key, "order_id")
        optional_text("amount", self.amount, "amount")
        optional_text("refunds_table", self.refunds_table, "refunds")

    def _by_order(self, world: World, table: TableName) -> dict[Any, list[Write]]:
        out: dict[Any, list[Write]] = {}
        for w in creations(world, self.db, table):
            out.setdefault(value_of(w.value, self.key, w.key, f"{self.db}/{table} row"), []).append(w)
        return out

    def _price(self, w: Write) -> str | None:
        """The row's amount as text (``$25.00``), or None without an ``amount`` field."""
        if self.amount is None or not isinstance(w.value, Mapping) or self.amount not in w.value:
            return None
        return money(w.value[self.amount], self.cents)

    def _row(self, w: Write, what: str) -> str:
        price = self._price(w)
        return f"{at(w.time)} {w.where()}: {what}" + (f", {price}" if price else "")

    def __call__(self, world: World) -> Verdict:
        if not has_table(world, self.db, self.table):
            return Verdict.unknown(self.name, f"{self.db} has no table {self.table!r}: nothing was charged in this run")
        charges = self._by_order(world, self.table)
        refunds = self._by_order(world, self.refunds_table) if self.refunds_table else {}
        doubled = [(order, ws) for order, ws in charges.items() if len(ws) - len(refunds.get(order, ())) > 1]
        if not doubled:
            undone = sum(min(len(ws), len(refunds.get(o, ()))) for o, ws in charges.items())
            extra = f"; {plural(undone, 'charge')} refunded" if undone else ""
            return Verdict.passing(self.name, f"{plural(len(charges), 'order')} charged, none more than once{extra}")
        doubled.sort(key=lambda item: (item[1][1].time, str(item[0])))
        lines, evidence = [], []
        for order, ws in doubled:
            shown = " + ".join(f"{self._price(w) or 'a charge'} at {at(w.time)}" for w in ws)
            back = refunds.get(order, [])
            lines.append(
                f"order {order} was charged {times(len(ws))}: {shown}"
                + (f", and refunded only {times(len(back))}" if back else "")
            )
            evidence += [self._row(w, f"order {order}") for w in ws]
            evidence += [self._row(w, f"refund of order {order}") for w in back]
        summary = lines[0]
        if len(lines) > 1:
            summary += f" (and {plural(len(lines) - 1, 'more order')} charged more than once)"
        # The client operation that placed the first such order, so that pictures can point at it.
        first = str(doubled[0][0])
        evidence += [op for op in world.history if first in repr(op.value)][:4]
        return Verdict.failing(self.name, summary, tuple(evidence))


def no_double_charge(
    db: DatabaseName = "payments-db",
    table: TableName = "charges",
    key: FieldName | None = "order_id",
    *,
    amount: FieldName | None = "amount",
    refunds_table: TableName | None = None,
    cents: bool = True,
) -> Invariant:
    """No order was charged more than once.

    A charge is a row *created* in ``db``/``table`` (read from the event log, so a
    charge row deleted later still counts: the card was charged). ``key`` is the
    field of a charge row naming the order (None: the row's key is the order id).
    With ``refunds_table``, each row created there for the same order (same
    ``key`` field) cancels one charge. This is what idempotency keys are for: a
    retried payment request whose first attempt did go through charges the card a
    second time, and the customer notices long before the dashboards do.

    Example::

        verdict = no_double_charge()(world)
        # FAIL no_double_charge(): order ord-3 was charged twice: $25.00 at t=1.2011 + $25.00 at t=1.4583
        #   - t=1.2011 payments-db/charges ch-1: order ord-3, $25.00
        #   - t=1.4583 payments-db/charges ch-2: order ord-3, $25.00

    ``amount`` names the field shown in the evidence; ``cents`` shows it as dollars.

    Raises:
        InvalidParameterError: a name is not a non-empty str; (when run) a charge row lacks ``key``.
        UnknownNameError: (when run) the world has no database ``db``.
    """
    return _NoDoubleCharge(db, table, key, amount, refunds_table, cents)


# --- stock -----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _StockNeverNegative(InvariantBase):
    factory: ClassVar[str] = "stock_never_negative"
    db: DatabaseName = "inventory-db"
    table: TableName = "stock"
    field: FieldName | None = "qty"

    def __post_init__(self) -> None:
        text("db", self.db, "inventory-db")
        text("table", self.table, "stock")
        optional_text("field", self.field, "qty")

    def __call__(self, world: World) -> Verdict:
        if not has_table(world, self.db, self.table):
            return Verdict.unknown(self.name, f"{self.db} has no table {self.table!r}: no stock was ever written")
        first: dict[Any, tuple[Write, Number]] = {}
        checked = 0
        for w in writes(world, self.db, self.table):
            if w.value is None:
                continue
            checked += 1
            raw = w.value
            if self.field is not None:
                raw = value_of(raw, self.field, w.key, f"{self.db}/{self.table} row", "if the row is the level itself")
            level = number(
                raw,
                f"{self.db}/{self.table} {w.key}" + (f" field {self.field!r}" if self.field else ""),
                "pass field= the name of the numeric field that holds the level",
            )
            if level < 0 and w.key not in first:
                first[w.key] = (w, level)
        if not first:
            return Verdict.passing(self.name, f"no level went below zero ({plural(checked, 'write')} checked)")
        dips = sorted(first.values(), key=lambda item: (item[0].time, str(item[0].key)))
        w0, level0 = dips[0]
        what = self.field or "level"
        summary = f"{w0.where()} went to {what} {level0} at {at(w0.time)}"
        if len(dips) > 1:
            summary += f" (and {plural(len(dips) - 1, 'more row')} went negative)"
        evidence: list[Any] = [f"{at(w.time)} {w.where()}: {what} = {level}" for w, level in dips]
        in_flight = open_ops(world, w0.time)
        if in_flight:
            evidence.append(f"operations in flight at {at(w0.time)}:")
            evidence += in_flight
        return Verdict.failing(self.name, summary, tuple(evidence))


def stock_never_negative(
    db: DatabaseName = "inventory-db", table: TableName = "stock", field: FieldName | None = "qty"
) -> Invariant:
    """At no moment of the run did a stock level go below zero.

    Every write of ``db``/``table`` is scanned in time order (not only the rows
    left at the end: a level that went to -1 and was restocked still oversold).
    ``field`` is the row field holding the level (None: the row is the number).
    Negative stock is the mark of check-then-act: two requests read "1 left",
    both take it. The evidence shows the first negative write of each row, and the
    client operations in flight when the first one happened: the race's suspects.

    Example::

        stock_never_negative()(world)
        # FAIL stock_never_negative(): inventory-db/stock desk/west went to qty -1 at t=0.8008 (and 1 more
        #   row went negative)

    Raises:
        InvalidParameterError: a name is not a non-empty str; (when run) a row's ``field`` is missing
            or not a number.
        UnknownNameError: (when run) the world has no database ``db``.
    """
    return _StockNeverNegative(db, table, field)


# --- messages --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _ExactlyOnce(InvariantBase):
    factory: ClassVar[str] = "exactly_once"
    db: DatabaseName
    table: TableName
    key: FieldName | None = None
    topic: str | None = None
    message_id: FieldName | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        text("db", self.db, "notifications-db")
        text("table", self.table, "emails")
        optional_text("key", self.key, "order_id")
        optional_text("topic", self.topic, "order-placed")
        optional_text("message_id", self.message_id, "order_id")
        optional_text("group", self.group, "notifications")

    def __call__(self, world: World) -> Verdict:
        effects: dict[Any, list[Write]] = {}
        if has_table(world, self.db, self.table):
            for w in creations(world, self.db, self.table):
                effects.setdefault(value_of(w.value, self.key, w.key, f"{self.db}/{self.table} row"), []).append(w)
        if self.topic is None:
            if not effects:
                return Verdict.unknown(self.name, f"nothing was written to {self.db}/{self.table}: no effect to count")
            wrong = {i: ws for i, ws in effects.items() if len(ws) > 1}
            return self._verdict(wrong, {}, {}, len(effects), world)
        topics = world.broker.topics() if BROKER_NODE in world.nodes else []  # asking creates no broker
        if self.topic not in topics:
            return Verdict.unknown(self.name, f"no message was sent to topic {self.topic!r} (topics: {topics})")
        sent: dict[Any, list[tuple[int, int]]] = {}
        for msg in world.broker.messages(self.topic):
            place = f"message {self.topic}/{msg.partition}@{msg.offset}"
            if self.message_id is None:
                if msg.key is None:
                    raise InvalidParameterError(
                        f"{place} has no key; pass message_id= the field of its value that identifies it"
                    )
                ident = msg.key
            else:
                ident = value_of(msg.value, self.message_id, msg.offset, place)
            sent.setdefault(ident, []).append((msg.partition, msg.offset))
        if not sent:
            return Verdict.unknown(self.name, f"no message was sent to topic {self.topic!r}")
        counts: dict[tuple[str, int, int], int] = {}
        for e in world.recorder.log:
            # (t, "broker.deliver", group, member, topic, partition, offset)
            # (t, "consumer.handle", instance, group, topic, partition, offset)
            if e[1] in ("broker.deliver", "consumer.handle") and e[4] == self.topic:
                if self.group is None or self.group == (e[2] if e[1] == "broker.deliver" else e[3]):
                    counts[(e[1], e[5], e[6])] = counts.get((e[1], e[5], e[6]), 0) + 1
        wrong = {i: effects.get(i, []) for i in sent if len(effects.get(i, [])) != 1}
        return self._verdict(wrong, sent, counts, len(sent), world)

    def _verdict(self, wrong: dict[Any, list[Write]], sent: dict[Any, list[tuple[int, int]]],
                 counts: dict[tuple[str, int, int], int], total: int, world: World) -> Verdict:
        if not wrong:
            return Verdict.passing(self.name, f"all {plural(total, 'message')} took effect exactly once")
        lines, evidence = [], []
        # duplicates in the order their second effect happened, then the messages that never took effect
        for ident in sorted(wrong, key=lambda i: (wrong[i][1].time if len(wrong[i]) > 1 else math.inf, str(i))):
            ws = wrong[ident]
            handled = ""
            if ident in sent:
                d = sum(counts.get(("broker.deliver", p, o), 0) for p, o in sent[ident])
                h = sum(counts.get(("consumer.handle", p, o), 0) for p, o in sent[ident])
                places = ", ".join(f"{self.topic}/{p}@{o}" for p, o in sent[ident])
                handled = f" (sent as {places}; delivered {times(d)}, handled {times(h)})"
            effect = f"took effect {times(len(ws))}" if ws else "never took effect"
            lines.append(f"message {ident} {effect}{handled}")
            evidence.append(lines[-1])
            evidence += [f"  {at(w.time)} {w.where()} created" for w in ws]
        if not any(wrong.values()) and not quiet(world):
            # No message took effect twice, and those without an effect may still be on their way.
            return Verdict.unknown(
                self.name, f"the run stopped at {at(world.now)} before its quiet phase (clients still working, or "
                           f"faults still in force), so a message may yet take effect: {lines[0]}",
                tuple(evidence),
            )
        summary = f"{len(lines)} of {plural(total, 'message')} did not take effect exactly once: {lines[0]}"
        return Verdict.failing(self.name, summary, tuple(evidence))


def exactly_once(
    db: DatabaseName,
    table: TableName,
    key: FieldName | None = None,
    *,
    topic: str | None = None,
    message_id: FieldName | None = None,
    group: str | None = None,
) -> Invariant:
    """Each message took effect exactly once, however many times it was delivered.

    An effect is a row created in ``db``/``table``; its ``key`` field (None: the
    row key) says which message caused it. No id may have two effects. With
    ``topic``, every message of that topic must have exactly one (none is a lost
    message); a message's id is its key, or the ``message_id`` field of its value.
    The broker delivers at least once (a crash before the commit, a rebalance, a
    handler that failed after writing), so exactly-once *effects* are the
    consumer's job: an idempotent handler or a deduplication table. The evidence
    says how often the broker delivered and the consumers handled each message
    (of consumer ``group`` only, if given). A message that took effect twice FAILS
    at once; one without an effect FAILS only if the run reached its quiet phase
    (clients done, injected faults healed): before that it may still be on its way,
    and the verdict is UNKNOWN.

    Example::

        exactly_once("notifications-db", "emails", "order_id", topic="order-placed")(world)
        # FAIL exactly_once(...): 1 of 14 messages did not take effect exactly once: message ord-5 took
        #   effect twice (sent as order-placed/2@3; delivered twice, handled twice)

    Raises:
        InvalidParameterError: a name is not a non-empty str; (when run) an effect row lacks ``key``,
            or a message has no key and no ``message_id`` was given.
        UnknownNameError: (when run) the world has no database ``db``.
    """
    return _ExactlyOnce(db, table, key, topic, message_id, group)


_FACTORIES = (
    no_double_charge, stock_never_negative, conserved, stock_conserved, money_conserved, exactly_once,
    saga_completed_or_compensated, breaker_transitions_legal, retries_within_budget, connected_traces,
)
