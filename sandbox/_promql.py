"""PromQL's arithmetic over scraped samples: ``rate``/``increase``, ``histogram_quantile``, ``sum by``.

The sandbox answers queries in Python rather than parsing PromQL (no maintained Python
PromQL engine exists; the Prometheus server is Go). What matters is that the numbers are
the ones Prometheus would give for the same samples, so the rules here follow its source
(``promql/functions.go``: ``extrapolatedRate``; ``promql/quantile.go``: ``BucketQuantile``):

- a range ``[at - window, at]`` is left-open (Prometheus 3): a sample exactly at
  ``at - window`` is not in it;
- ``rate`` needs two samples in the range; a drop in a counter is a reset (the process
  restarted), and the value before the drop is added back;
- the increase seen between the first and the last sample is extrapolated towards the
  range's edges: all the way if a sample is within 110 % of the average spacing from the
  edge, else by half an average spacing; never below the counter's zero point;
- ``histogram_quantile`` finds the bucket holding rank ``q * count`` and interpolates
  linearly inside it; the ``+Inf`` bucket must be there; a rank in it answers the highest
  finite bound; no observations answer NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import InvalidParameterError

#: A series' labels: (name, value) pairs sorted by name.
LabelSet = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: a series' labels and its value at the query's time.

    Example::

        s = world.metrics.rate("http_server_requests_total", 4.0, service="orders")[0]
        s.labels["status"], s.value        # ('200', 12.5)
    """

    name: str
    labelset: LabelSet
    value: float

    @property
    def labels(self) -> dict[str, str]:
        """The labels as a dict."""
        return dict(self.labelset)

    def __str__(self) -> str:
        inner = ", ".join(f'{k}="{v}"' for k, v in self.labelset)
        return f"{self.name}{{{inner}}} {self.value:g}"


def extrapolated_rate(
    times: Sequence[float], values: Sequence[float], range_start: float, range_end: float, *, is_rate: bool
) -> float | None:
    """Prometheus's ``rate`` (``is_rate``) or ``increase`` of one counter's samples in a range, or None
    when fewer than two samples fall in it (see the module docstring)."""
    if len(times) < 2:
        return None
    first_t, last_t = times[0], times[-1]
    result = values[-1] - values[0]
    previous = values[0]
    for value in values[1:]:
        if value < previous:  # a counter reset: the process restarted and counts from zero again
            result += previous
        previous = value
    sampled = last_t - first_t
    if sampled <= 0:
        return None
    average = sampled / (len(times) - 1)
    threshold = average * 1.1
    to_start = first_t - range_start
    to_end = range_end - last_t
    if to_start >= threshold:
        to_start = average / 2
    if result > 0 and values[0] >= 0:
        to_zero = sampled * (values[0] / result)  # never extrapolate below the counter's zero
        if to_zero < to_start:
            to_start = to_zero
    if to_end >= threshold:
        to_end = average / 2
    factor = (sampled + to_start + to_end) / sampled
    if is_rate:
        factor /= range_end - range_start
    return result * factor


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile`` over one histogram's ``(upper bound, cumulative count)`` pairs."""
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return math.nan
    merged: list[list[float]] = []
    for bound, count in ordered:  # the same bound twice (two series): add them up
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    for i in range(1, len(merged)):  # cumulative counts never fall (a scrape mid-update could say so)
        if merged[i][1] < merged[i - 1][1]:
            merged[i][1] = merged[i - 1][1]
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    b = next(i for i, (_bound, count) in enumerate(merged) if count >= rank)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def check_labels(by: Iterable[str], what: str) -> tuple[str, ...]:
    """``by`` as a tuple of label names, or InvalidParameterError showing the bad one."""
    if isinstance(by, str):
        raise InvalidParameterError(
            f"{what}={by!r} is one string: give a tuple of label names, e.g. {what}=({by!r},)"
        )
    names = tuple(by)
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidParameterError(f"{what}={names!r}: every label name must be a non-empty string")
    return names


def sum_by(vector: Iterable[Sample], by: Iterable[str] = ()) -> list[Sample]:
    """PromQL's ``sum by (labels) (vector)``: one sample per combination of the ``by`` labels' values,
    the values added up (series without a label count as its empty value), in order of labels.

    Example::

        rates = world.metrics.rate("http_server_requests_total", 4.0, service="orders")
        sum_by(rates, ("status",))          # requests per second by status, over every replica and route

    Raises:
        InvalidParameterError: ``by`` is a single string or holds something other than label names.
    """
    keep = check_labels(by, "by")
    totals: dict[LabelSet, float] = {}
    name = ""
    for sample in vector:
        name = sample.name
        labels = dict(sample.labelset)
        key = tuple(sorted((k, labels.get(k, "")) for k in keep))
        totals[key] = totals.get(key, 0.0) + sample.value
    return [Sample(name, key, value) for key, value in sorted(totals.items())]


def histogram_quantile(q: float, vector: Iterable[Sample]) -> list[Sample]:
    """PromQL's ``histogram_quantile(q, vector)``: for each histogram in ``vector`` (its ``_bucket``
    series grouped by every label but ``le``), the ``q``-quantile of its observations, interpolated
    linearly inside the bucket that holds it. NaN where a histogram saw nothing.

    Example::

        buckets = world.metrics.rate("http_server_request_duration_seconds_bucket", 4.0, service="orders")
        histogram_quantile(0.99, sum_by(buckets, ("le",)))     # p99 latency over every replica

    Raises:
        InvalidParameterError: ``q`` is not a number from 0 to 1, or a sample has no ``le`` label (it is
            not a ``_bucket`` series).
    """
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 1.0:
        raise InvalidParameterError(f"q={q!r}: a quantile is a number from 0 to 1, e.g. 0.99 for p99")
    groups: dict[LabelSet, list[tuple[float, float]]] = {}
    for sample in vector:
        labels = dict(sample.labelset)
        le = labels.pop("le", None)
        if le is None:
            raise InvalidParameterError(
                f"histogram_quantile got {sample}, which has no 'le' label: give it a histogram's _bucket "
                f"series (rate of NAME_bucket, summed by 'le' and the labels to keep)"
            )
        groups.setdefault(tuple(sorted(labels.items())), []).append((float(le), sample.value))
    return [Sample("", key, bucket_quantile(q, buckets)) for key, buckets in sorted(groups.items())]
