"""Durable storage: database servers on their own nodes, and each replica's local disk.

A database (``world.add_database("orders-db")``) is a node of its own, as a
PostgreSQL server is: service replicas reach it over the simulated network, every
operation is a round trip plus the server's per-operation latency, and a partition
between a replica and its database makes calls time out. Its data survives crashes
of its clients and of itself; open transactions do not.

The operations are the counterparts of what a service would do in PostgreSQL:

==========================================  =========================================================
``await db.get(table, key)``                ``SELECT`` (read committed; never waits for locks)
``await db.get_row(table, key)``            the row with its ``version`` (for optimistic locking)
``await db.put(table, key, value)``         ``INSERT ... ON CONFLICT DO UPDATE`` (upsert)
``await db.put(..., if_version=v)``         ``UPDATE ... WHERE version = v``: ``VersionConflict`` if not
``await db.insert(table, key, value)``      ``INSERT``: ``DuplicateKey`` if the key exists
``await db.delete(table, key)``             ``DELETE``
``await db.scan(table, prefix=...)``        ``SELECT ... WHERE key LIKE 'prefix%' ORDER BY key``
``async with db.transaction() as tx:``      ``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` if the block raises)
``await tx.get(table, key, for_update=True)``  ``SELECT ... FOR UPDATE``: a row lock, ``LockTimeout`` after
                                            ``lock_timeout`` seconds
==========================================  =========================================================

Values are plain JSON data (dicts, lists, str, numbers, bools, None); they are
copied in and out, so changing a dict you read does not change the database.
Writes inside a transaction take the row's lock (as ``UPDATE`` does) and become
visible to others only at commit. Versions count committed writes of a key,
starting at 1; a missing key has version 0.

Example::

    @app.post("/reserve")
    async def reserve(r: Reservation, db: sandbox.Database = Depends(sandbox.database("inventory-db"))):
        async with db.transaction() as tx:
            row = await tx.get("stock", r.sku, for_update=True)
            if row is None or row["qty"] < r.qty:
                raise HTTPException(409, "out of stock")
            await tx.put("stock", r.sku, {"qty": row["qty"] - r.qty})
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simpy.events import Event, Timeout

from ._vtime import call_at, due
from .errors import (
    DuplicateKey,
    InvalidParameterError,
    LockTimeout,
    TransactionAborted,
    VersionConflict,
)
from .nodes import Node

if TYPE_CHECKING:
    from .world import World

Key = str | int
_ABSENT: Any = object()


@dataclass(frozen=True)
class Row:
    """One stored row: its key, a copy of its value, and its version."""

    key: Key
    value: Any
    version: int


def plain(value: Any, where: str = "value") -> Any:
    """A deep copy of ``value`` if it is plain JSON data; InvalidParameterError otherwise."""
    kind = type(value)
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise InvalidParameterError(
                    f"{where} has key {k!r} of type {type(k).__name__}; stored dicts need str keys, as in JSON"
                )
            item = type(v)
            if item is str or item is int or item is bool or v is None:  # the common case, without recursing
                out[k] = v
            else:
                out[k] = plain(v, f"{where}[{k!r}]")
        return out
    if kind is list or kind is tuple:
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise InvalidParameterError(f"{where} is {value!r}; store finite numbers only (JSON has no NaN or inf)")
        return value
    hint = " (for a pydantic model, store model.model_dump(mode='json'))" if hasattr(value, "model_dump") else ""
    raise InvalidParameterError(
        f"{where} is a {kind.__name__} ({value!r}); the database stores plain JSON data: dict, list, str, "
        f"int, float, bool, None{hint}"
    )


def _check_key(table: Any, key: Any) -> None:
    if not isinstance(table, str) or not table:
        raise InvalidParameterError(f"table={table!r}: name tables with a non-empty str, e.g. 'orders'")
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise InvalidParameterError(f"key={key!r}: keys are str or int (got {type(key).__name__})")


def _sort_key(key: Key) -> tuple[int, Any]:
    return (0, key) if isinstance(key, int) else (1, key)


class _MustWait(Exception):
    """Internal: the operation needs a row lock held by another transaction."""

    def __init__(self, event: Event, lock_timeout: float) -> None:
        self.event = event
        self.lock_timeout = lock_timeout


class _Lock:
    __slots__ = ("owner", "waiters")

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.waiters: list[tuple[int, Event]] = []


class _Tx:
    __slots__ = ("id", "client", "writes", "locks", "lock_timeout", "last_active")

    def __init__(self, tx_id: int, client: str, lock_timeout: float) -> None:
        self.id = tx_id
        self.client = client
        self.writes: dict[tuple[str, Key], Any] = {}
        self.locks: list[tuple[str, Key]] = []
        self.lock_timeout = lock_timeout
        self.last_active = 0.0


class IORule:
    """What one storage fault does to a database's operations: add ``latency``, lose the
    answer with probability ``timeout``, or cut lock waits to ``lock_timeout``. ``fired``
    counts the operations it acted on."""

    __slots__ = ("label", "latency", "timeout", "lock_timeout", "fired")

    def __init__(self, label: str, *, latency: float = 0.0, timeout: float = 0.0, lock_timeout: float = 0.0) -> None:
        self.label = label
        self.latency = latency
        self.timeout = timeout
        self.lock_timeout = lock_timeout
        self.fired = 0


#: The method of ``Store`` that executes each operation.
_OP_METHODS = {name: f"_op_{name}" for name in ("get", "scan", "put", "insert", "delete", "commit", "rollback")}


class Store:
    """The tables, row versions, locks and open transactions of one database or disk."""

    def __init__(self, world: World, name: str, lock_timeout: float) -> None:
        self.world = world
        self.name = name
        self.lock_timeout = lock_timeout
        self.io_rules: list[IORule] = []  # storage faults in force (see sandbox.faults)
        self.tables: dict[str, dict[Key, list[Any]]] = {}
        self._locks: dict[tuple[str, Key], _Lock] = {}
        self._txs: dict[int, _Tx] = {}
        self._ended: dict[int, str | None] = {}

    # --- inspection (for checkers and tests; no latency, no network) -------------------

    def read(self, table: str, key: Key, default: Any = None) -> Any:
        """The committed value of a key (a copy), read directly."""
        row = self.tables.get(table, {}).get(key)
        return default if row is None or row[0] is _ABSENT else plain(row[0])

    def rows(self, table: str) -> dict[Key, Any]:
        """Every committed row of a table as ``{key: value}``, in key order (copies)."""
        data = self.tables.get(table, {})
        return {k: plain(data[k][0]) for k in sorted(data, key=_sort_key) if data[k][0] is not _ABSENT}

    def table_names(self) -> list[str]:
        """The names of every table, sorted."""
        return sorted(self.tables)

    # --- set-up (direct writes, before or between runs) -------------------------------

    def write(self, table: str, key: Key, value: Any) -> int:
        """Store ``value`` at ``table/key`` directly (no latency, no network); return its version.

        For setting up a scenario (opening stock, accounts), not for service code.
        """
        _check_key(table, key)
        row = self.tables.get(table, {}).get(key)
        version = (row[1] if row is not None else 0) + 1
        self._commit_row(table, key, plain(value), version)
        return version

    def load(self, table: str, rows: dict[Key, Any]) -> None:
        """``write`` every ``key: value`` of ``rows`` into ``table``, in key order."""
        if not isinstance(rows, dict):
            raise InvalidParameterError(f"rows={rows!r}: give a dict of key -> value")
        for key in sorted(rows, key=_sort_key):
            self.write(table, key, rows[key])

    # --- execution -------------------------------------------------------------------

    def execute(self, op: tuple, client: str, auto_id: int) -> Any:
        """Apply one operation; raise a SimulatedFailure, or _MustWait if a lock is busy.

        ``auto_id`` names the one-statement transaction of a write made outside a
        transaction; it stays the same when the operation runs again after a lock wait.
        """
        name, tx_id = op[0], op[1]
        if tx_id is None:
            return getattr(self, _OP_METHODS.get(name) or "_op_" + name)(None, *op[2:], auto_id=auto_id)
        tx = self._txs.get(tx_id)
        if tx is None:
            if tx_id in self._ended:
                reason = self._ended[tx_id]
                if reason is None and name in ("commit", "rollback"):
                    return None  # a retried commit/rollback of a finished transaction
                raise TransactionAborted(
                    f"transaction {tx_id} on {self.name} has ended ({reason or 'already committed or rolled back'}); "
                    f"none of its later statements take effect"
                )
            lock_timeout = op[2] if name == "begin" and op[2] is not None else self.lock_timeout
            tx = self._txs[tx_id] = _Tx(tx_id, client, lock_timeout)
        tx.last_active = self.world.env.now
        if name == "begin":
            return None
        return getattr(self, _OP_METHODS.get(name) or "_op_" + name)(tx, *op[2:])

    def _visible(self, tx: _Tx | None, table: str, key: Key) -> tuple[Any, int]:
        row = self.tables.get(table, {}).get(key)
        value, version = (row[0], row[1]) if row is not None else (_ABSENT, 0)
        if tx is not None:
            pending = tx.writes.get((table, key), _ABSENT)
            if pending is not _ABSENT:
                return pending[0], pending[1]
        return value, version

    def _op_get(self, tx: _Tx | None, table: str, key: Key, for_update: bool, auto_id: int = 0) -> Row | None:
        # As in PostgreSQL, SELECT ... FOR UPDATE locks the row it finds; a missing row locks nothing.
        if for_update and self._visible(tx, table, key)[0] is not _ABSENT:
            self._acquire(tx, table, key)
        value, version = self._visible(tx, table, key)
        return None if value is _ABSENT else Row(key, plain(value), version)

    def _op_scan(self, tx: _Tx | None, table: str, prefix: str | None, limit: int | None, auto_id: int = 0) -> list[Row]:
        data = self.tables.get(table, {})
        keys = set(data)
        if tx is not None:
            keys.update(k for (t, k) in tx.writes if t == table)
        out = []
        for key in sorted(keys, key=_sort_key):
            if prefix is not None and not (isinstance(key, str) and key.startswith(prefix)):
                continue
            value, version = self._visible(tx, table, key)
            if value is not _ABSENT:
                out.append(Row(key, plain(value), version))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _op_put(self, tx: _Tx | None, table: str, key: Key, value: Any, if_version: int | None, auto_id: int = 0) -> int:
        return self._write(tx, auto_id, table, key, value, if_version, insert=False)

    def _op_insert(self, tx: _Tx | None, table: str, key: Key, value: Any, auto_id: int = 0) -> int:
        return self._write(tx, auto_id, table, key, value, None, insert=True)

    def _op_delete(self, tx: _Tx | None, table: str, key: Key, if_version: int | None, auto_id: int = 0) -> bool:
        existed = self._visible(tx, table, key)[0] is not _ABSENT
        self._write(tx, auto_id, table, key, _ABSENT, if_version, insert=False)
        return existed

    def _write(self, tx: _Tx | None, auto_id: int, table: str, key: Key, value: Any, if_version: int | None, insert: bool) -> int:
        own = tx
        if own is None:  # autocommit: a one-statement transaction, kept across a lock wait
            own = self._txs.get(auto_id)
            if own is None:
                own = self._txs[auto_id] = _Tx(auto_id, "autocommit", self.lock_timeout)
        self._acquire(own, table, key)  # may raise _MustWait: `own` stays registered meanwhile
        try:
            current, version = self._visible(tx, table, key)
            current_version = 0 if current is _ABSENT else version
            if insert and current is not _ABSENT:
                if tx is not None:  # as in PostgreSQL, an error ends the transaction
                    self.abort(tx.id, "a statement failed: duplicate key")
                raise DuplicateKey(f"{self.name}: key {key!r} already exists in table {table!r}")
            if if_version is not None and if_version != current_version:
                raise VersionConflict(
                    f"{self.name}: {table}/{key!r} is at version {current_version}, not {if_version} as expected"
                )
            new_version = version + 1
            if tx is None:
                self._commit_row(table, key, value, new_version)
            else:
                tx.writes[(table, key)] = (value, new_version)
            return new_version
        finally:
            if tx is None:
                self._txs.pop(auto_id, None)
                self._release(own)

    def _commit_row(self, table: str, key: Key, value: Any, version: int) -> None:
        rows = self.tables.get(table)
        if rows is None:
            rows = self.tables[table] = {}
        rows[key] = [value, version]
        # The value itself (never mutated: values are copied in and out), so that the fingerprint
        # tells apart runs that wrote different data; it is only turned into text when hashed.
        self.world.record("db.write", self.name, table, key, version, None if value is _ABSENT else value)

    def _op_commit(self, tx: _Tx) -> None:
        for (table, key), (value, version) in tx.writes.items():
            self._commit_row(table, key, value, version)
        self._end(tx, None)
        self.world.record("db.commit", self.name, tx.id, len(tx.writes))
        return None

    def _op_rollback(self, tx: _Tx) -> None:
        self._end(tx, None)
        self.world.record("db.rollback", self.name, tx.id)
        return None

    def _end(self, tx: _Tx, reason: str | None) -> None:
        self._txs.pop(tx.id, None)
        self._ended[tx.id] = reason
        self._release(tx)

    def abort(self, tx_id: int, reason: str) -> None:
        """End an open transaction without committing it (its writes are discarded)."""
        tx = self._txs.get(tx_id)
        if tx is not None:
            self._end(tx, reason)
            self.world.record("db.abort", self.name, tx_id)

    def abort_client(self, client: str, reason: str) -> None:
        """Abort every open transaction of one client node (its connection died)."""
        for tx_id in [t.id for t in self._txs.values() if t.client == client]:
            self.abort(tx_id, reason)

    def abort_all(self, reason: str) -> None:
        for tx_id in list(self._txs):
            self.abort(tx_id, reason)

    # --- locks -----------------------------------------------------------------------

    def _acquire(self, tx: _Tx | None, table: str, key: Key) -> None:
        if tx is None:
            return
        row = (table, key)
        lock = self._locks.get(row)
        if lock is None:
            self._locks[row] = _Lock(tx.id)
            tx.locks.append(row)
            return
        if lock.owner == tx.id:
            return
        event = Event(self.world.env)
        lock.waiters.append((tx.id, event))
        self.world.record("db.lock_wait", self.name, table, key, tx.id, lock.owner)
        wait = tx.lock_timeout
        for rule in self.io_rules:  # a LockTimeouts fault shortens every wait
            if rule.lock_timeout and rule.lock_timeout < wait:
                wait = rule.lock_timeout
                rule.fired += 1
        raise _MustWait(event, wait)

    def _release(self, tx: _Tx) -> None:
        for row in tx.locks:
            lock = self._locks.get(row)
            if lock is None or lock.owner != tx.id:
                continue
            while lock.waiters:
                waiter, event = lock.waiters.pop(0)
                owner = self._txs.get(waiter)
                if event.triggered or owner is None:
                    continue  # timed out, or its transaction ended while it waited
                lock.owner = waiter
                owner.locks.append(row)
                event.succeed(waiter)
                break
            else:
                del self._locks[row]
        tx.locks = []

    def cancel_wait(self, table: str, key: Key, event: Event) -> None:
        lock = self._locks.get((table, key))
        if lock is not None:
            lock.waiters = [(t, e) for (t, e) in lock.waiters if e is not event]


class DatabaseNode(Node):
    """A database server: a node of its own holding one durable ``Store``."""

    kind = "database"

    def __init__(self, world: World, name: str, *, latency: float, jitter: float, lock_timeout: float, idle_timeout: float) -> None:
        super().__init__(world, name)
        self.store = Store(world, name, lock_timeout)
        self.latency = latency
        self.jitter = jitter
        self.idle_timeout = idle_timeout
        self._rng = world.streams[f"storage/{name}"]
        self._seen: set[tuple[str, int, int]] = set()

    def on_crash(self) -> None:
        self.store.abort_all("the database server crashed")

    def client_crashed(self, client: Node) -> None:
        self.store.abort_client(client.name, f"client {client.name} crashed")

    def op_delay(self) -> float:
        if not self.jitter:
            delay = self.latency
        else:
            delay = self._rng.gauss(self.latency, self.jitter)
            delay = delay if delay > 0 else 0.0
        for rule in self.store.io_rules:
            if rule.latency:
                rule.fired += 1
                delay += rule.latency
        return delay

    def handle_op(self, caller: Node, caller_epoch: int, msg_id: int, op: tuple) -> None:
        key = (caller.name, caller_epoch, msg_id)
        if key in self._seen:
            return  # clients talk to a database over TCP, which delivers each statement once
        self._seen.add(key)
        Timeout(self.env, self.op_delay()).callbacks.append(_Execute(self, caller, caller_epoch, msg_id, op, self.epoch))

    def run_op(self, execute: _Execute) -> None:
        try:
            result = ("ok", self.store.execute(execute.op, execute.caller.name, execute.auto_id))
        except _MustWait as wait:
            self._wait_for_lock(execute, wait)
            return
        except Exception as exc:  # a failure is the caller's answer, never the server's crash
            result = ("err", exc)
        tx_id = execute.op[1]
        if tx_id is not None and execute.op[0] not in ("commit", "rollback"):
            self._watch_idle(tx_id)
        for rule in self.store.io_rules:
            if rule.timeout and self._rng.random() < rule.timeout:
                rule.fired += 1  # done, but the answer is lost: the caller times out not knowing
                self.world.record("db.stalled", self.name, execute.msg_id, rule.label)
                return
        self.reply(execute.caller, execute.caller_epoch, execute.msg_id, result, "db.reply")

    def _wait_for_lock(self, execute: _Execute, wait: _MustWait) -> None:
        op = execute.op

        def granted(event: Event) -> None:
            if self.epoch != execute.epoch or not self.alive:
                return
            if event.ok:
                self.when_running(lambda: self.run_op(execute))

        def expired(_event: Event) -> None:
            if wait.event.triggered or self.epoch != execute.epoch:
                return
            if self.paused:  # the server's own timer: it fires when the server runs again
                self._held.append(lambda: expired(_event))
                return
            wait.event.fail(LockTimeout("lock timeout"))
            wait.event.defused = True
            self.store.cancel_wait(op[2], op[3], wait.event)
            self.world.record("db.lock_timeout", self.name, op[2], op[3], op[1])
            if op[1] is None:
                self.store._txs.pop(execute.auto_id, None)
            else:  # as in PostgreSQL, an error ends the transaction
                self.store.abort(op[1], "a statement failed: lock timeout")
            err = LockTimeout(
                f"{self.name}: waited {wait.lock_timeout:g}s for the lock on {op[2]}/{op[3]!r} "
                f"(held by another transaction); lock_timeout exceeded, the transaction is aborted"
            )
            self.reply(execute.caller, execute.caller_epoch, execute.msg_id, ("err", err), "db.reply")

        if self.world.metrics is not None:
            self.world.metrics.lock_wait(self.name, op[2], wait.event)
        wait.event.callbacks.append(granted)
        Timeout(self.env, wait.lock_timeout).callbacks.append(expired)

    def _watch_idle(self, tx_id: int) -> None:
        timeout = self.idle_timeout
        store = self.store
        epoch = self.epoch
        tx = store._txs.get(tx_id)
        if tx is None:
            return

        def check() -> None:
            if self.paused:
                self._held.append(check)
                return
            tx = store._txs.get(tx_id)
            if tx is not None and self.epoch == epoch and due(self.env.now, tx.last_active + timeout):
                store.abort(tx_id, f"idle in transaction for {timeout:g}s (idle_in_transaction_session_timeout)")

        call_at(self.env, tx.last_active + timeout, check)


class _Execute:
    __slots__ = ("db", "caller", "caller_epoch", "msg_id", "op", "epoch", "auto_id")

    def __init__(self, db: DatabaseNode, caller: Node, caller_epoch: int, msg_id: int, op: tuple, epoch: int) -> None:
        self.db = db
        self.caller = caller
        self.caller_epoch = caller_epoch
        self.msg_id = msg_id
        self.op = op
        self.epoch = epoch
        self.auto_id = -db.world.next_id() if op[1] is None else 0

    def __call__(self, _event: Any) -> None:
        db = self.db
        if not db.alive or db.epoch != self.epoch:
            db.world.record("db.lost", db.name, self.msg_id)
            return
        if db.paused:
            db._held.append(lambda: db.run_op(self))
        else:
            db.run_op(self)
