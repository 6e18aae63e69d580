"""What service code holds to use storage: ``Database`` and ``Transaction``.

A ``Database`` is a connection to one database node, or to the replica's own disk;
its operations (get, put, insert, delete, scan, transactions) are described in
``sandbox.storage``, which holds the data and executes them. How an operation
travels depends on where the store is: over the simulated network to a database
node, to the local disk after a write latency, or (outside a World, under
FastAPI's TestClient) straight to an in-memory store.
"""

from __future__ import annotations

from typing import Any

from simpy.events import Timeout

from ._checks import seconds
from ._runtime import WaitEvent
from .errors import InvalidParameterError, LockTimeout, NodeCrashed, SimulatedFailure
from .nodes import Node
from .storage import DatabaseNode, Key, Row, Store, _check_key, _MustWait, plain

# --- transports: how a client's operations reach a store -----------------------------


class _RemoteTransport:
    """Operations travel over the network to a database node."""

    __slots__ = ("node", "db", "timeout")

    def __init__(self, node: Node, db: DatabaseNode, timeout: float | None) -> None:
        self.node = node
        self.db = db
        self.timeout = timeout

    @property
    def name(self) -> str:
        return self.db.name

    async def execute(self, op: tuple) -> Any:
        node = self.node
        tracing = node.world.tracing
        if tracing is not None:
            return await tracing.within(tracing.db_span(node, self.db.name, op), self._round_trip(op))
        db = self.db  # _round_trip, inlined: one coroutine less for every operation to wait through
        status, value = await node.call(db, db.handle_op, op, "db", self.timeout, f"{db.name} {op[0]}")
        if status == "err":
            raise type(value)(*value.args)
        return value

    async def _round_trip(self, op: tuple) -> Any:
        db = self.db
        status, value = await self.node.call(db, db.handle_op, op, "db", self.timeout, f"{db.name} {op[0]}")
        if status == "err":
            raise type(value)(*value.args)
        return value


class _DiskTransport:
    """Operations on the node's own disk: a write latency, no network."""

    __slots__ = ("node", "store", "latency")

    def __init__(self, node: Node, store: Store, latency: float) -> None:
        self.node = node
        self.store = store
        self.latency = latency

    @property
    def name(self) -> str:
        return self.store.name

    async def execute(self, op: tuple) -> Any:
        node = self.node
        node.check_alive()
        epoch = node.epoch
        if self.latency:
            await WaitEvent(Timeout(node.env, self.latency))
        if node.epoch != epoch or not node.alive:
            raise NodeCrashed(f"{node.name} crashed during a disk operation")
        auto_id = -node.world.next_id()
        while True:
            try:
                return self.store.execute(op, node.name, auto_id)
            except _MustWait as wait:
                timer = Timeout(node.env, wait.lock_timeout)
                race = node.env.any_of([wait.event, timer])
                await WaitEvent(race)
                if not wait.event.triggered:
                    self.store.cancel_wait(op[2], op[3], wait.event)
                    if op[1] is None:
                        self.store._txs.pop(auto_id, None)
                    else:
                        self.store.abort(op[1], "a statement failed: lock timeout")
                    raise LockTimeout(
                        f"{self.store.name}: waited {wait.lock_timeout:g}s for the lock on {op[2]}/{op[3]!r}"
                    ) from None


class _LocalTransport:
    """Outside a world (FastAPI's TestClient): operations apply at once, no waiting."""

    __slots__ = ("store", "_ids")

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ids = 0

    @property
    def name(self) -> str:
        return self.store.name

    async def execute(self, op: tuple) -> Any:
        self._ids -= 1
        try:
            return self.store.execute(op, "local", self._ids)
        except _MustWait as wait:  # nothing else runs meanwhile: the lock will not come free
            self.store.cancel_wait(op[2], op[3], wait.event)
            if op[1] is None:
                self.store._txs.pop(self._ids, None)
            else:
                self.store.abort(op[1], "a statement failed: lock timeout")
            raise LockTimeout(f"{self.store.name}: the lock on {op[2]}/{op[3]!r} is held by another transaction") from None


def _check_version(if_version: Any) -> None:
    if if_version is not None and (isinstance(if_version, bool) or not isinstance(if_version, int) or if_version < 0):
        raise InvalidParameterError(f"if_version={if_version!r}: use a row's version (an int >= 0; 0 = absent)")


# --- the client API ------------------------------------------------------------------


class _Ops:
    """get/get_row/put/insert/delete/scan, shared by Database and Transaction."""

    _transport: Any
    _tx: int | None

    async def get(self, table: str, key: Key, default: Any = None, *, for_update: bool = False) -> Any:
        """The value stored at ``table/key`` (a copy), or ``default`` if there is none."""
        row = await self._transport.execute(self._get(table, key, for_update))  # not get_row: one coroutine less
        return default if row is None else row.value

    async def get_row(self, table: str, key: Key, *, for_update: bool = False) -> Row | None:
        """The row at ``table/key`` with its version, or None."""
        return await self._transport.execute(self._get(table, key, for_update))

    def _get(self, table: str, key: Key, for_update: bool) -> tuple:
        """The operation that reads ``table/key``."""
        _check_key(table, key)
        if for_update and self._tx is None:
            raise InvalidParameterError(
                "for_update=True takes a row lock, which only lives inside a transaction: "
                "`async with db.transaction() as tx: await tx.get(table, key, for_update=True)`"
            )
        return ("get", self._tx, table, key, for_update)

    async def put(self, table: str, key: Key, value: Any, *, if_version: int | None = None) -> int:
        """Store ``value`` at ``table/key``; return the new version.

        Raises:
            VersionConflict: ``if_version`` was given and the row is at another version.
            LockTimeout: another transaction holds the row's lock for too long.
        """
        _check_key(table, key)
        _check_version(if_version)
        return await self._transport.execute(("put", self._tx, table, key, plain(value), if_version))

    async def insert(self, table: str, key: Key, value: Any) -> int:
        """Store ``value`` at a new key; raise ``DuplicateKey`` if the key exists."""
        _check_key(table, key)
        return await self._transport.execute(("insert", self._tx, table, key, plain(value)))

    async def delete(self, table: str, key: Key, *, if_version: int | None = None) -> bool:
        """Delete ``table/key``; return whether it existed.

        Raises:
            VersionConflict: ``if_version`` was given and the row is at another version.
        """
        _check_key(table, key)
        _check_version(if_version)
        return await self._transport.execute(("delete", self._tx, table, key, if_version))

    async def scan(self, table: str, *, prefix: str | None = None, limit: int | None = None) -> list[Row]:
        """The rows of ``table`` in key order, optionally only keys starting with ``prefix``."""
        _check_key(table, "")
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidParameterError(f"prefix={prefix!r}: a key prefix is a str (it matches str keys only)")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidParameterError(f"limit={limit!r}: use a positive int, or None for every row")
        return await self._transport.execute(("scan", self._tx, table, prefix, limit))


class Database(_Ops):
    """A connection to one database (or to the node's disk), as service code sees it."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._tx = None

    @property
    def name(self) -> str:
        return self._transport.name

    def transaction(self, *, lock_timeout: float | None = None) -> Transaction:
        """Open a transaction: ``async with db.transaction() as tx: ...`` commits at the end.

        ``lock_timeout`` (seconds) bounds every wait for a row lock in it.
        """
        if lock_timeout is not None:
            lock_timeout = seconds("lock_timeout", lock_timeout, positive=True)
        return Transaction(self._transport, lock_timeout)

    def __repr__(self) -> str:
        return f"<Database {self.name}>"


_tx_ids = iter(range(1, 1 << 62))


class Transaction(_Ops):
    """One transaction; use it as ``async with db.transaction() as tx``."""

    def __init__(self, transport: Any, lock_timeout: float | None) -> None:
        self._transport = transport
        self._lock_timeout = lock_timeout
        self._tx = None
        self._done = False

    async def __aenter__(self) -> Transaction:
        await self.begin()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._done:
            return False
        if exc_type is None:
            await self.commit()
        else:
            try:
                await self.rollback()
            except SimulatedFailure:
                pass  # the original error matters more; the server aborts the transaction anyway
        return False

    async def begin(self) -> None:
        from ._runtime import node_or_none

        node = node_or_none()
        self._done = False  # a Transaction object used again begins a new transaction
        self._tx = node.world.next_id() if node is not None else next(_tx_ids)
        await self._transport.execute(("begin", self._tx, self._lock_timeout))

    async def commit(self) -> None:
        """Make every write of this transaction visible at once, and release its locks."""
        self._done = True
        await self._transport.execute(("commit", self._tx))

    async def rollback(self) -> None:
        """Discard every write of this transaction and release its locks."""
        self._done = True
        await self._transport.execute(("rollback", self._tx))
