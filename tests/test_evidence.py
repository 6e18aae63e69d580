"""Evidence: a finished run written down as JSON and read back in another process gets the verdicts, the
counterexample text and the pictures the live world gets; malformed or oversize snapshots are refused."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.text import Text

import sandbox
import sandbox.evidence
from autograder import seed_bank
from autograder.labs import load_module
from sandbox import viz
from sandbox.checkers import (
    Outcome,
    Verdict,
    check,
    connected_traces,
    exactly_once,
    no_double_charge,
    retries_within_budget,
    stock_conserved,
)
from sandbox.checkers.traces import describe
from sandbox.evidence import Evidence, snapshot
from sandbox.examples import order_system
from sandbox.explore import Counterexample, explore
from sandbox.faults import Delay, Schedule

LABS = Path(__file__).resolve().parent.parent / "labs"
#: Each lab's package (as its own ``load`` names it), and what it is graded on here: the reference
#: solution(s), the generated code and two mutants caught by different invariants.
IMPLEMENTATIONS = {
    "01-cap": ("chaos_dojo_labs.lab01", ("solution_cp", "solution_ap", "generated", "mutants/cp_refuse_everything",
                                         "mutants/ap_lww")),
    "02-idempotency": ("chaos_dojo_labs.lab02", ("solution", "generated", "mutants/http_only",
                                                 "mutants/duplicate_is_409")),
    "03-sagas": ("chaos_dojo_labs.lab03", ("solution", "generated", "mutants/wrong_order", "mutants/no_recovery")),
    "04-tracing": ("chaos_dojo_labs.lab04", ("solution", "generated", "mutants/span_open_on_error",
                                             "mutants/kafka_not_propagated")),
    "05-concurrency": ("chaos_dojo_labs.lab05", ("solution", "generated", "mutants/in_process_lock",
                                                 "mutants/transfers_lock_in_request_order")),
    "06-resilience": ("chaos_dojo_labs.lab06", ("solution", "generated", "mutants/no_breaker",
                                                "mutants/charge_without_key")),
}
REFERENCES = {"solution", "solution_cp", "solution_ap"}


@functools.cache
def load_lab(name: str) -> ModuleType:
    """A lab's ``lab.py``, loaded as the lab tests load it (``autograder.labs.load_module``)."""
    return load_module(LABS / name, "lab", IMPLEMENTATIONS[name][0])


@functools.cache
def graded(name: str, impl: str) -> tuple[Any, list, Any, list]:
    """What the lab's ``check`` runs ``impl`` under: its scenario, invariants, nemesis and adversarial schedules."""
    lab = load_lab(name)
    create_app = lab.load(impl).create_app
    if name == "01-cap":
        choice = lab.cap_choice(create_app)
        invariants = lab.invariants(choice, primary=lab.primary(create_app))
        return lab.scenario(create_app), invariants, lab.schedules_for(choice), lab.adversarial(choice)
    return lab.scenario(create_app), lab.invariants(), lab.schedules, lab.ADVERSARIAL


def carried(world: sandbox.World) -> Evidence:
    """The world's evidence as the grader gets it: snapshot, JSON text, parsed, read back."""
    return Evidence.from_snapshot(json.loads(json.dumps(snapshot(world))))


def lab_worlds(name: str, impl: str, seeds: int = 3) -> list[sandbox.World]:
    """The finished worlds of a lab's check (a few seeds under the nemesis, two adversarial schedules), and
    one stopped at t=0.8 s, in the middle of its faults (where invariants that wait for the quiet phase are
    UNKNOWN)."""
    lab = load_lab(name)
    scenario, _invariants, schedules, adversarial = graded(name, impl)
    bank = seed_bank(lab.LAB, "visible", seeds)
    runs = [(seed, schedules(seed)) for seed in bank] + [(bank[0], adversarial[0]), (bank[-1], adversarial[-1])]
    return [scenario.run(seed, schedule).world for seed, schedule in runs] + [unfinished_world(name, impl)]


def unfinished_world(name: str, impl: str) -> sandbox.World:
    """The world of the first seed of a lab's visible bank under its nemesis, stopped at t=0.8 s."""
    scenario, _invariants, schedules, _adversarial = graded(name, impl)
    seed = seed_bank(load_lab(name).LAB, "visible", 1)[0]
    world = scenario.build(seed, **scenario.workload)
    world.inject(schedules(seed))
    return world.run(until=0.8)


@functools.cache
def first_world(name: str, impl: str) -> sandbox.World:
    """The world of a lab's check on the first seed of its visible bank, under its nemesis."""
    scenario, _invariants, schedules, _adversarial = graded(name, impl)
    seed = seed_bank(load_lab(name).LAB, "visible", 1)[0]
    return scenario.run(seed, schedules(seed)).world


@functools.cache
def traced_lab_world(impl: str = "solution", seed_index: int = 0) -> sandbox.World:
    lab = load_lab("04-tracing")
    scenario, _invariants, schedules, _adversarial = graded("04-tracing", impl)
    seed = seed_bank(lab.LAB, "visible", seed_index + 1)[seed_index]
    return scenario.run(seed, schedules(seed)).world


def figure_texts(figure: Any) -> list[tuple[str, str, tuple[float, float]]]:
    """What a figure shows, as text: each artist's kind and label, and every text with where it stands."""
    shown = []
    for artist in figure.findobj():
        text = artist.get_text() if isinstance(artist, Text) else ""
        where = tuple(round(float(v), 6) for v in artist.get_position()) if isinstance(artist, Text) else (0.0, 0.0)
        shown.append((type(artist).__name__, str(artist.get_label()) + text, where))
    return shown


# --- equivalence: verdicts -------------------------------------------------------------------------


@pytest.mark.parametrize(("lab_name", "impl"), [(lab, impl) for lab, (_, impls) in IMPLEMENTATIONS.items()
                                                for impl in impls])
def test_every_lab_invariant_judges_the_evidence_as_it_judges_the_world(lab_name, impl):
    """On each world of a lab's check (nemesis and adversarial schedules, and a run stopped mid-way), every
    invariant's verdict on the carried evidence equals its verdict on the live world: outcome, name, summary
    and evidence; and the fingerprint is the same."""
    _scenario, invariants, _schedules, _adversarial = graded(lab_name, impl)
    seen = set()
    for world in lab_worlds(lab_name, impl):
        live = check(world, invariants)
        evidence = carried(world)
        assert evidence.fingerprint() == world.fingerprint()
        assert check(evidence, invariants) == live
        assert [str(v) for v in check(evidence, invariants)] == [str(v) for v in live]
        seen |= {v.outcome for v in live}
    if impl not in REFERENCES:
        assert Outcome.FAIL in seen


@pytest.mark.parametrize("lab_name", ["01-cap", "02-idempotency", "03-sagas", "05-concurrency", "06-resilience"])
def test_undecided_verdicts_are_carried_as_undecided(lab_name):
    """A run stopped in the middle of its faults leaves some invariant UNKNOWN (it waits for the quiet phase);
    the evidence gives the same UNKNOWN with the same reason, never a pass."""
    impl = IMPLEMENTATIONS[lab_name][1][0]
    _scenario, invariants, _schedules, _adversarial = graded(lab_name, impl)
    world = unfinished_world(lab_name, impl)
    live = check(world, invariants)
    assert not world.clients_done and Outcome.UNKNOWN in {v.outcome for v in live}
    evidence = carried(world)
    assert not evidence.clients_done
    assert check(evidence, invariants) == live


def test_the_order_system_is_judged_alike_untraced_and_traced():
    """The order system's scenario under its nemesis, and a traced run of it with its network trouble: the
    library's checkers (data, conservation, messages, traces, retries) and the report agree on both."""
    checkers = [*order_system.invariants().values(), stock_conserved(initial=order_system.INITIAL_STOCK),
                exactly_once("notifications-db", "emails", "order_id", topic="order-placed")]
    outcomes = set()
    for seed in (1, 2):
        world = order_system.scenario.run(seed, order_system.nemesis(seed), clients=4, orders_per_client=3).world
        live = check(world, checkers)
        outcomes |= {v.outcome for v in live}
        assert check(carried(world), checkers) == live
    traced = order_system.run_to_completion(order_system.build_world(3, clients=3, orders_per_client=3, tracing=True))
    checkers += [connected_traces(), retries_within_budget("orders", "payments", max_attempts=1)]
    evidence = carried(traced)
    assert check(evidence, checkers) == check(traced, checkers)
    assert Outcome.FAIL in outcomes | {v.outcome for v in check(traced, checkers)}
    shape = {"clients": 3, "orders_per_client": 3, "replicas": 2, "faults": True}
    assert order_system.report(evidence, **shape) == order_system.report(traced, **shape)


def _small_app() -> FastAPI:
    """A service that spins without awaiting on ``/spin``, and on ``/note`` says a domain event and two
    assertions (one that holds, one that never does)."""
    app = FastAPI()

    @app.get("/spin")
    async def spin() -> dict:
        while True:
            pass

    @app.post("/note/{n}")
    async def note(n: int) -> dict:
        sandbox.event("breaker", name="payments", before="closed", after="open", n=n)
        sandbox.sometimes(n > 1, "a note after the first")
        sandbox.sometimes(n > 99, "a hundredth note")
        sandbox.reachable("a note was taken")
        return {"n": n}

    return app


def test_a_world_that_overran_fails_every_invariant_alike():
    """A run stopped by its wall-clock limit (code that never awaits) fails every invariant; its evidence says
    the same, with the same error and the same reason."""
    world = sandbox.World(seed=1, wall_limit=0.3)
    world.add_database("payments-db")
    world.add_service("api", _small_app)

    async def caller(client: sandbox.Client) -> None:
        await client.http.get("http://api/spin", timeout=5.0)

    world.add_client("caller", caller)
    world.run()
    assert world.overran
    evidence = carried(world)
    invariants = [no_double_charge(), lambda w: Verdict.passing("anything", "fine")]
    assert evidence.overran == world.overran and evidence.errors == world.errors
    assert check(evidence, invariants) == check(world, invariants)
    assert all(v.outcome is Outcome.FAIL for v in check(evidence, invariants))


def test_events_and_assertions_said_by_service_code_are_carried():
    """sandbox.event, sometimes and reachable tallies come back equal, and so does the coverage report."""
    world = sandbox.World(seed=2)
    world.add_service("api", _small_app)

    async def caller(client: sandbox.Client) -> None:
        for n in range(3):
            await client.http.post(f"http://api/note/{n}")

    world.add_client("caller", caller)
    world.inject(Schedule([Delay("api", latency=0.01, start=0.0, duration=0.5)]))
    world.run()
    evidence = carried(world)
    assert len(world.events) == 3 and evidence.events == world.events
    assert evidence.assertions == world.assertions
    assert [str(a) for a in evidence.assertions.values()] == [str(a) for a in world.assertions.values()]
    assert str(evidence.chaos.coverage()) == str(world.chaos.coverage())


# --- equivalence: what the readers read -------------------------------------------------------------


def test_nodes_services_and_clients_read_as_the_world_has_them():
    """Names, kinds and lives of the nodes, each service's replicas, the clients, in the world's order."""
    world = first_world("01-cap", "solution_cp")
    evidence = carried(world)
    assert list(evidence.nodes) == list(world.nodes)
    for name, node in world.nodes.items():
        got = evidence.nodes[name]
        assert (got.kind, got.alive, got.paused, got.epoch) == (node.kind, node.alive, node.paused, node.epoch)
    assert {s: [i.name for i in svc.instances] for s, svc in evidence.services.items()} == \
        {s: [i.name for i in svc.instances] for s, svc in world.services.items()}
    assert list(evidence.clients) == list(world.clients) and evidence.clients_done == world.clients_done
    assert (evidence.seed, evidence.now, evidence.stalled, evidence.overran) == \
        (world.seed, world.now, world.stalled, world.overran)
    assert evidence.node("inventory-1").name == "inventory-1" and repr(evidence.service("inventory")) == \
        repr(world.service("inventory"))
    for asked in ("inventory", "nowhere"):
        with pytest.raises(sandbox.UnknownNameError) as live:
            world.node(asked)
        with pytest.raises(sandbox.UnknownNameError) as read:
            evidence.node(asked)
        assert str(read.value) == str(live.value)


def test_tables_disks_and_the_broker_read_as_the_world_has_them():
    """Every database table and replica disk has the same rows; the broker the same topics, messages,
    committed offsets and lag."""
    disks = 0
    for world in (first_world("02-idempotency", "solution"), first_world("01-cap", "solution_cp")):
        evidence = carried(world)
        for db in world.databases:
            assert evidence.database(db).table_names() == world.database(db).table_names()
            for table in world.database(db).table_names():
                assert evidence.database(db).rows(table) == world.database(db).rows(table)
        for instance in (i for s in world.services.values() for i in s.instances):
            kept = evidence.disk(instance.name)
            if instance.disk_store is None:  # (world.disk would make one)
                assert kept.table_names() == []
                continue
            disk = world.disk(instance.name)
            assert kept.table_names() == disk.table_names()
            assert all(kept.rows(t) == disk.rows(t) for t in disk.table_names())
            disks += 1
        assert evidence.broker.topics() == (world.broker.topics() if "kafka" in world.nodes else [])
        for topic in evidence.broker.topics():
            assert evidence.broker.messages(topic) == world.broker.messages(topic)
            for group in world.broker.groups():
                assert evidence.broker.committed(group) == world.broker.committed(group)
                assert evidence.broker.lag(group, topic) == world.broker.lag(group, topic)
    assert disks == 3  # lab 01's replicas keep their data on their disks


def test_history_events_errors_assertions_and_chaos_read_as_the_world_has_them():
    """The history (and its pairs), domain events, service errors, assertions, the fault schedule, its windows
    and its coverage are equal on both."""
    worlds = [first_world("03-sagas", "mutants/no_recovery"), unfinished_world("03-sagas", "generated"),
              traced_lab_world("mutants/span_open_on_error"), first_world("04-tracing", "mutants/loop_dies_on_error")]
    for world in worlds:
        evidence = carried(world)
        assert list(evidence.history) == list(world.history)
        assert evidence.history.pairs() == world.history.pairs()
        assert evidence.events == world.events and [str(e) for e in evidence.events] == [str(e) for e in world.events]
        assert evidence.errors == world.errors
        assert evidence.assertions == world.assertions
        assert evidence.recorder.log == world.recorder.log
        if world.chaos is not None:
            assert evidence.chaos.schedule == world.chaos.schedule
            assert (evidence.chaos.heal_at, evidence.chaos.healed) == (world.chaos.heal_at, world.chaos.healed)
            assert evidence.chaos.windows == world.chaos.windows
            assert str(evidence.chaos.coverage()) == str(world.chaos.coverage())
    assert all(any(getattr(world, part) for world in worlds) for part in ("events", "errors", "chaos"))


def test_spans_come_back_as_sdk_spans_with_everything_the_sdk_recorded():
    """Each span is an OpenTelemetry SDK ReadableSpan with the same context, parent, kind, name, attributes,
    events (exception events included), links, status, times, resource and scope; the OTLP export is equal."""
    from opentelemetry.sdk.trace import ReadableSpan

    every = []
    for world in (traced_lab_world("generated"), traced_lab_world("mutants/linked_not_parented")):
        evidence = carried(world)
        assert len(evidence.spans()) == len(world.spans()) > 100
        assert evidence.tracing.otlp_json() == world.tracing.otlp_json()
        every += zip(world.spans(), evidence.spans(), strict=True)
    for a, b in every:
        assert isinstance(b, ReadableSpan)
        assert (b.name, b.kind, b.context, b.parent, b.start_time, b.end_time) == \
            (a.name, a.kind, a.context, a.parent, a.start_time, a.end_time)
        assert (b.context.is_remote, b.parent and b.parent.is_remote) == \
            (a.context.is_remote, a.parent and a.parent.is_remote)
        assert dict(b.attributes) == dict(a.attributes)
        assert [(e.name, dict(e.attributes), e.timestamp) for e in b.events] == \
            [(e.name, dict(e.attributes), e.timestamp) for e in a.events]
        assert [(link.context, dict(link.attributes or {})) for link in b.links] == \
            [(link.context, dict(link.attributes or {})) for link in a.links]
        assert (b.status.status_code, b.status.description) == (a.status.status_code, a.status.description)
        assert dict(b.resource.attributes) == dict(a.resource.attributes)
        assert b.instrumentation_scope == a.instrumentation_scope
    assert any(e.name == "exception" for _, s in every for e in s.events) and any(s.links for _, s in every)


def test_spans_left_open_in_a_lab_tracker_are_carried():
    """The spans a lab's tracker saw start and never end (lab 04's, hung on world.tracing) come back under
    the same attribute, so every_span_ended finds the same spans open."""
    world = traced_lab_world("mutants/span_open_on_error")
    tracker = world.tracing._lab04_open_spans
    assert tracker.open
    kept = carried(world).tracing._lab04_open_spans.open
    assert list(kept) == list(tracker.open)
    assert [describe(s) for s in kept.values()] == [describe(s) for s in tracker.open.values()]
    assert all(s.end_time is None for s in kept.values())


@pytest.fixture(scope="module")
def answer() -> ModuleType:
    """The reference answer cell, ``labs/04-tracing/answer.py``: its ``import lab`` gets lab 04."""
    lab = load_lab("04-tracing")
    spec = importlib.util.spec_from_file_location("evidence_tests_lab04_answer", LABS / "04-tracing" / "answer.py")
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("lab")
    sys.modules["lab"] = lab
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("lab")
        else:
            sys.modules["lab"] = saved
    return module


def test_the_graded_answer_reads_the_evidence_as_it_reads_the_world(answer):
    """Lab 04's order_traces and slow_traces, the reference answer's slowest_dependency and answer_is_right give
    the same on the evidence as on the world, for worlds of both culprits."""
    lab = load_lab("04-tracing")
    create_app = lab.load("solution").create_app
    seeds = seed_bank(lab.LAB, "visible", 5)
    culprits = set()
    for seed in seeds[:3]:
        world = lab.example_world(create_app, seed=seed)
        evidence = carried(world)
        assert lab.order_traces(evidence) == lab.order_traces(world)
        assert lab.slow_traces(evidence, 5) == lab.slow_traces(world, 5)
        said = answer.slowest_dependency(evidence)
        assert said == answer.slowest_dependency(world)
        assert lab.answer_is_right(said, seed)
        culprits.add(said)
    assert len(culprits) == 2, "the seeds should cover both culprits"


# --- equivalence: texts and pictures ---------------------------------------------------------------------


def _counterexample(world: sandbox.World, verdict: Any, schedule: Schedule) -> Counterexample:
    scenario, *_ = graded("04-tracing", "solution")
    return Counterexample(scenario, world.seed, schedule, dict(scenario.workload), verdict, world.fingerprint(), 1,
                          schedule, dict(scenario.workload), 0.5, _world=world)


def _without_image(html: str) -> str:
    return "\n".join(line for line in html.splitlines() if "<img" not in line)


def test_a_counterexample_tells_the_same_story_from_the_evidence():
    """str(Counterexample) and its HTML (errors in service code, faults, replay line) are the same with the
    evidence as with the world, and so is its figure; an unfinished run says so on both."""
    scenario, invariants, schedules, _adversarial = graded("04-tracing", "mutants/kafka_not_propagated")
    lab = load_lab("04-tracing")
    seed = seed_bank(lab.LAB, "visible", 1)[0]
    found = explore(scenario, invariants, seeds=[seed], schedules=schedules, shrink=False, workers=1)
    assert found.found
    world = found.world
    evidence = carried(world)
    from_evidence = dataclasses.replace(found, _world=evidence)
    assert str(from_evidence) == str(found)
    assert _without_image(from_evidence._repr_html_()) == _without_image(found._repr_html_())
    assert figure_texts(from_evidence.picture()) == figure_texts(found.picture())

    stopped = lab.build_world(seed, lab.service_factory(lab.load("mutants/loop_dies_on_error").create_app))
    stopped.run(limit=1.5)
    assert stopped.stalled and stopped.errors
    verdict = check(stopped, invariants)[1]
    live, read = _counterexample(stopped, verdict, Schedule()), _counterexample(carried(stopped), verdict, Schedule())
    assert "Unfinished:" in str(live) and "Errors in service code" in str(live)
    assert str(read) == str(live)


def test_pictures_drawn_from_the_evidence_match_the_worlds():
    """The sequence diagram (whole, and of named nodes), the fault timeline, the trace waterfall and the state
    at a moment show the same elements and labels from the evidence as from the world."""
    world = traced_lab_world("mutants/kafka_not_propagated")
    evidence = carried(world)
    lab = load_lab("04-tracing")
    slow = lab.slow_traces(world, 1)[0]
    pairs = [
        (viz.sequence_diagram(world), viz.sequence_diagram(evidence)),
        (viz.sequence_diagram(world, nodes=["orders", "warehouse"], end=1.0),
         viz.sequence_diagram(evidence, nodes=["orders", "warehouse"], end=1.0)),
        (viz.fault_timeline(world), viz.fault_timeline(evidence)),
        (viz.trace_waterfall(world, slow), viz.trace_waterfall(evidence, slow)),
    ]
    for live, read in pairs:
        assert figure_texts(read) == figure_texts(live)
        assert len(figure_texts(live)) > 10
    for t in (0.3, 1.0, world.now):
        assert viz.state_at(evidence, t) == viz.state_at(world, t)
    assert [str(w) for w in viz.fault_windows(evidence)] == [str(w) for w in viz.fault_windows(world)]


# --- the snapshot itself ---------------------------------------------------------------------------------


def _json_types(value: Any, where: str = "snapshot") -> list[str]:
    """Where ``value`` holds anything but str, int, float, bool, None, list, and dicts with str keys."""
    if isinstance(value, dict):
        return [f"{where} key {k!r}" for k in value if type(k) is not str] + \
            [p for k, v in value.items() for p in _json_types(v, f"{where}[{k!r}]")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _json_types(v, f"{where}[{i}]")]
    return [] if type(value) in (str, int, float, bool, type(None)) else [f"{where}: {type(value).__name__}"]


def test_a_snapshot_is_plain_json_data():
    """Only str, int, float, bool, None, lists and dicts with str keys; strict JSON (no NaN) writes it."""
    for world in (traced_lab_world("generated"), first_world("03-sagas", "generated")):
        data = snapshot(world)
        assert _json_types(data) == []
        json.dumps(data, allow_nan=False)


def test_the_same_seed_gives_the_same_snapshot_byte_for_byte():
    """Two runs of one seed (spans with seeded ids, a broker, faults) give identical snapshot JSON."""
    scenario, _invariants, schedules, _adversarial = graded("04-tracing", "generated")
    texts = [json.dumps(snapshot(scenario.run(5, schedules(5)).world), sort_keys=True) for _ in range(2)]
    assert texts[0] == texts[1]
    other = json.dumps(snapshot(scenario.run(6, schedules(6)).world), sort_keys=True)
    assert other != texts[0]


def snapshot_digest(seed: int) -> str:
    """SHA-256 of the sorted-key snapshot JSON of lab 04's generated code on ``seed`` under its nemesis."""
    scenario, _invariants, schedules, _adversarial = graded("04-tracing", "generated")
    text = json.dumps(snapshot(scenario.run(seed, schedules(seed)).world), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_another_process_writes_the_same_snapshot():
    """A fresh interpreter with another PYTHONHASHSEED writes the same snapshot for the same seed: nothing in it
    follows the order of a set or of hashing."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_evidence; " \
           f"print(test_evidence.snapshot_digest(5))"
    env = {**os.environ, "PYTHONHASHSEED": "4321", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=LABS.parent, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == snapshot_digest(5)


def test_the_meaning_of_a_snapshot_does_not_depend_on_key_order():
    """A snapshot passed through json.dumps(sort_keys=True) reads back with the same fingerprint and verdicts:
    whatever has an order (rows' fields, attributes, nodes) is a list."""
    world = first_world("02-idempotency", "generated")
    invariants = load_lab("02-idempotency").invariants()
    evidence = Evidence.from_snapshot(json.loads(json.dumps(snapshot(world), sort_keys=True)))
    assert evidence.fingerprint() == world.fingerprint()
    assert check(evidence, invariants) == check(world, invariants)


#: The most JSON text one run's snapshot may take, per lab: well under a megabyte (100 to 400 kB); lab 06's runs carry
#: about 1,300 orders through three services and two databases (3 to 4 MB, ten times the traffic of the others).
SNAPSHOT_BYTES = {"06-resilience": 6_000_000}


@pytest.mark.parametrize("lab_name", list(IMPLEMENTATIONS))
def test_a_lab_snapshot_is_small(lab_name):
    """A lab run's snapshot JSON is well under a megabyte (lab 06's, at 100 orders a second, a few), however it is
    written."""
    world = first_world(lab_name, "generated")
    text = json.dumps(snapshot(world))
    assert 10_000 < len(text) < SNAPSHOT_BYTES.get(lab_name, 1_000_000)
    assert Evidence.from_json(text.encode()).fingerprint() == world.fingerprint()


def test_a_value_json_cannot_carry_is_refused_where_it_is():
    """A history value holding a set cannot be written down: snapshot() names the operation and shows it."""

    async def shopper(client: sandbox.Client) -> None:
        async with client.operation("tag", {"labels": {"red"}}) as op:
            op.ok()

    world = sandbox.World(seed=1)
    world.add_client("shopper", shopper)
    world.run()
    with pytest.raises(sandbox.InvalidParameterError, match=r"history\[0\]\.value holds a set \(\{'red'\}\)"):
        snapshot(world)


def test_tuples_dicts_and_odd_floats_survive_the_trip():
    """Values keep their exact types: tuples stay tuples, dicts keep order and non-str keys, ints stay ints,
    and inf and nan come back."""

    async def shopper(client: sandbox.Client) -> None:
        async with client.operation("odd", {"z": (1, [2.0, (3,)]), "a": {5: float("inf"), (1, "x"): None}}) as op:
            op.ok(float("nan"))

    world = sandbox.World(seed=1)
    world.add_client("shopper", shopper)
    world.run()
    evidence = carried(world)
    assert repr(evidence.history[0].value) == repr(world.history[0].value)
    assert list(evidence.history[0].value) == ["z", "a"]
    assert repr(evidence.history[1].value) == "nan"
    assert evidence.fingerprint() == world.fingerprint()


# --- untrusted input ---------------------------------------------------------------------------------------


@functools.cache
def _small_snapshot() -> str:
    return json.dumps(snapshot(traced_lab_world("mutants/span_open_on_error")))


def _broken(change: Any) -> dict:
    data = json.loads(_small_snapshot())
    change(data)
    return data


def _set(path: tuple, value: Any) -> Any:
    def change(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _drop(path: tuple) -> Any:
    def change(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


MALFORMED = [
    ("not a dict", lambda d: d.clear() or d.update(x=1), r"snapshot\['x'\]=1: unknown field"),
    ("wrong format", _set(("format",), "chaos-dojo/evidence/0"), r"snapshot\['format'\]='chaos-dojo/evidence/0'"),
    ("missing seed", _drop(("seed",)), r"the field 'seed' is missing"),
    ("seed as text", _set(("seed",), "7"), r"snapshot\['seed'\]='7': expected a whole number >= 0"),
    ("epoch negative", _set(("nodes", 0, "epoch"), -1), r"snapshot\['nodes'\]\[0\]\['epoch'\]=-1"),
    ("unknown kind", _set(("nodes", 0, "kind"), "robot"), r"\['nodes'\]\[0\]\['kind'\]='robot': expected one of"),
    ("field of another kind", _set(("nodes", 0, "done"), True),
     r"\['nodes'\]\[0\]\['done'\]=True: a database node has no field 'done'"),
    ("twin nodes", lambda d: d["nodes"].append(copy.deepcopy(d["nodes"][0])), r"a second node of that name"),
    ("log time as text", _set(("log", 3, 0), "soon"), r"snapshot\['log'\]\[3\]\[0\]='soon'"),
    ("log entry too short", _set(("log", 3), [0.5]), r"snapshot\['log'\]\[3\]=\[0\.5\]: a log entry is"),
    ("a NaN in the log", _set(("log", 3, 0), float("nan")), r"\['log'\]\[3\]\[0\]=nan"),
    ("bad tag", _set(("log", 3, 2), {"set": [1]}), r"\['log'\]\[3\]\[2\]=\{'set': \[1\]\}: a value is JSON"),
    ("unhashable key", _set(("log", 3, 2), {"dict": [[[1], 2]]}), r"a dict key must be"),
    ("too deep", _set(("log", 3, 2), json.loads("[" * 70 + "]" * 70)), r"values nest at most 64 levels"),
    ("completion first", lambda d: d["history"].insert(0, {**d["history"][1], "process": "nobody"}),
     r"process 'nobody' has no open operation"),
    ("bad op type", _set(("history", 0, "type"), "maybe"), r"\['history'\]\[0\]\['type'\]='maybe'"),
    ("bad trace id", _set(("tracing", "spans", 0, "context", "trace_id"), "xyz"),
     r"\['context'\]\['trace_id'\]='xyz': expected 32 lower-case hex digits"),
    ("bad span kind", _set(("tracing", "spans", 0, "kind"), "SIDEWAYS"), r"\['kind'\]='SIDEWAYS'"),
    ("resource out of range", _set(("tracing", "spans", 0, "resource"), 999), r"\['resource'\]=999: there are"),
    ("object attribute", _set(("tracing", "spans", 0, "attributes"), [["a", {"dict": []}]]),
     r"attribute 'a'=\{\}: OpenTelemetry attributes are"),
    ("tracker named like a method", _set(("tracing", "open", 0, "attribute"), "spans"),
     r"\['attribute'\]='spans': a tracker's attribute"),
    ("unknown fault", _set(("chaos", "faults", 0, "kind"), "meteor"), r"\['kind'\]='meteor': expected one of"),
    ("bad fault field", _set(("chaos", "faults", 0, "fields"), [["probability", 7]]),
     r"\['chaos'\]\['faults'\]\[0\]=.*: not a fault"),
    ("window of no fault", _set(("chaos", "windows", 0, "index"), 99), r"\['index'\]=99: the schedule has"),
    ("broker without its node", _set(("nodes",), []),
     r"snapshot\['broker'\]=\{'topics'.*: the broker's contents go with a node 'kafka'"),
    ("message out of order", _set(("broker", "topics", 0, "messages", 0, "offset"), 5),
     r"\['offset'\]=5: messages come in offset order"),
]


@pytest.mark.parametrize(("change", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_snapshot_is_refused_naming_the_bad_field_and_value(change, message):
    """Wrong types, missing or unknown fields, broken references: InvalidParameterError names where and shows
    the value (never an error from deep inside)."""
    with pytest.raises(sandbox.InvalidParameterError, match=message):
        Evidence.from_snapshot(_broken(change))


@functools.cache
def _tiny_snapshot() -> dict:
    """A lab 04 run of one customer placing one order under its nemesis: spans, a broker, faults, tables."""
    scenario, _invariants, schedules, _adversarial = graded("04-tracing", "solution")
    return snapshot(scenario.run(3, schedules(3), customers=1, orders_per_customer=1).world)


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a snapshot: the keys and indexes leading to it."""
    inner = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [path] + [p for k, v in inner for p in _paths(v, (*path, k))]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_change_to_a_snapshot_reads_back_or_is_refused_as_invalid(data):
    """Whatever one place of a snapshot is replaced with (or removed), reading it back either works or raises
    InvalidParameterError: never another exception from inside the reader."""
    snap = copy.deepcopy(_tiny_snapshot())
    path = data.draw(st.sampled_from(_paths(snap)[1:]), label="path")
    parent = snap
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans(), label="remove"):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(_JSON, label="value")
    try:
        Evidence.from_snapshot(snap)
    except sandbox.InvalidParameterError as exc:
        assert str(exc).startswith(("snapshot", "the snapshot"))


def test_a_good_snapshot_passes_the_same_checks():
    """The snapshot the malformed ones are made from reads back (so each refusal is its one change's doing)."""
    world = traced_lab_world("mutants/span_open_on_error")
    assert Evidence.from_json(_small_snapshot()).fingerprint() == world.fingerprint()


def test_more_log_entries_than_the_limit_are_refused_saying_the_limit():
    """A log of over five million entries is refused before it is read, with the limit in the message."""
    data = json.loads(_small_snapshot())
    data["log"] = [data["log"][0]] * (sandbox.evidence.MAX_ITEMS + 1)
    with pytest.raises(sandbox.InvalidParameterError, match=r"5,000,001 items, over the limit of 5,000,000"):
        Evidence.from_snapshot(data)


def test_json_over_the_limit_or_not_json_is_refused():
    """Over 200 MB of JSON text is refused unread; text that is not JSON, or holds NaN, is refused as such."""
    with pytest.raises(sandbox.InvalidParameterError, match=r"209,715,201 bytes long, over the limit of 209,715,200"):
        Evidence.from_json(bytes(sandbox.evidence.MAX_JSON_BYTES + 1))
    with pytest.raises(sandbox.InvalidParameterError, match=r"the snapshot is not JSON: JSONDecodeError"):
        Evidence.from_json("{'format': ")
    with pytest.raises(sandbox.InvalidParameterError, match=r"holds NaN"):
        Evidence.from_json('{"seed": NaN}')
    with pytest.raises(sandbox.InvalidParameterError, match=r"snapshot=\[1, 2\]: expected an object"):
        Evidence.from_json("[1, 2]")


# --- what evidence is not ---------------------------------------------------------------------------------


def test_evidence_holds_no_code_and_says_so():
    """A service's factory is not in the evidence: reading it raises ConfigError saying what to pass instead, so
    lab 01's invariants with the declared PRIMARY are UNKNOWN (never a silently different verdict); with the
    primary passed in, they agree."""
    lab = load_lab("01-cap")
    world = first_world("01-cap", "solution_cp")
    evidence = carried(world)
    with pytest.raises(sandbox.ConfigError, match=r"service 'inventory': evidence holds what the run did"):
        _ = evidence.services["inventory"].factory
    declared = check(evidence, [lab.majority_available()])[0]
    assert declared.outcome is Outcome.UNKNOWN and "ConfigError" in declared.summary
    primary = lab.primary(lab.load("solution_cp").create_app)
    assert check(evidence, [lab.majority_available(primary)]) == check(world, [lab.majority_available()])


def test_evidence_cannot_run_and_says_what_it_is():
    """World's running parts are absent, with a message saying why; getattr with a default still works."""
    evidence = carried(first_world("02-idempotency", "solution"))
    with pytest.raises(AttributeError, match=r"evidence has no 'run': it holds what a finished run left behind"):
        _ = evidence.run
    assert getattr(evidence, "network", None) is None
    assert repr(evidence).startswith("<Evidence seed=")


def test_exactly_once_asks_about_topics_without_adding_a_broker():
    """exactly_once on a world that never used a broker: UNKNOWN on both, and the live world gets no broker."""
    world = first_world("03-sagas", "solution")
    assert "kafka" not in world.nodes
    invariant = exactly_once("payments-db", "charges", "order_id", topic="payment-requested")
    assert check(carried(world), [invariant]) == check(world, [invariant])
    assert check(world, [invariant])[0].outcome is Outcome.UNKNOWN and "kafka" not in world.nodes


def test_the_module_lists_its_public_names_honestly():
    """sandbox.evidence.__all__ names each public name of the module once, and each function and class of it has
    a docstring of its own."""
    module = sandbox.evidence
    names = module.__all__
    public = [n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", None) ==
              module.__name__]
    assert len(names) == len(set(names)) and all(hasattr(module, n) for n in names)
    assert set(public) <= set(names)
    assert [n for n in names if callable(getattr(module, n)) and not (getattr(module, n).__doc__ or "").strip()] == []


def test_a_schedule_goes_to_data_and_back_as_itself():
    """What a grader hands the process that runs learner code: each lab's adversarial schedules and nemesis draws,
    as plain JSON data and back, equal to themselves; a bad fault in the data is refused, showing it."""
    import json

    from sandbox.evidence import schedule_data, schedule_from_data
    from sandbox.faults import Loss, Schedule, nemesis

    schedules = [Schedule(), Schedule([Loss("api", start=1.0, duration=2.0)]),
                 nemesis(7, targets=["api", "db"], kinds=("loss", "kill", "disk-loss"))]
    for schedule in schedules:
        again = schedule_from_data(json.loads(json.dumps(schedule_data(schedule))))
        assert again == schedule and repr(again) == repr(schedule)
    data = schedule_data(schedules[1])
    data["faults"][0]["fields"][1][1] = -5.0
    with pytest.raises(sandbox.InvalidParameterError) as info:
        schedule_from_data(data)
    assert "schedule['faults'][0]" in str(info.value) and "not a fault" in str(info.value)
