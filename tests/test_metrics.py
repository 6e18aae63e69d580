"""Tests of the sandbox's metrics (sandbox.metrics): what is recorded, scraped, queried, exported and drawn."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import prometheus_client
import pytest
import svc_metrics
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

import sandbox
import sandbox.viz as viz
from sandbox.faults import Kill, Schedule
from sandbox.metrics import histogram_quantile, sum_by

# --- a service whose counters and histograms the tests drive to known values ----------------


def counting_app() -> FastAPI:
    app = FastAPI()
    registry = sandbox.metrics_registry(app)
    added = Counter("things_added", "Things added", registry=registry)
    sizes = Histogram("thing_size", "Sizes seen", buckets=(0.1, 0.2, 0.4), registry=registry)
    work = Histogram("work_seconds", "Time spent working", registry=registry)

    @app.post("/add/{n}")
    async def add(n: int) -> dict:
        added.inc(n)
        return {}

    @app.post("/size/{size}")
    async def size(size: float) -> dict:
        sizes.observe(size)
        return {}

    @app.post("/work")
    async def do_work() -> dict:
        with work.time():
            await sandbox.sleep(0.02)
        return {}

    return app


def posting(*paths: str, start_every: float = 1.0):
    """A workload posting to each path in turn, ``start_every`` virtual seconds apart."""

    async def workload(client: sandbox.Client) -> None:
        for path in paths:
            async with client.operation("post", path) as op:
                r = await client.http.post(f"http://counter{path}")
                op.ok(r.status_code)
            await sandbox.sleep(start_every)

    return workload


def counting_world(*paths: str, schedule: Schedule | None = None, **options) -> sandbox.World:
    world = sandbox.World(seed=1, metrics=True, **options)
    world.add_service("counter", counting_app, isolate_module=False)
    world.add_client("poster", posting(*paths), start=0.5)
    if schedule is not None:
        world.inject(schedule)
    world.run(until=6.0)
    return world


def value(vector: list) -> float:
    """The one value of a vector of one sample."""
    assert len(vector) == 1, vector
    return vector[0].value


# --- rates and quantiles against hand-computed values --------------------------------------


def test_rate_and_increase_extrapolate_to_the_window_edges_as_prometheus_does():
    """Five added at t=0.5, 1.5, 2.5, 3.5 (scrapes 0, 5, 10, 15, 20 at t=0..4): increase over (0.5, 3.5] is
    the 10 seen between t=1 and t=3 stretched by half a scrape at each edge, 15; rate is that over 3 s."""
    m = counting_world("/add/5", "/add/5", "/add/5", "/add/5").metrics
    assert [value(m.select("things_added_total", at=t)) for t in (0, 1, 2, 3, 4)] == [0, 5, 10, 15, 20]
    assert value(m.increase("things_added_total", 3.0, at=3.5)) == pytest.approx(15.0)
    assert value(m.rate("things_added_total", 3.0, at=3.5)) == pytest.approx(5.0)
    # On the grid: the range (1, 3] holds t=2 (10) and t=3 (15); extrapolated one scrape back to t=1: 10 in 2 s.
    assert value(m.rate("things_added_total", 2.0, at=3.0)) == pytest.approx(5.0)
    # After the last addition the counter is flat: rate 0.
    assert value(m.rate("things_added_total", 2.0, at=5.0)) == 0.0


def test_a_counter_reset_by_a_restart_is_added_back():
    """A replica killed at t=1.8 restarts from zero: samples 5, 0, 5, 10 at t=1..4 increase by 10, stretched by
    one scrape to the window's start (4/3): 13.33 over (0, 4]."""
    world = counting_world("/add/5", "/add/5", "/add/5", "/add/5",
                           schedule=Schedule([Kill("counter", start=1.8, restart_after=0.05)]))
    m = world.metrics
    assert [value(m.select("things_added_total", at=t)) for t in (1, 2, 3, 4)] == [5, 0, 5, 10]
    assert value(m.increase("things_added_total", 4.0, at=4.0)) == pytest.approx(10 * 4 / 3)


def test_histogram_quantile_interpolates_inside_the_bucket_and_stops_at_the_highest_finite_bound():
    """Sizes 0.05, 0.15, 0.15, 0.3 in buckets 0.1 / 0.2 / 0.4: the median is halfway into (0.1, 0.2], p99 is
    96 % into (0.2, 0.4]; one more size of 1.0 lands in +Inf, and p99 answers 0.4."""
    m = counting_world("/size/0.05", "/size/0.15", "/size/0.15", "/size/0.3", "/size/1.0").metrics
    buckets = m.select("thing_size_bucket", at=4.0)
    assert histogram_quantile(0.5, buckets)[0].value == pytest.approx(0.15)
    assert histogram_quantile(0.99, buckets)[0].value == pytest.approx(0.392)
    assert histogram_quantile(0.99, m.select("thing_size_bucket", at=5.0))[0].value == pytest.approx(0.4)
    assert math.isnan(histogram_quantile(0.5, m.select("thing_size_bucket", at=0.0))[0].value)


def test_histogram_time_measures_virtual_time():
    """Histogram.time() around `await sandbox.sleep(0.02)` observes 0.02 s of virtual time each time."""
    m = counting_world("/work", "/work", "/work").metrics
    assert value(m.select("work_seconds_count", at=4.0)) == 3
    assert value(m.select("work_seconds_sum", at=4.0)) == pytest.approx(0.06, abs=1e-9)
    # All in (0.01, 0.025]: p50 of the rates is halfway into that bucket, p99 99 % into it.
    assert value(m.quantile(0.5, "work_seconds", 3.0, at=3.0)) == pytest.approx(0.0175)
    assert value(m.quantile(0.99, "work_seconds", 3.0, at=3.0)) == pytest.approx(0.01 + 0.015 * 0.99)


def test_sum_by_adds_series_up_by_the_labels_kept():
    """sum_by over the two checkout replicas' breaker gauges gives one series per dependency."""
    world = svc_metrics.build_world(7, outage=False)
    world.run(until=2.0)
    gauges = world.metrics.select("circuit_breaker_state", service="checkout")
    assert sorted(s.labels["replica"] for s in gauges) == ["checkout-0", "checkout-1"]
    assert [(s.labels, s.value) for s in sum_by(gauges, ("dependency",))] == [({"dependency": "inventory"}, 0.0)]


# --- what the sandbox records ---------------------------------------------------------------


@pytest.fixture(scope="module")
def outage() -> sandbox.World:
    """Checkout and inventory with inventory cut off from 3 s to 6 s (tests/svc_metrics.py)."""
    world = svc_metrics.build_world(7)
    world.run(settle=1.0)
    return world


def test_every_metric_the_sandbox_lists_is_scraped(outage):
    """SANDBOX_METRICS names what a scrape finds: each name (a histogram's _bucket) is among the scraped ones."""
    from sandbox.metrics import SANDBOX_METRICS

    names = outage.metrics.names()
    assert [n for n in SANDBOX_METRICS if n not in names and f"{n}_bucket" not in names] == []


def test_requests_are_counted_by_route_status_and_replica(outage):
    """The server-side counter's series carry route template, method, status and replica; their sum is the
    number of answers the shoppers got."""
    m = outage.metrics
    served = m.select("http_server_requests_total", service="checkout")
    assert {(s.labels["route"], s.labels["method"]) for s in served} == {("/checkout", "POST")}
    assert {s.labels["status"] for s in served} == {"200", "503"}
    assert {s.labels["replica"] for s in served} == {"checkout-0", "checkout-1"}
    answered = [op for op in outage.history if op.f == "checkout" and op.type == "ok" and op.time <= 14.0]
    assert sum(s.value for s in served) == len(answered)  # by the last scrape, at t=14


def test_timeouts_and_retries_show_only_during_the_outage(outage):
    """Calls to inventory time out, and the service counts retries, only while the partition lasts."""
    m = outage.metrics
    before = sum_by(m.increase("http_client_requests_total", 3.0, at=3.0, outcome="timeout"))
    assert before == [] or before[0].value == 0
    during = sum_by(m.increase("http_client_requests_total", 4.0, at=7.0, callee="inventory", outcome="timeout"))
    assert during[0].value > 0
    assert sum_by(m.increase("retries_total", 4.0, at=7.0))[0].value > 0
    assert sum_by(m.increase("retries_total", 3.0, at=14.0))[0].value == 0


def test_the_breaker_gauge_opens_in_the_outage_and_closes_after(outage):
    """circuit_breaker_state is 1 (open) on some replica during the outage and 0 on both at the end."""
    m = outage.metrics
    states = m.range(lambda at: m.select("circuit_breaker_state", at), start=3.0, end=7.0)
    assert any(v == 1.0 for s in states for v in s.values)
    assert [s.value for s in m.select("circuit_breaker_state")] == [0.0, 0.0]


def test_in_flight_rises_in_the_outage_and_falls_to_zero(outage):
    """Requests in flight pile up while inventory does not answer, and drain once it does."""
    m = outage.metrics
    peak = max(v for s in m.range(lambda at: sum_by(m.select("http_server_requests_in_flight", at,
                                                              service="checkout"))) for v in s.values)
    assert peak >= 1
    assert value(sum_by(m.select("http_server_requests_in_flight", service="checkout"))) == 0


def test_a_module_level_metric_on_the_default_registry_is_per_replica(outage):
    """checkout_orders_placed, made on prometheus_client's default registry at module level, is counted per
    replica (each runs the module afresh) and never on the test process's own default registry."""
    placed = outage.metrics.select("checkout_orders_placed_total", service="checkout")
    assert sorted(s.labels["replica"] for s in placed) == ["checkout-0", "checkout-1"]
    assert all(s.value > 0 for s in placed)
    assert prometheus_client.REGISTRY.get_sample_value("checkout_orders_placed_total") == 0.0


def test_a_down_replica_fails_its_scrape_and_its_series_go_stale():
    """While the counter's only replica is down, `up` is 0 and its own series have no value."""
    world = counting_world("/add/5", schedule=Schedule([Kill("counter", start=1.5, restart_after=1.0)]))
    m = world.metrics
    assert [value(m.select("up", at=t, service="counter")) for t in (1, 2, 3)] == [1, 0, 1]
    assert m.select("things_added_total", at=2.0) == []
    assert value(m.select("things_added_total", at=3.0)) == 0


def test_lock_waits_are_timed_by_database_table_and_outcome():
    """Two transactions holding the same row for 0.2 s: one waits about 0.2 s for its lock, and gets it."""

    def app() -> FastAPI:
        api = FastAPI()

        @api.post("/hold")
        async def hold(db: sandbox.Database = Depends(sandbox.database("db"))) -> dict:
            async with db.transaction() as tx:
                await tx.put("stock", "sku", 1)  # takes the row's lock, as UPDATE does
                await sandbox.sleep(0.2)
            return {}

        return api

    async def hold(client: sandbox.Client) -> None:
        await client.http.post("http://holder/hold")

    world = sandbox.World(seed=2, metrics=True)
    world.add_database("db")
    world.add_service("holder", app, isolate_module=False)
    world.add_client("a", hold)
    world.add_client("b", hold)
    world.run(until=3.0)
    m = world.metrics
    assert value(m.select("db_lock_wait_seconds_count", database="db", table="stock", outcome="granted")) == 1
    assert value(m.select("db_lock_wait_seconds_sum", outcome="granted")) == pytest.approx(0.2, abs=0.01)


def test_consumer_lag_grows_with_a_burst_and_drains():
    """Five messages at once to a consumer that takes 0.5 s each: the group lags, then catches up to 0."""

    def app() -> FastAPI:
        api = FastAPI()

        @api.post("/burst")
        async def burst(producer: sandbox.Producer = Depends(sandbox.producer)) -> dict:
            for i in range(5):
                await producer.send("jobs", {"i": i}, key="k")
            return {}

        @sandbox.consumer(api, "jobs", group="workers")
        async def work(message: sandbox.Message) -> None:
            await sandbox.sleep(0.5)

        return api

    async def burst(client: sandbox.Client) -> None:
        await client.http.post("http://jobs/burst")

    world = sandbox.World(seed=3, metrics=True)
    world.add_service("jobs", app, isolate_module=False)
    world.add_client("c", burst, start=0.5)
    world.run(until=6.0)
    m = world.metrics
    lags = m.range(lambda at: sum_by(m.select("broker_consumer_lag", at, group="workers")))
    assert max(v for v in lags[0].values if not math.isnan(v)) == 5
    assert value(sum_by(m.select("broker_consumer_lag", group="workers"))) == 0


# --- export -------------------------------------------------------------------------------------


def test_the_exposition_parses_back_with_prometheus_clients_parser(outage):
    """The text exposition has the sandbox's families and each replica's, labelled with service and replica,
    values equal to what was recorded, and no _created series."""
    families = {f.name: f for f in text_string_to_metric_families(outage.metrics.exposition())}
    assert families["http_server_requests"].type == "counter"
    assert families["http_server_request_duration_seconds"].type == "histogram"
    assert families["circuit_breaker_state"].type == "gauge"
    placed = {s.labels["replica"]: s.value for s in families["checkout_orders_placed"].samples
              if s.labels["service"] == "checkout"}
    assert sorted(placed) == ["checkout-0", "checkout-1"]
    assert sum(placed.values()) == sum(1 for op in outage.history if op.f == "checkout" and op.value == 200)
    served = [s for s in families["http_server_requests"].samples if s.name == "http_server_requests_total"]
    assert {tuple(sorted(s.labels)) for s in served} == {("method", "replica", "route", "service", "status")}
    answered = sum(1 for op in outage.history if op.f == "checkout" and op.type == "ok")
    assert sum(s.value for s in served if s.labels["service"] == "checkout") == answered == 400
    assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)


def test_a_replica_label_that_clashes_is_kept_as_exported():
    """A replica's own `service` label is kept as `exported_service`, as Prometheus does with honor_labels off."""

    def app() -> FastAPI:
        api = FastAPI()
        Gauge("depends_on", "Dependencies", ["service"], registry=sandbox.metrics_registry(api)).labels("db").set(1)
        return api

    world = sandbox.World(seed=1, metrics=True)
    world.add_service("web", app, isolate_module=False)
    world.run(until=1.5)
    sample = world.metrics.select("depends_on")[0]
    assert sample.labels == {"exported_service": "db", "service": "web", "replica": "web-0"}


# --- service code outside a world -------------------------------------------------------------


def test_under_testclient_each_app_gets_its_own_registry():
    """Outside a World the app's registry lives on app.state: building the app twice registers nothing twice,
    and the breaker gauge reads closed."""
    first, second = svc_metrics.create_checkout(), svc_metrics.create_checkout()
    registry = sandbox.metrics_registry(first)
    assert registry is sandbox.metrics_registry(first) is not sandbox.metrics_registry(second)
    sandbox.connect_local(first, inventory=svc_metrics.create_inventory())
    with TestClient(first) as client:
        assert client.post("/checkout").json() == {"placed": True}
    assert registry.get_sample_value("circuit_breaker_state", {"dependency": "inventory"}) == 0.0


def test_an_endpoint_gets_the_same_registry_as_a_dependency():
    """Depends(sandbox.metrics_registry) gives an endpoint the registry the factory got, in a world and out."""

    def app() -> FastAPI:
        api = FastAPI()
        made = sandbox.metrics_registry(api)
        Counter("hits", "Hits", registry=made)

        @api.get("/same")
        async def same(registry=Depends(sandbox.metrics_registry)) -> dict:
            return {"same": registry is made}

        return api

    with TestClient(app()) as client:
        assert client.get("/same").json() == {"same": True}

    async def ask(client: sandbox.Client) -> None:
        async with client.operation("same", None) as op:
            op.ok((await client.http.get("http://web/same")).json())

    world = sandbox.World(seed=1)
    world.add_service("web", app, isolate_module=False)
    world.add_client("c", ask)
    world.run()
    assert [op.value for op in world.history if op.type == "ok"] == [{"same": True}]


# --- determinism --------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_metrics(outage):
    """A second run of the same seed scrapes the same values and exports the same text."""
    again = svc_metrics.build_world(7)
    again.run(settle=1.0)
    assert again.metrics.exposition() == outage.metrics.exposition()
    query = lambda m: lambda at: m.rate("http_client_requests_total", 4.0, at)  # noqa: E731
    assert again.metrics.range(query(again.metrics)) == outage.metrics.range(query(outage.metrics))


def test_another_process_with_another_hash_seed_exports_the_same_text(outage):
    """A fresh interpreter with PYTHONHASHSEED=123 scrapes the same values: its exposition is the same text."""
    tests = Path(__file__).parent
    code = (
        f"import sys; sys.path.insert(0, {str(tests)!r})\n"
        "import svc_metrics\n"
        "world = svc_metrics.build_world(7)\n"
        "world.run(settle=1.0)\n"
        "sys.stdout.write(world.metrics.exposition())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "123"},
                          cwd=tests.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == outage.metrics.exposition()


def test_metrics_change_no_fingerprint(outage):
    """Metrics are observation: the same world without them has the same fingerprint."""
    quiet = svc_metrics.build_world(7, metrics=False)
    quiet.run(settle=1.0)
    assert quiet.metrics is None
    assert quiet.fingerprint() == outage.fingerprint()


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"metrics": "yes"}, "metrics='yes'"),
        ({"scrape_interval": 0.5}, "without metrics=True"),
        ({"metrics": True, "scrape_interval": 0}, "scrape_interval=0"),
    ],
)
def test_bad_world_options_are_refused_showing_the_value(options, shown):
    """A non-bool metrics, a scrape interval without metrics or not > 0 is refused, the value shown."""
    with pytest.raises(sandbox.InvalidParameterError, match=re.escape(shown)):
        sandbox.World(seed=1, **options)


def test_bad_queries_say_what_to_do_instead(outage):
    """An unknown name suggests the close one; rate of a gauge, a window under two scrapes, a label matched with
    a number, a quantile above 1 and a bare string for `by` are refused with the value shown."""
    m = outage.metrics
    with pytest.raises(sandbox.UnknownNameError, match="did you mean 'http_server_requests_total'"):
        m.rate("http_server_request_total", 4.0)
    with pytest.raises(sandbox.InvalidParameterError, match="is a gauge"):
        m.rate("circuit_breaker_state", 4.0)
    with pytest.raises(sandbox.InvalidParameterError, match=r"window=1\.5.*at least 2 s"):
        m.rate("http_server_requests_total", 1.5)
    with pytest.raises(sandbox.InvalidParameterError, match="status=503"):
        m.select("http_server_requests_total", status=503)
    with pytest.raises(sandbox.InvalidParameterError, match=r"q=1\.5"):
        m.quantile(1.5, "http_server_request_duration_seconds", 4.0)
    with pytest.raises(sandbox.InvalidParameterError, match=r"by='route'.*\('route',\)"):
        m.quantile(0.5, "http_server_request_duration_seconds", 4.0, by="route")
    with pytest.raises(sandbox.InvalidParameterError, match="pass the FastAPI app"):
        sandbox.metrics_registry(object())


def test_dashboard_refuses_a_world_without_metrics_and_an_unknown_service(outage):
    """The dashboard says to build the world with metrics=True, and lists the services for a wrong name."""
    with pytest.raises(sandbox.ConfigError, match=r"World\(seed=1, metrics=True\)"):
        viz.dashboard(sandbox.World(seed=1), "checkout")
    with pytest.raises(sandbox.UnknownNameError, match=r"'checkuot'.*\['checkout', 'inventory'\]"):
        viz.dashboard(outage, "checkuot")


# --- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_draws_six_panels_with_the_fault_window_shaded(outage, tmp_path):
    """Six titled panels, the partition shaded on each from 3 s to 6 s, the breaker's line reaching 'open', and
    a PNG about a notebook's width (940 px)."""
    from matplotlib.image import imread

    fig = viz.dashboard(outage, "checkout")
    axes = fig.get_axes()
    assert [ax.get_title(loc="left") for ax in axes] == [
        "requests / s by status", "error rate (5xx / all answers)", "latency (server side)", "in flight",
        "calls made, by callee and outcome", "circuit breaker",
    ]
    for ax in axes:
        shaded = [p for p in ax.patches if (p.get_gid() or "").startswith("fault:")]
        assert len(shaded) == 1
        x0, x1 = shaded[0].get_x(), shaded[0].get_x() + shaded[0].get_width()
        assert (x0, x1) == (pytest.approx(3.0), pytest.approx(6.0))
    breaker = axes[5]
    assert any(max(line.get_ydata()) == 1.0 for line in breaker.get_lines())
    path = viz.save(fig, tmp_path / "dashboard.png")
    height, width = imread(path).shape[:2]
    assert 900 <= width <= 1000 and height > width / 2


def test_the_dashboards_error_rate_reads_zero_when_nothing_failed():
    """A service that never answered 5xx shows an error rate of 0 %, not 'no data'."""
    world = counting_world("/add/1", "/add/1", "/add/1", "/add/1")
    error_panel = viz.dashboard(world, "counter").get_axes()[1]
    (line,) = error_panel.get_lines()
    assert [v for v in line.get_ydata() if not math.isnan(v)] == [0.0] * 4


def test_dashboard_data_gives_the_curves_the_dashboard_draws(outage):
    """The numbers behind the panels: p99 near the 1 s it took to give up during the outage and low after it,
    no 5xx once inventory is back, a breaker that opened, and the partition among the faults."""
    d = viz.dashboard_data(outage, "checkout")
    assert d.times == tuple(float(t) for t in range(15))
    assert max(d.between(d.latency["p99"], 4.0, 6.0)) > 0.5
    assert max(d.between(d.latency["p99"], 10.0, 14.0)) < 0.05
    assert max(d.between(d.error_share, 4.0, 7.0)) > 50
    assert d.between(d.error_share, 10.0, 14.0) == [0.0] * 5
    assert sorted(d.breaker) == [("inventory", "checkout-0"), ("inventory", "checkout-1")]
    assert any(1.0 in d.between(curve, 3.0, 7.0) for curve in d.breaker.values())
    assert [(w.family, w.start, w.end) for w in d.faults] == [("NetworkChaos", 3.0, 6.0)]
    error_line = viz.dashboard(outage, "checkout").get_axes()[1].get_lines()[0]
    assert tuple(error_line.get_ydata()) == pytest.approx(d.error_share, nan_ok=True)
