"""A Grafana-like dashboard of one service's metrics, with the run's fault windows shaded."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..errors import ConfigError, UnknownNameError
from ..metrics import BREAKER_STATE, BREAKER_STATES, Series, sum_by
from . import _style as style
from ._run import read_run

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..world import World

_STATUS_CLASSES = (("2xx", "#2b8a3e"), ("4xx", "#f08c00"), ("5xx", "#c92a2a"))
_OUTCOME_COLORS = {"timeout": "#c92a2a", "incomplete": "#e8590c"}


def _total(vector: list[Any]) -> list[Any]:
    return sum_by(vector, ())


def dashboard(world: World, service: str, *, window: float | None = None, start: float | None = None,
              end: float | None = None) -> Figure:
    """Six panels of ``service``'s metrics over virtual time, as a Grafana dashboard shows them, with the
    run's fault windows shaded behind every panel.

    ``requests / s`` by status class, ``error rate`` (the share of 5xx answers), ``latency`` p50 and p99,
    ``in flight`` per replica, ``calls made`` by callee and outcome (timeouts show a retry storm), and the
    ``circuit breaker`` state per dependency (the ``circuit_breaker_state`` gauge the service sets, if any).
    Rates are taken over ``window`` virtual seconds (four scrape intervals unless told, as Grafana's
    ``$__rate_interval``).

    Example::

        world = sandbox.World(seed=7, metrics=True)
        ...
        world.run()
        sandbox.viz.save(sandbox.viz.dashboard(world, "checkout"), "checkout.png")

    Raises:
        ConfigError: the world records no metrics (build it with ``World(seed, metrics=True)``).
        UnknownNameError: no service ``service``. InvalidParameterError: a bad window, start or end.
    """
    metrics = world.metrics
    if metrics is None:
        raise ConfigError(
            f"this world records no metrics, so there is no dashboard to draw: build it with "
            f"sandbox.World(seed={world.seed}, metrics=True)"
        )
    if service not in world.services:
        raise UnknownNameError(f"no service {service!r} in this world; services: {sorted(world.services)}")
    window = 4 * metrics.interval if window is None else window
    span = {"start": start, "end": end}
    m = metrics

    def over(query: Any) -> list[Series]:
        return m.range(query, **span)

    requests = "http_server_requests_total"
    by_class = [
        (label, color, over(lambda at, c=label: _total(m.rate(requests, window, at, service=service,
                                                                  status=re.compile(c[0] + "..")))))
        for label, color in _STATUS_CLASSES
    ]
    all_rate = over(lambda at: _total(m.rate(requests, window, at, service=service)))
    errors = next(series for label, _c, series in by_class if label == "5xx")
    latency = [
        (f"p{round(q * 100)}", color, over(lambda at, q=q: m.quantile(q, "http_server_request_duration_seconds",
                                                                        window, at, service=service)))
        for q, color in ((0.5, "#1864ab"), (0.99, "#c2255c"))
    ]
    in_flight = over(lambda at: sum_by(m.select("http_server_requests_in_flight", at, service=service),
                                       ("replica",)))
    calls = over(lambda at: sum_by(m.rate("http_client_requests_total", window, at, service=service),
                                   ("callee", "outcome")))
    breaker = over(lambda at: sum_by(m.select(BREAKER_STATE, at, service=service), ("replica", "dependency"))) \
        if BREAKER_STATE in m.names() else []

    fig = Figure(figsize=(8.6, 7.4))
    axes = fig.subplots(3, 2, sharex=True)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.07, hspace=0.42, wspace=0.22)
    run = read_run(world)
    last = max(m.scrape_times[-1] if m.scrape_times else 0.0, 1.0) if end is None else end
    first = (m.scrape_times[0] if m.scrape_times else 0.0) if start is None else start
    families: dict[str, str] = {}
    for ax in axes.flat:
        for w in run.faults:
            a, b = max(w.start, first), min(w.until(run.end), last)
            if b > a:
                ax.axvspan(a, b, color=style.fault_color(w.family), alpha=0.13, lw=0, gid=f"fault:{w.label}")
                families[w.family] = style.fault_color(w.family)
        ax.set_xlim(first, last)
        ax.grid(color="#e9ecef", lw=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=style.FONT_SMALL)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

    ax = axes[0, 0]
    for label, color, series in by_class:
        _lines(ax, series, label, color)
    _panel(ax, "requests / s by status", "req/s", any(s for _l, _c, s in by_class))
    ax = axes[0, 1]
    if all_rate:
        total = all_rate[0]
        bad = errors[0].values if errors else (0.0,) * len(total.values)  # no 5xx series: none was answered
        share = [math.nan if math.isnan(t) else 100 * e / t if t and not math.isnan(e) else 0.0
                 for e, t in zip(bad, total.values)]
        ax.plot(total.times, share, color="#c92a2a", lw=1.6, label="5xx share")
        ax.set_ylim(-2, 102)
    _panel(ax, "error rate (5xx / all answers)", "%", bool(all_rate))
    ax = axes[1, 0]
    for label, color, series in latency:
        _lines(ax, series, label, color)
    _panel(ax, "latency (server side)", "seconds", any(s for _l, _c, s in latency))
    ax = axes[1, 1]
    for i, series in enumerate(in_flight):
        ax.step(series.times, series.values, where="post", lw=1.4, color=style.SERVICE_COLORS[i % 10],
                label=series.labels.get("replica", ""))
    _panel(ax, "in flight", "requests", bool(in_flight))
    ax = axes[2, 0]
    for i, series in enumerate(calls):
        labels = series.labels
        outcome = labels.get("outcome", "")
        color = _OUTCOME_COLORS.get(outcome, style.SERVICE_COLORS[i % 10])
        ax.plot(series.times, series.values, lw=1.4, color=color, ls="--" if outcome in _OUTCOME_COLORS else "-",
                label=f"{labels.get('callee', '')} {outcome}")
    _panel(ax, "calls made, by callee and outcome", "calls/s", bool(calls))
    ax = axes[2, 1]
    for i, series in enumerate(breaker):
        labels = series.labels
        ax.step(series.times, series.values, where="post", lw=1.6, color=style.SERVICE_COLORS[i % 10],
                label=f"{labels.get('dependency', '')} {labels.get('replica', '')}")
    ax.set_yticks(list(BREAKER_STATES.values()), [s.replace("_", "-") for s in BREAKER_STATES])
    ax.set_ylim(-0.3, 2.3)
    _panel(ax, "circuit breaker", "", bool(breaker),
           empty=f"no {BREAKER_STATE} gauge: the service sets none")
    for ax in axes[2]:
        ax.set_xlabel("virtual time (s)", fontsize=style.FONT_SMALL + 0.5)
    fig.text(0.08, 0.975, f"{service} - seed {world.seed}", fontsize=style.FONT_TITLE, fontweight="bold", va="top")
    fig.text(0.08, 0.945, f"rates over {window:g} s, a scrape every {m.interval:g} s; shaded: fault windows",
             fontsize=style.FONT_SMALL, color="#495057", va="top")
    if families:
        fig.legend(handles=[Patch(color=c, alpha=0.35, label=f) for f, c in families.items()], loc="upper right",
                   ncols=min(len(families), 3), fontsize=style.FONT_SMALL, frameon=False,
                   bbox_to_anchor=(0.985, 0.985))
    return fig


def _lines(ax: Axes, series: list[Series], label: str, color: str) -> None:
    for s in series:
        ax.plot(s.times, s.values, lw=1.5, color=color, label=label)


def _panel(ax: Axes, title: str, unit: str, has_data: bool, *, empty: str = "no data") -> None:
    ax.set_title(title, fontsize=style.FONT, loc="left", color="#343a40")
    if unit:
        ax.set_ylabel(unit, fontsize=style.FONT_SMALL)
    if not has_data:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", fontsize=style.FONT_SMALL,
                color="#868e96")
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=style.FONT_SMALL - 0.5, frameon=False, loc="best", ncols=2)
