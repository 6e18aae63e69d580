"""Driving ``async def`` code in virtual time.

A ``Task`` owns one coroutine (a FastAPI request, a consumer loop, a workload
client) and steps it by hand, the way an event loop does. Sandbox awaitables yield
SimPy events; the task resumes when the event fires, in virtual time. Between two
awaits the code runs without interruption, so concurrent requests interleave
exactly at the awaits, in an order fixed by the world's seed.

Each task runs in its own ``contextvars.Context`` (as an asyncio task does), so
OpenTelemetry's current span and the sandbox's current node do not leak between
interleaved requests.

Two guards make foreign awaits fail clearly instead of hanging or crashing deep
inside a library:

* while a task steps, ``asyncio``'s running loop is a stand-in whose every method
  raises ``ForeignAwaitError`` naming what to use instead (``asyncio.sleep`` ->
  ``sandbox.sleep``, sockets -> the sandbox HTTP client...);
* ``anyio`` (which FastAPI and Starlette use for cancel scopes and thread pools)
  sees a small backend of ours: cancel scopes are no-ops, "run in a worker
  thread" runs the function inline (so plain ``def`` endpoints and dependencies
  work, deterministically), and ``anyio.sleep`` is virtual.
"""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextvars import Context, ContextVar, copy_context
from typing import TYPE_CHECKING, Any

import anyio
import sniffio
from simpy.events import AllOf, Event

from .errors import ForeignAwaitError, InvalidParameterError, NotInSandboxError

if TYPE_CHECKING:
    from .nodes import Node

BACKEND_NAME = "chaosdojo"
#: How many times a task may resume at one instant of virtual time before it counts as livelocked.
SPIN_LIMIT = 100_000

# The node whose code is running in the current task (None outside the sandbox).
current_node: ContextVar[Node | None] = ContextVar("chaos_dojo_current_node", default=None)
# The task whose coroutine is running (None outside the sandbox).
current_task: ContextVar[Task | None] = ContextVar("chaos_dojo_current_task", default=None)

_get_running_loop = asyncio.events._get_running_loop
_set_running_loop = asyncio.events._set_running_loop
_get_asyncgen_hooks = sys.get_asyncgen_hooks
_set_asyncgen_hooks = sys.set_asyncgen_hooks


def _firstiter(agen: Any) -> None:
    """Async generators started by sandbox code belong to no event loop."""


def _forget(agen: Any) -> None:
    """An abandoned async generator of sandbox code (say, a lifespan or a ``yield``
    dependency of a world no one runs any more) is dropped without running its
    cleanup, as a killed process's would be. Without this hook Python would run
    that cleanup at some random garbage collection, outside virtual time.
    """


def node_or_none() -> Node | None:
    """The node running the current code, or None outside a sandbox task."""
    return current_node.get()


def require_node(what: str) -> Node:
    """The node running the current code; NotInSandboxError if there is none."""
    node = current_node.get()
    if node is None:
        raise NotInSandboxError(
            f"{what} only works inside a service, consumer or workload client running in a "
            f"sandbox World; outside one (a script, FastAPI's TestClient) there is no virtual time"
        )
    return node


class WaitEvent:
    """Awaitable wrapper of a SimPy event: ``await WaitEvent(ev)`` suspends until it fires."""

    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        self.event = event

    def __await__(self):
        if isinstance(sys.exc_info()[1], GeneratorExit):
            # The coroutine is being discarded (garbage-collected after its world stopped, or closed after a
            # crash): nothing will ever resume it, so a wait in its cleanup (an ``async with`` leaving a
            # transaction, a ``finally`` that calls a service) cannot wait. Yielding here would make Python
            # print "coroutine ignored GeneratorExit"; the cleanup ends instead, as a killed process's does.
            raise GeneratorExit
        return (yield self.event)


@types.coroutine
def wait_for(event: Event) -> Generator[Event, Any, Any]:
    """``await wait_for(event)``: as ``await WaitEvent(event)``, without making a WaitEvent (the sandbox's own
    waits, made for every message, use it)."""
    if isinstance(sys.exc_info()[1], GeneratorExit):
        raise GeneratorExit  # see WaitEvent.__await__
    return (yield event)


async def wait(event: Event) -> Any:
    """Suspend the current task until ``event`` fires; return its value or raise its error."""
    return await WaitEvent(event)


async def sleep(seconds: float) -> None:
    """Pause the calling code for ``seconds`` of virtual time; other requests run meanwhile.

    The sandbox's stand-in for ``asyncio.sleep``. Outside a world (under FastAPI's
    TestClient, say) it is ``anyio.sleep``, so the same service code runs there too.

    Example::

        await sandbox.sleep(0.5)   # back off half a (virtual) second before retrying

    Raises:
        InvalidParameterError: if ``seconds`` is negative or not a number.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise InvalidParameterError(f"sleep(seconds={seconds!r}): use a finite number of seconds >= 0")
    node = current_node.get()
    if node is None:
        await anyio.sleep(seconds)
        return
    await WaitEvent(node.world.env.timeout(seconds))


_NETWORK = "to talk to another service, use the sandbox HTTP client (`http: sandbox.HttpClient = Depends(sandbox.http_client)`), so the call crosses the simulated network"
_WAIT = "to wait, use `await sandbox.sleep(seconds)`, which waits in virtual time"
_THREAD = "threads are not simulated; call the function directly (plain `def` code runs inline)"
_CONCURRENT = "to await several things at once, use `await sandbox.gather(...)`; for a timeout, pass timeout= to the sandbox client"
_LOCK = "asyncio's locks wait on asyncio's loop: use anyio.Lock() / anyio.Semaphore(n), which work in the sandbox and under uvicorn alike (they only guard one replica's memory, not the other replicas')"

# What the caller was doing, recognised by the name of a function on the stack.
_BY_CALLER = (
    (("open_connection", "start_server", "create_connection", "getaddrinfo", "sock_"), _NETWORK),
    (("to_thread", "run_in_executor"), _THREAD),
    (("acquire", "Condition"), _LOCK),
    (("wait_for", "gather", "create_task", "ensure_future", "as_completed", "TaskGroup", "timeout"), _CONCURRENT),
    (("sleep",), _WAIT),
)


async def gather(*awaitables: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """Await several things at once; return their results in argument order.

    The sandbox's ``asyncio.gather``: each awaitable runs as its own task on the
    calling node (inheriting the caller's context, so traces nest), and they
    interleave in virtual time. If one raises and ``return_exceptions`` is False,
    the error of the first to fail is raised once all have finished; otherwise the
    exceptions take their place in the list.

    Example::

        stock, price = await sandbox.gather(
            http.get("http://inventory/stock/lamp"), http.get("http://pricing/prices/lamp")
        )
    """
    node = current_node.get()
    if node is None:
        return list(await asyncio.gather(*awaitables, return_exceptions=return_exceptions))
    order: list[Task] = []
    tasks = [Task(node, _as_coroutine(aw), f"gather[{i}]", order.append) for i, aw in enumerate(awaitables)]
    for task in tasks:
        task.start()
    pending = [t.done_event() for t in tasks if not t.finished]
    if pending:
        await WaitEvent(AllOf(node.env, pending))
    if not return_exceptions:
        for task in order:
            if task.error is not None:
                raise task.error
    return [t.error if t.error is not None else t.result for t in tasks]


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _suggestion(name: str, callers: tuple[str, ...] = ()) -> str:
    for words, advice in _BY_CALLER:
        if any(word in caller for caller in callers for word in words):
            return advice
    if any(word in name for word in ("sock", "connect", "server", "tcp", "udp", "unix", "listener")) or name in {
        "getaddrinfo",
        "getnameinfo",
    }:
        return _NETWORK
    if name in {"run_in_executor", "call_soon_threadsafe"} or "thread" in name:
        return _THREAD
    if name in {"create_task", "run_until_complete", "gather", "task_group"}:
        return _CONCURRENT
    if name in {"create_future", "call_later", "call_at", "call_soon", "time"}:
        return _WAIT
    return "use the sandbox's clients (sandbox.sleep, the HTTP client, the database, the producer) instead"


def _callers(skip: int = 2, depth: int = 8) -> tuple[str, ...]:
    frame = sys._getframe(skip)
    names = []
    while frame is not None and len(names) < depth:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return tuple(names)


class _StandInLoop:
    """The 'running event loop' while sandbox code steps: every use fails with advice."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise ForeignAwaitError(
                f"service code used asyncio's event loop (loop.{name}), which does not run in the "
                f"sandbox's virtual time: {_suggestion(name, _callers())}"
            )

        return refuse

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<chaos-dojo virtual-time loop stand-in>"


STAND_IN_LOOP = _StandInLoop()


def _describe(obj: object) -> str:
    if obj is None:
        return "a bare `yield` (asyncio.sleep(0) does this)"
    if isinstance(obj, asyncio.Future):
        return f"an asyncio Future ({obj!r})"
    return f"{type(obj).__module__}.{type(obj).__qualname__} object"


class Task:
    """One coroutine driven in virtual time on a node.

    ``on_done(task)`` is called once, when the coroutine returns or raises; the
    outcome is in ``task.result`` / ``task.error``. ``kill()`` (a crash) abandons
    the coroutine: ``on_done`` is not called and nothing it awaited resumes it.
    ``cancel(exc)`` throws ``exc`` in at the task's current await (or its next one,
    if it is running), as a cancel scope does.
    """

    __slots__ = (
        "node", "coro", "ctx", "name", "on_done", "alive", "result", "error", "finished",
        "_waiting", "_cancel_pending", "_done_event", "_instant", "_spins",
    )

    def __init__(
        self,
        node: Node,
        coro: Coroutine[Any, Any, Any],
        name: str,
        on_done: Callable[[Task], None] | None = None,
        context: Context | None = None,
    ) -> None:
        self.node = node
        self.coro = coro
        self.name = name
        self.on_done = on_done
        self.alive = True
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._waiting: Event | None = None
        self._cancel_pending: BaseException | None = None
        self._done_event: Event | None = None
        self._instant = -1.0
        self._spins = 0
        self.ctx = copy_context() if context is None else context
        self.ctx.run(_enter_task, node, self)
        node.tasks[id(self)] = self

    def start(self) -> Task:
        if not self.node.alive:  # created while its node was going down (in a dying task's finally)
            self.kill()
            return self
        if self.node.paused:
            self.node._held.append(self.start)
            return self
        self._step(None, None)
        return self

    def done_event(self) -> Event:
        """A SimPy event that fires when the coroutine has returned or raised."""
        if self._done_event is None:
            self._done_event = Event(self.node.env)
            if self.finished:
                self._done_event.succeed(self)
        return self._done_event

    def _resume(self, event: Event) -> None:
        if event is not self._waiting or not self.alive:
            if not event._ok:
                event.defused = True
            return
        if self.node.paused:  # a frozen process resumes nothing until it is thawed
            self.node._held.append(lambda: self._resume(event))
            return
        self._waiting = None
        if event._ok:
            self._step(event._value, None)
        else:
            event.defused = True
            self._step(None, event._value)

    def cancel(self, exc: BaseException) -> None:
        """Throw ``exc`` into the coroutine at its current (or next) await."""
        if not self.alive:
            return
        if self._waiting is None or self.node.paused:
            self._cancel_pending = exc
            return
        self._waiting = None
        self._step(None, exc)

    def _step(self, value: Any, error: BaseException | None) -> None:
        ctx_run = self.ctx.run
        coro = self.coro
        env = self.node.env
        while True:
            now = env.now
            if now != self._instant:
                self._instant, self._spins = now, 0
            else:
                self._spins += 1
                if self._spins > SPIN_LIMIT:
                    self._stuck()
                    return
            guarded = _guard.depth > 0
            if not guarded:  # a step outside World.run (a crash from set-up code): guard it alone
                saved = _get_running_loop()
                saved_hooks = _get_asyncgen_hooks()
                _set_running_loop(STAND_IN_LOOP)
                _set_asyncgen_hooks(_firstiter, _forget)
            try:
                if error is None:
                    yielded = ctx_run(coro.send, value)
                else:
                    yielded = ctx_run(coro.throw, error)
            except StopIteration as stop:
                self._finish(stop.value, None)
                return
            except (KeyboardInterrupt, OverBudget) as exc:  # Ctrl-C, or the run's wall-clock limit: stop the world
                self._finish(None, exc)
                raise
            except BaseException as exc:  # the coroutine raised: recorded by on_done
                self._finish(None, exc)
                return
            finally:
                if not guarded:
                    _set_running_loop(saved)
                    _set_asyncgen_hooks(*saved_hooks)
            if isinstance(yielded, Event):
                if self._cancel_pending is not None:
                    value, error, self._cancel_pending = None, self._cancel_pending, None
                    continue
                callbacks = yielded.callbacks
                if callbacks is not None:
                    self._waiting = yielded
                    callbacks.append(self._resume)
                    return
                # Already processed: resume with its outcome right away.
                if yielded._ok:
                    value, error = yielded._value, None
                else:
                    value, error = None, yielded._value
                continue
            value = None
            error = ForeignAwaitError(
                f"service code on {self.node.name!r} awaited {_describe(yielded)}, which the sandbox "
                f"does not drive in virtual time. Await only the sandbox's clients: "
                f"`await sandbox.sleep(seconds)` instead of asyncio.sleep, the sandbox HTTP client "
                f"instead of sockets or httpx, the database and producer dependencies for storage and Kafka"
            )

    def _finish(self, result: Any, error: BaseException | None) -> None:
        self.finished = True
        self.alive = False
        self.result = result
        self.error = error
        # Break the task -> context -> task cycle now, so the garbage collector need not.
        self.ctx = None  # type: ignore[assignment]
        self.coro = None  # type: ignore[assignment]
        self.node.tasks.pop(id(self), None)
        if self.on_done is not None:
            self.on_done(self)
        if self._done_event is not None:
            self._done_event.succeed(self)

    def _stuck(self) -> None:
        """End a task that keeps running without letting virtual time pass (a livelock)."""
        from .errors import LivelockError

        error = LivelockError(
            f"{self.name!r} on {self.node.name!r} resumed {SPIN_LIMIT:,} times at t={self.node.env.now:.4f} without "
            f"virtual time passing (a loop around `await sandbox.sleep(0)` or an already-finished event?); the task "
            f"was stopped. Wait for something that takes time, for instance a backoff: `await sandbox.sleep(0.1)`"
        )
        self.node.world.record_error(self.node, self.name, error)
        self.kill()

    def kill(self) -> None:
        """Abandon the coroutine as a crash would: no result, no resumption."""
        if not self.alive:
            return
        self.alive = False
        self._waiting = None
        self.node.tasks.pop(id(self), None)
        saved = _get_running_loop()
        _set_running_loop(STAND_IN_LOOP)
        try:
            self.ctx.run(self.coro.throw, ProcessKilled(f"{self.node.name} crashed"))
        except BaseException:  # noqa: BLE001 - a dying process's last words are not ours to judge
            pass
        finally:
            _set_running_loop(saved)
        try:
            self.coro.close()
        except BaseException:  # noqa: BLE001
            pass


class _Guard:
    """While a world runs: asyncio's stand-in loop, the async-generator hooks, a tuned GC.

    Installed once around ``World.run`` rather than around every step. The garbage
    collector is tuned for the run (objects that existed before it are frozen out of
    collections, young objects are collected less often) and restored afterwards:
    a simulation makes many short-lived objects and few cycles.
    """

    #: Every this many runs, a full collection before freezing (see ``__enter__``).
    FULL_COLLECTION_EVERY = 16

    def __init__(self) -> None:
        self.depth = 0
        self.runs = 0
        self._saved: tuple[Any, ...] = ()
        self._froze = False

    def __enter__(self) -> None:
        self.depth += 1
        if self.depth > 1:
            return
        self._saved = (_get_running_loop(), _get_asyncgen_hooks(), gc.get_threshold(), gc.isenabled())
        _set_running_loop(STAND_IN_LOOP)
        _set_asyncgen_hooks(_firstiter, _forget)
        self.runs += 1
        if self.runs % self.FULL_COLLECTION_EVERY == 0:
            # A world dropped since the last run is a heap of reference cycles, which freezing would hide from
            # the collector and unfreezing would hand to the oldest generation, whose collections Python rarely
            # triggers: a process running world after world (an exploration, a grader, a notebook checking
            # again) grew by some 2 MB a run. A full collection now and then frees them, at ~5 % of a run.
            gc.collect()
        # Objects frozen by someone else (explore freezes its heap before forking its workers, as CPython advises,
        # so that their collections do not copy the pages they share) stay frozen: this run freezes only if no
        # one has, and unfreezes only what it froze.
        self._froze = gc.get_freeze_count() == 0
        if self._froze:
            gc.freeze()
        threshold = gc.get_threshold()
        gc.set_threshold(max(threshold[0], 20_000), *threshold[1:])

    def __exit__(self, *exc: Any) -> None:
        self.depth -= 1
        if self.depth > 0:
            return
        loop, hooks, threshold, _enabled = self._saved
        self._saved = ()
        gc.set_threshold(*threshold)
        if self._froze:
            gc.unfreeze()
        _set_asyncgen_hooks(*hooks)
        _set_running_loop(loop)


_guard = _Guard()


def driving() -> _Guard:
    """The context in which a world's event loop runs its tasks (see ``_Guard``)."""
    return _guard


class OverBudget(BaseException):
    """Raised into running code when a run has used its wall-clock budget (see ``sandbox._wallclock``).

    A BaseException, so ``except Exception`` in service code does not swallow it; the task
    driver lets it through, and ``World.run`` ends the run and says where it stopped.
    """

    def __init__(self, message: str, node: str | None, task: str | None) -> None:
        super().__init__(message)
        self.message, self.node, self.task = message, node, task


class ProcessKilled(BaseException):
    """Thrown into a task's coroutine when its node crashes.

    A BaseException, so ``except Exception`` in service code does not swallow it:
    only ``finally`` blocks run, and any sandbox call they make fails with
    ``NodeCrashed`` without effect, since the node is already down.
    """


def _enter_task(node: Node, task: Task) -> None:
    current_node.set(node)
    current_task.set(task)
    sniffio.current_async_library_cvar.set(BACKEND_NAME)


# The anyio backend (imported for its effect: anyio finds it by name).
from . import _anyio  # noqa: E402,F401
