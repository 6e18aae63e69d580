"""Lab 04 (tracing): the generated service works in staging and leaves traces no one can use; the
reference solution's and the alternatives' traces hold on every seed and adversarial schedule, under
grading secrets too; every mutant is caught; the traces answer the lab's graded question in every
graded world."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from fastapi import Depends, FastAPI

import sandbox
from autograder import seed_bank
from sandbox.checkers import connected_traces
from sandbox.explore import Counterexample, Passed, explore
from sandbox.faults import Schedule

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "04-tracing"
MUTANTS = sorted(p.stem for p in (LAB_DIR / "mutants").glob("*.py"))
ALTERNATIVES = sorted(p.stem for p in (LAB_DIR / "alternatives").glob("*.py"))
REQUIRED = "required_attributes(names=('order.id', 'customer.id', 'order.region'))"
#: The invariant that catches each mutant first.
CAUGHT_BY = {
    "attributes_on_server_only": REQUIRED,
    "attributes_only_on_success": REQUIRED,
    "background_loop_loses_context": "connected_traces()",
    "everything_is_an_error": "failures_marked",
    "kafka_not_propagated": "connected_traces()",
    "linked_not_parented": "connected_traces()",
    "loop_dies_on_error": "one_trace_per_order",
    "racy_context": "one_trace_per_order",
    "span_open_on_error": "every_span_ended",
    "status_not_set": "failures_marked",
    "status_without_exception": "failures_marked",
    "timeouts_unmarked": "failures_marked",
}
#: Grading secrets the reference and the alternatives are swept under (benchmarks/sweep_labs.py sweeps 50).
SECRETS = ("lab-04-test-secret", "s5", "s7")


def load(name: str) -> ModuleType:
    """A module of the lab by its path inside the lab folder (``"lab"``, ``"mutants/status_not_set"``,
    ``"alternatives/explicit_propagator"``)."""
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


def test_the_lab_lists_its_mutants_and_alternatives():
    """lab.mutants() and lab.alternatives() name the folders' modules, and lab.load loads each."""
    assert lab.mutants() == [f"mutants/{m}" for m in MUTANTS]
    assert lab.alternatives() == [f"alternatives/{a}" for a in ALTERNATIVES]
    assert len(ALTERNATIVES) >= 2
    for name in lab.alternatives():
        module = lab.load(name)
        assert callable(module.create_app) and len(module.__doc__ or "") > 100, name


@pytest.mark.parametrize("name", ["generated", "solution", *(f"mutants/{m}" for m in MUTANTS),
                                  *(f"alternatives/{a}" for a in ALTERNATIVES)])
def test_the_happy_path_passes(name: str):
    """One order on a calm TestClient setup is saved, published, picked and delivered: generated code,
    solution, mutants and alternatives all work in staging."""
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


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("name", ["solution", *(f"alternatives/{a}" for a in ALTERNATIVES)])
def test_correct_fixes_pass_hidden_banks_drawn_from_grading_secrets(name: str, secret: str):
    """With a grading secret the hidden bank is a different one, and the solution and every alternative
    still pass it (s5 and s7 failed the solution before connected_traces excused a parent lost with an
    earlier incarnation of the consumer's own replica)."""
    result = lab.check(load(name).create_app, "hidden", secret=secret, shrink=False, workers=1)
    assert isinstance(result, Passed) and result.ok, result


@pytest.mark.parametrize("name", [f"alternatives/{a}" for a in ALTERNATIVES])
def test_every_alternative_passes_the_visible_and_hidden_banks(name: str):
    """Correct fixes written unlike the reference hold every invariant on both banks and every adversarial schedule."""
    for bank in ("visible", "hidden"):
        result = lab.check(load(name).create_app, bank, shrink=False, workers=1)
        assert isinstance(result, Passed) and result.ok, (bank, result)


def test_the_solution_passes_a_sweep_of_the_nemesis():
    """A small version of the benchmark's sweep: the reference over 60 seeds of the lab's nemesis, each
    checked (no stop at a first failure would hide a second)."""
    failed = []
    for seed in range(60):
        found = explore(lab.scenario(load("solution").create_app), lab.invariants(), seeds=[seed],
                        schedules=lab.schedules, shrink=False, workers=1)
        if found.found or not found.ok:
            failed.append((seed, getattr(found, "invariant", None)))
    assert failed == []


def test_a_run_ends_once_the_fulfilment_has_caught_up():
    """After a crash the consumer's partition waits out the session timeout, and its backlog of slow orders
    (redelivered when a batch outlasts the session) keeps the service busy long after the last order and the
    last fault: more than the lab's old fixed quiet phase of five seconds, which cut a handling in two (a span
    open, or a parent never ended, at the end of the run). The customers wait for the fulfilment to catch up,
    so the run is judged with every message handled and every span ended."""
    seed = 232
    world = run(load("solution").create_app, seed, lab.schedules(seed))
    quiet_from = max(max(op.time for op in world.history), world.chaos.heal_at)
    busy_until = max(lab.ended(s) for s in world.spans() if lab.node_of(s).startswith("orders-"))
    assert busy_until > quiet_from + 5.0
    assert world.broker.lag(lab.GROUP, lab.TOPIC) == 0
    assert getattr(world.tracing, lab._TRACKER).in_flight() == 0
    for check in lab.invariants():
        assert check(world).passed, check(world)


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


def test_a_run_ends_once_every_request_is_answered():
    """A lossy link drops the message a request publishes; the request waits out the producer's five-second
    timeout, long after its customer gave up, and answers 500. The run waits for that answer: its SERVER span
    ends, and the database call it made is no orphan (it was, when the run ended on the clock)."""
    seed = 1901357232
    world = run(load("alternatives/decorated_spans").create_app, seed, lab.schedules(seed))
    timeouts = [e for e in world.errors if e.where == "POST /orders" and e.type == "RequestTimeout"]
    assert timeouts and "produce to order-placed" in timeouts[0].message
    assert world.now > timeouts[0].time
    assert connected_traces()(world).passed


def test_a_span_marked_error_where_nothing_failed_is_a_false_alarm():
    """The mutant that marks every call ERROR (it checks for 200, the dependencies answer 201) marks every
    failure too; failures_marked fails it for the spans of handlings in which nothing failed, by name."""
    world = run(load("mutants/everything_is_an_error").create_app, 11, Schedule())
    verdict = lab.FailuresMarked()(world)
    assert verdict.outcome.name == "FAIL", verdict
    assert "INTERNAL 'pick'" in verdict.summary and "nothing failed in that handling of order ord-" in verdict.summary
    assert "false alarm" in verdict.summary
    assert all("false alarm" in e for e in verdict.evidence)  # each failure is marked: only false alarms


def test_a_failure_marked_error_without_its_exception_fails():
    """Status ERROR alone says that something failed, not what: failures_marked asks for the exception
    event on the span it finds marked, and names that span."""
    world = run(load("mutants/status_without_exception").create_app, 11, Schedule())
    verdict = lab.FailuresMarked()(world)
    assert verdict.outcome.name == "FAIL", verdict
    assert "INTERNAL 'fulfil-order'" in verdict.summary and "records no exception" in verdict.summary
    assert "record_exception" in verdict.summary


def test_the_solution_marks_failures_with_their_exceptions_and_nothing_else():
    """The reference's verdict says what it checked: failed calls marked, with their exceptions, no false alarm."""
    verdict = lab.FailuresMarked()(run(load("solution").create_app, 11, Schedule()))
    assert verdict.passed, verdict
    assert "with its exception, and nothing else is" in verdict.summary


def test_a_fulfilment_loop_that_dies_is_named_in_the_counterexample():
    """A learner's lifespan loop that dies on the first failed call leaves its traces well-formed and every
    later order unfulfilled: one_trace_per_order fails (the accepted orders' traces never reach the
    warehouse), and the counterexample's text names the background task that died and why."""
    found = lab.check(load("mutants/loop_dies_on_error").create_app, "visible", workers=1)
    assert isinstance(found, Counterexample) and found.invariant == "one_trace_per_order"
    assert "was accepted (201 at t=" in found.verdict.summary
    assert "never reaches the warehouse" in found.verdict.summary
    assert "background task 'fulfilment_loop'" in found.verdict.summary
    text = str(found)
    assert "background task 'fulfilment_loop' (in the lifespan's task group): HTTPStatusError: 503" in text


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


def test_every_customer_ships_orders_to_the_slow_region():
    """By construction each customer ships at least SLOW_ORDERS orders to the slow region, in every world of
    the answer's bank under 300 grading secrets: the culprit is slow in every graded world (before, 1 world in
    75 shipped nothing there and no answer could be right)."""
    for secret in [None, *(f"secret-{i}" for i in range(300))]:
        for seed in lab.answer_seeds(secret):
            region = lab.culprit(seed)[1]
            for orders in lab.order_plan(seed):
                assert sum(o["region"] == region for o in orders) >= lab.SLOW_ORDERS, (secret, seed, orders)


def test_the_order_plan_is_a_plan():
    """Ids are the customer's, every field is one the service accepts, and a workload of fewer orders than
    SLOW_ORDERS ships them all to the slow region; the bulk order comes after the first customer's plan, to
    another region, and is more than the warehouse packs."""
    plan = lab.order_plan(3, customers=2, orders_per_customer=4)
    assert [[o["id"] for o in orders] for orders in plan] == [[f"ord-{i}-{n}" for n in range(4)] for i in range(2)]
    assert all(o["sku"] in lab.SKUS and o["region"] in lab.REGIONS and o["qty"] in (1, 2) for os in plan for o in os)
    assert [o["region"] for o in lab.order_plan(3, 1, 1)[0]] == [lab.culprit(3)[1]]
    assert lab.order_plan(3) == lab.order_plan(3)
    bulk = lab.bulk_order(3, 4)
    assert bulk["id"] == "ord-0-4" and bulk["customer"] == "customer-0" and bulk["qty"] > lab.MAX_PICK
    assert bulk["region"] != lab.culprit(3)[1]
    load("solution").OrderRequest(**bulk)  # the service takes it; only the warehouse refuses it


def test_every_run_has_a_failure_that_no_retry_undoes():
    """A service that retries busy answers (correctly) still meets a failure in every run, also when the
    nemesis drops the customers' requests: the bulk order, placed once the faults have healed, is refused (409).
    failures_marked decides every run (UNKNOWN, "nothing to mark", is never a pass, and failed such a service)."""
    seed = 656862877  # a lossy link dropped the bulk order when it was placed among the others
    world = run(load("alternatives/decorated_spans").create_app, seed, lab.schedules(seed))
    refused = [s for s in world.spans()
               if s.kind.name == "CLIENT" and s.attributes.get("http.response.status_code") == 409]
    assert refused and all(lab.node_of(s).startswith("orders-") for s in refused)
    verdict = lab.FailuresMarked()(world)
    assert verdict.passed, verdict


@pytest.mark.parametrize("secret", [None, "s1"])
def test_in_every_answer_world_the_culprit_is_slow_in_the_traces(secret):
    """Run the answer's worlds: the culprit's calls from the service are slow (300 ms or more) several times,
    the other dependency's never. The question each graded world asks has an answer in its traces."""
    solution = load("solution")
    for seed in lab.answer_seeds(secret):
        slow = Counter()
        for span in run(solution.create_app, seed, Schedule()).spans():
            dependency = span.attributes.get("server.address")
            if span.kind.name == "CLIENT" and dependency in lab.DEPENDENCIES:
                slow[dependency] += (span.end_time - span.start_time) / 1e9 >= lab.SLOW_LATENCY[0]
        culprit = lab.culprit(seed)[0]
        assert slow[culprit] >= 3 and sum(slow.values()) == slow[culprit], (seed, slow)


def test_order_traces_lists_every_order_slowest_first():
    """The notebook's helper gives one trace per order, slowest first, each with its duration."""
    world = run(load("solution").create_app, 3, Schedule())
    rows = lab.order_traces(world)
    assert len(rows) == 16 and len({t for _o, t, _d in rows}) == 16  # fifteen orders and the bulk order
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


def test_every_answer_bank_holds_both_culprits():
    """The worlds the graded answer is asked on make both dependencies the culprit, under every grading secret
    (by construction: a bank of one culprit gives its last seed up), so no constant answer passes. Under
    "x529" the first ten seeds of the hidden bank all have the warehouse for culprit."""
    assert {lab.culprit(seed)[0] for seed in seed_bank(lab.LAB, "hidden", lab.ANSWER_SEEDS, secret="x529")} == \
        {"warehouse"}
    for secret in [None, "x529", *(f"secret-{i}" for i in range(300))]:
        seeds = lab.answer_seeds(secret)
        assert len(seeds) == len(set(seeds)) == lab.ANSWER_SEEDS
        assert {lab.culprit(seed)[0] for seed in seeds} == set(lab.DEPENDENCIES), secret
        assert seeds[:-1] == seed_bank(lab.LAB, "hidden", lab.ANSWER_SEEDS, secret=secret)[:-1]


@pytest.mark.parametrize("secret", [None, *SECRETS])
def test_the_reference_answer_passes_with_the_reference_solution(secret, capsys):
    """answer.py's slowest_dependency names the culprit on every answer seed, default bank and secret ones;
    grade_answer is a grade cell: it prints one line and returns nothing (nbgrader would read a returned
    number as partial credit, beyond the cell's points)."""
    answer = load_answer().slowest_dependency
    assert lab.grade_answer(answer, load("solution").create_app, secret=secret) is None
    out = capsys.readouterr()
    assert out.out == f"Passed: slowest_dependency named the slow dependency in every one of {lab.ANSWER_SEEDS} " \
                      f"hidden worlds\n"
    assert out.err == ""


def test_grade_answer_holds_back_what_the_answer_prints(capsys):
    """Whatever the learner's answer prints or logs while graded stays out of the cell (nbgrader scores a grade
    cell with stderr output 0); the summary says how many lines were held back."""

    def chatty(world):
        print("looking at", len(world.spans()), "spans")
        print("thinking...", file=sys.stderr)
        return load_answer().slowest_dependency(world)

    assert lab.grade_answer(chatty, load("solution").create_app, seeds=2) is None
    out = capsys.readouterr()
    assert out.err == "" and "looking at" not in out.out
    assert out.out.startswith("Passed: slowest_dependency named the slow dependency in every one of 2 hidden worlds")
    assert "4 lines of output" in out.out


def test_an_answer_from_the_wrong_signal_fails():
    """Reading the traces for the wrong thing (the dependency with the most failed calls) is not finding the
    slow one: wrong on some graded worlds."""

    def most_errors(world):
        failed = Counter(s.attributes.get("server.address") for s in world.spans()
                         if s.kind.name == "CLIENT" and s.status.status_code.name == "ERROR")
        return max(lab.DEPENDENCIES, key=lambda d: failed[d])

    with pytest.raises(AssertionError, match=r"wrong on \d+ of 10 hidden worlds"):
        lab.grade_answer(most_errors, load("solution").create_app)


@pytest.mark.parametrize("constant", lab.DEPENDENCIES)
def test_a_constant_answer_fails_and_the_message_says_where(constant: str):
    """Always naming the same dependency is wrong on some seeds: the error counts them, and shows where it is wrong
    on a world of the visible bank (which the learner may replay), never a hidden seed."""
    seeds = lab.answer_seeds()
    wrong = [s for s in seeds if lab.culprit(s)[0] != constant]
    with pytest.raises(AssertionError) as info:
        lab.grade_answer(lambda world: constant, load("solution").create_app)
    message = str(info.value)
    assert f"wrong on {len(wrong)} of {lab.ANSWER_SEEDS} hidden worlds" in message and f"answered {constant!r}" in message
    assert not any(str(seed) in message for seed in seeds)
    visible = [s for s in seed_bank(lab.LAB, "visible", lab.REHOME_SEEDS) if lab.culprit(s)[0] != constant]
    assert f"world of the visible bank too: seed {visible[0]}," in message


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


def test_an_answer_right_only_on_the_visible_bank_fails_without_showing_a_hidden_seed():
    """An answer that is right on the worlds a learner can see and wrong elsewhere: the message says so, and names
    no seed at all (no visible world shows the failure, and a hidden seed is never shown)."""
    def orders(plan):
        return {(o["id"], o["sku"], o["qty"], o["region"]) for customer in plan for o in customer}

    # the answer never sees a seed (only the telemetry), so it recognises the visible worlds by their orders
    known = [(orders(lab.order_plan(seed)), lab.culprit(seed)[0])
             for seed in seed_bank(lab.LAB, "visible", lab.REHOME_SEEDS)]

    def memorised(telemetry):
        sent = orders([[op.value for op in telemetry.history if op.type == "invoke" and isinstance(op.value, dict)]])
        return next((answer for plan, answer in known if plan <= sent), "nobody")

    with pytest.raises(AssertionError) as info:
        lab.grade_answer(memorised, load("solution").create_app)
    message = str(info.value)
    assert f"answers right on the first {lab.REHOME_SEEDS} worlds of the visible bank" in message
    assert "seed" not in message.replace("seeds", "")


def test_the_answer_is_given_the_worlds_telemetry_and_not_the_world():
    """slowest_dependency sees spans, the customers' requests and their names: what the lab's helpers read, and
    not the seed (from which the culprit follows), in the notebook's try-it cell and in grading alike."""
    world = lab.example_world(load("solution").create_app)
    telemetry = lab.Telemetry(world)
    assert telemetry.spans() == world.spans() and lab.slow_traces(telemetry, 5) == lab.slow_traces(world, 5)
    assert str(world.seed) not in repr(telemetry)
    with pytest.raises(AttributeError, match="telemetry only: spans\\(\\), history and clients; 'seed'"):
        telemetry.seed
    assert load_answer().slowest_dependency(telemetry) == lab.culprit(world.seed)[0]
