"""Lab 04 (tracing): the generated service works in staging and leaves traces no one can use; the
reference solution's traces hold on every seed and adversarial schedule; every mutant is caught;
the traces answer the lab's graded question."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fastapi import Depends, FastAPI

import sandbox
from autograder import seed_bank
from sandbox.checkers import connected_traces
from sandbox.explore import Counterexample, Passed
from sandbox.faults import Schedule

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "04-tracing"
MUTANTS = sorted(p.stem for p in (LAB_DIR / "mutants").glob("*.py"))
REQUIRED = "required_attributes(names=('order.id', 'customer.id', 'order.region'))"
#: The invariant that catches each mutant first.
CAUGHT_BY = {
    "attributes_on_server_only": REQUIRED,
    "kafka_not_propagated": "connected_traces()",
    "racy_context": "one_trace_per_order",
    "span_open_on_error": "every_span_ended",
    "status_not_set": "failures_marked",
    "timeouts_unmarked": "failures_marked",
}


def load(name: str) -> ModuleType:
    """A module of the lab by its path inside the lab folder (``"lab"``, ``"mutants/status_not_set"``)."""
    module_name = "lab_04_tracing_" + name.replace("/", "_")
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LAB_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


lab = load("lab")


def run(create_app, seed: int, schedule: Schedule | None = None):
    """One world of the lab for ``seed``, run to the end of its quiet phase."""
    world = lab.build_world(seed, create_app)
    if schedule is not None:
        world.inject(schedule)
    return world.run(settle=lab.SETTLE, limit=lab.LIMIT)


def test_there_are_at_least_three_mutants_each_with_a_docstring():
    """The lab ships three or more partial fixes, each saying what it gets wrong."""
    assert len(MUTANTS) >= 3, MUTANTS
    assert set(MUTANTS) == set(CAUGHT_BY), MUTANTS
    for name in MUTANTS:
        module = load(f"mutants/{name}")
        assert callable(module.create_app) and len(module.__doc__ or "") > 100, name


@pytest.mark.parametrize("name", ["generated", "solution", *(f"mutants/{m}" for m in MUTANTS)])
def test_the_happy_path_passes(name: str):
    """One order on a calm TestClient setup is saved, published, picked and delivered: generated code,
    solution and mutants all work in staging."""
    lab.happy_path(load(name).create_app)


def test_the_happy_path_catches_a_consumer_that_skips_the_courier():
    """The staging test is no formality: a fulfilment consumer that never books the courier fails it."""

    def no_courier() -> FastAPI:
        app = FastAPI()

        @app.post("/orders", status_code=201)
        async def place(body: dict, producer: sandbox.Producer = Depends(sandbox.producer)) -> dict:
            await producer.send("order-placed", body, key=body["id"])
            return body

        @sandbox.consumer(app, "order-placed", group="fulfilment")
        async def fulfil(message: sandbox.Message, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> None:
            order = message.value
            await http.post("http://warehouse/picks", json={"order_id": order["id"], "sku": order["sku"],
                                                            "qty": order["qty"], "region": order["region"]})

        return app

    lab.happy_path(lambda: load("generated").create_app())  # the real thing passes...
    with pytest.raises(AssertionError, match="deliveries"):
        lab.happy_path(no_courier)  # ...and this does not


def test_the_generated_code_fails_the_hidden_bank():
    """The generated consumer starts traces of its own (no traceparent in the message headers):
    the counterexample names connected_traces and says what to inject."""
    found = lab.check(load("generated").create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample)
    assert found.invariant == "connected_traces()"
    assert "CONSUMER span 'process order-placed'" in found.verdict.summary
    assert "traceparent" in found.verdict.summary


def test_every_flaw_of_the_generated_code_is_caught_on_a_calm_run():
    """Beyond the broken traces, the generated code's missing attributes and unmarked failures each
    fail their own invariant, without any fault; it ends every span it starts."""
    world = run(load("generated").create_app, 11, Schedule())
    verdicts = {v.invariant: v for v in (check(world) for check in lab.invariants())}
    for name in ("connected_traces()", "one_trace_per_order", REQUIRED, "failures_marked"):
        assert verdicts[name].outcome.name == "FAIL", verdicts[name]
    assert verdicts["every_span_ended"].passed, verdicts["every_span_ended"]
    assert "answered 503" in verdicts["failures_marked"].summary


def test_the_counterexample_of_the_generated_code_shrinks_and_replays():
    """On the visible bank the generated code's counterexample shrinks to a smaller workload and replays exactly."""
    found = lab.check(load("generated").create_app, "visible")
    assert isinstance(found, Counterexample)
    assert sum(found.workload.values()) < sum(found.original_workload.values())
    assert found.replay().fingerprint == found.fingerprint


@pytest.mark.parametrize("bank", ["visible", "hidden"])
def test_the_solution_passes_every_seed_and_adversarial_schedule(bank: str):
    """The reference solution holds every invariant on every seed of the bank and every ADVERSARIAL schedule."""
    result = lab.check(load("solution").create_app, bank, shrink=False)
    assert isinstance(result, Passed), result
    assert result.ok, result.undecided[:3]
    size = lab.VISIBLE if bank == "visible" else lab.HIDDEN
    assert result.runs == size + len(lab.ADVERSARIAL)


def test_the_solution_passes_a_hidden_bank_drawn_from_a_grading_secret():
    """With a grading secret the hidden bank is a different one, and the solution still passes it."""
    result = lab.check(load("solution").create_app, "hidden", secret="lab-04-test-secret", shrink=False)
    assert isinstance(result, Passed) and result.ok, result


@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_by_the_hidden_checks(name: str):
    """Each partial fix breaks the invariant its flaw is about, on the hidden bank (or an adversarial schedule)."""
    found = lab.check(load(f"mutants/{name}").create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample), f"mutant {name} was not caught"
    assert found.invariant == CAUGHT_BY[name], found.verdict


def test_a_mutant_that_misses_timeouts_passes_a_calm_run():
    """Without network faults no call times out, so the mutant that leaves timeouts unmarked passes:
    only the fault schedules catch it."""
    world = run(load("mutants/timeouts_unmarked").create_app, 11, Schedule())
    for check in lab.invariants():
        assert check(world).passed, check(world)


def test_a_context_raced_into_another_order_s_trace_is_a_connected_tree():
    """The racy mutant's traces are all well-formed trees (connected_traces passes), yet an order's
    fulfilment sits in another order's trace: only one_trace_per_order, which knows the orders, sees it."""
    found = lab.check(load("mutants/racy_context").create_app, "visible", shrink=False)
    assert isinstance(found, Counterexample) and found.invariant == "one_trace_per_order"
    assert connected_traces()(found.world).passed
    assert "customer-" in found.verdict.summary  # the other trace starts at another customer's request


def test_each_adversarial_schedule_acts_on_the_service_or_its_consumers():
    """Every hand-written schedule aims at the learner's service, its links, its database or its consumer group."""
    assert len(lab.ADVERSARIAL) >= 3
    for schedule in lab.ADVERSARIAL:
        for fault in schedule:
            assert {"orders", "orders-db", lab.GROUP} & set(fault.target), fault


def test_a_redelivered_message_continues_its_orders_trace():
    """Under redelivery (every commit lost for a while) the solution handles messages more than once,
    and every handling of an order's message is in the trace of the customer's request."""
    world = run(load("solution").create_app, 5, lab.ADVERSARIAL[0])
    spans = world.spans()
    traces = lab._client_traces(world, spans)
    handled: dict[str, list] = {}
    for s in spans:
        if s.kind.name == "CONSUMER":
            handled.setdefault(s.attributes["order.id"], []).append(s)
    again = {order: ss for order, ss in handled.items() if len(ss) > 1}
    assert again, "no message was delivered twice"
    for order, ss in again.items():
        assert {s.context.trace_id for s in ss} == {traces[order]}, order


def test_the_invariants_do_not_pass_a_service_that_traces_nothing():
    """A service that takes orders and never publishes them leaves nothing to check: UNKNOWN, not PASS."""

    def silent() -> FastAPI:
        app = FastAPI()

        @app.post("/orders", status_code=201)
        async def place(body: dict) -> dict:
            return body

        return app

    world = run(silent, 3, Schedule())
    verdicts = {v.invariant: v for v in (check(world) for check in lab.invariants())}
    assert not verdicts["one_trace_per_order"].passed
    assert not verdicts["failures_marked"].passed


@pytest.mark.parametrize("seed", seed_bank(lab.LAB, "visible", lab.VISIBLE))
def test_the_solutions_traces_find_the_slow_dependency(seed: int):
    """From the solution's traces, the reference analysis names the dependency that makes slow orders
    slow, and answer_is_right agrees (and rejects the other dependency)."""
    answer = load("solution").slowest_dependency(run(load("solution").create_app, seed, Schedule()))
    assert answer == lab.culprit(seed)[0]
    assert lab.answer_is_right(answer, seed)
    other = next(d for d in lab.DEPENDENCIES if d != answer)
    assert not lab.answer_is_right(other, seed)


def test_answer_is_right_reads_answers_as_a_person_would():
    """Case, spaces and a leading "the" do not matter; anything else that is not the culprit is wrong."""
    seed = 7
    culprit = lab.culprit(seed)[0]
    assert lab.answer_is_right(f"  The {culprit.upper()} ", seed)
    assert not lab.answer_is_right("orders", seed)
    assert not lab.answer_is_right(None, seed)  # type: ignore[arg-type]


def test_the_culprit_depends_on_the_seed():
    """Both dependencies are the slow one on some hidden seeds, so an answer cannot be learned by heart."""
    culprits = {lab.culprit(seed)[0] for seed in seed_bank(lab.LAB, "hidden", lab.HIDDEN)}
    assert culprits == set(lab.DEPENDENCIES)


def test_order_traces_lists_every_order_slowest_first():
    """The notebook's helper gives one trace per order, slowest first, each with its duration."""
    world = run(load("solution").create_app, 3, Schedule())
    rows = lab.order_traces(world)
    assert len(rows) == 15 and len({t for _o, t, _d in rows}) == 15
    assert [d for _o, _t, d in rows] == sorted((d for _o, _t, d in rows), reverse=True)
    assert lab.slow_traces(world, 2) == [rows[0][1], rows[1][1]]


def test_visible_and_hidden_banks_differ():
    """The self-check seeds and the grading seeds share nothing."""
    visible = seed_bank(lab.LAB, "visible", lab.VISIBLE)
    hidden = seed_bank(lab.LAB, "hidden", lab.HIDDEN)
    assert len(visible) == lab.VISIBLE and len(hidden) == lab.HIDDEN
    assert not set(visible) & set(hidden)


def test_the_happy_path_does_not_depend_on_the_global_random_state():
    """Staging is the same on every run: whatever Python's global random state, the happy path passes."""
    import random

    state = random.getstate()
    try:
        for seed in range(20):
            random.seed(seed)
            lab.happy_path(load("generated").create_app)
    finally:
        random.setstate(state)


def load_answer() -> ModuleType:
    """The reference answer cell (``answer.py``): it imports ``lab`` as the notebook does, from the lab folder."""
    if str(LAB_DIR) not in sys.path:
        sys.path.insert(0, str(LAB_DIR))
    return load("answer")


def test_the_answer_bank_holds_both_culprits():
    """The seeds the graded answer is asked on make both dependencies the culprit at least once, so no
    constant answer passes."""
    seeds = seed_bank(lab.LAB, "hidden", lab.ANSWER_SEEDS)
    assert {lab.culprit(seed)[0] for seed in seeds} == set(lab.DEPENDENCIES)


def test_the_reference_answer_passes_with_the_reference_solution():
    """answer.py's slowest_dependency names the culprit on every answer seed, default bank and a secret one."""
    answer = load_answer().slowest_dependency
    assert lab.grade_answer(answer, load("solution").create_app) == lab.ANSWER_SEEDS
    assert lab.grade_answer(answer, load("solution").create_app, secret="lab-04-test-secret") == lab.ANSWER_SEEDS


@pytest.mark.parametrize("constant", lab.DEPENDENCIES)
def test_a_constant_answer_fails_and_the_message_says_where(constant: str):
    """Always naming the same dependency is wrong on some seeds: the error counts them and shows the first."""
    seeds = seed_bank(lab.LAB, "hidden", lab.ANSWER_SEEDS)
    wrong = [s for s in seeds if lab.culprit(s)[0] != constant]
    with pytest.raises(AssertionError) as info:
        lab.grade_answer(lambda world: constant, load("solution").create_app)
    message = str(info.value)
    assert f"wrong on {len(wrong)} of {lab.ANSWER_SEEDS} worlds" in message
    assert f"seed {wrong[0]}" in message and f"answered {constant!r}" in message


def test_a_stub_answer_fails_saying_what_it_raised():
    """The shipped stub (raising NotImplementedError) fails every seed, and the message says so."""

    def stub(world):
        raise NotImplementedError("read the slow traces")

    with pytest.raises(AssertionError, match=rf"wrong on {lab.ANSWER_SEEDS} of .*NotImplementedError"):
        lab.grade_answer(stub, load("solution").create_app, seeds=lab.ANSWER_SEEDS)


def test_the_answer_module_is_a_plain_cell():
    """answer.py is what the solution notebook's answer cell holds: imports and one function, nothing run."""
    import ast

    tree = ast.parse((LAB_DIR / "answer.py").read_text())
    kinds = [type(node).__name__ for node in tree.body]
    assert set(kinds) <= {"Import", "ImportFrom", "FunctionDef"}, kinds
    assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == ["slowest_dependency"]
