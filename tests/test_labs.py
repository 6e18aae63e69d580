"""What the labs share (autograder.labs): loading a lab's modules, and adding up green explorations."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import sandbox
from autograder.labs import load_module, mutant_names
from sandbox.checkers import no_double_charge
from sandbox.examples import order_system
from sandbox.explore import Counterexample, Passed, explore

IDEMPOTENCY = Path(__file__).resolve().parent.parent / "labs" / "02-idempotency"


def test_two_green_explorations_add_up():
    """Runs, faults and recovery paths add up; an assertion is unexercised only if neither exercised it."""
    sc = order_system.scenario
    a = Passed(sc, 3, (1, 2, 3), (), 1.0, (2, 4), (("nodes restarted", 1),), ("retried", "compensated"))
    b = Passed(sc, 2, (1, 9), (), 0.5, (1, 2), (("nodes restarted", 2), ("requests timed out", 5)), ("retried",))
    total = a + b
    assert (total.runs, total.seeds, total.seconds, total.faults) == (5, (1, 2, 3, 9), 1.5, (3, 6))
    assert total.recovery == (("nodes restarted", 3), ("requests timed out", 5))
    assert total.unexercised == ("retried",)


def test_a_lab_module_loads_by_path_and_its_mutants_are_listed():
    """load_module finds a lab's module by name; the mutants are listed as "mutants/NAME", sorted."""
    module = load_module(IDEMPOTENCY, "solution", "chaos_dojo_labs.test")
    assert callable(module.create_app)
    names = mutant_names(IDEMPOTENCY)
    assert names == sorted(names) and all(n.startswith("mutants/") for n in names) and len(names) >= 3


def test_an_unknown_lab_module_is_named_with_the_known_ones():
    """A module that is not in the lab's folder raises UnknownNameError listing what is there."""
    with pytest.raises(sandbox.UnknownNameError, match=r"no module 'solutoin'.*'solution'"):
        load_module(IDEMPOTENCY, "solutoin", "chaos_dojo_labs.test")


def _notebook_cell(source: str, filename: str) -> dict:
    """Run ``source`` as IPython runs a cell: in ``__main__``'s name, its text kept in linecache."""
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


CELL = '''
from fastapi import FastAPI

SEEN = []          # module-level memory: each replica must get its own


def create_app():
    app = FastAPI()
    SEEN.append(len(SEEN))
    app.state.seen = list(SEEN)
    return app
'''


def test_a_factory_from_a_notebook_cell_gets_fresh_module_state_per_replica():
    """A cell-defined create_app is re-run from the cell's text for each replica: module state is not shared."""
    from autograder.labs import service_factory

    namespace = _notebook_cell(CELL, "/tmp/ipykernel_0/cell-1.py")
    factory = service_factory(namespace["create_app"])
    assert factory is not namespace["create_app"] and service_factory(factory) is factory
    assert factory().state.seen == [0] and factory().state.seen == [0]      # each replica: a fresh SEEN
    assert namespace["SEEN"] == []                                          # the notebook's own is untouched
    direct = namespace["create_app"]
    assert direct().state.seen == [0] and direct().state.seen == [0, 1]     # what sharing would have looked like


def test_a_cell_that_cannot_run_again_names_the_rule():
    """A service cell that needs other cells' names fails at the replica's start with a ConfigError saying why."""
    from autograder.labs import service_factory

    source = "def create_app():\n    return helper()\n\nhelper_result = helper()\n"
    linecache_name = "/tmp/ipykernel_0/cell-2.py"
    namespace = {"__name__": "__main__", "helper": lambda: "app"}
    import linecache

    linecache.cache[linecache_name] = (len(source), None, source.splitlines(keepends=True), linecache_name)
    exec(compile(source, linecache_name, "exec"), namespace)
    with pytest.raises(sandbox.ConfigError, match=r"cell-2.py: a notebook cell.*NameError.*only the service"):
        service_factory(namespace["create_app"])()


def test_a_factory_from_a_file_is_left_to_the_world():
    """A factory from a .py module is returned as it is (the world re-runs its module per replica)."""
    from autograder.labs import service_factory

    module = load_module(IDEMPOTENCY, "solution", "chaos_dojo_labs.test")
    assert service_factory(module.create_app) is module.create_app


def test_grade_parts_select_invariants_by_name_and_unknown_names_are_listed():
    """`only` picks invariants by their name up to the arguments; a typo lists the lab's names."""
    from autograder.labs import select
    from sandbox.checkers import exactly_once, no_double_charge

    invs = [no_double_charge(), exactly_once(db="db", table="charges", key="order_id", topic="t", group="g")]
    assert select(invs, ()) == invs
    assert select(invs, ("exactly_once",)) == invs[1:]
    with pytest.raises(sandbox.UnknownNameError, match=r"'no_double_charges'.*'no_double_charge', 'exactly_once'"):
        select(invs, ("no_double_charges",))


def test_a_grade_cell_fails_with_the_counterexample_and_passes_quietly():
    """must_pass returns a green Passed, and raises AssertionError carrying the counterexample's text otherwise."""
    from autograder.labs import must_pass

    found = explore(order_system.scenario, [no_double_charge()], seeds=[0], schedules=order_system.nemesis,
                    shrink=False)
    with pytest.raises(AssertionError, match=r"(?s)Counterexample.*Broken: no_double_charge"):
        must_pass(found)
    green = Passed(order_system.scenario, 1, (1,), (), 0.1, (0, 0), (), ())
    assert must_pass(green) is green


def test_a_passing_grade_cell_shows_how_much_was_checked_but_no_seed(capsys):
    """grade() runs the hidden bank of the lab's check and prints runs, faults and recovery, never the seeds; it returns
    nothing (nbgrader would read a number as partial credit)."""
    from autograder.labs import grader

    calls = []
    green = Passed(order_system.scenario, 34, (118_273_645, 2_047_118_000), (), 2.0, (20, 31), (("nodes restarted", 4),), ())

    def check(create_app, bank, *, secret=None, shrink=True, only=()):
        calls.append((bank, secret, shrink, only))
        return green

    grade = grader(check, lab="02-idempotency")
    assert grade(lambda: None, "no_double_charge", secret="s") is None  # a number would be partial credit
    assert calls == [("hidden", "s", False, ())]
    assert capsys.readouterr().out == ("Passed: no_double_charge, on 34 runs of the hidden bank and adversarial "
                                       "schedules; 20 of 31 scheduled faults acted; recovery paths taken: nodes "
                                       "restarted 4\n")


def test_the_parts_of_a_submission_share_one_run_of_the_hidden_bank(capsys):
    """The first grade cell checks every invariant on the hidden bank; while that passes, the other parts of the same
    code and secret read their verdicts from it (an undecided verdict fails only its own part); other code or another
    secret runs the bank again."""
    from autograder.labs import grader
    from sandbox.checkers import Verdict

    calls = []
    undecided = ((7, Verdict.unknown("recovered(within=3.0)", "no order came late enough")),)
    whole = Passed(order_system.scenario, 12, (7, 8), undecided, 1.0, (3, 4), (), ())

    def check(create_app, bank, *, secret=None, shrink=True, only=()):
        calls.append((secret, only))
        return whole

    grade = grader(check, lab="06-resilience")

    def create_app():
        return None

    grade(create_app, "answered_gracefully", secret="s")
    grade(create_app, "retry_amplification", secret="s")
    with pytest.raises(AssertionError, match="1 of 12 runs of the hidden bank were undecided"):
        grade(create_app, "outage_contained", "recovered", secret="s")
    assert calls == [("s", ())]
    grade(create_app, "answered_gracefully", secret="other")
    assert calls == [("s", ()), ("other", ())]
    assert capsys.readouterr().out.count("Passed: ") == 3


def test_a_part_of_code_that_broke_something_runs_its_own_check():
    """When the shared run of every invariant finds a counterexample, each part is checked on its own, as before, so
    that a part the code passes still passes and a failing part shows its own (shrunk) counterexample."""
    from autograder.labs import grader

    broken = explore(order_system.scenario, [no_double_charge()], seeds=[0], schedules=order_system.nemesis,
                     shrink=False)
    green = Passed(order_system.scenario, 3, (1, 2, 3), (), 1.0)
    calls = []

    def check(create_app, bank, *, secret=None, shrink=True, only=()):
        calls.append((shrink, only))
        return broken if not only else green

    grade = grader(check, lab="02-idempotency")

    def create_app():
        return None

    grade(create_app, "exactly_once", secret="s")
    grade(create_app, "stock_conserved", secret="s")
    assert calls == [(False, ()), (True, ("exactly_once",)), (True, ("stock_conserved",))]


def test_a_cell_failing_inside_a_task_group_names_the_error_inside():
    """An exception group from the cell's code is unwrapped: the message names the first error inside it."""
    import linecache

    from autograder.labs import service_factory

    source = ("import anyio\n\nasync def boom():\n    raise KeyError('sku')\n\nasync def main():\n"
              "    async with anyio.create_task_group() as tg:\n        tg.start_soon(boom)\n\n"
              "anyio.run(main)\n\ndef create_app():\n    return None\n")
    name = "/tmp/ipykernel_0/cell-3.py"
    linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)
    namespace = {"__name__": "__main__"}
    exec(compile(source.replace("anyio.run(main)", "pass"), name, "exec"), namespace)
    with pytest.raises(sandbox.ConfigError, match=r"\(KeyError: 'sku'\)"):
        service_factory(namespace["create_app"])()


LOGGING_CELL = '''
import logging
import sys

from fastapi import FastAPI

log = logging.getLogger("payments")


def create_app():
    app = FastAPI()

    @app.get("/")
    async def hello():
        log.warning("a warning from the service")
        print("and a line on stderr", file=sys.stderr)
        return {"ok": True}

    return app
'''


def _calls_the_service(create_app):
    """A check that runs ``create_app`` in a world (in worker processes when ``workers`` > 1)."""
    import sandbox as sb

    def build(seed: int, calls: int = 2) -> sb.World:
        world = sb.World(seed=seed)
        world.add_service("api", create_app)

        async def caller(client: sb.Client) -> None:
            for _ in range(calls):
                await client.http.get("http://api/", timeout=1.0)

        world.add_client("caller", caller)
        return world

    def ok(world):
        from sandbox.checkers import Verdict

        return Verdict.passing("answered", "every call answered")

    from sandbox.explore import Scenario

    return Scenario("logging", build, {"calls": 2}), [ok]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_grade_cell_holds_back_the_learners_logging_so_stderr_stays_empty(workers):
    """A service that logs warnings and prints to stderr, through a handler configured before grading (as a
    notebook's logging.basicConfig() does), in this process or in forked check workers: the grade cell writes
    nothing on stderr (nbgrader would score it 0) and says how many lines it held back."""
    import subprocess
    import textwrap

    script = textwrap.dedent(f'''
        import logging, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        logging.basicConfig(level=logging.INFO)
        from autograder.labs import grade_cell, service_factory
        from sandbox.explore import explore
        from test_labs import LOGGING_CELL, _calls_the_service, _notebook_cell

        namespace = _notebook_cell(LOGGING_CELL, "/tmp/ipykernel_0/cell-9.py")
        scenario, invariants = _calls_the_service(service_factory(namespace["create_app"]))

        @grade_cell
        def grade():
            found = explore(scenario, invariants, seeds=range(6), workers={workers})
            assert not found.found, str(found)
            return f"Passed: {{found.runs}} runs"

        grade()
        logging.getLogger("payments").warning("after grading, logging reaches stderr again")
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "WARNING:payments:after grading, logging reaches stderr again\n"
    assert done.stdout.startswith("Passed: 6 runs (your code wrote 24 lines of output while graded; held back")


def test_a_failing_grade_cell_shows_the_last_lines_the_learners_code_wrote():
    """The AssertionError of a failing grade carries the counterexample and then the tail of the held-back output."""
    from autograder.labs import grade_cell

    @grade_cell
    def grade():
        for i in range(30):
            print(f"line {i}", file=sys.stderr)
        raise AssertionError("Counterexample - toy - seed 1")

    with pytest.raises(AssertionError) as failed:
        grade()
    text = str(failed.value)
    assert text.startswith("Counterexample - toy - seed 1\n\nYour code wrote 30 lines")
    assert "  | line 29" in text and "  | line 19" not in text


def test_a_factory_from_a_notebook_cell_hashes_with_each_replicas_own_salt():
    """hash() in a cell-defined service is salted per replica, as in separate processes: the replicas disagree on
    hash("ord-1") (a fingerprint made with it fails a retry that reaches the other replica, as in production)."""
    from autograder.labs import service_factory

    source = ("from fastapi import FastAPI\n\nimport sandbox\n\n\ndef create_app():\n    app = FastAPI()\n\n"
              "    @app.get('/h')\n    async def h():\n        return {'h': hash('ord-1'), 'again': hash('ord-1')}\n\n"
              "    return app\n")
    namespace = _notebook_cell(source, "/tmp/ipykernel_0/cell-7.py")
    world = sandbox.World(seed=2)
    world.add_service("hasher", service_factory(namespace["create_app"]), replicas=2)
    seen = []

    async def asker(client: sandbox.Client) -> None:
        for replica in ("hasher-0", "hasher-1"):
            seen.append((await client.http.get(f"http://{replica}/h", timeout=1.0)).json())

    world.add_client("asker", asker)
    world.run()
    assert [s["h"] == s["again"] for s in seen] == [True, True]
    assert seen[0]["h"] != seen[1]["h"]


def test_a_failing_grade_never_shows_a_hidden_seed():
    """A counterexample found on the hidden bank is shown under a public seed that breaks the same invariant with
    the same faults and workload (its replay line works for the learner), or else without any seed; undecided runs
    are counted and summarised without theirs."""
    from autograder.labs import must_pass, rehome
    from sandbox.checkers import Outcome, Verdict

    hidden = 0
    found = explore(order_system.scenario, [no_double_charge()], seeds=[hidden], schedules=order_system.nemesis,
                    shrink=False)
    assert isinstance(found, Counterexample) and found.seed == hidden
    public = [seed for seed in range(1, 40) if rehome(found, [seed]) is not None][:1]
    assert public, "some public seed breaks no_double_charge under the same faults"
    with pytest.raises(AssertionError) as info:
        must_pass(found, public=[*range(1, public[0]), public[0]])
    text = str(info.value)
    assert f"seed {public[0]}" in text and f".replay({public[0]}," in text and f"seed {hidden}\n" not in text
    shown = rehome(found, public)
    assert shown.replay().fingerprint == shown.fingerprint

    with pytest.raises(AssertionError) as info:
        must_pass(found, public=[])
    text = str(info.value)
    assert "its seed stays hidden" in text and "Broken: no_double_charge" in text and "Faults (" in text
    assert "Replay:" not in text and f"seed {hidden}" not in text and "Fingerprint" not in text

    undecided = Passed(order_system.scenario, 12, (1_234_567, 7_654_321), (
        (1_234_567, Verdict.unknown("no_double_charge()", "no charge was made")),
        (7_654_321, Verdict.unknown("no_double_charge()", "no charge was made"))), 1.0)
    assert undecided.undecided[0][1].outcome is Outcome.UNKNOWN
    with pytest.raises(AssertionError) as info:
        must_pass(undecided, public=[1])
    text = str(info.value)
    assert "2 of 12 runs of the hidden bank were undecided" in text and "no charge was made" in text
    assert "1234567" not in text and "7654321" not in text and "1_234_567" not in text


@pytest.mark.parametrize("lab_name", ["01-cap", "02-idempotency", "03-sagas", "04-tracing", "05-concurrency",
                                      "06-resilience"])
def test_each_labs_parts_are_its_notebooks_grade_cells(lab_name):
    """lab.PARTS (what a grader that does not run the notebook grades) names every grade cell of the lab's notebook,
    with the points nbgrader gives it, and what each cell checks: the names its lab.grade call passes (lab 01: the
    part of the promise; lab 04's last part: the graded answer)."""
    import ast
    import json

    folder = Path(__file__).resolve().parent.parent / "labs" / lab_name
    lab = load_module(folder, "lab", f"chaos_dojo_labs.parts_{lab_name.replace('-', '_')}")
    cells = [c for c in json.loads((folder / "lab.ipynb").read_text())["cells"]
             if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert [c["metadata"]["nbgrader"]["grade_id"] for c in cells] == list(lab.PARTS)
    for cell in cells:
        call = ast.parse("".join(cell["source"])).body[-1].value
        part = lab.PARTS[cell["metadata"]["nbgrader"]["grade_id"]]
        if call.func.attr == "grade_answer":
            assert part == ("slowest_dependency",) and call.args[0].id == "slowest_dependency"
        elif lab_name == "01-cap":
            assert ast.literal_eval(call.args[1].args[1]) == part
        else:
            assert tuple(ast.literal_eval(a) for a in call.args[1:]) == part
        assert cell["metadata"]["nbgrader"]["points"] > 0
