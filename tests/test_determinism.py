"""Tests that a world's run is a function of its seed: same seed, same run, in any process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import svc_instance_id
from fastapi import Depends, FastAPI, HTTPException
from hypothesis import given, settings
from hypothesis import strategies as st

import sandbox

TESTS_DIR = Path(__file__).resolve().parent


# --- the scenario: services, a database, retries, faults ---------------------------------


def orders_app() -> FastAPI:
    app = FastAPI()

    @app.post("/orders/{order_id}", status_code=201)
    async def place(
        order_id: str,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> dict:
        stock = await db.get("stock", "lamp", 3)
        if stock < 1:
            raise HTTPException(409, "sold out")
        await db.put("stock", "lamp", stock - 1)
        try:
            charge = await http.post("http://payments/charges", json={"order": order_id}, timeout=0.2)
        except sandbox.RequestTimeout:
            raise HTTPException(504, "payments did not answer") from None
        await db.put("orders", order_id, {"charge": charge.json()})
        return {"order": order_id}

    return app


def payments_app() -> FastAPI:
    app = FastAPI()
    charged = {"n": 0}

    @app.post("/charges", status_code=201)
    async def charge(body: dict) -> dict:
        charged["n"] += 1
        await sandbox.sleep(0.01)
        return {"charge": charged["n"], "order": body["order"]}

    return app


def scenario(seed: int, *, faults: bool = True, tracing: bool = False) -> sandbox.World:
    """Shoppers placing orders with retries, over a lossy, jittery network, with a crash."""
    world = sandbox.World(seed=seed, tracing=tracing)
    if faults:
        world.network.set_defaults(latency=0.005, jitter=0.002, distribution="normal", loss=0.2, duplicate=0.05)
    world.add_database("orders-db")
    world.add_service("orders", orders_app, replicas=2)
    world.add_service("payments", payments_app)

    async def shopper(client: sandbox.Client) -> None:
        for i in range(3):
            order_id = f"{client.name}-{i}"
            async with client.operation("place", order_id) as op:
                for _attempt in range(3):
                    try:
                        r = await client.http.post(f"http://orders/orders/{order_id}", timeout=0.5)
                    except sandbox.RequestTimeout:
                        await client.sleep(client.random.uniform(0.05, 0.2))
                        continue
                    op.ok(r.json()) if r.status_code == 201 else op.fail(r.json())
                    break
                else:
                    op.info(error="gave up")
            await client.sleep(client.random.expovariate(5.0))

    for n in range(4):
        world.add_client(f"shopper-{n}", shopper, start=0.01 * n)
    world.node("orders-1").clock.drift = 1e-3
    world.run(until=0.4)
    if faults:
        world.crash("orders-0")
        world.run(until=0.9)
        world.restart("orders-0")
    world.run(limit=60.0)
    return world


def fingerprint_in_subprocess(seed: int, hash_seed: str) -> str:
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "import test_determinism\n"
        f"print(test_determinism.scenario({seed}).fingerprint())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=TESTS_DIR.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


# --- tests ------------------------------------------------------------------------------


def test_scenario_exercises_faults():
    """The scenario meets lost and duplicated messages, timeouts, a crash, and completes some orders."""
    world = scenario(seed=5)
    counts = world.recorder.counts()
    assert counts.get("net.drop", 0) > 0
    assert counts.get("net.duplicate", 0) > 0
    assert counts.get("node.crash", 0) == 1
    assert any(op.type == "ok" for op in world.history)


def test_same_seed_gives_the_same_fingerprint_twice_in_one_process():
    """Two runs with the same seed hash to the same fingerprint."""
    assert scenario(seed=5).fingerprint() == scenario(seed=5).fingerprint()


def test_same_seed_gives_the_same_event_log_history_and_data():
    """Two runs with the same seed log the same events, record the same history and store the same rows."""
    a, b = scenario(seed=5), scenario(seed=5)
    assert a.recorder.entries() == b.recorder.entries()
    assert a.history.to_dicts() == b.history.to_dicts()
    assert a.database("orders-db").rows("orders") == b.database("orders-db").rows("orders")
    assert a.now == b.now


def test_same_seed_gives_the_same_spans_with_tracing():
    """With tracing on, two runs with the same seed export the same OTLP JSON (ids and timestamps included)."""
    a, b = scenario(seed=5, tracing=True), scenario(seed=5, tracing=True)
    assert len(a.spans()) > 0
    assert a.tracing.otlp_json() == b.tracing.otlp_json()
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("hash_seed", ["0", "123"])
def test_same_seed_gives_the_same_fingerprint_in_a_fresh_process(hash_seed):
    """A fresh interpreter with another PYTHONHASHSEED computes the same fingerprint for the same seed."""
    assert fingerprint_in_subprocess(5, hash_seed) == scenario(seed=5).fingerprint()


def test_different_seeds_under_faults_give_different_fingerprints():
    """Under loss and jitter, five seeds give five different runs."""
    prints = {scenario(seed=s).fingerprint() for s in range(1, 6)}
    assert len(prints) == 5


def test_fingerprint_is_a_sha256_hex_digest_of_the_log_so_far():
    """The fingerprint is 64 hex digits and changes as the log grows."""
    world = sandbox.World(seed=1)
    world.add_service("payments", payments_app)

    async def caller(client: sandbox.Client) -> None:
        await client.sleep(1.0)
        await client.http.post("http://payments/charges", json={"order": "x"})

    world.add_client("c", caller)
    world.run(until=0.1)  # the replica starts at t=0
    early = world.fingerprint()
    world.run(until=0.5)
    assert world.fingerprint() == early  # nothing happened between 0.1 and 0.5
    world.run()
    late = world.fingerprint()
    assert len(late) == 64 and int(late, 16) >= 0
    assert late != early


# --- process-wide time, uuid and random inside service code --------------------------------


def stdlib_app() -> FastAPI:
    import random
    import time
    import uuid

    app = FastAPI()

    @app.get("/draws")
    async def draws():
        return {"time": time.time(), "mono": time.monotonic(), "uuid": str(uuid.uuid4()), "random": random.random()}

    @app.get("/nap")
    async def nap():
        time.sleep(0.1)

    return app


def _draws(seed: int) -> tuple[dict, list[sandbox.ServiceError]]:
    world = sandbox.World(seed=seed)
    world.add_service("std", stdlib_app)
    seen: dict = {}

    async def caller(client: sandbox.Client) -> None:
        await client.sleep(2.0)
        seen.update((await client.http.get("http://std/draws")).json())
        await client.http.get("http://std/nap")

    world.add_client("c", caller)
    world.node("std").clock.offset = 30.0
    world.run()
    return seen, world.errors


def test_time_uuid_and_random_in_service_code_answer_from_the_world():
    """time.time() reads the node's clock, and uuid4() and random.random() come from the seed."""
    first, _ = _draws(5)
    again, _ = _draws(5)
    other, _ = _draws(6)
    assert first == again
    assert first["uuid"] != other["uuid"] and first["random"] != other["random"]
    assert abs(first["time"] - (sandbox.clocks.EPOCH + 30.0 + 2.0)) < 0.01
    assert 2.0 < first["mono"] < 2.01


def test_time_sleep_in_service_code_is_refused_with_advice():
    """time.sleep() in service code fails with ForeignAwaitError pointing at sandbox.sleep."""
    _, errors = _draws(5)
    assert [e.type for e in errors] == ["ForeignAwaitError"]
    assert "await sandbox.sleep(0.1)" in errors[0].message


def blocking_network_app() -> FastAPI:
    import socket
    import urllib.request

    app = FastAPI()

    @app.get("/urllib")
    async def with_urllib():
        return urllib.request.urlopen("http://payments/charges", timeout=1).read()

    @app.get("/socket")
    async def with_socket():
        with socket.socket() as s:
            s.connect(("127.0.0.1", 9))

    @app.get("/dns")
    async def with_dns():
        return socket.gethostbyname("payments")

    return app


def test_blocking_network_calls_in_service_code_are_refused_with_advice():
    """urllib, a blocking socket and a DNS lookup in service code would leave the simulated network and block the
    real thread: each is a 500 and a ForeignAwaitError in the world's errors naming the call and the sandbox HTTP
    client (before, they reached for the real network: a hang or a real connection error)."""
    world = sandbox.World(seed=1)
    world.add_service("api", blocking_network_app)
    statuses = []

    async def caller(client: sandbox.Client) -> None:
        for path in ("/urllib", "/socket", "/dns"):
            statuses.append((await client.http.get(f"http://api{path}", timeout=1.0)).status_code)

    world.add_client("caller", caller)
    world.run()
    assert statuses == [500, 500, 500]
    assert [e.type for e in world.errors] == ["ForeignAwaitError"] * 3
    calls = [e.message.split(" in service code")[0] for e in world.errors]
    assert calls == ["socket.create_connection(('payments', 80))", "socket.connect(('127.0.0.1', 9))",
                     "socket.gethostbyname('payments')"]
    assert all("sandbox.HttpClient = Depends(sandbox.http_client)" in e.message for e in world.errors)


def test_time_uuid_and_random_are_untouched_outside_sandbox_code():
    """Outside a sandbox task the stdlib functions are the real ones."""
    import random
    import time
    import uuid

    assert abs(time.time() - time.time_ns() / 1e9) < 1.0 and time.time() > 1.7e9
    assert uuid.uuid4() != uuid.uuid4()
    random.seed(1)
    a = random.random()
    random.seed(1)
    assert random.random() == a
    import socket

    assert socket.getaddrinfo("127.0.0.1", 80)  # the real one, outside a world


# --- a property: any configuration replays ------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    loss=st.floats(0.0, 0.3),
    duplicate=st.floats(0.0, 0.3),
    reorder=st.floats(0.0, 0.3),
    distribution=st.sampled_from(["normal", "uniform", "exponential", "pareto"]),
    replicas=st.integers(1, 3),
    crash_at=st.none() | st.floats(0.0, 0.5),
)
def test_any_faulty_configuration_replays_to_the_same_fingerprint(seed, loss, duplicate, reorder, distribution, replicas, crash_at):
    """Whatever the seed, link faults, replicas and crash time, building and running the world twice gives one fingerprint."""

    def run_once() -> tuple[str, list]:
        world = sandbox.World(seed=seed)
        world.network.set_defaults(loss=loss, duplicate=duplicate, reorder=reorder, distribution=distribution)
        world.add_database("orders-db")
        # isolate_module=False: a fresh copy of this test module would re-run @given inside this test.
        world.add_service("orders", orders_app, replicas=replicas, isolate_module=False)
        world.add_service("payments", payments_app, isolate_module=False)

        async def shopper(client: sandbox.Client) -> None:
            for i in range(3):
                async with client.operation("place", i) as op:
                    r = await client.http.post(f"http://orders/orders/{client.name}-{i}", timeout=0.3)
                    op.ok(r.status_code)

        for n in range(3):
            world.add_client(f"shopper-{n}", shopper)
        if crash_at is not None:
            world.run(until=crash_at + 0.001)
            world.crash("orders-0")
        world.run(limit=30.0)
        return world.fingerprint(), world.history.to_dicts()

    assert run_once() == run_once()


# --- regressions found in review -------------------------------------------------------


def _instance_id_run(seed: int) -> tuple[str, dict]:
    """One order placed with svc_instance_id's service; the fingerprint and the stored orders."""
    world = sandbox.World(seed=seed)
    world.add_database("orders-db")
    world.add_service("orders", svc_instance_id.create_app)

    async def buyer(client: sandbox.Client) -> None:
        await client.http.post("http://orders/orders/1")

    world.add_client("buyer", buyer)
    world.run()
    return world.fingerprint(), world.database("orders-db").rows("orders")


def test_uuid_time_and_random_at_module_and_factory_level_come_from_the_seed():
    """uuid4() at a service module's top level and time()/random() in its factory are seeded: same seed, same run."""
    first, again, other = _instance_id_run(7), _instance_id_run(7), _instance_id_run(8)
    assert first == again
    [(key, value)] = first[1].items()
    assert value["started"] == sandbox.clocks.EPOCH  # the replica's clock at t=0, not the wall clock
    [(other_key, other_value)] = other[1].items()
    assert other_key != key and other_value["jitter"] != value["jitter"]


def tokens_app() -> FastAPI:
    app = FastAPI()

    @app.post("/tokens")
    async def store(body: dict, db: sandbox.Database = Depends(sandbox.database("tokens-db"))) -> dict:
        await db.put("tokens", "t1", body)
        return {}

    return app


def _token_run(token: str, *, store: bool) -> str:
    """The fingerprint of a seed-7 run whose client stores ``token`` in the database, or only records it in the history."""
    world = sandbox.World(seed=7)
    world.add_database("tokens-db")
    world.add_service("tokens", tokens_app)

    async def client(client: sandbox.Client) -> None:
        async with client.operation("draw") as op:
            await client.http.post("http://tokens/tokens", json={"token": token if store else "00000000"})
            op.ok(None if store else token)

    world.add_client("c", client)
    world.run()
    return world.fingerprint()


def test_runs_that_store_different_values_have_different_fingerprints():
    """Two runs of one seed that differ only in the value they store get different fingerprints."""
    assert _token_run("be16e37c", store=True) != _token_run("059d6195", store=True)
    assert _token_run("be16e37c", store=True) == _token_run("be16e37c", store=True)


def test_runs_that_record_different_history_values_have_different_fingerprints():
    """Two runs of one seed that differ only in a value recorded in the history get different fingerprints."""
    assert _token_run("be16e37c", store=False) != _token_run("059d6195", store=False)
    assert _token_run("be16e37c", store=False) == _token_run("be16e37c", store=False)


# --- hash(): salted per replica process, as separate interpreters are --------------------


def hashes_world(seed: int) -> list[dict]:
    """Two replicas of svc_hashing asked for their hashes, then replica 0 killed, restarted and asked again."""
    import svc_hashing

    from sandbox.faults import Kill, Schedule

    world = sandbox.World(seed=seed)
    world.add_service("hasher", svc_hashing.create_app, replicas=2)
    seen: list[dict] = []

    async def asker(client: sandbox.Client) -> None:
        for at in (0.1, 0.2, 1.0):
            await client.sleep(at - client.now)
            for replica in ("hasher-0", "hasher-1"):
                seen.append((await client.http.get(f"http://{replica}/hashes", timeout=1.0)).json())

    world.add_client("asker", asker)
    world.inject(Schedule([Kill("hasher-0", start=0.5, restart_after=0.2)]))
    world.run()
    return seen


def test_each_replica_and_each_restart_hashes_strings_with_its_own_salt():
    """hash() of a string or tuple differs between the two replicas and before and after a restart (a new
    process), is stable within one incarnation, and ints hash as the builtin does (unsalted, as in CPython)."""
    first0, first1, again0, again1, restarted0, later1 = hashes_world(3)
    assert first0["str"] == first0["again"] == again0["str"] == first0["at_import"]
    assert len({first0["str"], first1["str"], restarted0["str"]}) == 3
    assert len({first0["tuple"], first1["tuple"], restarted0["tuple"]}) == 3
    assert first1["str"] == later1["str"]
    assert {r["int"] for r in (first0, first1, restarted0)} == {hash(12345)}
    assert first0["str"] != hash("ord-1")  # not this interpreter's own salt either


def test_the_replicas_hash_salts_come_from_the_seed():
    """The same seed gives every replica the same hash values in a fresh interpreter with another
    PYTHONHASHSEED; another seed gives other values."""
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "import test_determinism\n"
        "print(json.dumps(test_determinism.hashes_world(3)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "77"},
                          cwd=TESTS_DIR.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    assert json.loads(done.stdout.strip().splitlines()[-1]) == hashes_world(3)
    assert hashes_world(4)[0]["str"] != hashes_world(3)[0]["str"]


# --- one hash seed for every process of the course ---------------------------------------------------------------------

SET_ORDER_WORLD = (
    "import sys, sandbox\n"
    "from fastapi import FastAPI\n"
    "def create_app():\n"
    "    app = FastAPI()\n"
    "    @app.get('/skus')\n"
    "    async def skus():\n"
    "        return {'order': [s for s in {'lamp', 'desk', 'chair', 'sofa', 'rug', 'shelf', 'bed'}]}\n"
    "    return app\n"
    "world = sandbox.World(seed=5)\n"
    "world.add_service('shop', create_app)\n"
    "async def shopper(client):\n"
    "    async with client.operation('list', None) as op:\n"
    "        op.ok((await client.http.get('http://shop/skus')).json()['order'])\n"
    "world.add_client('shopper', shopper)\n"
    "world.run()\n"
    "print(world.fingerprint(), sandbox.hashing_is_fixed())\n"
)


def fingerprint_in_a_process(env: dict[str, str]) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", SET_ORDER_WORLD], env=env, capture_output=True, text=True,
                          timeout=120, cwd=TESTS_DIR)
    assert done.returncode == 0, done.stderr
    fingerprint, fixed = done.stdout.split()
    return fingerprint, fixed


def test_service_code_iterating_a_set_of_strings_replays_alike_in_every_process_the_course_starts():
    """A service that lists a set of strings gives a fingerprint that follows the process's hash seed (the test
    shows it: two seeds, two fingerprints); the processes the course starts (the JupyterLab of `dojo course` and
    its kernels, Binder's, the grader's isolated ones) all run with PYTHONHASHSEED=0, so a learner's run and the
    grader's agree, whatever the seed of the shell they were started from."""
    from autograder.isolation import default_env
    from sandbox.cli import course_environment

    base = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    salted = {fingerprint_in_a_process({**base, "PYTHONHASHSEED": seed}) for seed in ("1", "2", "3")}
    assert len(salted) > 1 and {fixed for _, fixed in salted} == {"False"}
    learner = {}
    for shell_seed in ("1", "2"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PYTHONHASHSEED", shell_seed)
            learner[shell_seed] = fingerprint_in_a_process(course_environment())
    grader = fingerprint_in_a_process({**base, **{k: v for k, v in default_env(TESTS_DIR).items() if k != "PATH"}})
    assert learner["1"] == learner["2"] == grader
    assert grader[1] == "True"
    binder = subprocess.run([str(TESTS_DIR.parent / "binder" / "start"), sys.executable, "-c", SET_ORDER_WORLD],
                            env={**base, "PYTHONHASHSEED": "7"}, capture_output=True, text=True, timeout=120,
                            cwd=TESTS_DIR)
    assert binder.returncode == 0, binder.stderr
    assert tuple(binder.stdout.split()) == grader


def test_explore_warns_once_when_its_process_salts_hashes_at_random():
    """A counterexample found in a process not started with PYTHONHASHSEED=0 comes with a HashSeedWarning saying
    what to do (sort the set, or start Jupyter with `dojo course`); none in a process that is."""
    code = (
        "import dataclasses, warnings, sandbox\n"
        "from sandbox.examples.order_system import scenario\n"
        "from sandbox.checkers import stock_never_negative\n"
        "from sandbox.explore import explore\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(2):\n"
        "        five = dataclasses.replace(scenario, workload={'clients': 5, 'orders_per_client': 5})\n"
        "        found = explore(five, [stock_never_negative()],\n"
        "                        seeds=1, workers=1, shrink=False)\n"
        "        assert found.found\n"
        "print([str(w.message) for w in caught if w.category is sandbox.HashSeedWarning])\n"
    )
    base = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    salted = subprocess.run([sys.executable, "-c", code], env={**base, "PYTHONHASHSEED": "3"}, capture_output=True,
                            text=True, timeout=300, cwd=TESTS_DIR)
    fixed = subprocess.run([sys.executable, "-c", code], env={**base, "PYTHONHASHSEED": "0"}, capture_output=True,
                           text=True, timeout=300, cwd=TESTS_DIR)
    assert salted.returncode == 0 and fixed.returncode == 0, (salted.stderr, fixed.stderr)
    (message,) = eval(salted.stdout.strip().splitlines()[-1])
    assert "PYTHONHASHSEED=0" in message and "sorted(" in message and "dojo course" in message
    assert eval(fixed.stdout.strip().splitlines()[-1]) == []
