"""Storage: databases on their own nodes and each replica's local disk, used from service code."""

from __future__ import annotations

import math

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

import sandbox

DB = "kv-db"


# --- service code under test -----------------------------------------------------------


def _row(row: sandbox.Row | None) -> dict | None:
    return None if row is None else {"key": row.key, "value": row.value, "version": row.version}


def _failure(exc: Exception) -> dict:
    return {"error": type(exc).__name__, "message": str(exc)}


async def _apply(db: sandbox.Database, clock: sandbox.Clock, steps: list[list]) -> list:
    """Run each step (an operation name and its arguments) and collect what it returned or raised."""
    out = []
    for name, *args in steps:
        try:
            if name == "put":
                table, key, value, *if_version = args
                result = await db.put(table, key, value, if_version=if_version[0] if if_version else None)
            elif name == "insert":
                result = await db.insert(*args)
            elif name == "get":
                result = await db.get(*args)
            elif name == "get_for_update":
                result = await db.get(*args, for_update=True)
            elif name == "get_row":
                result = _row(await db.get_row(*args))
            elif name == "delete":
                result = await db.delete(*args)
            elif name == "scan":
                table, options = args
                result = [_row(r) for r in await db.scan(table, **options)]
            elif name == "now":
                result = clock.monotonic()
            else:
                raise AssertionError(f"unknown step {name!r}")
        except (sandbox.SimulatedFailure, sandbox.InvalidParameterError) as exc:
            result = _failure(exc)
        out.append(result)
    return out


def kv_app() -> FastAPI:
    app = FastAPI()

    @app.post("/ops")
    async def ops(
        steps: list[list],
        db: sandbox.Database = Depends(sandbox.database(DB)),
        clock: sandbox.Clock = Depends(sandbox.clock),
    ):
        return await _apply(db, clock, steps)

    @app.post("/disk-ops")
    async def disk_ops(
        steps: list[list],
        disk: sandbox.Database = Depends(sandbox.disk),
        clock: sandbox.Clock = Depends(sandbox.clock),
    ):
        return await _apply(disk, clock, steps)

    @app.post("/disk-hold")
    async def disk_hold(disk: sandbox.Database = Depends(sandbox.disk)):
        async with disk.transaction() as tx:
            await tx.put("t", "k", "uncommitted")
            await sandbox.sleep(10.0)
        return {"committed": True}

    @app.post("/copies")
    async def copies(db: sandbox.Database = Depends(sandbox.database(DB))):
        value = {"qty": 1, "tags": ["a"]}
        await db.put("t", "k", value)
        value["qty"] = 2  # changing what was stored...
        read = await db.get("t", "k")
        read["qty"] = 3  # ...or what was read...
        read["tags"].append("b")
        return await db.get("t", "k")  # ...changes nothing in the database

    @app.post("/store-bad/{kind}")
    async def store_bad(kind: str, db: sandbox.Database = Depends(sandbox.database(DB))):
        bad = {
            "set": {"ids": {1, 2}},
            "object": {"when": object()},
            "int-key": {"by_id": {7: "seven"}},
            "nan": {"price": math.nan},
        }[kind]
        try:
            await db.put("t", "k", bad)
        except sandbox.InvalidParameterError as exc:
            return _failure(exc)
        return {"stored": True}

    @app.post("/increment")
    async def increment(body: dict, db: sandbox.Database = Depends(sandbox.database(DB))):
        """Read-modify-write of a counter in one transaction, optionally locking the row first."""
        try:
            async with db.transaction(lock_timeout=body.get("lock_timeout")) as tx:
                n = await tx.get("counters", "n", 0, for_update=body.get("lock", False))
                await sandbox.sleep(body.get("pause", 0.1))
                await tx.put("counters", "n", n + 1)
        except sandbox.SimulatedFailure as exc:
            return _failure(exc)
        return {"read": n}

    @app.post("/cas-increment")
    async def cas_increment(db: sandbox.Database = Depends(sandbox.database(DB))):
        row = await db.get_row("counters", "n")
        await sandbox.sleep(0.1)
        try:
            version = await db.put("counters", "n", row.value + 1, if_version=row.version)
        except sandbox.VersionConflict as exc:
            return _failure(exc)
        return {"version": version}

    @app.post("/write-slowly")
    async def write_slowly(body: dict, db: sandbox.Database = Depends(sandbox.database(DB))):
        """Write each [key, value] in one transaction, pausing after each write."""
        try:
            async with db.transaction() as tx:
                for key, value in body["writes"]:
                    await tx.put("t", key, value)
                    await sandbox.sleep(body["pause"])
        except sandbox.SimulatedFailure as exc:
            return _failure(exc)
        return {"committed": True}

    @app.post("/write-then-fail")
    async def write_then_fail(body: dict, db: sandbox.Database = Depends(sandbox.database(DB))):
        try:
            async with db.transaction() as tx:
                for key, value in body["writes"]:
                    await tx.put("t", key, value)
                raise RuntimeError("payment declined")
        except RuntimeError:
            return {"rolled_back": True}

    return app


# --- helpers ---------------------------------------------------------------------------


def new_world(seed: int = 11, **kwargs) -> sandbox.World:
    world = sandbox.World(seed, **kwargs)
    return world


def make_world(*, replicas: int = 1, **database: float) -> sandbox.World:
    """The kv service over one database, whose counter row exists (n = 0) so that row locks have a row to lock."""
    world = new_world()
    world.add_database(DB, **database)
    world.database(DB).load("counters", {"n": 0})
    world.add_service("svc", kv_app, replicas=replicas)
    return world


def call(world: sandbox.World, path: str, body=None, *, node: str = "svc", start: float = 0.0) -> dict:
    """Add a workload client that POSTs ``body`` to ``node`` at ``start``; the dict it returns fills in as it runs."""
    out: dict = {}

    async def one_request(client: sandbox.Client) -> None:
        out["sent"] = client.now
        try:
            r = await client.http.post(f"http://{node}{path}", json=body, timeout=30.0)
        except sandbox.RequestTimeout:
            out["timed_out"] = client.now
            return
        out["status"] = r.status_code
        out["body"] = r.json()
        out["done"] = client.now

    world.add_client(f"client-{len(world.clients)}", one_request, start=start)
    return out


def ops(world: sandbox.World, steps: list, **kwargs) -> dict:
    """Have a new workload client run ``steps`` (see ``_apply``) on one database connection."""
    return call(world, "/ops", steps, **kwargs)


# --- the basic operations --------------------------------------------------------------


def test_put_then_get_returns_the_value_and_versions_count_writes():
    """put stores a value and returns the key's new version, 1 for the first write; get reads it back."""
    world = make_world()
    r = ops(world, [["put", "t", "k", {"qty": 1}], ["put", "t", "k", {"qty": 2}], ["get", "t", "k"], ["get_row", "t", "k"]])
    world.run()
    assert r["body"] == [1, 2, {"qty": 2}, {"key": "k", "value": {"qty": 2}, "version": 2}]
    assert world.database(DB).rows("t") == {"k": {"qty": 2}}


def test_get_of_a_missing_key_returns_the_default():
    """get returns None, or the given default, for a key that was never written or was deleted."""
    world = make_world()
    r = ops(world, [
        ["get", "t", "nope"], ["get", "t", "nope", 42],
        ["put", "t", "k", 1], ["delete", "t", "k"], ["get", "t", "k", "gone"], ["get_row", "t", "k"],
    ])
    world.run()
    assert r["body"] == [None, 42, 1, True, "gone", None]


def test_delete_reports_whether_the_key_existed():
    """delete removes the row and returns True, or returns False if there was nothing to delete."""
    world = make_world()
    r = ops(world, [["put", "t", "a", 1], ["put", "t", "b", 2], ["delete", "t", "a"], ["delete", "t", "a"]])
    world.run()
    assert r["body"][2:] == [True, False]
    assert world.database(DB).rows("t") == {"b": 2}
    assert world.database(DB).read("t", "a", "missing") == "missing"


def test_scan_returns_rows_in_key_order():
    """scan returns every row sorted by key, int keys before str keys, each with its version."""
    world = make_world()
    r = ops(world, [["put", "t", k, v] for k, v in [("b", 1), (10, 2), ("a", 3), (2, 4), ("b", 5)]] + [["scan", "t", {}]])
    world.run()
    assert r["body"][-1] == [
        {"key": 2, "value": 4, "version": 1},
        {"key": 10, "value": 2, "version": 1},
        {"key": "a", "value": 3, "version": 1},
        {"key": "b", "value": 5, "version": 2},
    ]
    assert list(world.database(DB).rows("t")) == [2, 10, "a", "b"]


def test_scan_with_a_prefix_returns_only_the_matching_str_keys():
    """scan(prefix=...) keeps only str keys that start with the prefix, in key order."""
    world = make_world()
    writes = [["put", "t", k, 0] for k in ["order/2", "user/1", "order/10", 5, "order/1", "orders"]]
    r = ops(world, writes + [["scan", "t", {"prefix": "order/"}]])
    world.run()
    assert [row["key"] for row in r["body"][-1]] == ["order/1", "order/10", "order/2"]


def test_scan_with_a_limit_returns_the_first_rows():
    """scan(limit=n) returns the first n rows in key order."""
    world = make_world()
    writes = [["put", "t", k, k.upper()] for k in ["d", "b", "e", "a", "c"]]
    r = ops(world, writes + [["scan", "t", {"limit": 2}], ["scan", "t", {"prefix": "c", "limit": 5}]])
    world.run()
    assert [(row["key"], row["value"]) for row in r["body"][-2]] == [("a", "A"), ("b", "B")]
    assert [row["key"] for row in r["body"][-1]] == ["c"]


def test_values_are_copied_in_and_out():
    """Changing a dict after storing it, or a dict read back, does not change the database."""
    world = make_world()
    r = call(world, "/copies")
    world.run()
    assert r["body"] == {"qty": 1, "tags": ["a"]}
    assert world.database(DB).read("t", "k") == {"qty": 1, "tags": ["a"]}


def test_inspection_returns_copies():
    """Changing what world.database(...).read or .rows returned does not change the database."""
    world = make_world()
    ops(world, [["put", "t", "k", {"qty": 1}]])
    world.run()
    store = world.database(DB)
    store.read("t", "k")["qty"] = 99
    store.rows("t")["k"]["qty"] = 99
    assert store.read("t", "k") == {"qty": 1}


@pytest.mark.parametrize(
    ("kind", "shown"),
    [("set", "{1, 2}"), ("object", "<object object at"), ("int-key", "7"), ("nan", "nan")],
)
def test_non_json_values_are_rejected_showing_the_value(kind, shown):
    """put of a value that is not plain JSON data raises InvalidParameterError that shows the bad part."""
    world = make_world()
    r = call(world, f"/store-bad/{kind}")
    world.run()
    assert r["body"]["error"] == "InvalidParameterError"
    assert shown in r["body"]["message"]
    assert world.database(DB).rows("t") == {}


@pytest.mark.parametrize(
    ("step", "shown"),
    [
        (["put", "t", True, 1], "key=True"),
        (["put", "t", 1.5, 1], "key=1.5"),
        (["put", "", "k", 1], "table=''"),
        (["scan", "t", {"limit": 0}], "limit=0"),
        (["put", "t", "k", 1, -1], "if_version=-1"),
        (["get_for_update", "t", "k"], "only lives inside a transaction"),
    ],
)
def test_bad_arguments_are_rejected_before_reaching_the_database(step, shown):
    """A bad key, table, limit or version, or for_update outside a transaction, raises InvalidParameterError saying why."""
    world = make_world()
    r = ops(world, [step])
    world.run()
    assert r["body"][0]["error"] == "InvalidParameterError"
    assert shown in r["body"][0]["message"]
    assert [e for e in world.recorder.entries("net.send") if e[3] == DB] == []


def test_insert_of_an_existing_key_raises_duplicate_key():
    """insert stores a new key, and raises DuplicateKey (leaving the row alone) if the key exists."""
    world = make_world()
    r = ops(world, [["insert", "t", "k", "first"], ["insert", "t", "k", "second"]])
    world.run()
    assert r["body"][0] == 1
    assert r["body"][1]["error"] == "DuplicateKey"
    assert "'k'" in r["body"][1]["message"]
    assert world.database(DB).read("t", "k") == "first"


def test_of_two_concurrent_inserts_of_one_key_exactly_one_succeeds():
    """Two replicas inserting the same new key at once: one gets version 1, the other DuplicateKey."""
    world = make_world(replicas=2)
    first = ops(world, [["insert", "t", "order-1", "from svc-0"]], node="svc-0")
    second = ops(world, [["insert", "t", "order-1", "from svc-1"]], node="svc-1")
    world.run()
    outcomes = [first["body"][0], second["body"][0]]
    assert outcomes.count(1) == 1
    (loser,) = [o for o in outcomes if o != 1]
    assert loser["error"] == "DuplicateKey"
    winner = "from svc-0" if first["body"][0] == 1 else "from svc-1"
    assert world.database(DB).rows("t") == {"order-1": winner}


# --- compare-and-set -------------------------------------------------------------------


def test_put_if_version_succeeds_on_the_current_version():
    """put(if_version=v) writes when the row is at version v and returns v + 1; 0 means 'absent'."""
    world = make_world()
    r = ops(world, [["put", "t", "k", "a", 0], ["put", "t", "k", "b", 1], ["get_row", "t", "k"]])
    world.run()
    assert r["body"] == [1, 2, {"key": "k", "value": "b", "version": 2}]


def test_put_if_version_raises_version_conflict_on_a_stale_version():
    """put(if_version=v) raises VersionConflict, and writes nothing, when the row has moved past v."""
    world = make_world()
    r = ops(world, [["put", "t", "k", "a"], ["put", "t", "k", "b"], ["put", "t", "k", "stale", 1], ["put", "t", "new", "x", 3]])
    world.run()
    assert [x["error"] for x in r["body"][2:]] == ["VersionConflict", "VersionConflict"]
    assert "version 2, not 1" in r["body"][2]["message"]
    assert world.database(DB).rows("t") == {"k": "b"}


def test_concurrent_compare_and_set_increments_exactly_one_wins():
    """Two increments that read the same version and then compare-and-set: one wins, one gets VersionConflict."""
    world = make_world(replicas=2)
    first = call(world, "/cas-increment", node="svc-0", start=0.1)
    second = call(world, "/cas-increment", node="svc-1", start=0.1)
    world.run()
    outcomes = sorted([first["body"], second["body"]], key=lambda b: "error" in b)
    assert outcomes[0] == {"version": 2}  # the row was loaded at version 1
    assert outcomes[1]["error"] == "VersionConflict"
    assert world.database(DB).rows("counters") == {"n": 1}


# --- transactions ----------------------------------------------------------------------


def test_a_transaction_commits_all_its_writes_at_once():
    """Writes in a transaction are invisible to other readers until the commit, then all appear together."""
    world = make_world()
    writer = call(world, "/write-slowly", {"writes": [["a", 1], ["b", 2]], "pause": 0.5})
    reader = ops(world, [["get", "t", "a", "unseen"], ["scan", "t", {}]], start=0.7)
    world.run(until=0.9)
    assert world.database(DB).rows("t") == {}
    world.run()
    assert writer["body"] == {"committed": True}
    assert reader["body"] == ["unseen", []]
    assert world.database(DB).rows("t") == {"a": 1, "b": 2}
    (commit,) = world.recorder.entries("db.commit")
    assert commit[0] >= 1.0


def test_a_transaction_reads_its_own_writes():
    """Inside a transaction, get and scan see the transaction's own uncommitted writes."""

    def app():
        a = FastAPI()

        @a.post("/")
        async def own(db: sandbox.Database = Depends(sandbox.database(DB))):
            async with db.transaction() as tx:
                await tx.put("t", "x", 1)
                return {"get": await tx.get("t", "x"), "scan": [r.key for r in await tx.scan("t")]}

        return a

    world = new_world()
    world.add_database(DB)
    world.add_service("own", app)
    r = call(world, "/", node="own")
    world.run()
    assert r["body"] == {"get": 1, "scan": ["x"]}


def test_a_transaction_rolls_back_when_its_block_raises():
    """When the `async with db.transaction()` block raises, none of its writes take effect."""
    world = make_world()
    ops(world, [["put", "t", "a", "before"]])
    r = call(world, "/write-then-fail", {"writes": [["a", "during"], ["b", "during"]]}, start=0.1)
    world.run()
    assert r["body"] == {"rolled_back": True}
    assert world.database(DB).rows("t") == {"a": "before"}
    assert len(world.recorder.entries("db.rollback")) == 1


def test_a_rolled_back_transaction_releases_its_locks():
    """After a rollback, another writer gets the row at once instead of waiting for a lock."""
    world = make_world(lock_timeout=0.5)
    call(world, "/write-then-fail", {"writes": [["a", "during"]]})
    r = ops(world, [["now"], ["put", "t", "a", "after"], ["now"]], start=0.1)
    world.run()
    assert r["body"][1] == 1
    assert r["body"][2] - r["body"][0] < 0.01
    assert world.database(DB).rows("t") == {"a": "after"}


def test_row_locks_serialize_read_modify_write_transactions():
    """Two concurrent increments that read with for_update=True both count: no update is lost."""
    world = make_world(replicas=2)
    first = call(world, "/increment", {"lock": True, "pause": 0.1}, node="svc-0")
    second = call(world, "/increment", {"lock": True, "pause": 0.1}, node="svc-1")
    world.run()
    assert sorted([first["body"]["read"], second["body"]["read"]]) == [0, 1]
    assert world.database(DB).rows("counters") == {"n": 2}


def test_without_a_row_lock_a_concurrent_update_is_lost():
    """Two concurrent increments that read without a lock both read 0: one update is lost."""
    world = make_world(replicas=2)
    first = call(world, "/increment", {"lock": False, "pause": 0.1}, node="svc-0")
    second = call(world, "/increment", {"lock": False, "pause": 0.1}, node="svc-1")
    world.run()
    assert [first["body"]["read"], second["body"]["read"]] == [0, 0]
    assert world.database(DB).rows("counters") == {"n": 1}


def test_a_lock_held_too_long_raises_lock_timeout():
    """A for_update read waiting longer than the database's lock_timeout raises LockTimeout."""
    world = make_world(lock_timeout=0.05)
    holder = call(world, "/increment", {"lock": True, "pause": 1.0})
    waiter = call(world, "/increment", {"lock": True}, start=0.1)
    world.run()
    assert holder["body"] == {"read": 0}
    assert waiter["body"]["error"] == "LockTimeout"
    assert waiter["done"] < 0.5
    assert world.database(DB).rows("counters") == {"n": 1}


def test_a_transaction_can_set_its_own_lock_timeout():
    """db.transaction(lock_timeout=...) bounds that transaction's lock waits, whatever the database's default."""
    world = make_world(lock_timeout=10.0)
    call(world, "/increment", {"lock": True, "pause": 1.0})
    waiter = call(world, "/increment", {"lock": True, "lock_timeout": 0.05}, start=0.1)
    world.run()
    assert waiter["body"]["error"] == "LockTimeout"
    assert "0.05" in waiter["body"]["message"]
    assert waiter["done"] < 0.5


def test_an_autocommit_write_waits_for_the_transaction_holding_the_row():
    """A plain put on a row locked by an open transaction waits until that transaction commits, then wins."""
    world = make_world()
    holder = call(world, "/increment", {"lock": True, "pause": 0.5})
    writer = ops(world, [["put", "counters", "n", 100], ["now"]], start=0.1)
    world.run()
    assert holder["body"] == {"read": 0}
    (commit,) = world.recorder.entries("db.commit")
    assert writer["body"][0] == 3  # loaded at 1, the holder's commit made 2
    assert writer["body"][1] > commit[0] >= 0.5
    assert world.database(DB).rows("counters") == {"n": 100}


def test_an_idle_transaction_is_aborted():
    """A transaction idle for longer than the database's idle_timeout is aborted, its writes discarded."""
    world = make_world(idle_timeout=0.5)
    r = call(world, "/write-slowly", {"writes": [["a", 1], ["b", 2]], "pause": 1.0})
    world.run()
    assert r["body"]["error"] == "TransactionAborted"
    assert "idle in transaction for 0.5s" in r["body"]["message"]
    assert world.database(DB).rows("t") == {}


# --- latency and the network -----------------------------------------------------------


def test_a_database_operation_takes_two_hops_plus_its_latency():
    """Each database call costs a network round trip plus the database's per-operation latency, in virtual time."""
    world = make_world(latency=0.02, jitter=0)
    world.network.set_defaults(latency=0.01, jitter=0, distribution="constant")
    r = ops(world, [["now"], ["get", "t", "k"], ["now"], ["put", "t", "k", 1], ["now"]])
    world.run()
    t0, _, t1, _, t2 = r["body"]
    assert t1 - t0 == pytest.approx(0.04)
    assert t2 - t1 == pytest.approx(0.04)


def test_a_transaction_pays_latency_for_every_statement():
    """begin, each statement and commit each take a round trip plus the database latency."""
    world = make_world(latency=0.02, jitter=0)
    world.network.set_defaults(latency=0.01, jitter=0, distribution="constant")
    r = call(world, "/increment", {"lock": True, "pause": 0})
    world.run()
    # client -> svc, then begin, get, put, commit (4 x 0.04), then svc -> client
    assert r["done"] - r["sent"] == pytest.approx(0.01 + 4 * 0.04 + 0.01)


def test_a_partitioned_database_makes_calls_time_out():
    """With the database partitioned from the service, a call raises RequestTimeout and writes nothing."""
    world = make_world()
    world.network.partition(["svc"], [DB])
    r = ops(world, [["now"], ["put", "t", "k", 1], ["now"]])
    world.run()
    assert r["body"][1]["error"] == "RequestTimeout"
    assert r["body"][2] - r["body"][0] == pytest.approx(sandbox.deps.DB_TIMEOUT)
    assert world.database(DB).rows("t") == {}


# --- crashes ---------------------------------------------------------------------------


def test_the_local_disk_survives_a_crash_and_restart():
    """What a replica wrote to its local disk is still there after it crashes and restarts."""
    world = make_world()
    call(world, "/disk-ops", [["put", "outbox", "m1", {"sent": False}]])
    world.run(until=1)
    world.crash("svc-0")
    world.restart("svc-0")
    r = call(world, "/disk-ops", [["get", "outbox", "m1"], ["scan", "outbox", {}]])
    world.run()
    assert r["body"][0] == {"sent": False}
    assert [row["key"] for row in r["body"][1]] == ["m1"]
    assert world.disk("svc-0").rows("outbox") == {"m1": {"sent": False}}


def test_each_replica_has_its_own_disk():
    """A replica's local disk is its own: another replica of the same service does not see it."""
    world = make_world(replicas=2)
    call(world, "/disk-ops", [["put", "t", "k", "mine"]], node="svc-0")
    r = call(world, "/disk-ops", [["get", "t", "k", "absent"]], node="svc-1", start=0.5)
    world.run()
    assert r["body"] == ["absent"]
    assert world.disk("svc-0").rows("t") == {"k": "mine"}
    assert world.disk("svc-1").rows("t") == {}


def test_database_data_survives_a_crash_of_the_database():
    """Committed rows are still there, and readable, after the database node crashes and restarts."""
    world = make_world()
    ops(world, [["put", "t", "kept", 1]])
    world.run(until=0.5)
    world.crash(DB)
    world.restart(DB)
    r = ops(world, [["get", "t", "kept"]])
    world.run()
    assert r["body"] == [1]
    assert world.database(DB).rows("t") == {"kept": 1}


def test_a_database_crash_aborts_open_transactions():
    """A transaction open when the database crashes is aborted: its next statement raises TransactionAborted."""
    world = make_world()
    r = call(world, "/write-slowly", {"writes": [["a", 1], ["b", 2]], "pause": 1.0})
    world.run(until=0.5)
    world.crash(DB)
    world.restart(DB)
    world.run()
    assert r["body"]["error"] == "TransactionAborted"
    assert "crashed" in r["body"]["message"]
    assert world.database(DB).rows("t") == {}


def test_a_crashed_clients_transaction_is_aborted_and_its_locks_released():
    """When a replica crashes mid-transaction, its writes are discarded and a waiting transaction gets the lock."""
    world = make_world(replicas=2)
    ops(world, [["put", "counters", "n", 10]], node="svc-0")
    call(world, "/increment", {"lock": True, "pause": 10.0}, node="svc-0", start=0.1)
    waiter = call(world, "/increment", {"lock": True, "pause": 0}, node="svc-1", start=0.2)
    world.run(until=0.5)
    assert "body" not in waiter
    world.crash("svc-0")
    world.run()
    assert waiter["body"] == {"read": 10}
    assert 0.5 < waiter["done"] < 0.6
    assert world.database(DB).rows("counters") == {"n": 11}
    assert len(world.recorder.entries("db.abort")) == 1


def test_a_crash_ends_the_open_transactions_on_the_replicas_own_disk():
    """A disk transaction open when its replica crashes is discarded, so the restarted replica can write the row."""
    world = make_world()
    call(world, "/disk-hold")
    world.run(until=0.5)
    world.crash("svc-0")
    world.restart("svc-0")
    r = call(world, "/disk-ops", [["put", "t", "k", "after restart"]])
    world.run()
    assert r["body"] == [1]
    assert world.disk("svc-0").rows("t") == {"k": "after restart"}


def test_a_store_can_be_loaded_directly_before_a_run():
    """Store.load writes rows with no latency, in key order, and service code then reads them."""
    world = make_world()
    store = world.database(DB)
    store.load("stock", {"lamp": {"qty": 2}, "desk": {"qty": 1}})
    assert store.rows("stock") == {"desk": {"qty": 1}, "lamp": {"qty": 2}}
    assert store.write("stock", "lamp", {"qty": 5}) == 2
    assert store.read("stock", "lamp") == {"qty": 5}
    with pytest.raises(sandbox.InvalidParameterError, match="set"):
        store.write("stock", "x", {1, 2})


def slow_db_app() -> FastAPI:
    app = FastAPI()

    @app.get("/read")
    async def read(db: sandbox.Database = Depends(sandbox.database(DB, timeout=0.05))):
        try:
            return {"value": await db.get("t", "k")}
        except sandbox.RequestTimeout as exc:
            return {"timeout": str(exc)}

    return app


def test_a_database_dependency_has_its_own_timeout():
    """sandbox.database(name, timeout=s) makes a call give up after s virtual seconds with RequestTimeout."""
    world = sandbox.World(seed=1)
    world.add_database(DB, latency=0.2, jitter=0)
    world.add_service("svc", slow_db_app)
    seen: dict = {}

    async def caller(client: sandbox.Client) -> None:
        seen.update((await client.http.get("http://svc/read")).json())

    world.add_client("c", caller)
    world.run()
    assert "no response within 0.05s" in seen["timeout"]
    with pytest.raises(sandbox.InvalidParameterError, match="timeout=0"):
        sandbox.database(DB, timeout=0)


# --- a property: the database behaves like a dict with versions ----------------------------

_ABSENT = object()

_keys = st.sampled_from(["a", "b", "c"])
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _keys, st.integers(0, 9), st.none() | st.integers(0, 4)),
        st.tuples(st.just("insert"), _keys, st.integers(0, 9)),
        st.tuples(st.just("delete"), _keys),
        st.tuples(st.just("get"), _keys),
        st.tuples(st.just("get_row"), _keys),
        st.tuples(st.just("scan")),
    ),
    max_size=25,
)


def _model_results(steps: list[tuple]) -> list:
    """What a versioned key-value table answers to ``steps``, computed with a plain dict."""
    rows: dict[str, tuple[object, int]] = {}
    out: list = []
    for name, *args in steps:
        key = args[0] if args else None
        value, version = rows.get(key, (_ABSENT, 0))
        current = 0 if value is _ABSENT else version
        if name == "put":
            new, if_version = args[1], args[2]
            if if_version is not None and if_version != current:
                out.append("VersionConflict")
            else:
                rows[key] = (new, version + 1)
                out.append(version + 1)
        elif name == "insert":
            if value is not _ABSENT:
                out.append("DuplicateKey")
            else:
                rows[key] = (args[1], version + 1)
                out.append(version + 1)
        elif name == "delete":
            rows[key] = (_ABSENT, version + 1)
            out.append(value is not _ABSENT)
        elif name == "get":
            out.append(None if value is _ABSENT else value)
        elif name == "get_row":
            out.append(None if value is _ABSENT else {"key": key, "value": value, "version": version})
        else:  # scan
            out.append([{"key": k, "value": v, "version": n} for k, (v, n) in sorted(rows.items()) if v is not _ABSENT])
    return out


@settings(max_examples=60, deadline=None)
@given(_steps)
def test_the_database_answers_like_a_versioned_dict(steps):
    """Any sequence of puts (with or without if_version), inserts, deletes, gets and scans answers as the model does."""
    requests = []
    for name, *args in steps:
        if name == "put":
            key, value, if_version = args
            requests.append(["put", "t", key, value] + ([] if if_version is None else [if_version]))
        elif name == "scan":
            requests.append(["scan", "t", {}])
        else:
            requests.append([name, "t", *args])
    with TestClient(kv_app()) as client:
        answers = client.post("/ops", json=requests).json()
    got = [a["error"] if isinstance(a, dict) and "error" in a else a for a in answers]
    assert got == _model_results(steps)


def test_for_update_on_a_missing_row_locks_nothing():
    """As in PostgreSQL, SELECT ... FOR UPDATE of a row that does not exist takes no lock: both readers see nothing."""
    world = new_world()
    world.add_database(DB)
    world.add_service("svc", kv_app, replicas=2)
    first = call(world, "/increment", {"lock": True, "pause": 0.1}, node="svc-0")
    second = call(world, "/increment", {"lock": True, "pause": 0.1}, node="svc-1")
    world.run()
    assert [first["body"]["read"], second["body"]["read"]] == [0, 0]
    assert world.database(DB).rows("counters") == {"n": 1}  # one update lost: lock a row that exists, or insert


# --- regressions found in review -------------------------------------------------------


def bank_app() -> FastAPI:
    """Endpoints that retry transactions, hold row locks, and delete with a version, each reporting what it met."""
    app = FastAPI()
    bank_db = sandbox.database(DB)

    @app.post("/pay")
    async def pay(db: sandbox.Database = Depends(bank_db)):
        """Take 10 from the balance, reusing one Transaction object; the first attempt writes a stale version."""
        tx = db.transaction()
        for attempt in range(3):
            try:
                async with tx:
                    row = await tx.get_row("acct", "a", for_update=True)
                    stale = 1 if attempt == 0 else 0
                    await tx.put("acct", "a", {"balance": row.value["balance"] - 10}, if_version=row.version + stale)
                return {"attempt": attempt}
            except sandbox.VersionConflict:
                continue
        return {"attempt": None}

    @app.post("/conflict-then-idle")
    async def conflict_then_idle(db: sandbox.Database = Depends(bank_db)):
        """Lock the row, fail a statement, then stay idle in the transaction for 2 s."""
        try:
            async with db.transaction() as tx:
                await tx.get("acct", "a", for_update=True)
                try:
                    await tx.put("acct", "a", {"balance": 0}, if_version=99)
                except sandbox.VersionConflict:
                    await sandbox.sleep(2.0)
        except sandbox.SimulatedFailure as exc:
            return _failure(exc)
        return {"committed": True}

    @app.post("/hold")
    async def hold(db: sandbox.Database = Depends(bank_db)):
        """Hold the row's lock for 0.5 s."""
        async with db.transaction() as tx:
            await tx.get("acct", "a", for_update=True)
            await sandbox.sleep(0.5)
        return {"committed": True}

    @app.post("/slow-update")
    async def slow_update(db: sandbox.Database = Depends(bank_db)):
        """Wait for the row's lock, keep it 2 s (as long as the lock timeout), then write."""
        try:
            async with db.transaction() as tx:
                row = await tx.get("acct", "a", for_update=True)
                await sandbox.sleep(2.0)
                await tx.put("acct", "a", {"balance": row["balance"] + 1})
        except sandbox.SimulatedFailure as exc:
            return _failure(exc)
        return {"committed": True}

    @app.post("/insert-in-transaction")
    async def insert_in_transaction(db: sandbox.Database = Depends(bank_db)):
        try:
            async with db.transaction() as tx:
                await tx.insert("orders", "o1", {"n": 1})
        except sandbox.SimulatedFailure as exc:
            return _failure(exc)
        return {"committed": True}

    @app.post("/delete-if-version")
    async def delete_if_version(body: dict, db: sandbox.Database = Depends(bank_db)):
        try:
            return {"deleted": await db.delete("acct", "a", if_version=body["if_version"])}
        except (sandbox.SimulatedFailure, sandbox.InvalidParameterError) as exc:
            return _failure(exc)

    return app


def bank_world(*, duplicate: float = 0.0, **database: float) -> sandbox.World:
    """The bank service over one database holding account 'a' with balance 100 (version 1)."""
    world = new_world()
    world.add_database(DB, **database)
    world.database(DB).load("acct", {"a": {"balance": 100}})
    world.add_service("bank", bank_app)
    if duplicate:
        world.network.set_links("bank", DB, duplicate=duplicate)
    return world


def test_scan_with_a_non_str_prefix_is_refused_in_service_code():
    """scan(prefix=7) raises InvalidParameterError in the endpoint, and the world and the connection go on."""
    world = make_world()
    r = ops(world, [["scan", "t", {"prefix": 7}], ["put", "t", "k", 1]])
    world.run()
    assert r["body"][0]["error"] == "InvalidParameterError"
    assert "prefix=7" in r["body"][0]["message"]
    assert r["body"][1] == 1
    assert world.errors == []


@pytest.mark.parametrize("if_version", [True, "1"])
def test_delete_if_version_must_be_an_int(if_version):
    """delete(if_version=True or "1") raises InvalidParameterError showing the value, and deletes nothing."""
    world = bank_world()
    r = call(world, "/delete-if-version", {"if_version": if_version}, node="bank")
    world.run()
    assert r["body"]["error"] == "InvalidParameterError"
    assert f"if_version={if_version!r}" in r["body"]["message"]
    assert world.database(DB).read("acct", "a") == {"balance": 100}


def test_a_reused_transaction_object_commits_its_second_block():
    """A Transaction whose first `async with` ended in VersionConflict commits when entered again."""
    world = bank_world()
    first = call(world, "/pay", node="bank")
    second = call(world, "/pay", node="bank", start=5.0)
    world.run()
    assert first["body"] == second["body"] == {"attempt": 1}
    assert world.database(DB).read("acct", "a") == {"balance": 80}
    assert len(world.recorder.entries("db.commit")) == 2
    assert world.recorder.entries("db.lock_wait") == []


def test_the_idle_timeout_aborts_a_transaction_whose_last_statement_failed():
    """A transaction idle after a failed statement is aborted after idle_timeout, releasing its lock."""
    world = bank_world(idle_timeout=0.55)
    r = call(world, "/conflict-then-idle", node="bank")
    later = call(world, "/hold", node="bank", start=0.6)  # needs the same row lock, idle for 0.5 s
    world.run()
    assert r["body"]["error"] == "TransactionAborted"
    assert "idle in transaction for 0.55s" in r["body"]["message"]
    (abort,) = world.recorder.entries("db.abort")
    assert 0.55 < abort[0] < 0.6
    assert later["body"] == {"committed": True}
    assert later["done"] < 1.2  # not held up until the idle request wakes at t=2
    assert len(world.recorder.entries("db.commit")) == 1  # only the later one


def test_a_duplicated_statement_does_not_abort_a_transaction_waiting_for_a_lock():
    """With every service-to-database message duplicated, a transaction that waited for a row lock still commits once."""
    world = bank_world(duplicate=1.0, lock_timeout=2.0)
    call(world, "/hold", node="bank")
    r = call(world, "/slow-update", node="bank", start=0.1)
    world.run()
    assert r["body"] == {"committed": True}
    assert world.recorder.entries("db.lock_wait")  # it did wait for /hold's lock
    assert world.recorder.counts()["net.duplicate"] > 0
    assert world.recorder.entries("db.abort") == []
    assert world.database(DB).read("acct", "a") == {"balance": 101}
    assert [e[3:6] for e in world.recorder.entries("db.write") if e[0] > 0] == [("acct", "a", 2)]


def test_a_duplicated_insert_in_a_transaction_commits_once():
    """With every service-to-database message duplicated, a transactional insert commits, as version 1."""
    world = bank_world(duplicate=1.0)
    r = call(world, "/insert-in-transaction", node="bank")
    world.run()
    assert r["body"] == {"committed": True}
    assert world.recorder.counts()["net.duplicate"] > 0
    assert world.database(DB).rows("orders") == {"o1": {"n": 1}}
    assert [e[3:6] for e in world.recorder.entries("db.write") if e[3] == "orders"] == [("orders", "o1", 1)]


#: Instants t at which t + d - t < d in floating point: a timer armed at t for d seconds fires "too early".
ROUNDING_HAZARDS = [(t / 1000, d) for d in (0.5, 2.0) for t in range(1, 3000) if (t / 1000 + d) - t / 1000 < d][::97]


@pytest.mark.parametrize(("start", "idle"), ROUNDING_HAZARDS)
def test_an_abandoned_transaction_is_aborted_on_time_whatever_float_rounding_does(start, idle):
    """A transaction idle from any instant is aborted idle_timeout later and its row lock freed: the timer's own
    check never misses its deadline by a rounding error (t + 2.0 - t is 1.9999999999999998 for t = 0.002)."""
    world = make_world(idle_timeout=idle, latency=0.0, jitter=0.0)
    world.network.set_defaults(latency=0.0, jitter=0, distribution="constant")
    holder = call(world, "/increment", {"lock": True, "pause": 10 * idle}, start=start)
    later = call(world, "/increment", {"lock": True, "pause": 0}, start=start + 0.001)
    world.run()
    (abort,) = world.recorder.entries("db.abort")
    assert abort[0] == pytest.approx(start + idle, abs=1e-6)
    assert holder["body"]["error"] == "TransactionAborted"
    assert later["done"] == pytest.approx(start + idle, abs=1e-6)
