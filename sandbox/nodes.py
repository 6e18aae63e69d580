"""Nodes: the machines of the simulated datacenter.

A node has a name, a clock, and a life: it runs until it crashes, then stays down
until it restarts. A crash ends everything running on it at once (in-flight
requests, background consumers, timers): their coroutines are abandoned, their
pending replies discarded, and any sandbox call made while dying fails without
effect. What a node keeps on durable storage survives; what it kept in memory
does not.

Every kind of node (a service replica, a database server, the broker, a workload
client) is a ``Node``; they share the request/reply machinery in ``call``.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any

from simpy.events import Event

from ._runtime import Task, wait_for
from ._vtime import call_at, due
from .clocks import Clock
from .errors import NodeCrashed, RequestTimeout

if TYPE_CHECKING:
    from .world import World


class Node:
    """One machine: a name, a clock, an up/down state and the tasks running on it."""

    kind = "node"

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.env = world.env
        self.name = name
        self.alive = True
        self.paused = False
        self.epoch = 0
        self.clock = Clock(world.env, name)
        self.tasks: dict[int, Task] = {}
        self._pending: dict[int, Event] = {}
        # Deadlines of outstanding calls, earliest first, served by one timer per node
        # (not one SimPy event per call: most calls are answered long before).
        self._deadlines: list[tuple[float, int, float, str]] = []
        self._timer_at: float | None = None
        self._held: list[Callable[[], None]] = []  # what arrived or fired while paused, in order

    def __repr__(self) -> str:
        state = "up" if self.alive else "down"
        return f"<{type(self).__name__} {self.name} {state}>"

    # --- life ------------------------------------------------------------------------

    def crash(self) -> None:
        """Stop this node now: running code is abandoned, memory is lost, storage is kept."""
        if not self.alive:
            return
        self.alive = False
        self.paused = False
        self._held = []
        self.epoch += 1
        self.world.record("node.crash", self.name)
        pending, self._pending = self._pending, {}
        self._deadlines = []
        for event in pending.values():
            event.defused = True
        while self.tasks:  # tasks started by dying code (a finally block) die too
            for task in list(self.tasks.values()):
                task.kill()
        self.on_crash()
        self.world._node_crashed(self)

    def pause(self) -> None:
        """Freeze this node (as SIGSTOP would): nothing on it runs until ``resume()``.

        Messages to it wait in its buffers and its timers wait too; its memory, its
        connections and its storage are kept. Other nodes see it as very slow.
        """
        if self.paused or not self.alive:
            return
        self.paused = True
        self.world.record("node.pause", self.name)

    def resume(self) -> None:
        """Unfreeze a paused node: everything that waited runs now, in the order it came."""
        if not self.paused:
            return
        self.paused = False
        self.world.record("node.resume", self.name)
        held, self._held = self._held, []
        for work in held:
            if self.paused:  # paused again by what just ran
                self._held.append(work)
            else:
                work()

    def when_running(self, work: Callable[[], None]) -> None:
        """Do ``work`` now, or when the node resumes if it is paused."""
        if self.paused:
            self._held.append(work)
        else:
            work()

    def restart(self) -> None:
        """Start a crashed node again, as a fresh process on the same machine."""
        if self.alive:
            return
        self.alive = True
        self.world.record("node.restart", self.name)
        self.on_start()

    def on_start(self) -> None:
        """Hook: the node (re)starts. Subclasses start their processes here."""

    def on_crash(self) -> None:
        """Hook: the node has just crashed. Subclasses drop their volatile state here."""

    def spawn(self, coro: Any, name: str, on_done: Callable[[Task], None] | None = None) -> Task:
        """Run ``coro`` on this node as a new task, starting now."""
        return Task(self, coro, name, on_done).start()

    def spawn_soon(self, make: Callable[[], Any], name: str, on_done: Callable[[Task], None] | None = None) -> None:
        """Run the coroutine ``make()`` on this node as a new task, starting at the current
        virtual time once the world runs (so set-up code can finish configuring the world
        first). The coroutine is made only then: a world that never runs leaves none behind.
        """
        epoch = self.epoch

        def start(_event: Any) -> None:
            if self.alive and self.epoch == epoch:
                Task(self, make(), name, on_done).start()

        trigger = Event(self.env)
        trigger.callbacks.append(start)
        trigger.succeed()

    def check_alive(self) -> None:
        if not self.alive:
            raise NodeCrashed(f"{self.name} is down; nothing it does now takes effect")

    # --- request / reply -------------------------------------------------------------

    async def call(
        self,
        dst: Node,
        handler: Callable[[Node, int, int, Any], None],
        request: Any,
        kind: str,
        timeout: float | None,
        describe: str,
    ) -> Any:
        """Send ``request`` to ``dst`` over the network and wait for its reply.

        On arrival the network calls ``handler(self, epoch, msg_id, request)`` on the
        destination, which answers later with ``dst.reply(...)``. If no reply comes
        within ``timeout`` seconds of virtual time, ``RequestTimeout`` is raised (the
        request may have taken effect anyway).
        """
        if not self.alive:
            self.check_alive()
        world = self.world
        msg_id = world.next_id()
        reply = Event(self.env)
        pending = self._pending
        pending[msg_id] = reply
        world.network.send(self, dst, handler, self.epoch, request, kind, msg_id)
        if timeout is not None:
            deadline = self.env.now + timeout
            heappush(self._deadlines, (deadline, msg_id, timeout, describe))
            if self._timer_at is None or deadline < self._timer_at:
                self._arm(deadline)
        try:
            return await wait_for(reply)
        finally:
            pending.pop(msg_id, None)

    def _arm(self, deadline: float) -> None:
        self._timer_at = deadline
        call_at(self.env, deadline, lambda: self._expire_due(deadline))

    def _expire_due(self, armed_for: float) -> None:
        if armed_for != self._timer_at:
            return  # superseded by an earlier deadline (the very same float: a token, not a time comparison)
        if self.paused:
            self._held.append(lambda: self._expire_due(armed_for))
            return
        self._timer_at = None
        now = self.env.now
        deadlines = self._deadlines
        while deadlines and due(now, deadlines[0][0]):
            _deadline, msg_id, timeout, describe = heappop(deadlines)
            pending = self._pending.pop(msg_id, None)
            if pending is not None and not pending.triggered:
                self.world.record("rpc.timeout", self.name, msg_id, timeout)
                pending.fail(
                    RequestTimeout(
                        f"{describe}: no response within {timeout:g}s (virtual) [{self.name}, t={self.env.now:.4f}]"
                    )
                )
        if deadlines:
            self._arm(deadlines[0][0])

    def reply(self, caller: Node, caller_epoch: int, msg_id: int, response: Any, kind: str) -> None:
        """Send ``response`` back to ``caller`` for its request ``msg_id``."""
        self.world.network.send(self, caller, caller._replied, caller_epoch, response, kind, msg_id)

    def _replied(self, _src: Node, epoch: int, msg_id: int, response: Any) -> None:
        """The reply to this node's request ``msg_id`` has arrived (from ``_src``): wake the call waiting for it."""
        if self.epoch != epoch:
            self.world.record("net.late", self.name, msg_id, "caller restarted")
            return
        event = self._pending.pop(msg_id, None)
        if event is None:
            self.world.record("net.late", self.name, msg_id, "caller gave up")
            return
        event.succeed(response)


def start_soon(env: Any, task: Task) -> None:
    """Start ``task`` when the world next processes events, at the current virtual time."""
    trigger = Event(env)
    trigger.callbacks.append(lambda _event: task.start() if task.alive else None)
    trigger.succeed()
