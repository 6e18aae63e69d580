"""The trace waterfall: one request's spans, as Jaeger draws them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..errors import InvalidParameterError
from . import _style as style

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..world import World

_EPOCH_SUFFIX = re.compile(r"#\d+$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
ROW_IN = 0.27
NAME_IN = 3.6
INDENT_IN = 0.16
BAR_IN = 7.0


@dataclass(frozen=True)
class SpanRow:
    """One span placed in the waterfall: depth under its root, times in ms from the trace's start."""

    span: Any
    depth: int
    start_ms: float
    end_ms: float
    service: str
    instance: str
    error: bool
    orphan: bool

    @property
    def label(self) -> str:
        where = self.instance if self.instance and self.instance != self.service else self.service
        name = self.span.name
        url = (self.span.attributes or {}).get("url.full")
        if name in _METHODS and isinstance(url, str):  # an HTTP client span is named by its method alone
            name = f"{name} {url.split('://', 1)[-1]}"
        return f"{where}  {name}" + ("  (orphan)" if self.orphan else "")


def _spans_of(world_or_spans: Any) -> list[Any]:
    spans = world_or_spans.spans() if hasattr(world_or_spans, "spans") else world_or_spans
    if not isinstance(spans, Iterable):
        raise InvalidParameterError(
            f"{world_or_spans!r}: give a World made with tracing=True, or a list of spans (world.spans())"
        )
    return list(spans)


def _trace_id(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.removeprefix("0x"), 16)
        except ValueError:
            pass
    raise InvalidParameterError(f"trace_id={value!r}: give the trace id as an int or as 32 hex digits")


def pick_trace(spans: Sequence[Any], trace_id: Any = None, *, world: World | None = None,
               highlight: Any = None) -> int | None:
    """The trace to draw: ``trace_id``; else the one a highlighted operation started; else the biggest."""
    if not spans:
        return None
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for span in spans:
        tid = span.context.trace_id
        counts[tid] = counts.get(tid, 0) + 1
        first[tid] = min(first.get(tid, span.start_time), span.start_time)
    if trace_id is not None:
        wanted = _trace_id(trace_id)
        if wanted not in counts:
            some = ", ".join(f"{t:032x}" for t in sorted(counts, key=lambda t: first[t])[:5])
            raise InvalidParameterError(
                f"trace_id={trace_id!r}: no span of this run has it; the run's first traces are {some} "
                f"(or leave trace_id out for the biggest)"
            )
        return wanted
    if highlight is not None and world is not None:
        from ..clocks import EPOCH_NS
        from ._highlight import resolve_highlight
        from ._run import read_run

        marked = resolve_highlight(read_run(world), highlight)
        for invoke, done in marked.pairs:
            client = _EPOCH_SUFFIX.sub("", invoke.process)
            lo = EPOCH_NS + int(invoke.time * 1e9) - 1
            hi = EPOCH_NS + int((done.time if done else world.now) * 1e9) + 1
            touching = [s.context.trace_id for s in spans
                        if _service(s)[1] == client and lo <= s.start_time <= hi]
            if touching:
                return max(touching, key=lambda t: (counts[t], -first[t]))
    return max(counts, key=lambda t: (counts[t], -first[t]))


def _service(span: Any) -> tuple[str, str]:
    attributes = getattr(getattr(span, "resource", None), "attributes", {}) or {}
    service = str(attributes.get("service.name", "?"))
    return service, str(attributes.get("service.instance.id", service))


def _is_error(span: Any) -> bool:
    status = getattr(span, "status", None)
    if status is not None and getattr(status.status_code, "name", "") == "ERROR":
        return True
    code = (span.attributes or {}).get("http.response.status_code")
    return isinstance(code, int) and code >= 500


def span_rows(spans: Sequence[Any], trace_id: int) -> list[SpanRow]:
    """The spans of one trace in waterfall order: each parent followed by its children by start time."""
    mine = [s for s in spans if s.context.trace_id == trace_id]
    if not mine:
        return []
    ids = {s.context.span_id for s in mine}
    children: dict[int | None, list[Any]] = {}
    for s in mine:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children.setdefault(parent, []).append(s)
    t0 = min(s.start_time for s in mine)
    rows: list[SpanRow] = []

    def visit(span: Any, depth: int) -> None:
        service, instance = _service(span)
        end = span.end_time if span.end_time is not None else span.start_time
        orphan = span.parent is not None and span.parent.span_id not in ids
        rows.append(SpanRow(span, depth, (span.start_time - t0) / 1e6, (end - t0) / 1e6, service, instance,
                            _is_error(span), orphan))
        for child in sorted(children.get(span.context.span_id, []), key=lambda c: (c.start_time, c.name)):
            visit(child, depth + 1)

    for root in sorted(children.get(None, []), key=lambda s: (s.start_time, s.name)):
        visit(root, 0)
    return rows


def waterfall_height(rows: Sequence[SpanRow]) -> float:
    """Inches the waterfall's axes need."""
    return max(len(rows), 1) * ROW_IN + 0.2


def draw_waterfall(ax: Axes, rows: Sequence[SpanRow]) -> list[Patch]:
    """Draw the rows on ``ax``; return legend handles (one per service, and errors)."""
    colors: dict[str, str] = {}
    for row in rows:
        colors.setdefault(row.service, style.SERVICE_COLORS[len(colors) % len(style.SERVICE_COLORS)])
    total = max((row.end_ms for row in rows), default=1.0) or 1.0
    for y, row in enumerate(rows):
        color = style.ERROR_COLOR if row.error else colors[row.service]
        width = max(row.end_ms - row.start_ms, total * 0.003)
        ax.add_patch(Rectangle((row.start_ms, y - 0.32), width, 0.64, facecolor=color, lw=0,
                               hatch="//" if row.orphan else None, edgecolor="white" if row.orphan else None,
                               gid=f"span:{row.span.context.span_id:016x}"))
        duration = f"{row.end_ms - row.start_ms:.1f} ms"
        if row.end_ms > total * 0.8 and width > total * 0.25:  # no room after the bar: say it inside
            ax.text(row.start_ms + total * 0.01, y, duration, ha="left", va="center", fontsize=style.FONT_SMALL,
                    color="white", fontweight="bold")
        elif row.end_ms > total * 0.8:
            ax.text(row.start_ms - total * 0.01, y, duration, ha="right", va="center", fontsize=style.FONT_SMALL,
                    color="#495057")
        else:
            ax.text(row.end_ms + total * 0.01, y, duration, ha="left", va="center", fontsize=style.FONT_SMALL,
                    color="#495057")
    ax.set_xlim(0, total * 1.02)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)
    ax.set_yticks([])
    width_in = ax.get_position().width * ax.figure.get_size_inches()[0]
    for y, row in enumerate(rows):  # names left-aligned and indented under their parent, as in Jaeger
        x = -(NAME_IN - 0.15 - INDENT_IN * row.depth) / width_in
        ax.text(x, y, ("└ " if row.depth else "") + row.label, transform=ax.get_yaxis_transform(),
                ha="left", va="center", fontsize=style.FONT_SMALL + 0.5, clip_on=False,
                color=style.ERROR_COLOR if row.error else "#212529", gid=f"span-label:{row.span.context.span_id:016x}")
    ax.tick_params(axis="x", labelsize=style.FONT_SMALL)
    ax.set_xlabel("ms since the trace began (virtual time)", fontsize=style.FONT_SMALL)
    ax.grid(axis="x", color="#e9ecef", lw=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    handles = [Patch(color=c, label=s) for s, c in colors.items()]
    if any(row.error for row in rows):
        handles.append(Patch(color=style.ERROR_COLOR, label="error"))
    if any(row.orphan for row in rows):
        handles.append(Patch(facecolor="#adb5bd", hatch="//", edgecolor="white", label="orphan (parent missing)"))
    return handles


def trace_waterfall(world_or_spans: Any, trace_id: Any = None, *, highlight: Any = None) -> Figure:
    """The spans of one trace as a waterfall, as Jaeger draws it: who called whom, and for how long.

    One row per span, indented under its parent, the bar running from the span's
    start to its end in milliseconds from the start of the trace; the colour says
    which service it ran in (see the legend), a red bar is a span that ended in
    error, and a span whose parent is missing (never ended, or lost with a crashed
    node) is hatched and marked "(orphan)" at the top level. Which trace: the one
    with id ``trace_id`` (an int, or 32 hex digits); else the one started by the
    first operation of ``highlight`` (a Verdict, or Ops; needs the world); else the
    trace with the most spans.

    Example::

        world = sandbox.World(seed=7, tracing=True)
        ...
        world.run()
        fig = sandbox.viz.trace_waterfall(world)

    Raises:
        InvalidParameterError: ``trace_id`` is malformed or names no trace of the run.
    """
    spans = _spans_of(world_or_spans)
    world = world_or_spans if hasattr(world_or_spans, "history") else None
    chosen = pick_trace(spans, trace_id, world=world, highlight=highlight)
    rows = span_rows(spans, chosen) if chosen is not None else []
    plot_h = waterfall_height(rows)
    fig = Figure(figsize=(NAME_IN + BAR_IN + 0.4, plot_h + 1.5))
    from ._sequence import inches, title_block

    ax = fig.add_axes(inches(fig, NAME_IN, 0.6, BAR_IN, plot_h))
    handles = draw_waterfall(ax, rows)
    if handles:
        fig.legend(handles=handles, loc="upper right", ncols=min(len(handles), 5), fontsize=style.FONT_SMALL,
                   frameon=False, bbox_to_anchor=(1 - 0.2 / fig.get_size_inches()[0], 1 - 0.45 / (plot_h + 1.5)))
    if chosen is None:
        ax.text(0.5, 0, "no spans: build the world with tracing=True", ha="center", va="center",
                fontsize=style.FONT, color="#868e96")
        title = "Trace - no spans recorded"
    else:
        total = max((row.end_ms for row in rows), default=0.0)
        title = f"Trace {chosen:032x} - {len(rows)} spans, {total:.1f} ms"
    title_block(fig, title, [])
    return fig
