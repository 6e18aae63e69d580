"""The message sequence diagram: one lifeline per node, virtual time flowing down."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from ..errors import InvalidParameterError
from ..history import Op
from . import _style as style
from ._highlight import Highlight, resolve_highlight
from ._run import FaultWindow, Run, WireMessage, node_order, read_run

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..world import World

_EPOCH_SUFFIX = re.compile(r"#\d+$")
LANE_IN = 1.2  # inches between lifelines, at most
MIN_LANE_IN = 0.75  # ... and at least, when a diagram is narrowed to fit a notebook
#: The width a notebook shows a picture at without scaling it down (JupyterLab's output area, about 940 px, at the
#: DPI pictures are written with): a diagram narrows its lanes to fit it, so its text shows at its own size.
FIT_IN = 8.5
#: More lifelines than this, and a diagram with a highlighted story shows the story's nodes only.
STORY_LANES = 6
#: A highlighted story's window keeps at most this many messages of context before it and after it: under load
#: the margin around a story holds dozens of unrelated requests, which would bury it at the foot of a long picture.
CONTEXT_MESSAGES = 4
UNIT_IN = 0.15  # inches per unit of the (shortened) time axis
MAX_PLOT_IN = 60.0
LEFT_IN, TOP_IN, BOTTOM_IN = 1.0, 1.2, 0.8
FAULT_LABELS_IN = 2.5
_ROLE_FILL = {"client": "#e7f5ff", "service": "#f8f9fa", "database": "#fff4e6", "broker": "#f3f0ff"}
_LIFE_TEXT = {"node.crash": "crashed", "node.restart": "restarted", "node.pause": "paused", "node.resume": "resumed"}
_LIFE_COLOR = {"node.crash": style.DOWN_COLOR, "node.restart": style.OP_COLORS["ok"],
               "node.pause": style.PAUSED_COLOR, "node.resume": style.OP_COLORS["ok"]}
_QUIET = ("broker.poll", "broker.records", "broker.commit", "broker.commit_ack", "db.reply")


class TimeAxis:
    """Virtual time to a vertical position, top to bottom, with idle stretches shortened.

    Between two consecutive moments at which something happens, the axis advances
    by ``MIN_STEP + log(1 + gap / TAU)``: a burst of messages a microsecond apart
    still gets room to read, and a second of idle time takes about as much room as
    ten one-millisecond hops, not a thousand. Order is kept, so an arrow always
    points down from its send to its delivery, as in Lamport's diagrams.
    """

    MIN_STEP = 0.45
    TAU = 1e-3

    def __init__(self, times: Iterable[float]) -> None:
        knots: list[float] = []
        for t in sorted(times):
            if not knots or t - knots[-1] > 1e-9:
                knots.append(t)
        if len(knots) == 1:
            knots.append(knots[0] + self.TAU)
        ys = [0.0]
        for a, b in pairwise(knots):
            ys.append(ys[-1] + self.MIN_STEP + math.log1p((b - a) / self.TAU))
        self.knots = np.array(knots)
        self.ys = np.array(ys)

    def __call__(self, t: float) -> float:
        return float(np.interp(t, self.knots, self.ys))

    @property
    def start(self) -> float:
        return float(self.knots[0])

    @property
    def end(self) -> float:
        return float(self.knots[-1])

    @property
    def height(self) -> float:
        return float(self.ys[-1])

    def ticks(self, spacing: float) -> list[tuple[float, float]]:
        """``(y, t)`` at moments at least ``spacing`` units apart, for tick labels."""
        out: list[tuple[float, float]] = []
        for y, t in zip(self.ys, self.knots):
            if not out or y - out[-1][0] >= spacing:
                out.append((float(y), float(t)))
        return out

    def gaps(self, longer_than: float) -> list[tuple[float, float]]:
        """``(t_from, t_to)`` of the idle stretches longer than ``longer_than`` seconds."""
        return [(float(a), float(b)) for a, b in pairwise(self.knots) if b - a > longer_than]


@dataclass
class SequenceScene:
    """Everything a sequence diagram shows, chosen and placed before drawing."""

    run: Run
    lanes: dict[str, int]
    messages: list[tuple[int, WireMessage]]
    pairs: list[tuple[Op, Op | None]]
    faults: list[FaultWindow]
    life: list[tuple[float, str, str]]
    highlight: Highlight
    axis: TimeAxis
    start: float
    end: float
    notes: list[str] = field(default_factory=list)
    #: Inches between lifelines (``fit``).
    lane_in: float = LANE_IN
    #: Callers giving up (``Run.timeouts``) inside the window, on a shown lifeline: (t, node, seconds).
    timeouts: list[tuple[float, str, float]] = field(default_factory=list)

    @property
    def unit_in(self) -> float:
        return min(UNIT_IN, MAX_PLOT_IN / max(self.axis.height + 1.5, 1.0))

    def plot_size(self) -> tuple[float, float]:
        """Width and height in inches of the diagram's axes."""
        return (max(len(self.lanes), 2) - 1 + 1.55) * self.lane_in, (self.axis.height + 1.5) * self.unit_in

    def fit(self, around_in: float) -> None:
        """Narrow the lanes (down to ``MIN_LANE_IN``) so that the diagram and ``around_in`` inches of margins and
        columns around it fit in ``FIT_IN``: a notebook then shows it at its own size, text readable."""
        lanes = max(len(self.lanes), 2) - 1 + 1.55
        self.lane_in = max(MIN_LANE_IN, min(LANE_IN, (FIT_IN - around_in) / lanes))

    def title(self) -> str:
        seed = self.run.world.seed
        return f"Messages between nodes - seed {seed}, t = {self.start:.4f} to {self.end:.4f} s"


def sequence_scene(
    world: World,
    *,
    start: float | None = None,
    end: float | None = None,
    nodes: Iterable[str] | None = None,
    highlight: Any = None,
    max_messages: int = 400,
    idle_polls: bool = False,
) -> SequenceScene:
    """Choose the window, the lifelines and the messages of a sequence diagram (see ``sequence_diagram``)."""
    from .._checks import seconds

    if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
        raise InvalidParameterError(f"max_messages={max_messages!r}: use a whole number >= 1")
    run = read_run(world)
    marked = resolve_highlight(run, highlight)
    span = marked.span(run.end)
    auto_window = start is None and end is None
    if span is not None and auto_window:
        margin = max(0.002, 0.03 * (span[1] - span[0]))
        start, end = max(0.0, span[0] - margin), min(run.end, span[1] + margin)
    start = 0.0 if start is None else seconds("start", start)
    end = run.end if end is None else seconds("end", end)
    if end < start:
        raise InvalidParameterError(f"end={end!r} is before start={start!r}: give a window with start <= end")
    notes: list[str] = []

    def in_window() -> list[tuple[int, Any]]:
        return [(i, m) for i, m in enumerate(run.messages)
                if start <= m.sent <= end and (idle_polls or m.msg_id not in run.idle_polls or i in marked.positions)]

    chosen = in_window()
    if span is not None and auto_window:  # the story, with a few messages of context either side
        before = [m.sent for _, m in chosen if m.sent < span[0]]
        after = [m.sent for _, m in chosen if m.sent > span[1]]
        if len(before) > CONTEXT_MESSAGES:
            start = before[-CONTEXT_MESSAGES]
        if len(after) > CONTEXT_MESSAGES:
            end = after[CONTEXT_MESSAGES - 1]
        dropped = max(0, len(before) - CONTEXT_MESSAGES) + max(0, len(after) - CONTEXT_MESSAGES)
        if dropped:
            notes.append(f"{dropped:,} messages around the story not shown")
        chosen = in_window()
    idle = sum(1 for m in run.messages if start <= m.sent <= end and m.msg_id in run.idle_polls) - sum(
        1 for i, m in chosen if m.msg_id in run.idle_polls
    )
    lanes_given = nodes is not None
    order = node_order(world, nodes)
    if lanes_given:
        chosen = [(i, m) for i, m in chosen if m.src in order and m.dst in order]
    if len(chosen) > max_messages:
        notes.append(f"first {max_messages:,} of {len(chosen):,} messages")
        chosen = chosen[:max_messages]
        end = chosen[-1][1].sent
    if idle:
        notes.append(f"{idle:,} idle polls hidden")
    if marked.pairs:
        said = [f"{i.f} by {i.process} ({'open' if d is None else d.type})" for i, d in marked.pairs[:3]]
        more = f" and {len(marked.pairs) - 3} more" if len(marked.pairs) > 3 else ""
        notes.insert(0, "highlighted: " + ", ".join(said) + more)
    pairs = [
        (invoke, done) for invoke, done in world.history.pairs()
        if invoke.time <= end and (done is None or done.time >= start)
        and _EPOCH_SUFFIX.sub("", invoke.process) in order
    ]
    faults = [w for w in run.faults if w.start <= end and w.until(run.end) >= start]
    life = [
        (t, what, node) for node, events in run.life.items() if node in order
        for t, what in events if start <= t <= end
    ]
    if not lanes_given:
        busy = {m.src for _, m in chosen} | {m.dst for _, m in chosen} | {node for _, _, node in life}
        busy |= {_EPOCH_SUFFIX.sub("", invoke.process) for invoke, _ in pairs}
        busy |= {n for w in faults for n in (*w.nodes, *w.peers)}
        shown = [n for n in order if n in busy] or order
        if len(shown) < len(order):
            hidden = len(order) - len(shown)
            notes.append(f"{hidden} quiet node{'s' if hidden > 1 else ''} not shown")
        # With a highlighted story, its own nodes only: the rest of the traffic is muted context that would
        # spread the picture wider than a notebook shows it.
        story = {m.src for i, m in chosen if i in marked.positions} | {m.dst for i, m in chosen if i in marked.positions}
        story |= {_EPOCH_SUFFIX.sub("", invoke.process) for invoke, _ in marked.pairs}
        if marked and story and len(shown) > STORY_LANES:
            outside = [n for n in shown if n not in story]
            shown = [n for n in shown if n in story]
            notes.append(f"{len(outside)} node{'s' if len(outside) > 1 else ''} outside the highlighted story not "
                         f"shown ({', '.join(outside[:4])}{', ...' if len(outside) > 4 else ''})")
            chosen = [(i, m) for i, m in chosen if m.src in shown and m.dst in shown]
            life = [(t, what, node) for t, what, node in life if node in shown]
            pairs = [(invoke, done) for invoke, done in pairs if _EPOCH_SUFFIX.sub("", invoke.process) in shown]
        order = shown
    times = [start, end] + [t for _, m in chosen for t in (m.sent, m.ended) if t is not None]
    times += [t for invoke, done in pairs for t in (invoke.time, done.time if done else end) if start <= t <= end]
    times += [t for t, _, _ in life] + [t for t in marked.times if start <= t <= end]
    times += [t for w in faults for t in (w.start, w.until(run.end)) if start <= t <= end]
    gave_up = [(t, node, secs) for t, node, secs in run.timeouts if start <= t <= end and node in order]
    times += [t for t, _, _ in gave_up]
    return SequenceScene(
        run, {name: x for x, name in enumerate(order)}, chosen, pairs, faults, life, marked, TimeAxis(times),
        start, end, notes, timeouts=gave_up,
    )


class _Placer:
    """Keeps labels from overlapping: each one claims a box (in inches) or is left out."""

    def __init__(self, lane_in: float, unit_in: float) -> None:
        self.lane_in, self.unit_in = lane_in, unit_in
        self.boxes: list[tuple[float, float, float, float]] = []

    def box(self, x: float, y: float, text: str, size: float, ha: str) -> tuple[float, float, float, float]:
        width = max(len(line) for line in text.split("\n")) * size * 0.56 / 72 + 0.06
        height = (text.count("\n") + 1) * size * 1.3 / 72 + 0.03
        cx, cy = x * self.lane_in, y * self.unit_in
        x0 = {"left": cx, "right": cx - width}.get(ha, cx - width / 2)
        return (x0, x0 + width, cy - height / 2, cy + height / 2)

    def claim(self, x: float, y: float, text: str, size: float, ha: str = "center", force: bool = False) -> bool:
        box = self.box(x, y, text, size, ha)
        if not force and any(b[0] < box[1] and box[0] < b[1] and b[2] < box[3] and box[2] < b[3] for b in self.boxes):
            return False
        self.boxes.append(box)
        return True


def draw_sequence(ax: Axes, scene: SequenceScene, *, fault_labels: bool = True) -> None:
    """Draw ``scene`` on ``ax``: lifelines, faults, client operations, messages, labels."""
    run, lanes, T = scene.run, scene.lanes, scene.axis
    marked = scene.highlight
    n = max(len(lanes), 1)
    top, bottom = -0.9, T.height + 0.6
    right = n - 1 + 0.55
    ax.set_xlim(-1.0, right)
    ax.set_ylim(bottom, top)
    placer = _Placer(scene.lane_in, scene.unit_in)

    # faults, shaded behind everything
    label_y = -math.inf
    for w in scene.faults:
        color = style.fault_color(w.family)
        y0, y1 = T(max(w.start, T.start)), T(min(w.until(run.end), T.end))
        y1 = max(y1, y0 + 0.3)
        ax.axhspan(y0, y1, color=color, alpha=0.06, lw=0, zorder=0)
        involved = [lanes[x] for x in (*w.nodes, *w.peers) if x in lanes]
        for x in involved:
            ax.add_artist(Rectangle((x - 0.28, y0), 0.56, y1 - y0, color=color, alpha=0.16, lw=0, zorder=0,
                                   gid=f"fault-shade:{w.label}"))
        if fault_labels:
            number = "" if w.index is None else f"#{w.index} "
            text = textwrap.fill(f"{number}{w.label}", 30)
            y = max(y0, label_y)
            label_y = y + (text.count("\n") + 1.6) * style.FONT_SMALL * 1.3 / 72 / scene.unit_in
            ax.text(right + 0.05, y, text, color=color, fontsize=style.FONT_SMALL, va="top", ha="left",
                    clip_on=False, fontweight="bold")

    # lifelines, by state
    for name, x in lanes.items():
        for a, b, status in run.segments(name, T.start, T.end):
            ya, yb = T(a), T(b)
            if a <= T.start:
                ya = top + 0.2
            if b >= T.end:
                yb = bottom
            if status == "up":
                ax.plot([x, x], [ya, yb], color=style.UP_COLOR, lw=1.0, zorder=1)
            elif status == "down":
                ax.plot([x, x], [ya, yb], color=style.DOWN_COLOR, lw=1.0, ls=(0, (1.5, 4)), zorder=1,
                        gid=f"down:{name}")
            else:
                ax.plot([x, x], [ya, yb], color=style.PAUSED_COLOR, lw=2.4, ls=(0, (1, 1.5)), zorder=1,
                        gid=f"paused:{name}")
    for t, what, node in scene.life:
        x, y = lanes[node], T(t)
        ax.plot([x - 0.14, x + 0.14], [y, y], color=_LIFE_COLOR[what], lw=3, zorder=4, solid_capstyle="butt")
        placer.claim(x + 0.18, y, _LIFE_TEXT[what], style.FONT_SMALL, "left", force=True)
        ax.text(x + 0.18, y, _LIFE_TEXT[what], color=_LIFE_COLOR[what], fontsize=style.FONT_SMALL, ha="left",
                va="center", fontweight="bold", zorder=6, gid=f"life:{node}:{what}")

    # callers giving up: an orange tick on the caller's lifeline (the reply may still come, too late)
    for t, node, secs in scene.timeouts:
        x, y = lanes[node], T(t)
        ax.plot([x - 0.12, x + 0.12], [y, y], color=style.OP_COLORS["info"], lw=2.5, zorder=4,
                solid_capstyle="butt", gid=f"timeout:{node}:{t:.6f}")
        text = f"timeout ({secs:g} s)" if secs else "timeout"
        if placer.claim(x + 0.16, y, text, style.FONT_SMALL, "left"):
            ax.text(x + 0.16, y, text, color=style.OP_COLORS["info"], fontsize=style.FONT_SMALL, ha="left",
                    va="center", fontweight="bold", zorder=6)

    # client operations, as activation bars
    marked_ops = {invoke.index for invoke, _ in marked.pairs}
    for invoke, done in scene.pairs:
        x = lanes[_EPOCH_SUFFIX.sub("", invoke.process)]
        outcome = "open" if done is None else done.type
        color = style.OP_COLORS.get(outcome, style.OP_COLORS["open"])
        y0 = T(max(invoke.time, T.start))
        y1 = T(T.end if done is None else min(done.time, T.end))
        is_marked = invoke.index in marked_ops
        faded = bool(marked) and not is_marked
        ax.add_artist(Rectangle(
            (x - 0.06, y0), 0.12, max(y1 - y0, 0.2), facecolor=color, alpha=0.35 if faded else 0.9,
            edgecolor=style.HIGHLIGHT_COLOR if is_marked else "none", lw=2 if is_marked else 0, zorder=2,
            gid=f"op:{invoke.index}",
        ))
        text = f"{invoke.f} {'...' if done is None else done.type}"
        if placer.claim(x - 0.1, y0, text, style.FONT_SMALL, "right", force=is_marked):
            ax.text(x - 0.1, y0, text, color=color, fontsize=style.FONT_SMALL, ha="right", va="top",
                    fontweight="bold" if is_marked else "normal", alpha=0.5 if faded else 1.0, zorder=6,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})

    # messages: arrows now, labels in order of importance afterwards
    labels: list[tuple[int, float, float, str, str, bool]] = []
    for i, m in scene.messages:
        is_marked = i in marked.positions
        quiet = m.kind in _QUIET and not is_marked
        if is_marked:
            color, lw = style.HIGHLIGHT_COLOR, 1.9
        elif marked:
            color, lw = style.MUTED_COLOR, 0.8
        else:
            color, lw = style.message_color(m.kind), 0.7 if quiet else 1.1
        xs, xd = lanes[m.src], lanes[m.dst]
        ys = T(m.sent)
        if not m.left:
            xe, ye = xs + (xd - xs) * 0.45, ys + 0.9
        elif m.fate == "dropped":
            xe, ye = xs + (xd - xs) * 0.8, T(m.ended if m.ended is not None else T.end)
        elif m.fate == "in flight":
            xe, ye = xs + (xd - xs) * 0.9, bottom - 0.2
        else:
            xe, ye = xd, T(m.ended if m.ended is not None else T.end)
        linestyle = (0, (4, 2)) if m.duplicate else ((0, (1, 1.5)) if m.fate == "in flight" else "solid")
        arrow = FancyArrowPatch(
            (xs, ys), (xe, ye), arrowstyle="-" if m.fate == "dropped" else "-|>", mutation_scale=9 if is_marked else 7,
            color=color, lw=lw, linestyle=linestyle, shrinkA=0, shrinkB=0, zorder=5 if is_marked else 3,
            alpha=0.6 if quiet and not marked else 1.0,
        )
        arrow.set_gid(f"msg:{m.msg_id}:{m.kind}{':dup' if m.duplicate else ''}")
        ax.add_artist(arrow)
        if m.fate == "dropped":
            ax.plot([xe], [ye], marker="x", color=style.DROP_COLOR, ms=8, mew=2.2, zorder=7)
            reason = f"dropped: {m.reason}"
            placer.claim(xe, ye + 0.9, reason, style.FONT_SMALL, force=True)
            ax.text(xe, ye + 0.45, reason, color=style.DROP_COLOR, fontsize=style.FONT_SMALL, ha="center", va="top",
                    zorder=8, gid=f"drop:{m.msg_id}:{m.kind}",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})
        text = ("dup " if m.duplicate else "") + m.label
        if m.fate == "dropped":  # it never reached its lifeline: say whose it was
            text += f" \u2192 {m.dst}"
        if m.fate == "in flight":
            text += " (never arrived)"
        text = text.strip()
        worth_saying = m.kind not in _QUIET or (m.kind == "broker.records" and m.label != "no records")
        if text and (is_marked or worth_saying):
            rank = 0 if is_marked else (1 if m.duplicate or m.fate != "delivered" else (2 if m.kind == "http" else 3))
            if marked and not is_marked:
                rank = 5
            labels.append((rank, (xs + xe) / 2, (ys + ye) / 2, text, color if not marked or is_marked else "#868e96",
                           is_marked))
    for rank, x, y, text, color, is_marked in sorted(labels, key=lambda item: item[0]):
        if placer.claim(x, y, text, style.FONT_SMALL):
            ax.text(x, y, text, color=color, fontsize=style.FONT_SMALL, ha="center", va="center", zorder=6,
                    fontweight="bold" if is_marked else "normal",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})

    for t in scene.highlight.times:
        if T.start <= t <= T.end:
            ax.axhline(T(t), color=style.HIGHLIGHT_COLOR, lw=1, ls=(0, (6, 3)), zorder=2)

    # idle stretches the axis shortened, said in the margin
    for a, b in T.gaps(0.05):
        y = (T(a) + T(b)) / 2
        ax.text(-0.97, y, f"{b - a:.2f} s\nlater", color="#868e96", fontsize=6.5, ha="left", va="center",
                style="italic", zorder=1)

    _axes_frame(ax, scene)


def _axes_frame(ax: Axes, scene: SequenceScene) -> None:
    T = scene.axis
    world = scene.run.world
    names = list(scene.lanes)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=style.FONT)
    ax.tick_params(axis="x", length=0, top=True, labeltop=True, bottom=False,
                   labelbottom=scene.plot_size()[1] > 10, pad=6)
    stagger = _staggered(names, scene.lane_in)
    for n, (tick, name) in enumerate(zip(ax.xaxis.get_major_ticks(), names)):
        if stagger and n % 2:
            tick.set_pad(24)
        role = getattr(world.nodes.get(name), "kind", "")
        for label in (tick.label1, tick.label2):
            label.set_bbox({"boxstyle": "round,pad=0.35", "fc": _ROLE_FILL.get(role, "white"), "ec": "#adb5bd",
                            "lw": 0.8})
    ticks = T.ticks(spacing=0.45 / scene.unit_in)
    ax.set_yticks([])  # time labels as plain texts: a hundred matplotlib ticks cost a second
    for y, t in ticks:
        ax.text(-0.008, y, f"{t:.4f}", transform=ax.get_yaxis_transform(), ha="right", va="center",
                fontsize=style.FONT_SMALL, color="#495057", gid="time-label")
    ax.set_ylabel("virtual time (s), flowing down - idle stretches shortened", fontsize=style.FONT_SMALL,
                  color="#495057")
    ax.yaxis.set_label_coords(-0.72 / scene.plot_size()[0], 0.5)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color("#adb5bd")


def _staggered(names: list[str], lane_in: float = LANE_IN) -> bool:
    """True if the node names are too long to sit side by side between lifelines (so every other one is raised)."""
    longest = max((len(n) for n in names), default=1)
    return longest * style.FONT * 0.6 / 72 > lane_in - 0.2


def figure_for_sequence(scene: SequenceScene, *, extra_right: float = 0.0) -> tuple[Figure, Axes]:
    """A figure sized for ``scene``'s diagram (its lanes narrowed to fit a notebook if need be), and its axes."""
    right = FAULT_LABELS_IN if scene.faults else 0.4
    scene.fit(LEFT_IN + right + extra_right)
    width, height = scene.plot_size()
    fig = Figure(figsize=(LEFT_IN + width + right + extra_right, TOP_IN + height + BOTTOM_IN))
    ax = fig.add_axes(inches(fig, LEFT_IN, BOTTOM_IN, width, height))
    return fig, ax


def inches(fig: Figure, left: float, bottom: float, width: float, height: float) -> tuple[float, ...]:
    """An axes rectangle in figure fractions, from inches."""
    fw, fh = fig.get_size_inches()
    return (left / fw, bottom / fh, width / fw, height / fh)


#: DejaVu Sans's mean character width, in ems (measured over the labels a diagram writes).
_CHAR_WIDTH = 0.6


def title_block(fig: Figure, title: str, notes: list[str]) -> None:
    """The figure's title and its notes (what was left out), at the top left."""
    height = fig.get_size_inches()[1]
    fig.text(0.12 / fig.get_size_inches()[0], 1 - 0.12 / height, title, fontsize=style.FONT_TITLE,
             fontweight="bold", va="top", ha="left")
    if notes:
        # One line across the figure, shortened at a word boundary: the full text is printed with the figure.
        fits = int((fig.get_size_inches()[0] - 0.24) * 72 / (style.FONT_SMALL * _CHAR_WIDTH))
        line = textwrap.shorten(" · ".join(notes), width=max(fits, 20), placeholder=" …")
        fig.text(0.12 / fig.get_size_inches()[0], 1 - 0.42 / height, line, fontsize=style.FONT_SMALL,
                 color="#495057", va="top", ha="left")


def sequence_diagram(
    world: World,
    *,
    start: float | None = None,
    end: float | None = None,
    nodes: Iterable[str] | None = None,
    highlight: Any = None,
    max_messages: int = 400,
    idle_polls: bool = False,
) -> Figure:
    """A message sequence diagram of ``world``'s run: who sent what to whom, and when.

    One vertical lifeline per node (clients, service replicas, databases, then the
    broker; or the order of ``nodes``, where a service name means all its
    replicas), virtual time flowing down. Each message is an arrow from its sender
    at the moment it was sent to its receiver at the moment it arrived: an HTTP
    request says its method and path, a reply its status. A dropped message ends
    in a red X with the reason ("partition", "loss", "down"); a copy the network
    duplicated is dashed and says "dup". A client's operations are bars on its
    lifeline, green (ok), red (fail) or orange (info: it cannot tell); an orange
    tick says "timeout" where a caller gave up waiting for a reply (which may
    still come, too late). A node's lifeline is dashed while it is down and
    dotted orange while it is paused;
    faults and partitions are shaded behind, strongest on the nodes they touch.

    Time is shortened where nothing happens (the margin says how long each idle
    stretch was), so a burst of messages a millisecond apart is as readable as a
    timeout of a second. Consumers' idle polls of the broker are left out unless
    ``idle_polls=True``.

    ``highlight`` takes a checker's ``Verdict`` (its evidence), ``Op`` items from
    ``world.history``, or message ids: their operations and every message they
    caused are drawn bold in ``HIGHLIGHT_COLOR`` and the rest is muted, and the
    window closes in on them unless ``start`` / ``end`` say otherwise. Without a
    highlight the window is the whole run, up to ``max_messages`` messages (the
    title says when some were left out).

    Example::

        world = order_system.build_world(7, clients=2)
        order_system.run_to_completion(world)
        fig = sandbox.viz.sequence_diagram(world, highlight=verdict)
        sandbox.viz.save(fig, "counterexample.png")

    Raises:
        InvalidParameterError: a bad window, ``max_messages`` or highlight item.
        UnknownNameError: a name in ``nodes`` that is no node or service of the world.
    """
    scene = sequence_scene(world, start=start, end=end, nodes=nodes, highlight=highlight,
                           max_messages=max_messages, idle_polls=idle_polls)
    fig, ax = figure_for_sequence(scene)
    draw_sequence(ax, scene)
    title_block(fig, scene.title(), scene.notes)
    return fig
