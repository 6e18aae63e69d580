"""A Grafana-like dashboard of one service's metrics, with the run's fault windows shaded."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .._promql import Sample
from ..errors import ConfigError, UnknownNameError
from ..metrics import BREAKER_STATE, BREAKER_STATES, Series, sum_by
from . import _style as style
from ._run import FaultWindow, read_run

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..world import World

_STATUS_CLASSES = (("2xx", "#2b8a3e"), ("4xx", "#f08c00"), ("5xx", "#c92a2a"))
_OUTCOME_COLORS = {"timeout": "#c92a2a", "incomplete": "#e8590c"}
#: A panel's legend: at most this many entries a row, in a band this share of the curves' range high per row.
_LEGEND_COLUMNS = 3
_LEGEND_BAND = 0.24


def _total(vector: list[Any]) -> list[Any]:
    return sum_by(vector, ())


Curve = tuple[float, ...]


@dataclass(frozen=True)
class DashboardData:
    """What ``dashboard`` draws, as numbers: every curve sampled at ``times`` (NaN where it had no value), so
    that a check reads exactly what the learner sees.

    Example (lab 06's question: was the outage contained?)::

        d = sandbox.viz.dashboard_data(world, "checkout")
        max(d.between(d.latency["p99"], 3.0, 6.0))       # the worst p99 while inventory was down
        d.between(d.error_share, 8.0, d.times[-1])        # 5xx share (%) after it came back

    Fields: ``requests`` by status class ("2xx", "4xx", "5xx": requests per second), ``error_share`` (% of
    answers that were 5xx), ``latency`` ("p50", "p99": seconds), ``in_flight`` by replica, ``calls`` by
    (callee, outcome) in calls per second, ``breaker`` by (dependency, replica) (0 closed, 1 open, 2
    half-open), and the run's fault windows.
    """

    service: str
    window: float
    times: Curve
    requests: dict[str, Curve]
    error_share: Curve
    latency: dict[str, Curve]
    in_flight: dict[str, Curve]
    calls: dict[tuple[str, str], Curve]
    breaker: dict[tuple[str, str], Curve]
    faults: tuple[FaultWindow, ...]

    def between(self, curve: Curve, start: float, end: float) -> list[float]:
        """The values of ``curve`` (one of this object's) at the times from ``start`` to ``end``, NaN left out."""
        return [v for t, v in zip(self.times, curve) if start <= t <= end and not math.isnan(v)]


def dashboard_data(world: World, service: str, *, window: float | None = None, start: float | None = None,
                   end: float | None = None) -> DashboardData:
    """The numbers behind ``dashboard(world, service)`` (see ``DashboardData``; the same arguments).

    Raises:
        ConfigError: the world records no metrics (build it with ``World(seed, metrics=True)``).
        UnknownNameError: no service ``service``. InvalidParameterError: a bad window, start or end.
    """
    m = world.metrics
    if m is None:
        raise ConfigError(
            f"this world records no metrics, so there is no dashboard to draw: build it with "
            f"sandbox.World(seed={world.seed}, metrics=True)"
        )
    if service not in world.services:
        raise UnknownNameError(f"no service {service!r} in this world; services: {sorted(world.services)}")
    window = 4 * m.interval if window is None else window

    def over(query: Any) -> list[Series]:
        return m.range(query, start=start, end=end)

    def one(series: list[Series]) -> Curve:
        return series[0].values if series else (math.nan,) * len(times)

    requests = "http_server_requests_total"
    times = over(lambda at: [Sample("", (), 0.0)])[0].times
    by_class = {
        label: one(over(lambda at, c=label: _total(m.rate(requests, window, at, service=service,
                                                            status=re.compile(c[0] + "..")))))
        for label, _color in _STATUS_CLASSES
    }
    total = one(over(lambda at: _total(m.rate(requests, window, at, service=service))))
    errors = by_class["5xx"]
    share = tuple(math.nan if math.isnan(t) else 100 * e / t if t and not math.isnan(e) else 0.0
                  for e, t in zip(errors, total))  # no 5xx series yet: none was answered
    latency = {
        f"p{round(q * 100)}": one(over(lambda at, q=q: m.quantile(q, "http_server_request_duration_seconds",
                                                                  window, at, service=service)))
        for q in (0.5, 0.99)
    }
    in_flight = over(lambda at: sum_by(m.select("http_server_requests_in_flight", at, service=service),
                                       ("replica",)))
    calls = over(lambda at: sum_by(m.rate("http_client_requests_total", window, at, service=service),
                                   ("callee", "outcome")))
    breaker = over(lambda at: sum_by(m.select(BREAKER_STATE, at, service=service), ("dependency", "replica"))) \
        if BREAKER_STATE in m.names() else []
    return DashboardData(
        service=service,
        window=window,
        times=times,
        requests=by_class,
        error_share=share,
        latency=latency,
        in_flight={s.labels["replica"]: s.values for s in in_flight},
        calls={(s.labels["callee"], s.labels["outcome"]): s.values for s in calls},
        breaker={(s.labels["dependency"], s.labels["replica"]): s.values for s in breaker},
        faults=tuple(read_run(world).faults),
    )


def dashboard(world: World, service: str, *, window: float | None = None, start: float | None = None,
              end: float | None = None) -> Figure:
    """Six panels of ``service``'s metrics over virtual time, as a Grafana dashboard shows them, with the
    run's fault windows shaded behind every panel.

    ``requests / s`` by status class, ``error rate`` (the share of 5xx answers), ``latency`` p50 and p99,
    ``in flight`` per replica, ``calls made`` by callee and outcome (timeouts show a retry storm), and the
    ``circuit breaker`` state per dependency (the ``circuit_breaker_state`` gauge the service sets, if any).
    Rates are taken over ``window`` virtual seconds (four scrape intervals unless told, as Grafana's
    ``$__rate_interval``); ``dashboard_data`` gives the same curves as numbers.

    Example::

        world = sandbox.World(seed=7, metrics=True)
        ...
        world.run()
        sandbox.viz.save(sandbox.viz.dashboard(world, "checkout"), "checkout.png")

    Raises:
        ConfigError: the world records no metrics (build it with ``World(seed, metrics=True)``).
        UnknownNameError: no service ``service``. InvalidParameterError: a bad window, start or end.
    """
    d = dashboard_data(world, service, window=window, start=start, end=end)
    m = world.metrics
    assert m is not None
    times = d.times
    fig = Figure(figsize=(8.6, 7.4))
    axes = fig.subplots(3, 2, sharex=True)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.07, hspace=0.42, wspace=0.22)
    last = max(times[-1], 1.0) if end is None else end
    first = times[0] if start is None else start
    families: dict[str, str] = {}
    for ax in axes.flat:
        for w in d.faults:
            a, b = max(w.start, first), min(w.until(world.now), last)
            if b > a:
                ax.axvspan(a, b, color=style.fault_color(w.family), alpha=0.13, lw=0, gid=f"fault:{w.label}")
                families[w.family] = style.fault_color(w.family)
        ax.set_xlim(first, last)
        ax.grid(color="#e9ecef", lw=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=style.FONT_SMALL)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

    def has(curve: Curve) -> bool:
        return any(not math.isnan(v) for v in curve)

    ax = axes[0, 0]
    for label, color in _STATUS_CLASSES:
        if has(d.requests[label]):
            ax.plot(times, d.requests[label], lw=1.5, color=color, label=label)
    _panel(ax, "requests / s by status", "req/s", any(has(c) for c in d.requests.values()))
    ax = axes[0, 1]
    ax.plot(times, d.error_share, color="#c92a2a", lw=1.6)  # one curve, named by its title: no legend
    ax.set_ylim(-2, 102)
    _panel(ax, "error rate (5xx / all answers)", "%", has(d.error_share))
    ax = axes[1, 0]
    for (label, curve), color in zip(d.latency.items(), ("#1864ab", "#c2255c")):
        ax.plot(times, curve, lw=1.5, color=color, label=label)
    _panel(ax, "latency (server side)", "seconds", any(has(c) for c in d.latency.values()))
    ax = axes[1, 1]
    for i, (replica, curve) in enumerate(d.in_flight.items()):
        ax.step(times, curve, where="post", lw=1.4, color=style.SERVICE_COLORS[i % 10], label=replica)
    _panel(ax, "in flight", "requests", bool(d.in_flight))
    ax = axes[2, 0]
    for i, ((callee, outcome), curve) in enumerate(d.calls.items()):
        color = _OUTCOME_COLORS.get(outcome, style.SERVICE_COLORS[i % 10])
        ax.plot(times, curve, lw=1.4, color=color, ls="--" if outcome in _OUTCOME_COLORS else "-",
                label=f"{callee} {outcome}")
    _panel(ax, "calls made, by callee and outcome", "calls/s", bool(d.calls))
    ax = axes[2, 1]
    for i, ((dependency, replica), curve) in enumerate(d.breaker.items()):
        ax.step(times, curve, where="post", lw=1.6, color=style.SERVICE_COLORS[i % 10],
                label=f"{dependency} {replica}")
    ax.set_yticks(list(BREAKER_STATES.values()), [s.replace("_", "-") for s in BREAKER_STATES])
    ax.set_ylim(-0.3, 2.3)
    _panel(ax, "circuit breaker", "", bool(d.breaker), empty=f"no {BREAKER_STATE} gauge: the service sets none")
    for ax in axes[2]:
        ax.set_xlabel("virtual time (s)", fontsize=style.FONT_SMALL + 0.5)
    fig.text(0.08, 0.975, f"{service} - seed {world.seed}", fontsize=style.FONT_TITLE, fontweight="bold", va="top")
    fig.text(0.08, 0.945, f"rates over {d.window:g} s, a scrape every {m.interval:g} s; shaded: fault windows",
             fontsize=style.FONT_SMALL, color="#495057", va="top")
    if families:
        fig.legend(handles=[Patch(color=c, alpha=0.35, label=f) for f, c in families.items()], loc="upper right",
                   ncols=min(len(families), 3), fontsize=style.FONT_SMALL, frameon=False,
                   bbox_to_anchor=(0.985, 0.985))
    return fig


def _panel(ax: Axes, title: str, unit: str, has_data: bool, *, empty: str = "no data") -> None:
    ax.set_title(title, fontsize=style.FONT, loc="left", color="#343a40")
    if unit:
        ax.set_ylabel(unit, fontsize=style.FONT_SMALL)
    if not has_data:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", fontsize=style.FONT_SMALL,
                color="#868e96")
    elif handles := ax.get_legend_handles_labels()[0]:
        # The legend in a band of its own above the curves, as Grafana keeps it off the graph: never over a line.
        rows = -(-len(handles) // _LEGEND_COLUMNS)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + (high - low) * _LEGEND_BAND * rows)
        ax.legend(fontsize=style.FONT_SMALL - 0.5, frameon=False, loc="upper right", ncols=min(len(handles),
                  _LEGEND_COLUMNS), borderaxespad=0.2, handlelength=1.6, columnspacing=1.0)
