"""Tests of misuse errors: each is a SandboxError whose message shows the bad value."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import Depends, FastAPI

import sandbox


def hello_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict:
        return {"hello": True}

    return app


def misuse_app() -> FastAPI:
    """Endpoints that misuse the sandbox from service code."""
    app = FastAPI()

    @app.get("/call-nope")
    async def call_nope(http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        await http.get("http://nope/")
        return {"called": True}

    @app.get("/catch-foreign-await")
    async def catch_foreign_await() -> dict:
        try:
            await asyncio.sleep(0.1)
        except sandbox.SandboxError as exc:
            return {"caught": type(exc).__name__, "message": str(exc)}
        return {"caught": None}

    return app


# --- seeds ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 1.5, "7", None, True])
def test_bad_seed_raises_bad_seed_error_showing_it(seed):
    """A seed that is not a non-negative int raises BadSeedError showing the seed."""
    with pytest.raises(sandbox.BadSeedError) as info:
        sandbox.World(seed=seed)
    assert repr(seed) in str(info.value)


@pytest.mark.parametrize("seed", [0, 2**70])
def test_any_non_negative_int_is_a_seed(seed):
    """Zero and very large ints are usable seeds."""
    assert sandbox.World(seed=seed).seed == seed


# --- names ------------------------------------------------------------------------------


def test_duplicate_service_name_raises_showing_the_name():
    """Adding a second service with a taken name raises DuplicateNameError showing it."""
    world = sandbox.World(seed=1)
    world.add_service("api", hello_app)
    with pytest.raises(sandbox.DuplicateNameError, match="'api'"):
        world.add_service("api", hello_app)


def test_database_cannot_take_a_service_name():
    """A database named like an existing service raises DuplicateNameError."""
    world = sandbox.World(seed=1)
    world.add_service("api", hello_app)
    with pytest.raises(sandbox.DuplicateNameError, match="'api'"):
        world.add_database("api")


def test_client_cannot_take_a_replica_node_name():
    """A client named like an existing replica node (api-0) raises DuplicateNameError."""
    world = sandbox.World(seed=1)
    world.add_service("api", hello_app)

    async def idle(client: sandbox.Client) -> None:
        return None

    with pytest.raises(sandbox.DuplicateNameError, match="'api-0'"):
        world.add_client("api-0", idle)


def test_service_whose_replica_names_are_taken_is_refused_whole():
    """A service whose replica node name is taken raises DuplicateNameError and is not added at all."""
    world = sandbox.World(seed=1)
    world.add_database("web-1")
    with pytest.raises(sandbox.DuplicateNameError, match="'web-1'"):
        world.add_service("web", hello_app, replicas=2)
    assert "web" not in world.services
    assert "web-0" not in world.nodes


@pytest.mark.parametrize("name", ["Orders", "", "9lives", "orders_db", "orders-", 7])
def test_unusable_name_raises_showing_it(name):
    """A name that is not DNS-style raises InvalidParameterError showing it."""
    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.InvalidParameterError) as info:
        world.add_service(name, hello_app)
    assert repr(name) in str(info.value)


def test_unknown_service_lookup_raises_showing_the_name():
    """world.service of a name no service has raises UnknownServiceError showing it."""
    world = sandbox.World(seed=1)
    world.add_service("api", hello_app)
    with pytest.raises(sandbox.UnknownServiceError) as info:
        world.service("nope")
    assert "'nope'" in str(info.value)
    assert "'api'" in str(info.value)  # and lists the services there are


def test_unknown_database_lookup_raises_showing_the_name():
    """world.database of a name no database has raises UnknownNameError showing it."""
    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.UnknownNameError, match="'nope-db'"):
        world.database("nope-db")


def test_http_call_to_unknown_service_from_a_client_is_recorded_as_unknown_service_error():
    """A workload client calling http://nope/ fails in its own code with UnknownServiceError, recorded in world.errors."""
    world = sandbox.World(seed=1)
    world.add_service("api", hello_app)
    caught = []

    async def caller(client: sandbox.Client) -> None:
        await client.http.get("http://nope/")

    async def catcher(client: sandbox.Client) -> None:
        try:
            await client.http.get("http://nope/")
        except sandbox.SandboxError as exc:
            caught.append(type(exc))

    world.add_client("caller", caller)
    world.add_client("catcher", catcher)
    world.run()
    [error] = world.errors
    assert (error.node, error.where, error.type) == ("caller", "workload", "UnknownServiceError")
    assert "'nope'" in error.message
    assert caught == [sandbox.UnknownServiceError]


def test_http_call_to_unknown_service_from_a_service_is_a_500():
    """Service code calling http://nope/ answers 500, with UnknownServiceError in world.errors."""
    world = sandbox.World(seed=1)
    world.add_service("api", misuse_app)
    status = []

    async def caller(client: sandbox.Client) -> None:
        status.append((await client.http.get("http://api/call-nope")).status_code)

    world.add_client("c", caller)
    world.run()
    assert status == [500]
    [error] = world.errors
    assert (error.node, error.type) == ("api-0", "UnknownServiceError")
    assert "'nope'" in error.message


# --- replicas and factories -------------------------------------------------------------


@pytest.mark.parametrize("replicas", [0, -1, 1.5, True, "2"])
def test_invalid_replicas_raise_showing_the_value(replicas):
    """A replica count that is not a whole number >= 1 raises InvalidReplicasError showing it."""
    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.InvalidReplicasError) as info:
        world.add_service("api", hello_app, replicas=replicas)
    assert f"replicas={replicas!r}" in str(info.value)


def test_app_object_instead_of_factory_raises_asking_for_a_factory():
    """Passing a FastAPI app instead of its factory raises InvalidParameterError asking for the factory."""
    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.InvalidParameterError) as info:
        world.add_service("api", hello_app())
    assert "'api'" in str(info.value)
    assert "factory" in str(info.value)
    assert "api" not in world.services


def test_app_object_instead_of_factory_message_shows_the_value():
    """The error for an app passed instead of a factory shows that app's repr, as every misuse error does."""
    app = hello_app()
    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.InvalidParameterError) as info:
        world.add_service("api", app)
    assert repr(app) in str(info.value)


def test_non_callable_factory_raises_showing_it():
    """A factory that is not callable raises InvalidParameterError showing it."""
    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.InvalidParameterError, match="'create_app'"):
        world.add_service("api", "create_app")


def test_factory_that_returns_no_app_raises_config_error():
    """A factory returning None (a forgotten `return app`) raises ConfigError showing None."""

    def forgot_return() -> None:
        FastAPI()

    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.ConfigError, match="returned None"):
        world.add_service("api", forgot_return)


def test_failing_factory_leaves_no_half_added_service():
    """After add_service fails because the factory returned no app, the name is free for a fixed factory."""

    def forgot_return() -> None:
        FastAPI()

    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.ConfigError):
        world.add_service("api", forgot_return)
    assert "api" not in world.services
    world.add_service("api", hello_app)


# --- foreign awaits ---------------------------------------------------------------------


def test_foreign_await_raises_foreign_await_error_in_service_code():
    """Awaiting asyncio.sleep in an endpoint raises ForeignAwaitError there, a SandboxError the code can see."""
    world = sandbox.World(seed=1)
    world.add_service("api", misuse_app)
    bodies = []

    async def caller(client: sandbox.Client) -> None:
        bodies.append((await client.http.get("http://api/catch-foreign-await")).json())

    world.add_client("c", caller)
    world.run()
    [body] = bodies
    assert body["caught"] == "ForeignAwaitError"
    assert "sandbox.sleep" in body["message"]


def test_foreign_await_in_a_workload_client_is_recorded():
    """A workload client awaiting asyncio.sleep fails with ForeignAwaitError, recorded in world.errors."""
    world = sandbox.World(seed=1)

    async def impatient(client: sandbox.Client) -> None:
        await asyncio.sleep(0.5)

    world.add_client("c", impatient)
    world.run()
    [error] = world.errors
    assert (error.node, error.type) == ("c", "ForeignAwaitError")
    assert "sandbox.sleep" in error.message


# --- running ----------------------------------------------------------------------------


def test_run_twice_raises_world_finished():
    """run() on a world that already ran to completion raises WorldFinishedError naming its seed."""
    world = sandbox.World(seed=7)
    world.run(limit=1.0)
    with pytest.raises(sandbox.WorldFinishedError, match="seed=7"):
        world.run()


def test_run_until_after_run_raises_world_finished():
    """run(until=...) on a world that ran to completion raises WorldFinishedError."""
    world = sandbox.World(seed=7)
    world.run(limit=1.0)
    with pytest.raises(sandbox.WorldFinishedError):
        world.run(until=5.0)


@pytest.mark.parametrize("until", [2.0, 1.5, 0])
def test_run_until_not_later_than_now_raises_showing_it(until):
    """run(until=t) with t not later than now raises WorldFinishedError showing t."""
    world = sandbox.World(seed=7)
    world.run(until=2.0)
    with pytest.raises(sandbox.WorldFinishedError) as info:
        world.run(until=until)
    assert f"until={until!r}" in str(info.value)
    assert world.now == 2.0


def test_run_until_zero_on_a_new_world_raises():
    """A new world is at t=0, so run(until=0) raises WorldFinishedError."""
    with pytest.raises(sandbox.WorldFinishedError, match="until=0"):
        sandbox.World(seed=7).run(until=0)


@pytest.mark.parametrize("until", ["5", True, float("nan"), float("inf")])
def test_run_until_not_a_number_raises_showing_it(until):
    """run(until=...) with something that is no finite number raises InvalidParameterError showing it."""
    world = sandbox.World(seed=7)
    with pytest.raises(sandbox.InvalidParameterError) as info:
        world.run(until=until)
    assert repr(until) in str(info.value)


@pytest.mark.parametrize("limit", [0, -1, float("inf")])
def test_bad_run_limit_raises_showing_it(limit):
    """run(limit=...) that is not a positive finite number raises InvalidParameterError showing it."""
    with pytest.raises(sandbox.InvalidParameterError, match=f"limit={limit!r}"):
        sandbox.World(seed=7).run(limit=limit)


# --- other bad parameters ---------------------------------------------------------------


def test_bad_database_latency_raises_showing_it():
    """add_database with a negative latency raises InvalidParameterError showing it."""
    with pytest.raises(sandbox.InvalidParameterError, match="latency=-0.5"):
        sandbox.World(seed=1).add_database("db", latency=-0.5)


def test_non_callable_workload_raises_showing_it():
    """add_client with something that is not a function raises InvalidParameterError showing it."""
    with pytest.raises(sandbox.InvalidParameterError, match="'shopper'"):
        sandbox.World(seed=1).add_client("c", "shopper")


def test_negative_client_start_raises_showing_it():
    """add_client with a negative start raises InvalidParameterError showing it."""

    async def idle(client: sandbox.Client) -> None:
        return None

    with pytest.raises(sandbox.InvalidParameterError, match="start=-1"):
        sandbox.World(seed=1).add_client("c", idle, start=-1)


def test_negative_sleep_raises_showing_it():
    """sandbox.sleep with a negative duration raises InvalidParameterError showing it."""
    with pytest.raises(sandbox.InvalidParameterError, match="seconds=-1"):
        asyncio.run(sandbox.sleep(-1))


@pytest.mark.parametrize("url", ["https://api/", "api/", "ftp://api/"])
def test_bad_url_raises_showing_it(url):
    """An HTTP call to a URL not of the form http://SERVICE/path raises InvalidParameterError showing it."""
    world = sandbox.World(seed=1)
    world.add_service("api", hello_app)
    caught = []

    async def caller(client: sandbox.Client) -> None:
        try:
            await client.http.get(url)
        except sandbox.InvalidParameterError as exc:
            caught.append(str(exc))

    world.add_client("c", caller)
    world.run()
    assert len(caught) == 1 and repr(url) in caught[0]


@pytest.mark.parametrize("timeout", [0, -1, "5", True])
def test_bad_http_timeout_raises_showing_it(timeout):
    """An HTTP call with a timeout that is no positive number raises InvalidParameterError showing it."""
    world = sandbox.World(seed=1)
    world.add_service("api", hello_app)
    caught = []

    async def caller(client: sandbox.Client) -> None:
        try:
            await client.http.get("http://api/", timeout=timeout)
        except sandbox.InvalidParameterError as exc:
            caught.append(str(exc))

    world.add_client("c", caller)
    world.run()
    assert len(caught) == 1 and f"timeout={timeout!r}" in caught[0]


# --- the hierarchy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "parent"),
    [
        (sandbox.ConfigError, sandbox.SandboxError),
        (sandbox.BadSeedError, sandbox.ConfigError),
        (sandbox.DuplicateNameError, sandbox.ConfigError),
        (sandbox.UnknownNameError, sandbox.ConfigError),
        (sandbox.UnknownServiceError, sandbox.UnknownNameError),
        (sandbox.InvalidReplicasError, sandbox.ConfigError),
        (sandbox.InvalidParameterError, sandbox.ConfigError),
        (sandbox.WorldFinishedError, sandbox.SandboxError),
        (sandbox.ForeignAwaitError, sandbox.SandboxError),
        (sandbox.NotInSandboxError, sandbox.SandboxError),
        (sandbox.RequestTimeout, sandbox.SimulatedFailure),
        (sandbox.RequestTimeout, httpx.TimeoutException),
        (sandbox.NodeCrashed, sandbox.SimulatedFailure),
        (sandbox.LockTimeout, sandbox.SimulatedFailure),
        (sandbox.VersionConflict, sandbox.SimulatedFailure),
        (sandbox.DuplicateKey, sandbox.SimulatedFailure),
        (sandbox.TransactionAborted, sandbox.SimulatedFailure),
    ],
)
def test_error_hierarchy(error, parent):
    """Each error sits under the parent the errors module's docstring draws."""
    assert issubclass(error, parent)


@pytest.mark.parametrize(
    "failure",
    [
        sandbox.SimulatedFailure,
        sandbox.RequestTimeout,
        sandbox.NodeCrashed,
        sandbox.LockTimeout,
        sandbox.VersionConflict,
        sandbox.DuplicateKey,
        sandbox.TransactionAborted,
    ],
)
def test_simulated_failures_are_not_sandbox_errors(failure):
    """A simulated failure is something service code must handle, not a misuse: it is no SandboxError."""
    assert not issubclass(failure, sandbox.SandboxError)


def test_misuse_errors_and_failures_share_only_exception():
    """SandboxError and SimulatedFailure are separate roots directly under Exception."""
    assert sandbox.SandboxError.__bases__ == (Exception,)
    assert sandbox.SimulatedFailure.__bases__ == (Exception,)


def test_a_real_timeout_is_not_caught_as_a_sandbox_error():
    """A RequestTimeout raised by a timed-out call passes through `except SandboxError`."""
    world = sandbox.World(seed=1)
    world.add_service("api", hello_app)
    world.crash("api")
    seen = []

    async def caller(client: sandbox.Client) -> None:
        try:
            try:
                await client.http.get("http://api/", timeout=0.5)
            except sandbox.SandboxError:
                seen.append("caught as SandboxError")
        except sandbox.SimulatedFailure as exc:
            seen.append(type(exc).__name__)

    world.add_client("c", caller)
    world.run()
    assert seen == ["RequestTimeout"]


# --- regressions found in review -------------------------------------------------------


def timeouts_app() -> FastAPI:
    """One endpoint that passes a number of seconds to the producer, the HTTP client, a transaction or sandbox.sleep."""
    app = FastAPI()

    @app.post("/wait/{what}/{seconds}")
    async def wait(
        what: str,
        seconds: float,
        producer: sandbox.Producer = Depends(sandbox.producer),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        db: sandbox.Database = Depends(sandbox.database("db")),
    ) -> dict:
        try:
            if what == "send":
                await producer.send("orders", {"n": 1}, timeout=seconds)
            elif what == "http":
                await http.get("http://api/", timeout=seconds)
            elif what == "lock":
                async with db.transaction(lock_timeout=seconds) as tx:
                    await tx.get("t", "k", for_update=True)
            else:
                await sandbox.sleep(seconds)
        except sandbox.InvalidParameterError as exc:
            return {"caught": type(exc).__name__, "message": str(exc)}
        return {"caught": None}

    @app.get("/")
    async def hello() -> dict:
        return {"hello": True}

    return app


@pytest.mark.parametrize("seconds", ["nan", "inf", "-1"])
@pytest.mark.parametrize(
    ("what", "name"),
    [("send", "timeout"), ("http", "timeout"), ("lock", "lock_timeout"), ("sleep", "sleep(seconds")],
)
def test_timeouts_that_are_no_finite_positive_number_are_refused(what, name, seconds):
    """A NaN, infinite or negative producer, HTTP or lock timeout or sleep raises InvalidParameterError showing it."""
    world = sandbox.World(seed=1)
    world.add_database("db")
    world.add_service("api", timeouts_app)
    bodies = []

    async def caller(client: sandbox.Client) -> None:
        bodies.append((await client.http.post(f"http://api/wait/{what}/{seconds}")).json())

    world.add_client("c", caller)
    world.run()
    [body] = bodies
    assert body["caught"] == "InvalidParameterError"
    assert f"{name}={float(seconds)!r}" in body["message"]
    assert "finite" in body["message"]


def test_plain_def_workload_raises_asking_for_async_def():
    """add_client with a plain `def` function raises InvalidParameterError showing it and asking for `async def`."""

    def shopper(client: sandbox.Client) -> None:  # forgot `async`
        return None

    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.InvalidParameterError) as info:
        world.add_client("c", shopper)
    assert "async def" in str(info.value)
    assert repr(shopper) in str(info.value)
    assert "c" not in world.clients
