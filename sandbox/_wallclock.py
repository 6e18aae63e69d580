"""A wall-clock budget per run: code that never lets virtual time pass cannot hang a world.

Virtual time stops only where service code awaits; ``while True: pass`` in an
endpoint (or a loop that awaits nothing the sandbox drives) would run for ever.
While ``World.run`` runs, a real-time timer (``SIGALRM``, ``signal.setitimer``)
interrupts whatever Python code is running once the budget is spent, by raising
``OverBudget`` there: a ``BaseException``, so ``except Exception`` in service code
does not swallow it, and raised again every quarter second should code catch it all
the same. The run stops and says where: the node, its task (the endpoint) and the
line that was running.

Where no timer is available (not the main thread, or no ``setitimer`` on the
platform) the budget is not enforced here; a grader's process limit still is.
Code that spends the budget inside one C call (a huge ``sum(range(...))``) is
interrupted only when the call returns: Python runs signal handlers between
bytecodes.
"""

from __future__ import annotations

import linecache
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ._runtime import OverBudget, current_node, current_task

if TYPE_CHECKING:
    from .world import World

#: The default wall-clock budget of one ``World.run`` call, in real seconds.
DEFAULT_WALL_LIMIT = 30.0
#: After the first interruption, how often it is raised again (in case code catches it).
REPEAT = 0.25

_SANDBOX = str(Path(__file__).resolve().parent)
_LIBRARIES = tuple(
    str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix} if p
)


def where(frame: FrameType | None) -> str:
    """The line the interrupted code was running: the innermost frame of code that is neither the sandbox's nor
    an installed library's (the learner's), else the innermost frame."""
    innermost = frame
    chosen = None
    while frame is not None:
        filename = frame.f_code.co_filename
        resolved = filename if filename.startswith("<") else str(Path(filename).resolve())
        if not resolved.startswith(_SANDBOX) and not resolved.startswith(_LIBRARIES):
            chosen = frame
            break
        frame = frame.f_back
    chosen = chosen or innermost
    if chosen is None:
        return "outside any Python code"
    filename = chosen.f_code.co_filename
    source = linecache.getline(filename, chosen.f_lineno).strip()
    shown = Path(filename).name if not filename.startswith("<") else filename
    return f"{shown} line {chosen.f_lineno} in {chosen.f_code.co_name}()" + (f": `{source}`" if source else "")


@contextmanager
def enforce_wall_limit(world: World, budget: float | None) -> Iterator[None]:
    """Enforce ``budget`` real seconds on the code run inside (``None``: no limit)."""
    if (budget is None or threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer")):
        yield
        return
    armed = True
    started = time.monotonic()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if not armed:
            return
        signal.setitimer(signal.ITIMER_REAL, REPEAT)
        node, task = current_node.get(), current_task.get()
        node_name = getattr(node, "name", None)
        task_name = getattr(task, "name", None)
        running = (f" on {node_name!r}" if node_name else "") + (f" in {task_name!r}" if task_name else "")
        raise OverBudget(
            f"the run used its wall-clock budget of {budget:g} real seconds at t={world.now:.4f} and was stopped"
            f"{running}, at {where(frame)}. Code that loops without awaiting anything that takes virtual time "
            f"never lets the world move on: await the sandbox (a request, `await sandbox.sleep(0.1)`), or end the "
            f"loop",
            node_name,
            task_name,
        )

    previous = signal.signal(signal.SIGALRM, interrupt)
    earlier, interval = signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if earlier:  # someone else's timer (pytest-timeout's, say) was running: give it back what is left
            signal.setitimer(signal.ITIMER_REAL, max(earlier - (time.monotonic() - started), 1e-3), interval)
