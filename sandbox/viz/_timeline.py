"""The fault timeline: when each fault was in force, and when nodes were down or paused."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..errors import InvalidParameterError
from . import _style as style
from ._run import Run, read_run

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..world import World
    from ._sequence import TimeAxis

_STATUS_COLOR = {"down": style.DOWN_COLOR, "paused": style.PAUSED_COLOR}


@dataclass(frozen=True)
class Row:
    """One row of the timeline: a fault window, or one node's time down / paused."""

    label: str
    gid: str
    pieces: tuple[tuple[float, float, str], ...]  # (from, to, colour)
    open_end: bool = False


def timeline_rows(run: Run, start: float, end: float) -> list[Row]:
    """The rows of the timeline over ``[start, end]``: faults by start, then nodes that went down or paused."""
    rows: list[Row] = []
    for w in run.faults:
        if w.start > end or w.until(run.end) < start:
            continue
        number = "" if w.index is None else f"#{w.index} "
        rows.append(Row(
            f"{number}{w.label}", f"fault:{w.index if w.index is not None else w.label}",
            ((max(w.start, start), min(w.until(run.end), end), style.fault_color(w.family)),),
            open_end=w.end is None,
        ))
    for node in run.order + sorted(set(run.life) - set(run.order)):
        pieces = tuple(
            (a, b, _STATUS_COLOR[status]) for a, b, status in run.segments(node, start, end) if status != "up"
        )
        if pieces:
            states = sorted({status for *_, status in run.segments(node, start, end) if status != "up"})
            rows.append(Row(f"{node} {' / '.join(states)}", f"node:{node}", pieces))
    return rows


def _legend_handles(run: Run, rows: list[Row]) -> list[Patch]:
    families = dict.fromkeys(w.family for w in run.faults)
    handles = [Patch(color=style.fault_color(f), label=f) for f in families]
    colors = {color for row in rows for *_, color in row.pieces}
    handles += [Patch(color=c, label=f"node {s}") for s, c in _STATUS_COLOR.items() if c in colors]
    return handles


def fault_timeline(world: World, *, start: float | None = None, end: float | None = None) -> Figure:
    """A timeline of the run's faults: one row per fault window, bars over virtual time.

    Each fault a fault injector started (a ``fault.start`` entry in the log, until
    its ``fault.end``; a fault with no end lasted to the end of the run, drawn with
    an arrow) and each partition made directly with ``world.network.partition`` (until
    ``heal``) is a bar, labelled at the left and coloured by family (NetworkChaos,
    PodChaos, TimeChaos...). Below them, one row per node that crashed (dark: down)
    or was paused (amber). Read it next to the history: an operation that failed
    inside a bar had that fault to deal with.

    Example::

        world.run(until=10)
        fig = sandbox.viz.fault_timeline(world)
        sandbox.viz.save(fig, "faults.svg")

    Raises:
        InvalidParameterError: a bad window (``end`` before ``start``, a negative time).
    """
    from .._checks import seconds

    run = read_run(world)
    start = 0.0 if start is None else seconds("start", start)
    end = max(run.end, start + 1.0) if end is None and run.end <= start else end
    end = run.end if end is None else seconds("end", end)
    if end <= start:
        raise InvalidParameterError(f"end={end!r} is not after start={start!r}: give a window with start < end")
    rows = timeline_rows(run, start, end)
    labels = [textwrap.fill(row.label, 42) for row in rows]
    heights = [0.34 + 0.16 * label.count("\n") for label in labels]
    plot_h = max(sum(heights), 0.8)
    fig = Figure(figsize=(11.0, plot_h + 1.45))
    from ._sequence import inches, title_block

    ax = fig.add_axes(inches(fig, 3.3, 0.55, 7.4, plot_h))
    y = 0.0
    ticks = []
    for row, h in zip(rows, heights):
        middle = y + h / 2
        ticks.append(middle)
        for a, b, color in row.pieces:
            ax.add_patch(Rectangle((a, middle - 0.12), max(b - a, (end - start) * 0.002), 0.24, color=color,
                                   gid=row.gid, lw=0))
        if row.open_end:
            ax.plot([end], [middle], marker=">", color=row.pieces[-1][2], ms=7, clip_on=False)
        y += h
    ax.set_xlim(start, end)
    ax.set_ylim(max(y, 0.8), 0)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=style.FONT_SMALL + 0.5)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("virtual time (s)", fontsize=style.FONT_SMALL + 0.5)
    ax.tick_params(axis="x", labelsize=style.FONT_SMALL)
    ax.grid(axis="x", color="#e9ecef", lw=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if not rows:
        ax.text((start + end) / 2, 0.4, "no faults, crashes or pauses in this run", ha="center", va="center",
                fontsize=style.FONT, color="#868e96")
    handles = _legend_handles(run, rows)
    if handles:
        fig.legend(handles=handles, loc="upper right", ncols=min(len(handles), 4), fontsize=style.FONT_SMALL,
                   frameon=False, bbox_to_anchor=(1 - 0.25 / 11.0, 1 - 0.1 / (plot_h + 1.45)))
    title_block(fig, f"Faults - seed {world.seed}, t = {start:.3f} to {end:.3f} s", [])
    return fig


def draw_fault_column(ax: Axes, run: Run, axis: TimeAxis) -> None:
    """The timeline turned upright, on the sequence diagram's time axis: one column per row."""
    rows = timeline_rows(run, axis.start, axis.end)
    ax.set_xlim(-0.35, max(len(rows), 1) - 0.35)
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color("#dee2e6")
    ax.tick_params(axis="y", left=False, labelleft=False)
    if not rows:
        ax.text(0, axis.height / 2, "no faults", rotation=90, ha="center", va="center", color="#868e96",
                fontsize=style.FONT_SMALL)
    for x, row in enumerate(rows):
        for a, b, color in row.pieces:
            y0, y1 = axis(a), axis(b)
            ax.add_patch(Rectangle((x - 0.2, y0), 0.4, max(y1 - y0, 0.3), color=color, lw=0, gid=row.gid))
        first = axis(row.pieces[0][0])
        ax.text(x + 0.26, first, textwrap.shorten(row.label, 60), rotation=270, rotation_mode="anchor",
                ha="left", va="bottom", fontsize=style.FONT_SMALL, color=row.pieces[0][2], fontweight="bold",
                gid=f"column-label:{row.gid}")
    ax.set_title("faults", fontsize=style.FONT_SMALL, color="#495057", loc="left")
