"""Exploration: find a broken invariant across seeds and schedules, shrink it, replay it."""

from __future__ import annotations

import contextlib
import os
import sys

import pytest
from hypothesis import strategies as st

import sandbox
from sandbox.checkers import Verdict, no_double_charge, stock_never_negative
from sandbox.examples import order_system
from sandbox.explore import Counterexample, Passed, Scenario, explore
from sandbox.faults import Delay, Loss, Schedule, nemesis
from sandbox.strategies import schedules

SMALL = Scenario("order-system-small", order_system.build_calm_world, {"clients": 3, "orders_per_client": 2})


def charged_twice(world: sandbox.World) -> Verdict:
    """No order has two charges (a minimal checker, so these tests do not depend on the library's)."""
    seen: dict[str, int] = {}
    for row in world.database("payments-db").rows("charges").values():
        seen[row["order_id"]] = seen.get(row["order_id"], 0) + 1
    twice = sorted(k for k, n in seen.items() if n > 1)
    if twice:
        return Verdict.failing("no double charge", f"{len(twice)} orders charged more than once", tuple(twice))
    return Verdict.passing("no double charge", f"{len(seen)} orders charged once each")


def slow_payments(seed: int) -> Schedule:
    return nemesis(seed, ["orders", "payments"], kinds=("delay", "loss"), count=3, within=2.0)


@pytest.fixture(scope="module")
def double_charge() -> Counterexample:
    found = explore(order_system.scenario, [no_double_charge()], seeds=range(30), schedules=slow_payments, workers=1)
    assert isinstance(found, Counterexample)
    return found


def test_explore_finds_and_shrinks_a_double_charge(double_charge: Counterexample) -> None:
    """On the naive order system, delays and losses between orders and payments lead to a double charge."""
    assert double_charge.invariant == "no_double_charge()"
    assert double_charge.found
    assert 1 <= len(double_charge.schedule) <= len(double_charge.original_schedule)
    assert sum(double_charge.workload.values()) < sum(order_system.scenario.workload.values())
    assert "was charged twice" in double_charge.verdict.summary


def test_the_shrunk_schedule_still_fails_and_replays_exactly(double_charge: Counterexample) -> None:
    """Replaying the counterexample gives the same fingerprint and the same broken invariant."""
    run = double_charge.replay()
    assert run.fingerprint == double_charge.fingerprint
    assert not no_double_charge()(run.world)


def test_the_shrunk_schedule_is_no_larger_than_needed(double_charge: Counterexample) -> None:
    """Dropping any single fault of the shrunk schedule makes the double charge go away."""
    c = double_charge
    for i in range(len(c.schedule)):
        run = c.scenario.run(c.seed, c.schedule.without(i), **c.workload)
        assert no_double_charge()(run.world), f"fault {i} was not needed: {c.schedule[i]!r}"


def test_the_snippet_replays_the_counterexample(double_charge: Counterexample) -> None:
    """The one-line snippet, pasted as it is, replays the run with the same fingerprint."""
    line = double_charge.snippet
    assert "\n" not in line
    *setup, call = line.split("; ")
    scope: dict = {}
    exec("; ".join(setup), scope)
    run = eval(call, scope)
    assert run.fingerprint == double_charge.fingerprint



def test_the_snippet_of_a_scenario_bound_to_no_name_replays_whatever_its_name() -> None:
    """A scenario bound to no variable is replayed by its name, colons and all (a lab names its scenario
    after the notebook's module: '03-sagas:__main__.create_app'); the line stays valid Python."""
    sc = Scenario("03-sagas:__main__.create_app", order_system.scenario.build, {"clients": 2, "orders_per_client": 2})
    found = explore(sc, [charged_twice], seeds=range(30), schedules=slow_payments, shrink=False)
    assert found.found
    line = found.snippet
    assert "scenario_named('03-sagas:__main__.create_app')" in line
    assert line.endswith(", clients=2, orders_per_client=2)")  # every knob: a later namesake may differ
    *setup, call = line.split("; ")
    scope: dict = {}
    exec("; ".join(setup), scope)
    assert eval(call, scope).fingerprint == found.fingerprint

def test_the_text_names_seed_invariant_faults_and_replay(double_charge: Counterexample) -> None:
    """str(counterexample) reads in a terminal: seed, what broke, the faults, and the replay line."""
    text = str(double_charge)
    assert f"seed {double_charge.seed}" in text
    assert "no_double_charge()" in text
    assert double_charge.snippet in text
    for fault in double_charge.schedule:
        assert fault.action in text


def test_explore_finds_negative_stock_without_faults() -> None:
    """Check-then-act in inventory oversells under concurrency alone: no fault is needed."""
    found = explore(order_system.scenario, [stock_never_negative()], seeds=range(10), workers=1)
    assert isinstance(found, Counterexample)
    assert found.invariant == "stock_never_negative()"
    assert len(found.schedule) == 0
    assert "went to qty -1" in found.verdict.summary
    assert not stock_never_negative()(found.replay().world)
    assert "Schedule" not in found.snippet and "faults" not in found.snippet
    said = "Faults: none needed (shrunk from 0): the workload alone breaks it"
    assert said in str(found) and said in found._repr_html_() and "Faults (0" not in found._repr_html_()


def test_the_first_failing_seed_is_reported_whatever_the_number_of_workers() -> None:
    """Two worker processes report the same first failing seed as one."""
    one = explore(SMALL, [charged_twice], seeds=range(12), schedules=slow_payments, workers=1, shrink=False)
    two = explore(SMALL, [charged_twice], seeds=range(12), schedules=slow_payments, workers=2, shrink=False)
    assert isinstance(one, Counterexample) and isinstance(two, Counterexample)
    assert (one.seed, repr(one.schedule), one.fingerprint) == (two.seed, repr(two.schedule), two.fingerprint)


def test_passed_when_no_invariant_breaks() -> None:
    """A calm, small run has no double charge: explore says so and counts its runs."""
    result = explore(SMALL, [charged_twice], seeds=range(3), workers=1, shrink=False)
    assert isinstance(result, Passed)
    assert not result.found and result.ok
    assert result.runs == 3
    assert "No counterexample" in str(result)


def test_unknown_is_not_a_pass() -> None:
    """A checker that cannot decide makes the result not ok, and a crashing checker gives UNKNOWN."""

    def undecided(world: sandbox.World) -> Verdict:
        return Verdict.unknown("undecided", "cannot tell")

    def broken(world: sandbox.World) -> Verdict:
        raise KeyError("oops")

    result = explore(SMALL, [undecided, broken], seeds=range(2), workers=1)
    assert isinstance(result, Passed)
    assert not result.ok
    summaries = [v.summary for _seed, v in result.undecided]
    assert "cannot tell" in summaries
    assert any("KeyError" in s for s in summaries)


def test_a_fixed_schedule_applies_to_every_seed() -> None:
    """One Schedule is used for every seed; a list is used in turn."""
    calm = Schedule()
    lossy = Schedule([Loss("payments", probability=1.0, start=0.5, duration=0.3)])
    result = explore(SMALL, [charged_twice], seeds=range(2), schedules=[calm, lossy], workers=1, shrink=False)
    assert result.runs == 2


def test_hypothesis_strategies_search_and_shrink() -> None:
    """With a Hypothesis strategy for schedules, Hypothesis finds a double charge and shrinks it."""
    strategy = schedules(["orders", "payments"], kinds=("delay",), max_faults=2, within=1.0, duration=(0.3, 1.0))
    found = explore(SMALL, [charged_twice], seeds=range(3), schedules=strategy, shrink_runs=30)
    assert isinstance(found, Counterexample)
    assert 1 <= len(found.schedule) <= 2
    assert not charged_twice(found.replay().world)


def test_bad_arguments_are_refused_with_what_to_do() -> None:
    """A wrong scenario, invariant list, seed list or schedules raises InvalidParameterError."""
    with pytest.raises(sandbox.InvalidParameterError, match="Scenario"):
        explore(order_system.build_world, [charged_twice])
    with pytest.raises(sandbox.InvalidParameterError, match="invariants"):
        explore(SMALL, [])
    with pytest.raises(sandbox.BadSeedError):
        explore(SMALL, [charged_twice], seeds=[-1])
    with pytest.raises(sandbox.InvalidParameterError, match="schedules"):
        explore(SMALL, [charged_twice], schedules="partition")
    with pytest.raises(sandbox.InvalidParameterError, match="no workload knob 'customers'"):
        SMALL.run(1, customers=2)
    with pytest.raises(sandbox.InvalidParameterError, match="schedules"):
        explore(SMALL, [charged_twice], schedules=[Delay("orders")], workers=1)


def test_strategies_refuse_bad_knobs() -> None:
    """Strategies check their arguments when made, not deep inside a run."""
    with pytest.raises(sandbox.InvalidParameterError, match="kind 'meteor'"):
        schedules(["orders"], kinds=("meteor",))
    with pytest.raises(sandbox.InvalidParameterError, match="needs databases"):
        schedules(["orders"], kinds=("slow",))
    with pytest.raises(sandbox.InvalidParameterError, match="min_faults"):
        schedules(["orders"], min_faults=3, max_faults=1)
    assert isinstance(schedules(["orders"]), st.SearchStrategy)


def test_passed_reports_which_faults_acted_and_which_recovery_paths_ran() -> None:
    """A green exploration says how many scheduled faults acted and which recovery paths the runs took."""
    from sandbox.faults import Kill

    result = explore(SMALL, [charged_twice], seeds=range(2), schedules=Schedule([Kill("inventory", start=0.6)]), workers=1)
    assert isinstance(result, Passed)
    assert result.faults == (2, 2)
    assert dict(result.recovery)["nodes restarted"] == 2
    assert "2 of 2 scheduled faults acted" in str(result)


@pytest.mark.parametrize("runs", [0, 1, 3])
def test_a_tiny_shrink_budget_still_gives_a_failing_counterexample(runs: int) -> None:
    """However few runs shrinking may make, explore returns a counterexample that still fails, never an error."""
    found = explore(order_system.scenario, [no_double_charge()], seeds=range(30), schedules=slow_payments,
                    workers=1, shrink_runs=runs)
    assert isinstance(found, Counterexample)
    assert not no_double_charge()(found.replay().world)
    assert found.runs <= 1 + 1 + runs + 1  # the first failing seed, its re-run, the budget, the final run


def test_the_hypothesis_mode_result_is_one_minimal() -> None:
    """After Hypothesis shrinks, the greedy pass leaves no fault that could be dropped."""
    strategy = schedules(["orders", "payments"], kinds=("delay", "duplicate"), max_faults=3, within=1.0, duration=(0.3, 1.0))
    found = explore(SMALL, [charged_twice], seeds=range(3), schedules=strategy, shrink_runs=40)
    assert isinstance(found, Counterexample)
    for i in range(len(found.schedule)):
        assert charged_twice(SMALL.run(found.seed, found.schedule.without(i), **found.workload).world)


def test_a_scenario_that_raises_is_reported_with_its_seed_and_schedule() -> None:
    """A scenario whose build raises gives a ScenarioError naming the seed and the schedule, not a bare KeyError."""

    def broken(seed: int, *, clients: int = 2) -> sandbox.World:
        if seed == 2:
            raise KeyError("boom")
        return order_system.build_calm_world(seed, clients=clients, orders_per_client=1)

    scenario = Scenario("broken-shop", broken, {"clients": 2})
    with pytest.raises(sandbox.ScenarioError, match=r"raised KeyError: 'boom' \(seed 2, schedule Schedule\(\[\]\)\)"):
        explore(scenario, [charged_twice], seeds=range(4), workers=1)


def test_shrinking_skips_workloads_the_scenario_refuses() -> None:
    """A build that refuses small workloads only limits how far shrinking goes; the failure is still reported."""

    def picky(seed: int, *, clients: int = 8, orders_per_client: int = 5) -> sandbox.World:
        if clients < 3:
            raise sandbox.InvalidParameterError(f"clients={clients}: this shop needs at least 3")
        return order_system.build_calm_world(seed, clients=clients, orders_per_client=orders_per_client)

    scenario = Scenario("picky-shop", picky, {"clients": 8, "orders_per_client": 5})
    found = explore(scenario, [stock_never_negative()], seeds=range(10), workers=1)
    assert isinstance(found, Counterexample)
    assert found.workload["clients"] >= 3


def test_an_unbound_scenario_replays_by_name() -> None:
    """A scenario bound to no variable gets a snippet that finds it by name, and the snippet replays it."""
    found = explore(Scenario("unbound-shop", order_system.build_calm_world, {"clients": 6}), [stock_never_negative()],
                    seeds=range(10), workers=1, shrink_runs=5)
    assert isinstance(found, Counterexample)
    assert "sandbox.explore.scenario_named('unbound-shop')" in found.snippet
    *setup, call = found.snippet.split("; ")
    scope: dict = {}
    exec("; ".join(setup), scope)
    assert eval(call, scope).fingerprint == found.fingerprint


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda: Scenario("x", order_system.build_calm_world, [("clients", 8)]), "workload=[('clients', 8)]"),
        (lambda: Scenario("x", order_system.build_calm_world, {"customers": 3}), "knob 'customers' is no parameter"),
        (lambda: Scenario("x", order_system.build_calm_world, {"clients": 0}), "workload['clients']=0"),
        (lambda: Scenario("", order_system.build_calm_world), "name=''"),
        (lambda: explore(SMALL, [charged_twice], workers="2"), "workers='2'"),
        (lambda: explore(SMALL, [charged_twice], shrink_runs=-1), "shrink_runs=-1"),
    ],
)
def test_bad_scenarios_and_explore_options_are_refused(make, shown: str) -> None:
    """A malformed scenario or explore option raises InvalidParameterError showing the bad value, before any run."""
    with pytest.raises(sandbox.InvalidParameterError) as info:
        make()
    assert shown in str(info.value)


def test_plain_text_front_ends_get_a_short_repr(double_charge: Counterexample) -> None:
    """repr() (what a plain-text front end shows) is one line saying what broke and what to do next."""
    assert repr(double_charge) == (f"<Counterexample order-system seed {double_charge.seed}: no_double_charge() broken; "
                                   f"print() it for the story, .replay() to run it again>")
    green = Passed(order_system.scenario, 3, (1, 2, 3), (), 0.2)
    assert repr(green) == "<Passed order-system: 3 runs, no counterexample; print() it for the details>"


def _dying_poller_world(seed: int, pollers: int = 1) -> sandbox.World:
    """A service whose lifespan's background poller dies at t=1.5 (KeyError), and a client that waits 3 s."""
    from test_services import poller_app

    world = sandbox.World(seed=seed)
    world.add_service("api", poller_app, replicas=pollers)

    async def idle(client: sandbox.Client) -> None:
        await client.sleep(3.0)

    world.add_client("caller", idle)
    return world


def test_a_counterexample_shows_the_errors_in_service_code():
    """The counterexample's text and HTML list what escaped service code in the run: a background poller that
    died in the lifespan's task group is there, with its node, time and exception."""

    def poller_alive(world: sandbox.World) -> Verdict:
        if world.errors:
            return Verdict.failing("poller alive", "the poller stopped", ())
        return Verdict.passing("poller alive", "it polled throughout")

    found = explore(Scenario("pollers", _dying_poller_world, {"pollers": 1}), [poller_alive], seeds=[4], workers=1)
    assert isinstance(found, Counterexample)
    text = str(found)
    assert "Errors in service code (1):" in text
    assert "t=1.5000 api-0 background task" in text and "KeyError: 'cursor'" in text
    assert "Errors in service code (1):" in found._repr_html_()


@pytest.mark.skipif(sys.platform != "linux", reason="worker processes are forked, and die with their parent, on Linux")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_worker_processes_never_outlive_the_exploration_that_started_them(how, tmp_path):
    """An exploration whose seeds never end (a busy loop in service code) is stopped: killed outright, or by Ctrl-C.
    Its worker processes go with it instead of spinning on for ever."""
    import signal
    import subprocess
    import textwrap
    import time

    script = tmp_path / "spin.py"
    script.write_text(textwrap.dedent('''
        import sys
        from fastapi import FastAPI
        import sandbox
        from sandbox.checkers import Verdict
        from sandbox.explore import Scenario, explore

        def spinning_app():
            app = FastAPI()

            @app.get("/spin")
            async def spin():
                while True:
                    pass

            return app

        async def caller(client):
            await client.http.get("http://api/spin")

        def build(seed, clients=1):
            world = sandbox.World(seed=seed)
            world.add_service("api", spinning_app)
            world.add_client("caller", caller)
            return world

        def answered(world):
            return Verdict.passing("answered", "every call answered")

        import faulthandler, signal
        faulthandler.register(signal.SIGUSR1)  # the test asks for the stacks if this process hangs
        # Ctrl-C raises KeyboardInterrupt, as in a terminal (a pytest-xdist worker starts its children with
        # SIGINT ignored, and Python then installs no handler of its own)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("started", flush=True)
        explore(Scenario("spins", build, {"clients": 1}), [answered], seeds=range(8), workers=2)
    '''))
    errors = tmp_path / "stderr.txt"
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              stderr=errors.open("w"), start_new_session=True)
    try:
        assert parent.stdout.readline().strip() == "started"
        children: list[int] = []
        for _ in range(100):  # the pool starts its workers
            time.sleep(0.1)
            with contextlib.suppress(FileNotFoundError):
                children = [int(p) for p in
                            open(f"/proc/{parent.pid}/task/{parent.pid}/children").read().split()]
            if len(children) >= 2:
                break
        assert len(children) >= 2, children
        time.sleep(0.5)  # the workers are in their endless seeds
        os.kill(parent.pid, signal.SIGKILL if how == "SIGKILL" else signal.SIGINT)
        try:
            parent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(parent.pid, signal.SIGUSR1)
            time.sleep(1)
            pytest.fail(f"the exploration did not end after {how}; its threads:\n{errors.read_text()[-6000:]}")
        deadline = time.monotonic() + 10
        alive = children
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [pid for pid in children if _running(pid)]
        assert alive == [], f"workers {alive} outlived their parent ({how})"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Is process ``pid`` alive (not gone, not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_run_stopped_by_its_wall_clock_limit_is_a_counterexample_found_fast_and_not_shrunk():
    """A service that loops without awaiting fails every invariant with where it was stopped; the exploration does
    not try to shrink it (each try would spend the wall-clock limit again)."""
    import time

    from test_world import _spinning_app

    def build(seed: int, clients: int = 2) -> sandbox.World:
        world = sandbox.World(seed=seed, wall_limit=0.3)
        world.add_service("api", _spinning_app)
        for i in range(clients):
            async def caller(client: sandbox.Client) -> None:
                await client.http.get("http://api/spin", timeout=1.0)

            world.add_client(f"caller-{i}", caller)
        return world

    started = time.monotonic()
    found = explore(Scenario("spinning", build, {"clients": 2}), [no_double_charge()], seeds=range(3), workers=1,
                    schedules=[Schedule([Loss("api", start=0.0, duration=0.5)])])
    assert time.monotonic() - started < 5
    assert isinstance(found, Counterexample) and found.seed == 0
    assert found.runs == 2 and found.workload == {"clients": 2} and len(found.schedule) == 1
    assert "the run never finished" in found.verdict.summary and "'GET /spin'" in found.verdict.summary
    assert "Unfinished:" not in str(found)


def test_exploring_writes_nothing_into_the_current_folder(tmp_path):
    """Hypothesis caches what it collects from the code in `.hypothesis/` under the current folder (beside a lab
    notebook, or in the checkout); exploring keeps it in the user's cache folder instead, unless the user chose
    one with HYPOTHESIS_STORAGE_DIRECTORY."""
    import os
    import subprocess
    import sys

    here, home = tmp_path / "notebooks", tmp_path / "home"
    here.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HYPOTHESIS_STORAGE_DIRECTORY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    code = (
        "from sandbox.checkers import no_double_charge\n"
        "from sandbox.examples.order_system import scenario\n"
        "from sandbox.explore import explore\n"
        "from sandbox.strategies import schedules\n"
        "found = explore(scenario, [no_double_charge()], seeds=range(3), "
        "schedules=schedules(['orders', 'payments', 'inventory']), workers=1)\n"
        "print(type(found).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=here, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(here.iterdir()) == []
    assert (home / ".cache" / "chaos-dojo" / "hypothesis").is_dir()
