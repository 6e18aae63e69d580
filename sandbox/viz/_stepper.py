"""The stepper: an ipywidgets panel that walks a finished run through virtual time."""

from __future__ import annotations

import html
from bisect import bisect_right
from typing import TYPE_CHECKING

import ipywidgets as widgets

from . import _style as style
from ._events import describe
from ._run import read_run
from ._state import RunState, state_at

if TYPE_CHECKING:
    from ..world import World

_TROUBLE = ("net.drop", "node.crash", "node.pause", "rpc.timeout", "fault.start", "net.partition", "net.isolate",
            "net.duplicate", "service.error")
_BADGE = {"up": "#2b8a3e", "down": style.DOWN_COLOR, "paused": style.PAUSED_COLOR}
_CELL = ("padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #e9ecef;white-space:normal;"
         "overflow-wrap:break-word")
_NAME_CELL = _CELL + ";white-space:nowrap"


class Stepper(widgets.VBox):
    """A slider over the moments of a finished run, and the state of every node at the chosen one.

    Built by ``sandbox.viz.stepper(world)``; ``slider``, ``previous``, ``next`` and
    ``next_trouble`` are its controls, ``view`` the HTML it shows, ``state`` the
    ``RunState`` shown. The slider counts moments from 1, as the heading does.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        run = read_run(world)
        self.times = sorted({0.0, run.end, *run.times})
        self.labels = {(m.kind, m.msg_id): m.label for m in run.messages if m.label}
        self.trouble = sorted({entry[0] for entry in world.recorder.log if entry[1] in _TROUBLE})
        self.slider = widgets.IntSlider(
            value=1, min=1, max=len(self.times), step=1, description="moment",
            continuous_update=True, layout=widgets.Layout(width="60%"),
        )
        self.previous = widgets.Button(description="< previous", tooltip="the moment before this one")
        self.next = widgets.Button(description="next >", tooltip="the next moment something happened")
        self.next_trouble = widgets.Button(
            description="next trouble >>", tooltip="the next drop, crash, pause, timeout, fault or duplicate",
            button_style="warning",
        )
        self.view = widgets.HTML()
        self.previous.on_click(lambda _: self._move(-1))
        self.next.on_click(lambda _: self._move(+1))
        self.next_trouble.on_click(lambda _: self._jump_to_trouble())
        self.slider.observe(lambda _: self._render(), names="value")
        controls = widgets.HBox([self.previous, self.slider, self.next, self.next_trouble])
        super().__init__([controls, self.view])
        self.state: RunState = state_at(world, 0.0)
        self._render()

    @property
    def time(self) -> float:
        """The virtual time shown."""
        return self.times[self.slider.value - 1]

    def _move(self, step: int) -> None:
        self.slider.value = min(max(self.slider.value + step, 1), len(self.times))

    def _jump_to_trouble(self) -> None:
        later = [t for t in self.trouble if t > self.time]
        if later:
            self.slider.value = min(bisect_right(self.times, later[0]), len(self.times))

    def _render(self) -> None:
        self.state = state_at(self.world, self.time)
        self.view.value = render_state(self.state, step=self.slider.value, steps=len(self.times), labels=self.labels)
        ahead = any(t > self.time for t in self.trouble)
        self.next_trouble.disabled = not ahead  # say so, rather than a button that does nothing
        self.next_trouble.description = "next trouble >>" if ahead else "no trouble ahead"


def render_state(state: RunState, *, step: int | None = None, steps: int | None = None,
                 labels: dict[tuple[str, int], str] | None = None) -> str:
    """``state`` as an HTML fragment: faults in force, a table of nodes, the messages in flight, recent events.

    ``step`` is the moment's number, counted from 1 as the stepper's slider counts, of ``steps``; ``labels``
    names messages by kind and id in the recent events (``sandbox.viz._events.describe``)."""
    e = html.escape
    where = f" &middot; moment {step} of {steps}" if step is not None and steps else ""
    heading = f"t = {state.time:.4f} s (virtual){where}"
    parts = [f"<div class='tex2jax_ignore mathjax_ignore' style='font-family:sans-serif;font-size:13px'><h4 style='margin:4px 0'>{heading}</h4>"]
    if state.faults:
        items = "".join(
            f"<li style='color:{style.fault_color(w.family)}'><b>{e(w.family)}</b> {e(w.label)} "
            f"(since {w.start:.4f} s{'' if w.end is None else f', until {w.end:.4f} s'})</li>"
            for w in state.faults
        )
        parts.append(f"<div><b>Faults in force</b><ul style='margin:2px 0'>{items}</ul></div>")
    else:
        parts.append("<div style='color:#868e96'>No fault in force.</div>")
    rows = []
    for node in state.nodes.values():
        badge = (f"<span style='background:{_BADGE.get(node.status, '#868e96')};color:white;border-radius:3px;"
                 f"padding:0 5px'>{e(node.status)}</span>")
        sending = "<br>".join(f"&rarr; {e(m.dst)}: {e(m.label or m.kind)}" for m in node.sending)
        receiving = "<br>".join(f"&larr; {e(m.src)}: {e(m.label or m.kind)}" for m in node.receiving)
        work = "<br>".join(e(w) for w in node.work)
        rows.append(f"<tr><td style='{_NAME_CELL}'><b>{e(node.name)}</b></td><td style='{_NAME_CELL}'>{badge}</td>"
                    f"<td style='{_CELL}'>{work}</td><td style='{_CELL}'>{sending}</td>"
                    f"<td style='{_CELL}'>{receiving}</td></tr>")
    head = "".join(f"<th style='{_NAME_CELL}'>{h}</th>" for h in ("node", "state", "working on", "sending", "receiving"))
    parts.append(f"<table style='border-collapse:collapse;margin:6px 0;width:100%;table-layout:auto'><tr>{head}</tr>"
                 f"{''.join(rows)}</table>")
    flying = "".join(f"<li>{e(str(m))}</li>" for m in state.in_flight) or "<li style='color:#868e96'>none</li>"
    parts.append(f"<div><b>Messages in flight ({len(state.in_flight)})</b><ul style='margin:2px 0'>{flying}</ul>"
                 f"</div>")
    recent = "".join(
        f"<tr><td style='{_NAME_CELL};color:#868e96'>{entry[0]:.3f} s</td>"
        f"<td style='{_CELL}'>{e(describe(entry, labels))}</td></tr>"
        for entry in state.recent
    )
    parts.append(f"<div><b>Last events</b><table style='border-collapse:collapse;margin:2px 0'>{recent}</table></div>")
    parts.append("</div>")
    return "".join(parts)


def stepper(world: World) -> Stepper:
    """An ipywidgets panel that walks ``world``'s finished run through virtual time.

    A slider over every moment at which something was logged, buttons to step to
    the previous or next moment and to jump to the next trouble (a drop, crash,
    pause, timeout, fault, duplicate); below, the state at that moment (from
    ``state_at``): each node up, down or paused, what it is serving or waiting
    for, the messages on the wire from and to it, the faults in force and the last
    few events. Predict the next moment before you press "next".

    Example::

        order_system.run_to_completion(world)
        sandbox.viz.stepper(world)        # last expression of a notebook cell: shows the panel
    """
    return Stepper(world)
