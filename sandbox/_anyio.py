"""anyio's view of sandbox code: a small backend that runs in virtual time.

FastAPI and Starlette use anyio for cancel scopes (around ``yield`` dependencies),
thread pools (for plain ``def`` endpoints and dependencies), events, memory
streams and task groups (``@app.middleware("http")``). anyio finds a backend by
the name sniffio reports, as the module ``anyio._backends._<name>`` with a
``backend_class``; each sandbox task reports ``chaosdojo``, so anyio calls the
``SandboxBackend`` below:

* "run in a worker thread" runs the function inline, so ``def`` code works and
  stays deterministic;
* ``anyio.sleep`` is virtual; events, locks, semaphores and task groups are
  sandbox tasks and SimPy events; cancel scopes cancel (deadlines included);
* anything else (sockets, subprocesses, signals) fails with ``ForeignAwaitError``.
"""

from __future__ import annotations

import math
import sys
import types
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import AsyncBackend
from simpy.events import AllOf, Event

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from ._runtime import (
    BACKEND_NAME,
    Task,
    WaitEvent,
    _suggestion,
    current_node,
    current_task,
    require_node,
    sleep,
)
from ._vtime import call_at
from .errors import ForeignAwaitError


class Cancelled(BaseException):
    """Raised inside a sandbox task whose cancel scope was cancelled."""


class _CancelScope(anyio.CancelScope):
    """A cancel scope: cancelling it throws ``Cancelled`` into the task that entered it (at
    its current or next await inside the scope) and into a task group's child tasks."""

    __slots__ = ("_deadline", "_shield", "_cancel_called", "_group", "_host", "_exc", "_caught")

    def __new__(cls, *args: Any, **kwargs: Any) -> _CancelScope:
        return object.__new__(cls)

    def __init__(self, deadline: float = math.inf, shield: bool = False) -> None:
        self._deadline = deadline
        self._shield = shield
        self._cancel_called = False
        self._group: _TaskGroup | None = None
        self._host: Task | None = None
        self._exc: Cancelled | None = None
        self._caught = False

    def __enter__(self) -> _CancelScope:
        self._host = current_task.get()
        if self._cancel_called:
            self._deliver()
        else:
            self._arm()
        return self

    def _arm(self) -> None:
        """Cancel this scope at its deadline (anyio.fail_after, move_on_after), in virtual time."""
        host = self._host
        if host is None or self._deadline == math.inf:
            return
        env = host.node.env
        deadline = self._deadline

        def expire() -> None:
            if self._host is not None and self._deadline == deadline:
                self.cancel()

        call_at(env, deadline, expire)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self._leave()
        if exc is not None and exc is self._exc:
            self._caught = True
            return True
        return False

    def _leave(self) -> None:
        host, self._host = self._host, None
        if host is not None and self._exc is not None and host._cancel_pending is self._exc:
            host._cancel_pending = None  # the scope ends before its cancellation arrived

    def _deliver(self) -> None:
        if self._exc is None:
            self._exc = Cancelled("cancel scope cancelled")
        if self._host is not None:
            self._host.cancel(self._exc)

    def cancel(self, reason: str | None = None) -> None:
        if self._cancel_called:
            return
        self._cancel_called = True
        if self._group is not None:
            self._group._cancel_children()
        self._deliver()

    @property
    def deadline(self) -> float:
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._deadline = value
        if self._host is not None and not self._cancel_called:
            self._arm()

    @property
    def cancel_called(self) -> bool:
        return self._cancel_called

    @property
    def cancelled_caught(self) -> bool:
        return self._caught

    @property
    def shield(self) -> bool:
        return self._shield

    @shield.setter
    def shield(self, value: bool) -> None:
        self._shield = value


class _Event(anyio.Event):
    """An anyio Event backed by a SimPy event."""

    __slots__ = ("_flag", "_simpy", "_env")

    def __new__(cls, *args: Any, **kwargs: Any) -> _Event:
        return object.__new__(cls)

    def __init__(self) -> None:
        self._flag = False
        self._simpy: Event | None = None
        self._env = require_node("anyio.Event()").env

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        if self._simpy is not None:
            self._simpy.succeed()

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            return
        if self._simpy is None:
            self._simpy = Event(self._env)
        await WaitEvent(self._simpy)

    def statistics(self) -> Any:
        from anyio import EventStatistics

        waiting = len(self._simpy.callbacks or ()) if self._simpy is not None else 0
        return EventStatistics(tasks_waiting=waiting)


class _Semaphore(anyio.Semaphore):
    """A semaphore in virtual time: waiters queue in order; release hands over to the first."""

    __slots__ = ("_value", "_max", "_waiters", "_env")

    def __new__(cls, *args: Any, **kwargs: Any) -> _Semaphore:
        return object.__new__(cls)

    def __init__(self, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False) -> None:
        super().__init__(initial_value, max_value=max_value, fast_acquire=fast_acquire)
        self._value = initial_value
        self._max = max_value
        self._waiters: deque[Event] = deque()
        self._env = require_node("anyio.Semaphore()").env

    async def acquire(self) -> None:
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return
        event = Event(self._env)
        self._waiters.append(event)
        try:
            await WaitEvent(event)
        except BaseException:
            if event in self._waiters:
                self._waiters.remove(event)
            elif event.triggered:  # handed over just as this waiter was cancelled: pass it on
                self.release()
            raise

    def acquire_nowait(self) -> None:
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return
        raise anyio.WouldBlock

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().succeed()
            return
        if self._max is not None and self._value >= self._max:
            raise ValueError("semaphore released too many times")
        self._value += 1

    @property
    def value(self) -> int:
        return self._value

    @property
    def max_value(self) -> int | None:
        return self._max

    def statistics(self) -> Any:
        from anyio import SemaphoreStatistics

        return SemaphoreStatistics(len(self._waiters))


class _Lock(anyio.Lock):
    """A lock in virtual time (``anyio.Lock``): one holder, waiters served in order."""

    __slots__ = ("_semaphore", "_owner")

    def __new__(cls, *args: Any, **kwargs: Any) -> _Lock:
        return object.__new__(cls)

    def __init__(self, *, fast_acquire: bool = False) -> None:
        self._semaphore = _Semaphore(1, max_value=1)
        self._owner: Task | None = None

    async def acquire(self) -> None:
        task = current_task.get()
        if task is not None and self._owner is task:
            raise RuntimeError("this task already holds the lock (anyio.Lock is not re-entrant)")
        await self._semaphore.acquire()
        self._owner = task

    def acquire_nowait(self) -> None:
        self._semaphore.acquire_nowait()
        self._owner = current_task.get()

    def release(self) -> None:
        task = current_task.get()
        # No task at all: the holder's coroutine is being closed (its world was dropped mid-run) and
        # its ``async with`` lets go on the way out; nobody is left to wait for the lock.
        if self._owner is not task and task is not None:
            raise RuntimeError("The current task is not holding this lock")
        self._owner = None
        self._semaphore.release()

    def locked(self) -> bool:
        return self._semaphore.value == 0

    def statistics(self) -> Any:
        from anyio import LockStatistics

        owner = self._owner
        info = anyio.TaskInfo(id(owner), None, owner.name, owner.coro) if owner is not None else None
        return LockStatistics(self.locked(), info, len(self._semaphore._waiters))


class _CapacityLimiter(anyio.CapacityLimiter):
    """A capacity limiter in virtual time (``anyio.CapacityLimiter``): at most ``total_tokens`` borrowers at once,
    each task (or named borrower) holding one token, waiters served in order. A bulkhead built on it limits, as
    anyio's does; the backend's own "worker threads" run inline and never borrow from it."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _CapacityLimiter:
        return object.__new__(cls)

    def __init__(self, total_tokens: float) -> None:
        self._total_tokens = self._checked(total_tokens)
        self._borrowers: dict[object, None] = {}  # insertion-ordered, so statistics list them as they came
        self._waiters: deque[tuple[object, Event]] = deque()

    @staticmethod
    def _checked(value: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                not isinstance(value, int) and not math.isinf(value)) or value < 1:
            raise TypeError(f"total_tokens={value!r}: give a whole number >= 1 (or math.inf), as anyio requires")
        return value

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        self.release()

    @property
    def total_tokens(self) -> float:
        return self._total_tokens

    @total_tokens.setter
    def total_tokens(self, value: float) -> None:
        self._total_tokens = self._checked(value)
        self._hand_over()

    @property
    def borrowed_tokens(self) -> int:
        return len(self._borrowers)

    @property
    def available_tokens(self) -> float:
        return self._total_tokens - len(self._borrowers)

    def _hand_over(self) -> None:
        while self._waiters and len(self._borrowers) < self._total_tokens:
            borrower, event = self._waiters.popleft()
            self._borrowers[borrower] = None
            event.succeed()

    def acquire_nowait(self) -> None:
        self.acquire_on_behalf_of_nowait(current_task.get())

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        if borrower in self._borrowers:
            raise RuntimeError("this borrower is already holding one of this CapacityLimiter's tokens")
        if self._waiters or len(self._borrowers) >= self._total_tokens:
            raise anyio.WouldBlock
        self._borrowers[borrower] = None

    async def acquire(self) -> None:
        await self.acquire_on_behalf_of(current_task.get())

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        try:
            self.acquire_on_behalf_of_nowait(borrower)
            return
        except anyio.WouldBlock:
            pass
        event = Event(require_node("anyio.CapacityLimiter().acquire()").env)
        self._waiters.append((borrower, event))
        try:
            await WaitEvent(event)
        except BaseException:
            if (borrower, event) in self._waiters:
                self._waiters.remove((borrower, event))
            elif event.triggered:  # handed over just as this waiter was cancelled: pass it on
                self.release_on_behalf_of(borrower)
            raise

    def release(self) -> None:
        self.release_on_behalf_of(current_task.get())

    def release_on_behalf_of(self, borrower: object) -> None:
        if borrower not in self._borrowers:
            raise RuntimeError("this borrower is not holding any of this CapacityLimiter's tokens")
        del self._borrowers[borrower]
        self._hand_over()

    def statistics(self) -> Any:
        from anyio import CapacityLimiterStatistics

        return CapacityLimiterStatistics(len(self._borrowers), self._total_tokens, tuple(self._borrowers),
                                         len(self._waiters))


class _TaskGroup(anyio.abc.TaskGroup):
    """Child tasks on the same node; leaving the block waits for all of them."""

    def __init__(self) -> None:
        self.cancel_scope = _CancelScope()
        self.cancel_scope._group = self
        self._children: list[Task] = []
        self._host: Task | None = None

    async def __aenter__(self) -> _TaskGroup:
        self.cancel_scope.__enter__()
        self._host = current_task.get()
        return self

    def create_task(self, coro: Coroutine[Any, Any, Any], *, name: object = None, context: Any = None) -> Task:
        node = require_node("a task group")
        task = Task(node, coro, str(name or getattr(coro, "__qualname__", "task")), self._child_done, context=context)
        self._children.append(task)
        if self.cancel_scope.cancel_called:
            task._cancel_pending = Cancelled("task group cancelled")
        # Like asyncio, a new task starts on the next turn of the loop, not inside the caller.
        from .nodes import start_soon

        start_soon(node.env, task)
        return task

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: object = None) -> Task:  # type: ignore[override]
        return self.create_task(func(*args), name=name or getattr(func, "__qualname__", None))

    async def start(self, func: Callable[..., Any], *args: Any, name: object = None, **kwargs: Any) -> Any:
        raise ForeignAwaitError(
            "TaskGroup.start() (waiting for a task to report readiness) is not simulated: use start_soon()"
        )

    def _child_done(self, task: Task) -> None:
        # As in anyio: a child that fails cancels the whole group (its siblings and the host).
        if task.error is not None and not isinstance(task.error, Cancelled):
            self.cancel_scope.cancel()
            host = self._host
            if host is not None and host.finished and host.error is None:
                # The block was entered and never left (a lifespan's task group: the app started, and its
                # shutdown never runs in the sandbox), so no __aexit__ will raise this error: record it now,
                # as a server's log shows a background task that died.
                task.node.world.record_error(task.node, f"background task {task.name!r} (in the lifespan's task "
                                             f"group)", task.error)

    def _cancel_children(self) -> None:
        for task in list(self._children):
            if task.alive:
                task.cancel(Cancelled())

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        scope = self.cancel_scope
        own_cancel = exc is not None and exc is scope._exc
        if exc is not None and not own_cancel:
            self._cancel_children()
        while True:  # still inside the scope: its own cancellation may arrive while we wait
            pending = [t.done_event() for t in self._children if not t.finished]
            if not pending:
                break
            try:
                await WaitEvent(AllOf(pending[0].env, pending))
            except Cancelled as cancelled:
                if cancelled is not scope._exc:
                    raise
        scope._leave()
        errors = [t.error for t in self._children if t.error is not None and not isinstance(t.error, Cancelled)]
        if exc is not None and not own_cancel:
            errors.insert(0, exc)
        if errors:
            raise BaseExceptionGroup("errors in a sandbox task group", errors)
        if own_cancel:
            scope._caught = True
        return own_cancel


class SandboxBackend(AsyncBackend):
    """anyio's backend for sandbox tasks (see the module docstring)."""

    @classmethod
    def current_time(cls) -> float:
        return require_node("anyio.current_time()").world.env.now

    @classmethod
    def cancelled_exception_class(cls) -> type[BaseException]:
        return Cancelled

    @classmethod
    async def checkpoint(cls) -> None:
        return None

    @classmethod
    async def checkpoint_if_cancelled(cls) -> None:
        return None

    @classmethod
    async def cancel_shielded_checkpoint(cls) -> None:
        return None

    @classmethod
    async def sleep(cls, delay: float) -> None:
        await sleep(delay)

    @classmethod
    def create_cancel_scope(cls, *, deadline: float = math.inf, shield: bool = False) -> _CancelScope:
        return _CancelScope(deadline=deadline, shield=shield)

    @classmethod
    def current_effective_deadline(cls) -> float:
        return math.inf

    @classmethod
    def create_task_group(cls) -> _TaskGroup:
        return _TaskGroup()

    @classmethod
    def create_event(cls) -> _Event:
        return _Event()

    @classmethod
    def create_lock(cls, *, fast_acquire: bool = False) -> _Lock:
        return _Lock(fast_acquire=fast_acquire)

    @classmethod
    def create_semaphore(cls, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False) -> _Semaphore:
        return _Semaphore(initial_value, max_value=max_value, fast_acquire=fast_acquire)

    @classmethod
    def create_capacity_limiter(cls, total_tokens: float) -> _CapacityLimiter:
        return _CapacityLimiter(total_tokens)

    @classmethod
    def current_default_thread_limiter(cls) -> _CapacityLimiter:
        return _CapacityLimiter(40)  # never borrowed from: worker threads run inline (run_sync_in_worker_thread)

    @classmethod
    async def run_sync_in_worker_thread(cls, func, args, abandon_on_cancel=False, limiter=None):  # type: ignore[override]
        return func(*args)

    @classmethod
    def check_cancelled(cls) -> None:
        return None

    @classmethod
    def get_current_task(cls) -> anyio.TaskInfo:
        task = current_task.get()
        if task is None:
            raise ForeignAwaitError("anyio.get_current_task() outside a sandbox task")
        return anyio.TaskInfo(id(task), None, task.name, task.coro)

    @classmethod
    def current_token(cls) -> object:
        node = current_node.get()
        return node.world if node is not None else None


def _refuse_method(name: str) -> classmethod:
    def refuse(cls: type, *args: Any, **kwargs: Any) -> Any:
        raise ForeignAwaitError(
            f"service code used anyio's {name.removeprefix('create_').replace('_', ' ')}, which the sandbox "
            f"does not simulate: {_suggestion(name)}"
        )

    return classmethod(refuse)


for _name in sorted(AsyncBackend.__abstractmethods__):
    if _name not in SandboxBackend.__dict__:
        setattr(SandboxBackend, _name, _refuse_method(_name))
SandboxBackend.__abstractmethods__ = frozenset()

_backend_module = types.ModuleType(f"anyio._backends._{BACKEND_NAME}")
_backend_module.backend_class = SandboxBackend  # type: ignore[attr-defined]
sys.modules.setdefault(_backend_module.__name__, _backend_module)
