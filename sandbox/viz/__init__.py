"""Pictures of a run: what happened, drawn so that a learner sees it at a glance.

Everything here reads a finished (or partly run) world's event log, history and
spans; nothing changes the world, and the same seed gives the same pictures.

==========================  ==================================================================
``sequence_diagram``        who sent what to whom and when: lifelines, arrows, drops, crashes
``fault_timeline``          when each fault was in force, and when nodes were down or paused
``trace_waterfall``         one request's spans, as Jaeger draws them
``counterexample_figure``   all three at once, on one time axis, for a failing run
``dashboard``               a service's metrics as Grafana panels (error rate, p50/p99, breaker), faults shaded
``dashboard_data``          the same curves as numbers, for a check to read what the learner sees
``stepper``                 an ipywidgets panel that walks the run moment by moment
``state_at``                the state the stepper shows, as data: nodes, messages in flight, faults
``save`` / ``to_png`` /     a picture to a .png or .svg file, or to bytes / text for HTML
``to_svg``
==========================  ==================================================================

The functions return ``matplotlib.figure.Figure`` objects made without pyplot (no
global state, nothing to close): a notebook shows one when it is a cell's last
expression (importing ``sandbox.viz`` in IPython sees to that: ``show_in_ipython``),
and ``save`` writes it to a file.

Example::

    import sandbox.viz as viz
    from sandbox.examples import order_system

    world = order_system.build_world(7, clients=2, orders_per_client=2)
    order_system.run_to_completion(world)
    place = [op for op in world.history if op.f == "place-order"][:2]
    viz.save(viz.sequence_diagram(world, highlight=place), "order.png")
    viz.state_at(world, 0.6).in_flight          # the messages on the wire at t = 0.6 s
"""

from __future__ import annotations

from typing import Any

from ._dashboard import DashboardData, dashboard, dashboard_data
from ._figures import counterexample_figure, save, show_in_ipython, to_png, to_svg
from ._run import FaultWindow, WireMessage
from ._sequence import sequence_diagram
from ._state import NodeState, RunState, state_at
from ._style import DROP_COLOR, HIGHLIGHT_COLOR, MUTED_COLOR
from ._timeline import fault_timeline
from ._waterfall import trace_waterfall

__all__ = [
    # pictures
    "sequence_diagram",
    "trace_waterfall",
    "fault_timeline",
    "counterexample_figure",
    "dashboard",
    "dashboard_data",
    "DashboardData",
    # files and HTML
    "save",
    "to_png",
    "to_svg",
    "show_in_ipython",
    # walking a run
    "stepper",
    "Stepper",
    "state_at",
    "fault_windows",
    "RunState",
    "NodeState",
    "WireMessage",
    "FaultWindow",
    # colours
    "HIGHLIGHT_COLOR",
    "DROP_COLOR",
    "MUTED_COLOR",
]


def fault_windows(world: Any) -> list[FaultWindow]:
    """The run's fault windows in order of start, read from its log (see ``FaultWindow``).

    Example::

        [str(w) for w in sandbox.viz.fault_windows(world)]
        # ['#1 NetworkChaos partition orders-0 | payments  1.000-2.500 s']
    """
    from ._run import read_run

    return list(read_run(world).faults)


def __getattr__(name: str) -> Any:
    # The stepper needs ipywidgets, which files and tests of pictures do not: import it on first use.
    if name in ("stepper", "Stepper"):
        from . import _stepper

        return getattr(_stepper, name)
    raise AttributeError(f"module 'sandbox.viz' has no attribute {name!r}")

show_in_ipython()
