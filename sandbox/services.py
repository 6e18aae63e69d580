"""Services: real FastAPI apps hosted on simulated nodes.

``world.add_service("orders", create_app, replicas=2)`` makes two nodes,
``orders-0`` and ``orders-1``, each running its own app built by ``create_app()``.
Each (re)start of a replica builds the app anew, as a new process would: if the
factory is defined in a module file, the replica gets a fresh copy of that module,
so even state kept in a module-level dict is lost on a crash (a factory defined in
a notebook cell should keep its state inside the factory).

A request reaches a replica over the simulated network; the sandbox turns it into
an ASGI ``http`` scope and drives ``app(scope, receive, send)`` in virtual time.
Everything FastAPI does (routing, dependencies, validation, exception handlers,
middleware) runs as it would under uvicorn; the app's lifespan startup runs before
the replica accepts requests.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
import sys
import traceback
import typing
from collections.abc import Callable
from contextvars import copy_context
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import sniffio
from simpy.events import Event

from ._determinism import replica_globals
from ._runtime import BACKEND_NAME, Task, current_node, wait_for
from .errors import ConfigError, InvalidParameterError
from .http import HttpRequest
from .nodes import Node

if TYPE_CHECKING:
    from .world import World

AppFactory = Callable[[], Any]
ServiceName = str

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is a valid DNS-style node or service name."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith("-"):
        raise InvalidParameterError(
            f"{what} name {name!r} is not usable: use lower-case letters, digits and '-', starting "
            f"with a letter (like a Kubernetes service name), e.g. 'orders' or 'payments-db'"
        )
    return name


@dataclass(frozen=True)
class ServiceError:
    """An exception that escaped service code (the caller got a 500)."""

    time: float
    node: str
    where: str
    type: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"t={self.time:.4f} {self.node} {self.where}: {self.type}: {self.message}"


def _fresh_factory(factory: AppFactory) -> AppFactory:
    """The same factory from a freshly executed copy of its module (fresh globals)."""
    module_name = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", "")
    module = sys.modules.get(module_name or "")
    path = getattr(module, "__file__", None)
    if module is None or not path or module_name == "__main__" or "<" in qualname or not path.endswith(".py"):
        return factory
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return factory
    fresh = importlib.util.module_from_spec(spec)
    fresh.__dict__.update(replica_globals())  # this replica's own hash() salt, as a separate process has
    spec.loader.exec_module(fresh)
    obj: Any = fresh
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return factory
    return obj


class Service:
    """One named service: its factory and its replicas (``instances``)."""

    def __init__(self, world: World, name: str, factory: AppFactory, replicas: int, isolate_module: bool) -> None:
        self.world = world
        self.name = name
        self.factory = factory
        self.isolate_module = isolate_module
        self.instances = [Instance(world, self, i) for i in range(replicas)]
        self._balancers: dict[str, Any] = {}  # the seeded stream of each caller's load-balancing draws

    def __repr__(self) -> str:
        up = sum(1 for i in self.instances if i.alive)
        return f"<Service {self.name} {up}/{len(self.instances)} up>"

    def pick(self, caller: Node) -> Instance:
        """One replica for a request from ``caller``: a seeded draw among the ready ones."""
        instances = self.instances
        if len(instances) == 1:
            return instances[0]
        ready = [i for i in instances if i.ready] or instances
        rng = self._balancers.get(caller.name)
        if rng is None:
            rng = self._balancers[caller.name] = self.world.streams[f"lb/{caller.name}->{self.name}"]
        return ready[rng.randrange(len(ready))]

    def build_app(self, instance: Instance) -> Any:
        """Build the app for one replica, with ``instance`` as the current node.

        The factory (and, with ``isolate_module``, the fresh copy of its module) runs as
        code of that replica, so ``uuid4()``, ``time.time()`` and ``random`` there answer
        from the world too.
        """
        context = copy_context()
        context.run(current_node.set, instance)
        # anyio primitives made here (``anyio.Lock()`` in the factory or at import) belong to the
        # sandbox, even when an asyncio loop is running around the world (a Jupyter kernel's).
        context.run(sniffio.current_async_library_cvar.set, BACKEND_NAME)
        if self.isolate_module:
            try:
                factory = context.run(_fresh_factory, self.factory)
            except Exception as exc:
                raise ConfigError(
                    f"service {self.name!r}: running a fresh copy of the module of {self.factory!r} failed "
                    f"({type(exc).__name__}: {exc}). Each replica re-runs that module, as a new process would; "
                    f"if the module cannot run twice, pass isolate_module=False and keep state in the factory"
                ) from exc
        else:
            factory = self.factory
        app = context.run(factory)
        if not callable(app):
            raise ConfigError(
                f"the app factory of service {self.name!r} returned {app!r}; it must return the "
                f"FastAPI app, e.g. `def create_app(): app = FastAPI(); ...; return app`"
            )
        return app


class Instance(Node):
    """One replica of a service: a node running its own copy of the FastAPI app."""

    kind = "service"

    def __init__(self, world: World, service: Service, index: int) -> None:
        super().__init__(world, f"{service.name}-{index}")
        self.service = service
        self.index = index
        self.app: Any = None
        self.ready = False
        self._state: dict[str, Any] = {}
        self._lifespan: Any = None
        self.disk_store: Any = None  # the local durable disk, made on first use
        self._async_app = False  # the app's __call__ is ``async def``: ``handle_http`` drives it directly

    def on_start(self) -> None:
        self.ready = False
        self._state = {}
        if self.epoch == 0:  # the first start, while the world is built: an error is the caller's to see
            self.app = self.service.build_app(self)
        else:
            try:
                self.app = self.service.build_app(self)
            except Exception as exc:
                # As a process whose start-up fails: this replica stays down (until a later restart), the error
                # goes to the world's errors as a server's log would show it, and the run goes on.
                self.world.record_error(self, "create_app() at its restart (the replica stays down)", exc)
                self.crash()
                return
        app = self.app
        self._async_app = inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None))
        self.world.record("service.start", self.name)
        self.spawn_soon(lambda: _lifespan(self), f"{self.name} lifespan", self._lifespan_done)

    def on_crash(self) -> None:
        self.ready = False
        self.app = None
        self._state = {}
        self._lifespan = None
        if self.disk_store is not None:
            self.disk_store.abort_all(f"{self.name} crashed")

    def lose_disk(self) -> None:
        """Lose this replica's local disk (a ``DiskLoss`` fault, while it is down): it restarts with an empty one."""
        if self.disk_store is not None:
            self.world.record("disk.lost", self.name)
        self.disk_store = None
        self.__dict__.get("_clients", {}).pop("disk", None)  # the client over the old disk (sandbox.deps caches it)

    def _became_ready(self, state: dict[str, Any]) -> None:
        self._state = state
        self.ready = True
        self.world.record("service.ready", self.name)
        self.world._instance_ready(self)

    def _lifespan_done(self, task: Task) -> None:
        if task.error is not None:
            self.world.record_error(self, "lifespan", task.error)

    # --- serving ---------------------------------------------------------------------

    def handle_http(self, caller: Node, caller_epoch: int, msg_id: int, request: HttpRequest) -> None:
        world = self.world
        if not self.ready:
            world.record("http.refused", self.name, caller.name, msg_id)
            return
        path = request.path
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": unquote(path) if "%" in path else path,  # as uvicorn: decoded (a%20b is "a b"); raw_path keeps what was sent
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": request.query_string,
            "headers": request.headers,
            "server": (self.name, 80),
            "client": (caller.name, 40000 + msg_id % 20000),
            "state": self._state.copy(),
        }
        world.record("http.request", self.name, caller.name, msg_id, request.method, path)
        exchange = _Exchange(self, caller, caller_epoch, msg_id, request, scope)
        if world.metrics is not None:
            world.metrics.arrived(exchange)
        app = self.app
        # An app whose __call__ is ``async def`` (every Starlette and FastAPI app) is driven directly; any other
        # callable through ``_serve``, so that none of its code runs before its task does.
        coro = app(scope, exchange.receive, exchange.send) if self._async_app else _serve(app, scope, exchange)
        task = Task(self, coro, f"{request.method} {path}", exchange.done)
        tracing = world.tracing
        if tracing is not None:
            exchange.span = tracing.server_span(self, task, request)
        task.start()


class _Exchange:
    """One request being served: the ASGI ``receive`` and ``send`` of the app, collecting its response to
    send it back."""

    __slots__ = (
        "instance", "caller", "caller_epoch", "msg_id", "request", "status", "headers", "body", "span", "scope",
        "complete", "on_complete", "incomplete", "received",
    )

    def __init__(
        self, instance: Instance, caller: Node, caller_epoch: int, msg_id: int, request: HttpRequest,
        scope: dict[str, Any],
    ) -> None:
        self.instance = instance
        self.caller = caller
        self.caller_epoch = caller_epoch
        self.msg_id = msg_id
        self.request = request
        self.scope = scope
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.span: Any = None
        self.complete = False
        self.on_complete: Event | None = None
        self.incomplete = False  # started, then cut short: the caller sees the connection close mid-body
        self.received = False

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the whole request body at once, then (once the response is complete) a disconnect."""
        if not self.received:
            self.received = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        # As under uvicorn: later receives wait until the response is complete, then
        # report the client gone (the caller never disconnects early here).
        if not self.complete:
            finished = self.on_complete = Event(self.instance.env)
            await wait_for(finished)
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``: collect the response; answer the caller once its body is complete."""
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            _as_a_server_writes_them(self.headers)
        elif kind == "http.response.body":
            status = self.status
            # as a server does: no body for HEAD, nor for 204, 304 and 1xx (the headers stay as written)
            if self.request.method != "HEAD" and status not in _NO_BODY and not (status is not None and status < 200):
                self.body += message.get("body", b"")
            if not message.get("more_body", False) and status is not None:
                self.respond()

    def respond(self) -> None:
        """Send the response back to the caller, once: as soon as the body is complete (as a
        server does), before any background tasks of the endpoint run."""
        if self.complete:
            return
        self.complete = True
        instance = self.instance
        if self.incomplete:
            instance.world.record("http.response.incomplete", instance.name, self.caller.name, self.msg_id, self.status)
            reply = (self.status, self.headers, None)
        else:
            instance.world.record("http.response", instance.name, self.caller.name, self.msg_id, self.status)
            reply = (self.status, self.headers, self.body)
        instance.reply(self.caller, self.caller_epoch, self.msg_id, reply, "http.reply")
        if instance.world.metrics is not None:
            instance.world.metrics.answered(self)
        if self.on_complete is not None and not self.on_complete.triggered:
            self.on_complete.succeed()

    def done(self, task: Task) -> None:
        """The ASGI call returned or raised: record the error, answer if nothing was sent yet."""
        instance = self.instance
        world = instance.world
        if task.error is not None:
            world.record_error(instance, f"{self.request.method} {self.request.path}", task.error)
            if self.status is None:
                self.status, self.headers, self.body = 500, [(b"content-type", b"text/plain; charset=utf-8")], \
                    b"Internal Server Error"
            elif not self.complete:  # as uvicorn: the response had started, so the connection is closed mid-body
                self.incomplete = True
        elif self.status is None:  # as uvicorn: the error in the server's log, a plain 500 to the client
            world.record_error(instance, f"{self.request.method} {self.request.path}",
                               RuntimeError("the app returned without sending a response"))
            self.status, self.headers, self.body = 500, [(b"content-type", b"text/plain; charset=utf-8")], \
                b"Internal Server Error"
        elif not self.complete:
            world.record_error(instance, f"{self.request.method} {self.request.path}",
                               RuntimeError("the app returned without completing its response"))
            self.incomplete = True
        self.respond()
        if self.span is not None:  # as OpenTelemetry's ASGI instrumentation: the span covers the whole call
            route = getattr(self.scope.get("route"), "path", None)
            world.tracing.end_server_span(self.span, self.status, task.error, route)


def _as_a_server_writes_them(headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse response headers HTTP/1.1 cannot carry, as uvicorn's h11 does when it writes them: a name that is not
    a token, or a value with a control character or leading or trailing whitespace (an echoed path ending in a
    space, say). h11's own check raises h11.LocalProtocolError into the app, as under uvicorn; the response has
    started, so the caller sees the connection close (``IncompleteResponse``)."""
    import h11

    h11.Response(status_code=200, headers=headers)


#: Statuses whose responses carry no body (RFC 9110), whatever the app writes.
_NO_BODY = frozenset({204, 304})


async def _serve(app: Any, scope: dict[str, Any], exchange: _Exchange) -> None:
    """Drive an app that is not an ``async def`` callable (a plain function returning an awaitable)."""
    await app(scope, exchange.receive, exchange.send)


async def _lifespan(instance: Instance) -> None:
    """Run the app's lifespan startup (as uvicorn does), then mark the replica ready.

    The startup half of the app's lifespan runs here; the shutdown half never does,
    since a replica only ever stops by crashing. The lifespan context is entered
    directly (not through the ASGI lifespan protocol) so that no coroutine is left
    waiting for a shutdown message that will never come.
    """
    app = instance.app
    context = getattr(getattr(app, "router", None), "lifespan_context", None)
    if context is None:  # not a Starlette app: nothing to start (uvicorn's "auto" lifespan mode)
        instance._became_ready({})
        return
    manager = context(app)
    state = await manager.__aenter__()
    instance._lifespan = manager  # entered, never exited: a crash runs no shutdown code
    instance._became_ready(dict(state or {}))


def release_app_caches() -> None:
    """Forget what FastAPI and ``typing`` cached about apps built so far (after a world has run).

    Every replica (re)start builds its app from a fresh copy of the service's code: new endpoint
    functions, new pydantic models. FastAPI keeps per-callable facts in LRU caches of 4,096 entries
    (``fastapi.dependencies.models``) and ``typing`` keeps ``Annotated[Model, ...]`` aliases in its
    own; each entry holds a function or a class, and through it that replica's whole module. A
    process that runs thousands of worlds (an exploration, a grader, a notebook checking again and
    again) grew by up to a megabyte a run to several gigabytes. The caches only speed up building
    apps, and the next world's apps are new objects anyway: clearing them costs nothing.
    """
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "fastapi" or name.startswith("fastapi.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, functools._lru_cache_wrapper):
                value.cache_clear()
    for clear in getattr(typing, "_cleanups", ()):  # typing's own caches of subscripted aliases
        clear()
    # FastAPI (0.12x and later) also keeps a plain dict of endpoint facts by id(function): 3 KB a world that
    # nothing frees, and a stale entry once a dropped endpoint's id is reused by a new one.
    endpoint_facts = getattr(sys.modules.get("fastapi.routing"), "_endpoint_context_cache", None)
    if isinstance(endpoint_facts, dict):
        endpoint_facts.clear()


def format_error(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))
