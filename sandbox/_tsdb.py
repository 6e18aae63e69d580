"""The scraped series of a world and the queries on them: what a Prometheus server keeps and answers.

``Metrics`` (``sandbox.metrics``) scrapes; this keeps each series' samples (a time and a value; None
marks it stale, its target having failed a scrape, as Prometheus's staleness markers do) and answers
instant queries (``select``), range functions (``rate``, ``increase``, ``quantile``) and range queries
(``range``) with PromQL's rules (see ``sandbox._promql``).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

from . import _checks
from ._promql import (
    LabelSet,
    Sample,
    check_labels,
    extrapolated_rate,
    histogram_quantile,
    sum_by,
)
from .errors import InvalidParameterError, UnknownNameError

#: How far back an instant query looks for a series' last sample (Prometheus's ``lookback-delta``).
LOOKBACK = 300.0
#: Two virtual times this close are the same instant (a scrape on a range's edge is on it).
_EPS = 1e-9


@dataclass(frozen=True)
class Series:
    """One series over a range of query times (``Metrics.range``): its labels, times and values (NaN where it
    was absent)."""

    labelset: LabelSet
    times: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.labelset)


class _Stored:
    """One scraped series: its samples' times and values (None: stale, its target failed a scrape)."""

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[float | None] = []


_COUNTER_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


class Scraped:
    """The samples scraped so far, by series, and the queries on them (``Metrics`` is one)."""

    def __init__(self, interval: float) -> None:
        #: Virtual seconds between scrapes.
        self.interval = interval
        self._series: dict[tuple[str, LabelSet], _Stored] = {}
        self._by_name: dict[str, list[tuple[str, LabelSet]]] = {}
        self._kinds: dict[str, str] = {}  # sample name -> "counter" (rate works) or "gauge"
        self._target_keys: dict[str, dict[tuple[str, LabelSet], None]] = {}
        #: The virtual times of every scrape so far.
        self.scrape_times: list[float] = []

    def _ingest(self, at: float, target: str, families: Iterable[Metric], target_labels: LabelSet) -> None:
        for family in families:
            kind = "counter" if family.type in _COUNTER_SUFFIXES else "gauge"
            counted = _COUNTER_SUFFIXES.get(family.type, ())
            for suffix in counted or ("",):
                self._kinds.setdefault(family.name + suffix, kind)
            created = family.name + "_created"
            for s in family.samples:
                if s.name == created:
                    continue
                labels = s.labels
                if target_labels:
                    labels = relabel(labels, target_labels)
                key = (s.name, tuple(sorted(labels.items())))
                self._store(at, target, key, s.value, "counter" if s.name.endswith(counted) and counted else "gauge")

    def _store(self, at: float, target: str, key: tuple[str, LabelSet], value: float, kind: str) -> None:
        stored = self._series.get(key)
        if stored is None:
            stored = self._series[key] = _Stored()
            self._by_name.setdefault(key[0], []).append(key)
            self._kinds.setdefault(key[0], kind)
            if target:
                self._target_keys.setdefault(target, {})[key] = None
        stored.times.append(at)
        stored.values.append(value)

    def _stale(self, at: float, target: str) -> None:
        for key in self._target_keys.get(target, ()):
            stored = self._series[key]
            if stored.values and stored.values[-1] is not None:
                stored.times.append(at)
                stored.values.append(None)

    # --- queries ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every sample name scraped or declared so far, sorted (counters end in ``_total``, histograms have
        ``_bucket``, ``_count`` and ``_sum``)."""
        return sorted(self._kinds)

    def _matching(self, name: str, match: Mapping[str, Any]) -> list[tuple[tuple[str, LabelSet], _Stored]]:
        if not isinstance(name, str) or name not in self._kinds:
            import difflib

            close = difflib.get_close_matches(str(name), self._kinds, n=3)
            raise UnknownNameError(
                f"no metric {name!r} in this world's scrapes"
                + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
                + f" Sample names: {', '.join(self.names())}"
            )
        for label, wanted in match.items():
            if not isinstance(wanted, (str, re.Pattern)):
                raise InvalidParameterError(
                    f"{label}={wanted!r}: match a label with a string (status='503') or a compiled regular "
                    f"expression matching the whole value (status=re.compile('5..'), as PromQL's =~)"
                )
        found = []
        for key in self._by_name.get(name, ()):
            labels = dict(key[1])
            if all(_matches(labels.get(label, ""), wanted) for label, wanted in match.items()):
                found.append((key, self._series[key]))
        return found

    def _at(self, at: float | None) -> float:
        if at is None:
            return self.scrape_times[-1] if self.scrape_times else 0.0
        return _checks.seconds("at", at)

    def select(self, name: str, at: float | None = None, **match: str | re.Pattern[str]) -> list[Sample]:
        """The instant vector ``name{match}`` at virtual time ``at`` (the last scrape if None): each series'
        latest sample at or before ``at`` (none if its target went down since).

        Example::

            world.metrics.select("http_server_requests_in_flight", at=3.0, service="orders")

        Raises:
            UnknownNameError: no such metric was scraped (the error lists those that were).
            InvalidParameterError: ``at`` is negative, or a label is matched with neither a string nor a pattern.
        """
        at = self._at(at)
        out = []
        for (sample_name, labelset), stored in self._matching(name, match):
            i = bisect.bisect_right(stored.times, at + _EPS)
            if i and stored.values[i - 1] is not None and at - stored.times[i - 1] < LOOKBACK:
                out.append(Sample(sample_name, labelset, float(stored.values[i - 1])))  # type: ignore[arg-type]
        return out

    def _over(self, name: str, window: float, at: float | None, match: Mapping[str, Any], is_rate: bool,
              what: str) -> list[Sample]:
        window = _checks.seconds("window", window, positive=True)
        if window < 2 * self.interval - _EPS:
            raise InvalidParameterError(
                f"window={window!r}: with a scrape every {self.interval:g} s a window that short holds fewer than "
                f"two samples, and {what}() needs two; use at least {2 * self.interval:g} s (Prometheus advises "
                f"four scrape intervals: {4 * self.interval:g})"
            )
        at = self._at(at)
        found = self._matching(name, match)
        if self._kinds.get(name) != "counter":
            raise InvalidParameterError(
                f"{what}({name!r}): {name} is a gauge, and {what}() is for counters (NAME_total, and a histogram's "
                f"_bucket, _count and _sum); read a gauge with select()"
            )
        out = []
        start = at - window
        for (sample_name, labelset), stored in found:
            lo = bisect.bisect_right(stored.times, start + _EPS)
            hi = bisect.bisect_right(stored.times, at + _EPS)
            times, values = [], []
            for t, v in zip(stored.times[lo:hi], stored.values[lo:hi]):
                if v is not None:
                    times.append(t)
                    values.append(v)
            value = extrapolated_rate(times, values, start, at, is_rate=is_rate)
            if value is not None:
                out.append(Sample(sample_name, labelset, value))
        return out

    def rate(self, name: str, window: float, at: float | None = None, **match: str | re.Pattern[str]) -> list[Sample]:
        """PromQL's ``rate(name{match}[window])`` at ``at`` (the last scrape if None): each counter's increase
        per second over the window, counter resets and extrapolation to the window's edges as Prometheus does.

        Example::

            world.metrics.rate("http_server_requests_total", 4.0, service="orders", status=re.compile("5.."))

        Raises:
            UnknownNameError: no such metric. InvalidParameterError: a gauge, a window shorter than two scrape
                intervals, a negative ``at``, a label matched with neither a string nor a pattern.
        """
        return self._over(name, window, at, match, True, "rate")

    def increase(self, name: str, window: float, at: float | None = None, **match: str | re.Pattern[str]) -> list[Sample]:
        """PromQL's ``increase(name{match}[window])``: ``rate`` times the window (see ``rate``)."""
        return self._over(name, window, at, match, False, "increase")

    def quantile(self, q: float, histogram: str, window: float, at: float | None = None, *, by: Iterable[str] = (),
                 **match: str | re.Pattern[str]) -> list[Sample]:
        """PromQL's ``histogram_quantile(q, sum by (le, by...) (rate(histogram_bucket{match}[window])))``.

        Example (p99 latency of the checkout, over every replica and route, over the last 4 s)::

            world.metrics.quantile(0.99, "http_server_request_duration_seconds", 4.0, service="checkout")

        Raises:
            InvalidParameterError: ``q`` not from 0 to 1; see ``rate`` for the rest.
        """
        keep = check_labels(by, "by")
        base = histogram[: -len("_bucket")] if histogram.endswith("_bucket") else histogram
        buckets = self.rate(f"{base}_bucket", window, at, **match)
        return histogram_quantile(q, sum_by(buckets, keep + ("le",)))

    def range(self, query: Callable[[float], list[Sample]], *, start: float | None = None, end: float | None = None,
              step: float | None = None) -> list[Series]:
        """A range query: ``query(at)`` evaluated at ``start``, ``start + step``, ... up to ``end`` (by default
        every scrape), one ``Series`` per label set (NaN where it had no value), as Grafana draws a panel.

        Example::

            errors = world.metrics.range(lambda at: sum_by(world.metrics.rate(
                "http_server_requests_total", 4.0, at, status=re.compile("5..")), ("service",)))

        Raises:
            InvalidParameterError: a negative ``start``, ``end`` before ``start``, a ``step`` that is not > 0.
        """
        start = self.scrape_times[0] if start is None and self.scrape_times else _checks.seconds("start", start or 0.0)
        end = self._at(end)
        step = self.interval if step is None else _checks.seconds("step", step, positive=True)
        if end < start:
            raise InvalidParameterError(f"end={end!r} is before start={start!r}: give start <= end")
        times = [start + i * step for i in range(int((end - start) / step + _EPS) + 1)]
        found: dict[LabelSet, dict[int, float]] = {}
        for i, at in enumerate(times):
            for sample in query(at):
                found.setdefault(sample.labelset, {})[i] = sample.value
        return [
            Series(labels, tuple(times), tuple(values.get(i, math.nan) for i in range(len(times))))
            for labels, values in sorted(found.items())
        ]


def relabel(labels: Mapping[str, str], target: LabelSet) -> dict[str, str]:
    """A scraped sample's labels with its target's; a clashing label of its own is kept as ``exported_NAME``,
    as Prometheus does (``honor_labels: false``)."""
    out = dict(labels)
    for name, value in target:
        if name in out:
            out[f"exported_{name}"] = out[name]
        out[name] = value
    return out


def _matches(value: str, wanted: str | re.Pattern[str]) -> bool:
    return value == wanted if isinstance(wanted, str) else wanted.fullmatch(value) is not None
