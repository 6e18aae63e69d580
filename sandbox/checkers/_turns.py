"""The keys' searches taking turns, on one core or, past a few milliseconds, on two.

A map's history is linearizable if and only if each key's is, so ``check_linearizability`` searches every key
separately and stops as soon as one key fails. Which key fails is not known in advance, so the searches take turns,
a slice of work each (a generator step), and the verdict is decided by counting turns, never by the clock: if the
first failure of any key comes at its search's R-th turn, every key is searched for up to R + 1 turns, and the
failures met by then are the ones reported (the earliest in the history shown). The same history therefore gives
the same verdict, the same evidence and the same counts however the turns were spread over time.

That is what lets the turns run in two processes, as Porcupine runs its keys in parallel goroutines: once the
searches have run for ``FORK_AFTER`` seconds without deciding (a fork and its child's exit cost a few
milliseconds, so a quick check never pays them), the process forks and the child takes over every other key still
running, the generators' state inherited as it stands. Each process writes the earliest turn at which one of its keys
failed into a shared slot and reads the other's before every turn, so that neither searches past the bound; the
child sends its keys' results back through a pipe (plain numbers and the failure's summary, nothing of the model)
and the parent merges them, dropping anything met past the bound. Forking is skipped where it is not safe or would
not pay: not on Linux, one core, threads running (a forked child could deadlock on a lock another thread held),
inside a worker process of ``multiprocessing`` (``explore``'s workers already use every core), or no core free at
the moment of forking (as many processes ready to run as cores, in ``/proc/loadavg``).
"""

from __future__ import annotations

import inspect
import mmap
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

# The real clock: inside sandbox tasks, time.perf_counter answers with the node's virtual clock.
perf_counter = inspect.unwrap(time.perf_counter)

FORK_AFTER = 0.005  # seconds of searching, undecided, before the keys still running are shared with a second process
NO_FAILURE = 2**62  # the shared slot's value while no key of that process has failed


@dataclass
class KeyResult:
    """Where one key's search stands: ``outcome`` is "pass", "fail" or "open" (stopped before deciding)."""

    outcome: str = "open"
    turns: int = 0
    explored: int = 0
    failure: tuple[int, str, int] | None = None  # (position in the history, summary, index of the stuck call)


# A key's search: a generator yielding the configurations explored so far, returning an object with .outcome and
# .explored; and what to make of a failure it returns (position, summary, stuck call).
Search = Generator[int, None, Any]
Explain = Callable[[int, Any], tuple[int, str, int]]


class _Bound:
    """The earliest turn at which a key failed, over the processes: one slot each, in memory they share."""

    def __init__(self, slots: int) -> None:
        self.memory = mmap.mmap(-1, 8 * slots)  # anonymous and shared: a forked child writes where the parent reads
        self.view = memoryview(self.memory).cast("q")
        for slot in range(slots):
            self.view[slot] = NO_FAILURE
        self.slot = 0

    def failed_at(self, turn: int) -> None:
        if turn < self.view[self.slot]:
            self.view[self.slot] = turn

    def turns_allowed(self) -> int:
        """How many turns a key may take: one more than the earliest failing turn (no limit while none failed)."""
        return min(self.view) + 1

    def close(self) -> None:
        self.view.release()
        self.memory.close()


def take_turns(searches: list[Search], explain: Explain, deadline: float, room: list[bool],
               remember: int) -> tuple[list[KeyResult], bool]:
    """Run the searches by turns until each is decided or past the bound; the results, and whether time ran out.

    ``room[0]`` turns False once the searches remember more than ``remember`` configurations (with two
    processes, each counts its own keys against half of it).
    """
    results = [KeyResult() for _ in searches]
    bound = _Bound(2)
    children: list[_Child] = []
    try:
        running = deque(range(len(searches)))
        fork_at = perf_counter() + FORK_AFTER if _can_fork(len(running)) else None
        timed_out = _work(searches, explain, results, running, bound, deadline, room, remember, fork_at, children)
        for child in children:
            joined = _join(child, results)
            if joined is None:  # the child died without a word (killed): its keys go on here, where it took them
                joined = _work(searches, explain, results, deque(child.keys), bound, deadline, room, remember, None,
                               [])
            timed_out = joined or timed_out
    except BaseException:
        for child in children:
            _stop(child)
        raise
    finally:
        bound.close()
    return results, timed_out


def _work(searches: list[Search], explain: Explain, results: list[KeyResult], running: deque[int], bound: _Bound,
          deadline: float, room: list[bool], remember: int, fork_at: float | None, children: list[_Child]) -> bool:
    """Turns for the keys in ``running`` until none is left; whether time ran out. A child forked joins ``children``."""
    remembered = sum(results[index].explored for index in running)
    while running:
        index = running.popleft()
        result = results[index]
        if result.turns >= bound.turns_allowed():
            continue  # past the bound: left open
        before = result.explored
        result.turns += 1
        try:
            result.explored = next(searches[index])
        except StopIteration as stop:  # the search is over, and what it remembered is freed
            result.explored = stop.value.explored
            remembered -= before
            result.outcome = stop.value.outcome
            if result.outcome == "fail":
                result.failure = explain(index, stop.value)
                bound.failed_at(result.turns)
            continue
        running.append(index)
        remembered += result.explored - before
        if remembered > remember:
            room[0] = False
        now = perf_counter()
        if now > deadline:
            return True
        if fork_at is not None and now > fork_at:
            fork_at = None
            if len(running) > 1 and bound.turns_allowed() > NO_FAILURE and _free_core():
                child = _fork(searches, explain, results, running, bound, deadline, room, remember // 2)
                if child is not None:
                    children.append(child)
                    remember //= 2
                    remembered = sum(results[index].explored for index in running)
    return False


@dataclass
class _Child:
    pid: int
    reader: int
    keys: list[int]


def _can_fork(keys: int) -> bool:
    if keys < 2 or sys.platform != "linux" or not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    if len(os.sched_getaffinity(0)) < 2:
        return False
    import multiprocessing

    return multiprocessing.parent_process() is None


def _free_core() -> bool:
    """Whether a core is free now: fewer processes ready to run than cores (this one counted), from /proc/loadavg.

    On a machine busy with other work a second process gets no core of its own, and the fork only costs.
    """
    try:
        with open("/proc/loadavg") as loadavg:
            running = int(loadavg.read().split()[3].partition("/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return running < len(os.sched_getaffinity(0))


def _fork(searches: list[Search], explain: Explain, results: list[KeyResult], running: deque[int], bound: _Bound,
          deadline: float, room: list[bool], remember: int) -> _Child | None:
    """Hand every other key in ``running`` to a forked child; None (and nothing handed) if the fork failed."""
    theirs = list(running)[1::2]
    reader, writer = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no more processes allowed (a grader's limit): go on alone
        os.close(reader)
        os.close(writer)
        return None
    if pid == 0:  # the child: search its keys, send their results, and leave without running any cleanup
        try:
            os.close(reader)
            bound.slot = 1
            try:
                timed_out = _work(searches, explain, results, deque(theirs), bound, deadline, room, remember, None, [])
                message: tuple[str, Any, bool] = ("done", [(index, results[index]) for index in theirs], timed_out)
            except BaseException as error:  # the model raised: the parent raises it
                message = ("error", error, False)
            payload = _dumps(message)
            view = memoryview(payload)
            while view:
                view = view[os.write(writer, view):]
        finally:
            os._exit(0)
    os.close(writer)
    for index in theirs:
        running.remove(index)
    return _Child(pid, reader, theirs)


def _dumps(message: tuple[str, Any, bool]) -> bytes:
    try:
        return pickle.dumps(message)
    except Exception:  # results are numbers and strs, so this is an exception the model raised that pickle cannot
        error = message[1]
        return pickle.dumps(("error", RuntimeError(f"{type(error).__name__}: {error}"), False))


def _join(child: _Child, results: list[KeyResult]) -> bool | None:
    """Wait for the child's results and merge them; whether its time ran out, or None if it sent nothing.

    Re-raises what the child raised.
    """
    chunks = []
    with os.fdopen(child.reader, "rb", closefd=False) as pipe:
        while chunk := pipe.read(1 << 16):
            chunks.append(chunk)
    os.close(child.reader)
    child.reader = -1
    os.waitpid(child.pid, 0)
    child.pid = 0
    try:
        kind, payload, timed_out = pickle.loads(b"".join(chunks))
    except Exception:  # nothing, or cut short: the child was killed before it had written all
        return None
    if kind == "error":
        raise payload
    for index, result in payload:
        results[index] = result
    return timed_out


def _stop(child: _Child) -> None:
    """End a child whose results are no longer wanted (the parent is raising), and reap it."""
    if child.reader >= 0:
        os.close(child.reader)
    if child.pid:
        try:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
