"""The linearizability checker: known-good histories pass, known-bad ones fail with evidence, generated ones agree."""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import sandbox
from sandbox import History, InvalidParameterError, Op, checkers
from sandbox.checkers import (
    Call,
    KeyValueModel,
    Model,
    Outcome,
    RegisterModel,
    Verdict,
    check_linearizability,
)
from sandbox.checkers import _turns as turns_module
from sandbox.checkers import linearizability as linearizability_module

# --- building histories by hand ----------------------------------------------------------------


def hist(*events: tuple[str, str, str, Any]) -> list[dict[str, Any]]:
    """Events (process, type, f, value) in the order they happened, one time unit apart."""
    return [
        {"process": p, "type": t, "f": f, "value": v, "time": float(n)} for n, (p, t, f, v) in enumerate(events)
    ]


def write(process: str, value: Any, outcome: str = "ok") -> list[tuple[str, str, str, Any]]:
    return [(process, "invoke", "write", value), (process, outcome, "write", value)]


def read(process: str, seen: Any) -> list[tuple[str, str, str, Any]]:
    return [(process, "invoke", "read", None), (process, "ok", "read", seen)]


def cas(process: str, expected: Any, new: Any, outcome: str = "ok") -> list[tuple[str, str, str, Any]]:
    return [(process, "invoke", "cas", [expected, new]), (process, outcome, "cas", [expected, new])]


def check(events: list[dict[str, Any]], model: Model | None = None, **kwargs: Any) -> Verdict:
    return check_linearizability(events, model if model is not None else RegisterModel(0), **kwargs)


def test_the_checkers_package_exports_the_linearizability_api():
    """sandbox.checkers lists the checker, its models and Call in __all__, each with a docstring."""
    names = {"check_linearizability", "Model", "RegisterModel", "KeyValueModel", "Call", "Outcome", "Verdict"}
    assert names <= set(checkers.__all__)
    assert len(checkers.__all__) == len(set(checkers.__all__))
    assert all((getattr(checkers, name).__doc__ or "").strip() for name in checkers.__all__)


# --- known-good histories ----------------------------------------------------------------------


def test_a_sequential_history_passes():
    """Writes, reads and a cas done one after another, each seeing the last write, pass."""
    verdict = check(hist(*write("a", 1), *read("b", 1), *write("b", 2), *cas("a", 2, 3), *read("a", 3)))
    assert verdict.outcome is Outcome.PASS
    assert bool(verdict) is True


def test_an_empty_history_passes():
    """A history without operations is trivially linearizable."""
    assert check([]).outcome is Outcome.PASS


@pytest.mark.parametrize("seen", [1, 2])
def test_overlapping_writes_may_land_in_either_order(seen):
    """After two overlapping writes, a later read may see either value."""
    events = hist(
        ("a", "invoke", "write", 1),
        ("b", "invoke", "write", 2),
        ("a", "ok", "write", 1),
        ("b", "ok", "write", 2),
        *read("c", seen),
    )
    assert check(events).outcome is Outcome.PASS


@pytest.mark.parametrize("seen", [0, 1])
def test_a_read_overlapping_a_write_may_see_the_old_or_the_new_value(seen):
    """A read concurrent with a write may return the value before it or the value it writes."""
    events = hist(
        ("a", "invoke", "write", 1),
        ("b", "invoke", "read", None),
        ("b", "ok", "read", seen),
        ("a", "ok", "write", 1),
    )
    assert check(events).outcome is Outcome.PASS


def test_a_successful_and_a_failed_cas_pass():
    """A cas from the right value swaps; one from a wrong value fails and changes nothing."""
    events = hist(*cas("a", 0, 1), *cas("b", 0, 2, outcome="fail"), *read("c", 1))
    assert check(events).outcome is Outcome.PASS


def test_a_failed_write_did_not_happen():
    """A write completed with fail is dropped, so a later read of its value is not explained."""
    events = hist(*write("a", 1, outcome="fail"), *read("b", 1))
    assert check(events).outcome is Outcome.FAIL


def test_an_info_write_that_took_effect_passes():
    """An indeterminate write may have happened: a later read of its value is explained."""
    events = hist(("a", "invoke", "write", 1), ("a", "info", "write", None), *read("b", 1))
    assert check(events).outcome is Outcome.PASS


def test_an_info_write_that_did_not_take_effect_passes():
    """An indeterminate write may never have happened: a later read of the old value is explained."""
    events = hist(("a", "invoke", "write", 1), ("a", "info", "write", None), *read("b", 0))
    assert check(events).outcome is Outcome.PASS


def test_an_info_write_may_take_effect_long_after_its_response():
    """An indeterminate write may land after later reads saw the old value (its response time is infinite)."""
    events = hist(("a", "invoke", "write", 1), ("a", "info", "write", None), *read("b", 0), *read("b", 0), *read("c", 1))
    assert check(events).outcome is Outcome.PASS


def test_an_info_write_cannot_take_effect_before_its_invocation():
    """A read that completed before an indeterminate write was invoked cannot see its value."""
    events = hist(*read("b", 1), ("a", "invoke", "write", 1), ("a", "info", "write", None))
    assert check(events).outcome is Outcome.FAIL


def test_an_info_cas_may_have_swapped():
    """An indeterminate cas from the right value may have swapped, and a later read may see it."""
    events = hist(("a", "invoke", "cas", [0, 5]), ("a", "info", "cas", None), *read("b", 5))
    assert check(events).outcome is Outcome.PASS


def test_two_alike_info_writes_may_each_take_effect():
    """Two indeterminate writes of the same value may land at two different times."""
    events = hist(
        ("a", "invoke", "write", 1),
        ("a", "info", "write", None),
        ("b", "invoke", "write", 1),
        ("b", "info", "write", None),
        *write("c", 2),
        *read("c", 1),
        *write("c", 3),
        *read("c", 1),
    )
    assert check(events).outcome is Outcome.PASS


def test_an_info_write_may_enable_an_info_cas():
    """An indeterminate write of 5 may make an indeterminate cas from 5 to 6 succeed, explaining a read of 6."""
    events = hist(
        ("a", "invoke", "write", 5),
        ("a", "info", "write", None),
        ("b", "invoke", "cas", [5, 6]),
        ("b", "info", "cas", None),
        *read("c", 6),
    )
    assert check(events).outcome is Outcome.PASS


def test_info_writes_may_land_late_one_after_another():
    """Indeterminate writes of 0 then 1 may both land after later writes, explaining reads of 0 then 1."""
    events = hist(
        ("a", "invoke", "write", 0),
        ("a", "info", "write", 0),
        ("a", "invoke", "write", 1),
        ("a", "info", "write", 1),
        *write("a", 0),
        *write("a", 2),
        *read("a", 0),
        *read("a", 1),
    )
    assert check(events).outcome is Outcome.PASS


def test_a_never_completed_operation_behaves_like_info():
    """An invocation without a completion (its client crashed) may or may not have taken effect."""
    assert check(hist(("a", "invoke", "write", 1), *read("b", 1))).outcome is Outcome.PASS
    assert check(hist(("a", "invoke", "write", 1), *read("b", 0))).outcome is Outcome.PASS


def test_lists_are_compared_as_values():
    """Values written and read as lists (as JSON gives them) compare by content."""
    events = hist(*write("a", [1, {"k": 2}]), *read("b", [1, {"k": 2}]))
    assert check(events, RegisterModel(None)).outcome is Outcome.PASS


def test_a_sandbox_history_is_accepted_and_its_own_records_are_the_evidence():
    """A sandbox.History is checked as is, and a failure's evidence holds its own Op records."""
    history = History()
    history.invoke(0.0, "a", "write", 1)
    history.complete(1.0, "a", "ok", 1)
    history.invoke(2.0, "b", "read", None)
    history.complete(3.0, "b", "ok", 7)
    verdict = check_linearizability(history, RegisterModel(0))
    assert verdict.outcome is Outcome.FAIL
    assert any(item is history[3] for item in verdict.evidence)


# --- known-bad histories -----------------------------------------------------------------------


def test_a_stale_read_after_a_completed_write_fails_with_evidence():
    """A read that returns 1 after the write of 2 completed fails, naming the value it should have seen."""
    events = hist(*write("a", 1), *write("a", 2), *read("b", 1))
    verdict = check(events)
    assert verdict.outcome is Outcome.FAIL
    assert bool(verdict) is False
    assert "read of the register by b returned 1" in verdict.summary
    assert "could only hold 2" in verdict.summary
    assert all(isinstance(item, Op) for item in verdict.evidence)
    assert [(op.process, op.type, op.f, op.value) for op in verdict.evidence] == [
        ("a", "invoke", "write", 2),
        ("a", "ok", "write", 2),
        ("b", "invoke", "read", None),
        ("b", "ok", "read", 1),
    ]


def test_a_read_of_a_value_never_written_fails():
    """A read returning a value nobody wrote cannot be explained by any order."""
    verdict = check(hist(*write("a", 1), *read("b", 42)))
    assert verdict.outcome is Outcome.FAIL
    assert "returned 42" in verdict.summary
    assert verdict.evidence[-1].value == 42


def test_a_cas_succeeding_on_a_wrong_expected_value_fails():
    """A cas from 0 that reports success after 1 was written fails, and says which cas."""
    verdict = check(hist(*write("a", 1), *cas("b", 0, 2)))
    assert verdict.outcome is Outcome.FAIL
    assert "cas of the register by b from 0 to 2 succeeded" in verdict.summary
    assert "could only hold 1" in verdict.summary


def test_two_sequential_reads_going_back_in_time_fail():
    """With a write concurrent with both, a read of the new value then a later read of the old one fails."""
    events = hist(("a", "invoke", "write", 1), *read("b", 1), *read("c", 0), ("a", "ok", "write", 1))
    verdict = check(events)
    assert verdict.outcome is Outcome.FAIL
    assert "read of the register by c returned 0" in verdict.summary
    assert "1 concurrent operation" in verdict.summary
    assert {(op.process, op.type) for op in verdict.evidence} >= {("a", "invoke"), ("b", "ok"), ("c", "ok")}


def test_the_failure_reported_is_the_first_unexplained_response():
    """With two bad reads, the verdict points at the earlier one."""
    verdict = check(hist(*write("a", 1), *read("b", 5), *read("c", 6)))
    assert "returned 5" in verdict.summary
    assert all(op.value != 6 for op in verdict.evidence)


# --- the key-value map -------------------------------------------------------------------------


def test_a_key_value_history_checks_each_key_on_its_own():
    """Writes to one key do not explain or spoil reads of another."""
    events = hist(
        ("a", "invoke", "write", ["x", 1]),
        ("a", "ok", "write", ["x", 1]),
        ("b", "invoke", "read", ["y", None]),
        ("b", "ok", "read", ["y", 0]),
        ("b", "invoke", "read", ["x", None]),
        ("b", "ok", "read", ["x", 1]),
    )
    verdict = check(events, KeyValueModel(0))
    assert verdict.outcome is Outcome.PASS
    assert "2 keys" in verdict.summary


def test_a_key_value_failure_is_reported_with_its_key():
    """A stale read on key 'y' fails the map, with 'y' named and only 'y' operations as evidence."""
    events = hist(
        ("a", "invoke", "write", ["x", 1]),
        ("a", "ok", "write", ["x", 1]),
        ("a", "invoke", "write", ["y", 2]),
        ("a", "ok", "write", ["y", 2]),
        ("b", "invoke", "read", ["x", None]),
        ("b", "ok", "read", ["x", 1]),
        ("b", "invoke", "read", ["y", None]),
        ("b", "ok", "read", ["y", 0]),
    )
    verdict = check(events, KeyValueModel(0))
    assert verdict.outcome is Outcome.FAIL
    assert "read of 'y' by b returned 0" in verdict.summary
    assert "'y' could only hold 2" in verdict.summary
    assert {op.value[0] for op in verdict.evidence if op.value is not None} == {"y"}


def test_when_several_keys_fail_the_earliest_failure_is_shown_and_the_others_counted():
    """Two keys with stale reads: the verdict shows the first bad response and says two keys fail."""
    events = hist(
        *write("a", ["x", 1]),
        *write("a", ["y", 1]),
        *read("b", ["y", 0]),
        *read("b", ["x", 0]),
    )
    verdict = check(events, KeyValueModel(0))
    assert verdict.outcome is Outcome.FAIL
    assert "read of 'y'" in verdict.summary
    assert "2 keys fail" in verdict.summary


def test_a_key_value_cas_is_checked_per_key():
    """A cas on one key swaps from that key's value, not another's."""
    events = hist(
        ("a", "invoke", "write", ["x", 1]),
        ("a", "ok", "write", ["x", 1]),
        ("b", "invoke", "cas", ["y", [0, 5]]),
        ("b", "ok", "cas", ["y", [0, 5]]),
        ("c", "invoke", "cas", ["x", [0, 5]]),
        ("c", "ok", "cas", ["x", [0, 5]]),
    )
    verdict = check(events, KeyValueModel(0))
    assert verdict.outcome is Outcome.FAIL
    assert "cas of 'x' by c from 0 to 5 succeeded" in verdict.summary


def test_a_key_value_write_may_complete_with_any_answer():
    """A map write's ok value is not needed: whatever the service answered is ignored."""
    events = hist(
        ("a", "invoke", "write", ["x", 1]),
        ("a", "ok", "write", {"status": "stored"}),
        ("b", "invoke", "read", ["x", None]),
        ("b", "ok", "read", ["x", 1]),
    )
    assert check(events, KeyValueModel(0)).outcome is Outcome.PASS


def test_a_key_value_read_must_say_what_it_saw():
    """A map read completed ok without a [key, value] pair raises, showing its value."""
    events = hist(("b", "invoke", "read", ["x", None]), ("b", "ok", "read", 1))
    with pytest.raises(InvalidParameterError, match="value 1 "):
        check(events, KeyValueModel(0))


def test_a_key_value_history_out_of_time_is_unknown_when_no_key_fails():
    """If time runs out on some key and no key has failed, the map's verdict is UNKNOWN."""
    events = [
        {**op, "value": None if op["value"] is None else ["k", op["value"]]}
        for op in broken(generated(seed=3, clients=10, operations=800))
    ]
    verdict = check(events, KeyValueModel(0), time_limit=1e-4)
    assert verdict.outcome is Outcome.UNKNOWN
    assert "after deciding 0 of 1 keys" in verdict.summary


def test_the_whole_map_step_of_the_key_value_model_follows_a_register_per_key():
    """KeyValueModel.step on the whole map keeps keys apart: what a learner's wrapper would rely on."""
    model = KeyValueModel(0)
    state = model.init()
    ok, state = model.step(state, _call("write", ("x", 3), ("x", 3)))
    assert ok
    assert model.step(state, _call("read", ("x", None), ("x", 3)))[0] is True
    assert model.step(state, _call("read", ("y", None), ("y", 0)))[0] is True
    assert model.step(state, _call("read", ("y", None), ("y", 3)))[0] is False


# --- a learner's own model ---------------------------------------------------------------------


class CounterModel:
    """A counter: add(n) adds n; read returns the total."""

    def init(self) -> int:
        return 0

    def step(self, state: int, call: Call) -> tuple[bool, int]:
        if call.f == "add":
            return True, state + call.input
        return (not call.known or call.output == state), state


def test_a_learner_model_is_checked_through_the_protocol():
    """A model with init and step, and nothing more, is accepted; its histories pass or fail."""
    good = hist(("a", "invoke", "add", 2), ("a", "ok", "add", 2), ("b", "invoke", "read", None), ("b", "ok", "read", 2))
    bad = hist(("a", "invoke", "add", 2), ("a", "ok", "add", 2), ("b", "invoke", "read", None), ("b", "ok", "read", 3))
    assert isinstance(CounterModel(), Model)
    assert check(good, CounterModel()).outcome is Outcome.PASS
    verdict = check(bad, CounterModel())
    assert verdict.outcome is Outcome.FAIL
    assert "read by b returned 3" in verdict.summary
    assert "the model could only be in 2" in verdict.summary


def test_a_model_returning_an_unhashable_state_is_told_so():
    """A learner model whose states cannot be remembered raises InvalidParameterError naming the state."""

    class ListModel:
        def init(self) -> Any:
            return ()

        def step(self, state: Any, call: Call) -> tuple[bool, Any]:
            return True, [*state, call.input]

    with pytest.raises(InvalidParameterError, match=r"\[1\].*not hashable"):
        check(hist(*write("a", 1)), ListModel())


# --- the time limit ----------------------------------------------------------------------------


def test_a_tiny_time_limit_on_a_big_history_gives_unknown():
    """Running out of time is UNKNOWN, which is not a pass, and the summary says why."""
    verdict = check(broken(generated(seed=3, clients=10, operations=800)), time_limit=1e-4)
    assert verdict.outcome is Outcome.UNKNOWN
    assert bool(verdict) is False
    assert "ran out of time" in verdict.summary


def test_a_failing_key_outweighs_a_key_that_ran_out_of_time():
    """If one key fails and another is undecided when time runs out, the map fails."""
    bad_key = hist(*write("a", ["a", 1]), *read("b", ["a", 0]))
    big_key = [
        {**op, "time": op["time"] + 100, "value": None if op["value"] is None else ["b", op["value"]]}
        for op in broken(generated(seed=3, clients=10, operations=800))
    ]
    verdict = check(bad_key + big_key, KeyValueModel(0), time_limit=1e-4)
    assert verdict.outcome is Outcome.FAIL
    assert "'a'" in verdict.summary


def test_the_time_limit_uses_the_real_clock_inside_the_sandbox():
    """Inside a sandbox task, where time.perf_counter is virtual and stands still, the limit still stops the search."""
    verdicts: list[Verdict] = []

    async def workload(client: Any) -> None:
        verdicts.append(check(broken(generated(seed=3, clients=10, operations=800)), time_limit=1e-3))

    world = sandbox.World(seed=1)
    world.add_client("checker", workload)
    world.run()
    assert [verdict.outcome for verdict in verdicts] == [Outcome.UNKNOWN]


# --- at scale: 50 clients on a learner's map of strings ---------------------------------------


class StringMapModel:
    """A learner's map of strings through the Model protocol: get, put and append, each value [key, argument].

    ``split`` and ``per_key`` have each key checked on its own, so ``init`` and ``step`` describe one key's
    string ('' before any write), as in Porcupine's key-value model.
    """

    def init(self) -> str:
        return ""

    def step(self, state: str, call: Call) -> tuple[bool, str]:
        if call.f == "get":
            return (not call.known or call.output == state), state
        return True, (state if call.f == "append" else "") + call.input

    def split(self, call: Call) -> tuple[str, Call]:
        key, argument = call.input
        seen = call.output[1] if call.f == "get" and call.known else None
        return key, dataclasses.replace(call, input=argument, output=seen)

    def per_key(self, key: str) -> StringMapModel:
        return self


def string_map_history(seed: int, operations: int, lose: bool = False) -> tuple[list[dict[str, Any]], int]:
    """50 clients doing get and append on 10 keys back to back, each at an instant inside its interval.

    Most operations are quick; one in five is slow and took effect early. With ``lose``, the store acknowledges
    an append past the middle of the history and never applies it: one whose key is next used by a get, so that
    no order explains that get. Returns the history and the lost append's number (-1 if none).
    """
    rng = random.Random(seed)
    clock = [rng.uniform(0, 1) for _ in range(50)]
    ops = []
    for n in range(operations):
        client = min(range(50), key=clock.__getitem__)
        start = clock[client] + rng.expovariate(20.0)
        slow = rng.random() < 0.2
        end = clock[client] = start + (rng.uniform(1, 4) if slow else rng.uniform(0.02, 0.2))
        ops.append({
            "n": n, "process": f"c{client}", "f": rng.choice(["get", "append"]), "key": f"k{rng.randrange(10)}",
            "start": start, "end": end, "point": start + rng.uniform(0, 0.5 if slow else 1) * (end - start),
        })
    lost = -1
    if lose:
        for op in ops[operations // 2:]:
            after = [other for other in ops if other["key"] == op["key"] and other["start"] > op["end"]]
            if op["f"] == "append" and after and min(after, key=lambda other: other["start"])["f"] == "get":
                lost = op["n"]
                break
    values: dict[str, str] = {}
    for op in sorted(ops, key=lambda op: op["point"]):
        op["text"] = values.get(op["key"], "") if op["f"] == "get" else f"x {op['process']} {op['n']} y"
        if op["f"] == "append" and op["n"] != lost:
            values[op["key"]] = values.get(op["key"], "") + op["text"]
    events = []
    for op in ops:
        asked = None if op["f"] == "get" else op["text"]
        events.append((op["start"], {"process": op["process"], "type": "invoke", "f": op["f"], "value": [op["key"], asked]}))
        events.append((op["end"], {"process": op["process"], "type": "ok", "f": op["f"], "value": [op["key"], op["text"]]}))
    return [{**event, "time": time} for time, event in sorted(events, key=lambda event: event[0])], lost


def test_fifty_clients_on_a_learners_string_map_pass():
    """1,500 operations of 50 clients on a map of strings (a model written through the protocol) are decided PASS.

    The search used to give up (UNKNOWN) on this history after 20 s; it now takes a fraction of a second. The
    limit is above the default only so that a loaded test machine cannot make the test flaky.
    """
    history, _ = string_map_history(seed=5, operations=1500)
    verdict = check_linearizability(history, StringMapModel(), time_limit=5.0)
    assert verdict.outcome is Outcome.PASS, verdict.summary
    assert "1500 operations from 50 processes" in verdict.summary
    assert "10 keys" in verdict.summary


def test_fifty_clients_on_a_string_map_that_loses_an_append_fail_with_it_as_evidence():
    """The same store losing an acknowledged append fails at the get that misses it, the append in the evidence.

    The search stops at the first key that fails and says how many keys it left: it does not decide the others.
    """
    history, lost = string_map_history(seed=5, operations=1500, lose=True)
    append = [event for event in history if event["f"] == "append" and event["value"][1].endswith(f" {lost} y")]
    key, text = append[0]["value"]
    verdict = check_linearizability(history, StringMapModel(), time_limit=5.0)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary.startswith("get by ")
    assert text in verdict.summary  # in the states the model could be in: each holds the lost append's text
    assert "other keys not searched to the end" in verdict.summary
    shown = [(op.process, op.type, op.f, op.value) for op in verdict.evidence]
    assert [(event["process"], event["type"], "append", [key, text]) for event in append] == [
        entry for entry in shown if entry[2] == "append" and entry[3][1] == text
    ]
    stuck = [op for op in verdict.evidence if op.type == "ok" and op.f == "get" and text not in op.value[1]]
    assert stuck and all(op.value[0] == key for op in verdict.evidence)


def test_a_key_that_fails_is_found_while_the_others_take_turns():
    """Keys take turns: a key that fails is found at once, even after keys that took seconds to decide."""
    history, _ = string_map_history(seed=5, operations=1500)
    end = history[-1]["time"]
    history += [
        {"process": "late", "type": "invoke", "f": "append", "value": ["late", "a"], "time": end + 1},
        {"process": "late", "type": "ok", "f": "append", "value": ["late", "a"], "time": end + 2},
        {"process": "late", "type": "invoke", "f": "get", "value": ["late", None], "time": end + 3},
        {"process": "late", "type": "ok", "f": "get", "value": ["late", ""], "time": end + 4},
    ]
    verdict = check_linearizability(history, StringMapModel())
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary.startswith("get by late returned '', but nothing before it explains it")
    assert "other keys not searched to the end" in verdict.summary


def searched_in_two_processes(patch: pytest.MonkeyPatch) -> list[int]:
    """Have the keys' searches fork a second process after their first turn; the list fills with the children's pids."""
    children: list[int] = []
    fork = turns_module._fork

    def spy(*args: Any) -> Any:
        child = fork(*args)
        children.append(child.pid)
        return child

    patch.setattr(turns_module, "FORK_AFTER", 0.0)
    patch.setattr(turns_module, "_can_fork", lambda keys: keys > 1)
    patch.setattr(turns_module, "_free_core", lambda: True)
    patch.setattr(turns_module, "_fork", spy)
    return children


def in_one_process(history: list[dict[str, Any]]) -> Verdict:
    """The verdict on a string-map history with every key searched in the caller's process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(turns_module, "_can_fork", lambda keys: False)
        return check_linearizability(history, StringMapModel(), time_limit=10.0)


def shown(verdict: Verdict) -> tuple[Outcome, str, tuple[Any, ...]]:
    return verdict.outcome, verdict.summary, verdict.evidence


@pytest.mark.parametrize("lose", [False, True])
def test_two_processes_give_the_verdict_of_one(lose):
    """Keys searched in two processes give the same verdict, summary and evidence as in one, and leave no child."""
    history, _ = string_map_history(seed=5, operations=1500, lose=lose)
    alone = in_one_process(history)
    with pytest.MonkeyPatch.context() as patch:
        children = searched_in_two_processes(patch)
        shared = check_linearizability(history, StringMapModel(), time_limit=10.0)
    assert len(children) == 1
    assert alone.outcome is (Outcome.FAIL if lose else Outcome.PASS)
    assert shown(shared) == shown(alone)
    with pytest.raises(ChildProcessError):  # reaped
        os.waitpid(children[0], os.WNOHANG)


def test_keys_failing_in_both_processes_are_counted_as_in_one():
    """With a key failing early in each process, the earliest failure is shown and both are counted, as in one."""
    history, _ = string_map_history(seed=5, operations=1500)
    end = history[-1]["time"]
    for n, key in enumerate(["late-a", "late-b", "late-c"]):  # each: an append, then a get that misses it
        at = end + 10 * n
        history += [
            {"process": key, "type": "invoke", "f": "append", "value": [key, "a"], "time": at + 1},
            {"process": key, "type": "ok", "f": "append", "value": [key, "a"], "time": at + 2},
            {"process": key, "type": "invoke", "f": "get", "value": [key, None], "time": at + 3},
            {"process": key, "type": "ok", "f": "get", "value": [key, ""], "time": at + 4},
        ]
    alone = in_one_process(history)
    with pytest.MonkeyPatch.context() as patch:
        children = searched_in_two_processes(patch)
        shared = check_linearizability(history, StringMapModel())
    assert children
    assert alone.summary.startswith("get by late-a returned '', but nothing before it explains it")
    assert "(3 keys fail; the first shown; 8 other keys not searched to the end)" in alone.summary
    assert shown(shared) == shown(alone)


def test_a_model_that_raises_in_the_second_process_raises_in_the_caller():
    """What the model raises while the second process searches reaches the caller, and the child is reaped."""
    caller = os.getpid()

    class FailsInChild(StringMapModel):
        def step(self, state: str, call: Call) -> tuple[bool, str]:
            if os.getpid() != caller:
                raise ValueError(f"cannot step {call.f} here")
            return super().step(state, call)

    history, _ = string_map_history(seed=5, operations=1500)
    with pytest.MonkeyPatch.context() as patch:
        children = searched_in_two_processes(patch)
        with pytest.raises(ValueError, match="cannot step"):
            check_linearizability(history, FailsInChild(), time_limit=10.0)
    assert len(children) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(children[0], os.WNOHANG)


@pytest.mark.parametrize("sent", [
    lambda message: os._exit(1),  # the child ends before it sends anything
    lambda message: pickle.dumps(message)[:20],  # the child sends the start of its answer only
], ids=["nothing", "cut short"])
def test_keys_of_a_second_process_that_dies_are_searched_by_the_caller(sent):
    """A second process killed before it answers costs its work, not the verdict: the caller searches its keys."""
    history, _ = string_map_history(seed=5, operations=1500, lose=True)
    alone = in_one_process(history)
    with pytest.MonkeyPatch.context() as patch:
        children = searched_in_two_processes(patch)
        patch.setattr(turns_module, "_dumps", sent)
        shared = check_linearizability(history, StringMapModel(), time_limit=10.0)
    assert len(children) == 1
    assert shown(shared) == shown(alone)


def test_no_second_process_is_forked_when_no_core_is_free():
    """With as many processes ready to run as cores, the keys stay in the caller's process (a fork would only cost)."""
    history, _ = string_map_history(seed=5, operations=1500, lose=True)
    with pytest.MonkeyPatch.context() as patch:
        children = searched_in_two_processes(patch)
        patch.setattr(turns_module, "_free_core", lambda: False)
        verdict = check_linearizability(history, StringMapModel(), time_limit=10.0)
    assert verdict.outcome is Outcome.FAIL
    assert children == []


def test_a_quick_check_forks_no_process():
    """A history decided within the first milliseconds is searched in the caller's process alone."""
    history, _ = string_map_history(seed=5, operations=200)
    with pytest.MonkeyPatch.context() as patch:
        forked: list[Any] = []
        patch.setattr(turns_module, "_fork", lambda *args: forked.append(args))
        patch.setattr(turns_module, "FORK_AFTER", 60.0)
        assert check_linearizability(history, StringMapModel()).outcome is Outcome.PASS
    assert forked == []


# --- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("model, shown", [(object(), "object object"), (RegisterModel, "RegisterModel()"), (None, "None")])
def test_something_that_is_not_a_model_is_refused(model, shown):
    """A model without init and step (or a model class instead of an instance) raises, showing it."""
    with pytest.raises(InvalidParameterError, match=shown.replace("(", r"\(").replace(")", r"\)")):
        check_linearizability([], model)


@pytest.mark.parametrize("limit", [0, -1.0, math.nan, math.inf, "1", True, None])
def test_a_time_limit_that_is_not_a_positive_finite_number_is_refused(limit):
    """time_limit must be a positive finite number; the error shows the bad value."""
    with pytest.raises(InvalidParameterError, match=f"time_limit={limit!r}"):
        check([], time_limit=limit)


def test_an_unknown_operation_type_is_refused():
    """An op whose type is not invoke / ok / fail / info raises, showing the type."""
    with pytest.raises(InvalidParameterError, match="type='done'"):
        check(hist(("a", "invoke", "write", 1), ("a", "done", "write", 1)))


def test_an_operation_the_model_does_not_know_is_refused():
    """An f outside read / write / cas raises, showing the f."""
    with pytest.raises(InvalidParameterError, match="f='increment'"):
        check(hist(("a", "invoke", "increment", 1), ("a", "ok", "increment", 1)))


def test_a_cas_value_that_is_not_a_pair_is_refused():
    """A cas whose value is not [expected, new] raises, showing the value."""
    with pytest.raises(InvalidParameterError, match=r"cas value \[1, 2, 3\]"):
        check(hist(("a", "invoke", "cas", [1, 2, 3]), ("a", "ok", "cas", [1, 2, 3])))


def test_a_key_value_operation_without_a_key_is_refused():
    """A map operation whose value is not [key, payload] raises, showing the value."""
    with pytest.raises(InvalidParameterError, match="value 5 "):
        check(hist(("a", "invoke", "write", 5), ("a", "ok", "write", 5)), KeyValueModel())


def test_a_completion_without_an_invocation_is_refused():
    """An ok with no open invocation for its process raises, naming the process."""
    with pytest.raises(InvalidParameterError, match="'a' has no open operation"):
        check(hist(("a", "ok", "write", 1)))


def test_a_history_out_of_time_order_is_refused():
    """Entries listed out of time order raise: the list order is the order of events."""
    events = hist(*write("a", 1), *read("b", 1))
    events[2]["time"] = -5.0
    with pytest.raises(InvalidParameterError, match="-5.0"):
        check(events)


def test_a_history_that_is_not_a_list_of_operations_is_refused():
    """A string, a dict or a number is not a history."""
    for bad in ("read", {"process": "a"}, 3):
        with pytest.raises(InvalidParameterError, match="history="):
            check(bad)  # type: ignore[arg-type]


# --- generated histories -----------------------------------------------------------------------


def _call(f: str, input: Any, output: Any, known: bool = True) -> Call:
    op = Op(0, 0.0, "p", "invoke", f, input)
    return Call("p", f, input, output, known, op, None)


def sequential_history(ops: list[dict[str, Any]], initial: Any = 0, keyed: bool = False) -> list[dict[str, Any]]:
    """The history of ``ops`` (process, f, new, start, end, point, fate) run one at a time in ``point`` order.

    ``fate`` is "ok", "info-happened", "info-not" or "pending-happened" / "pending-not": an info or
    never-completed operation took effect at its point or not at all. What each read returns and
    whether each cas succeeds comes from running a plain register (one per key) in that order.
    """
    values: dict[Any, Any] = {}
    for op in sorted(ops, key=lambda op: op["point"]):
        current = values.get(op["key"], initial)
        if op["f"] == "read":
            op["seen"] = current
        if op["fate"].endswith("-not"):
            continue
        if op["f"] == "write":
            values[op["key"]] = op["new"]
        elif op["f"] == "cas":
            op["swapped"] = op["expected"] == current
            if op["swapped"]:
                values[op["key"]] = op["new"]
    events = []
    for op in ops:
        asked = {"read": None, "write": op["new"], "cas": [op.get("expected"), op["new"]]}[op["f"]]
        seen = op.get("seen") if op["f"] == "read" else asked
        if keyed:
            asked, seen = [op["key"], asked], [op["key"], seen]
        if op["fate"].startswith("info"):
            outcome, seen = "info", None
        elif op["f"] == "cas" and not op.get("swapped", True):
            outcome = "fail"
        else:
            outcome = "ok"
        events.append((op["start"], 1, {"process": op["process"], "type": "invoke", "f": op["f"], "value": asked, "time": op["start"]}))
        if not op["fate"].startswith("pending"):
            events.append((op["end"], 0, {"process": op["process"], "type": outcome, "f": op["f"], "value": seen, "time": op["end"]}))
    return [event for _, _, event in sorted(events, key=lambda e: (e[0], e[1]))]


@st.composite
def operations(draw: Any, keyed: bool = False, max_ops: int = 24) -> list[dict[str, Any]]:
    """Operations of up to 5 processes, each doing one at a time, with random overlaps and points."""
    n_processes = draw(st.integers(1, 5))
    ops: list[dict[str, Any]] = []
    clock = [0] * n_processes
    for n in range(draw(st.integers(0, max_ops))):
        p = draw(st.integers(0, n_processes - 1))
        if clock[p] is None:  # this process left an operation pending: it does nothing more
            continue
        start = clock[p] + draw(st.integers(0, 3))
        end = start + draw(st.integers(1, 6))
        f = draw(st.sampled_from(["read", "write", "cas"]))
        fate = draw(st.sampled_from(["ok"] * 6 + ["info-happened", "info-not", "pending-happened", "pending-not"]))
        ops.append({
            "process": f"p{p}", "f": f, "key": draw(st.sampled_from(["x", "y"])) if keyed else None,
            "new": draw(st.integers(0, 3)), "expected": draw(st.integers(0, 3)),
            "start": start, "end": end, "point": start + draw(st.floats(0.01, 0.99)) * (end - start), "fate": fate,
        })
        clock[p] = None if fate.startswith("pending") else end
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations())
def test_histories_from_a_sequential_register_pass(ops):
    """A history made by running a register one operation at a time, at points inside the intervals, passes."""
    verdict = check(sequential_history(ops))
    assert verdict.outcome is Outcome.PASS, str(verdict)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations(), st.data())
def test_a_read_changed_to_a_value_never_written_fails(ops, data):
    """Changing one successful read of a sequential history to a value never written makes it fail, at that read."""
    events = sequential_history(ops)
    reads = [i for i, e in enumerate(events) if e["type"] == "ok" and e["f"] == "read"]
    assume(reads)
    target = data.draw(st.sampled_from(reads))
    events[target]["value"] = 99
    verdict = check(events)
    assert verdict.outcome is Outcome.FAIL
    assert "returned 99" in verdict.summary
    assert any(op.type == "ok" and op.value == 99 for op in verdict.evidence)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations(keyed=True))
def test_histories_from_a_sequential_map_pass(ops):
    """A history made by running a map of registers one operation at a time passes the key-value check."""
    verdict = check(sequential_history(ops, keyed=True), KeyValueModel(0))
    assert verdict.outcome is Outcome.PASS, str(verdict)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations(keyed=True, max_ops=10), st.data())
def test_decomposing_a_map_per_key_agrees_with_checking_it_whole(ops, data):
    """The per-key verdict equals the verdict of the whole-map model without decomposition."""
    events = sequential_history(ops, keyed=True)
    reads = [i for i, e in enumerate(events) if e["type"] == "ok" and e["f"] == "read"]
    if reads and data.draw(st.booleans()):
        target = data.draw(st.sampled_from(reads))
        events[target]["value"] = [events[target]["value"][0], data.draw(st.integers(0, 3))]

    class WholeMap:  # KeyValueModel without split: the search runs over the whole map's state
        def __init__(self) -> None:
            self.inner = KeyValueModel(0)

        def init(self) -> Any:
            return self.inner.init()

        def step(self, state: Any, call: Call) -> tuple[bool, Any]:
            return self.inner.step(state, call)

    assert check(events, KeyValueModel(0)).outcome is check(events, WholeMap()).outcome


# --- agreement with a brute-force oracle ------------------------------------------------------


def brute_force_linearizable(events: list[dict[str, Any]], initial: Any = 0) -> bool:
    """By definition: some order of the ok ops and a subset of the info ones, respecting real time, explains every result."""
    open_ops: dict[str, dict[str, Any]] = {}
    ops = []
    for position, event in enumerate(events):
        if event["type"] == "invoke":
            open_ops[event["process"]] = {"f": event["f"], "input": event["value"], "start": position}
            continue
        op = open_ops.pop(event["process"])
        if event["type"] == "ok":
            ops.append({**op, "output": event["value"], "end": position})
        elif event["type"] == "info":
            ops.append({**op, "output": None, "end": math.inf})
    ops += [{**op, "output": None, "end": math.inf} for op in open_ops.values()]

    def apply(state: Any, op: dict[str, Any]) -> tuple[bool, Any]:
        if op["f"] == "read":
            return op["end"] == math.inf or op["output"] == state, state
        if op["f"] == "write":
            return True, op["input"]
        return (state == op["input"][0]), op["input"][1]

    def search(remaining: tuple[int, ...], state: Any) -> bool:
        deadline = min((ops[i]["end"] for i in remaining), default=math.inf)
        if deadline == math.inf:
            return True  # only indeterminate ops left: they may never happen
        for i in remaining:
            if ops[i]["start"] < deadline:
                ok, new_state = apply(state, ops[i])
                if ok and search(tuple(j for j in remaining if j != i), new_state):
                    return True
        return False

    return search(tuple(range(len(ops))), initial)


@st.composite
def arbitrary_histories(draw: Any) -> list[dict[str, Any]]:
    """Well-formed but otherwise random histories of up to 7 operations on values 0..2: often not linearizable."""
    n_processes = draw(st.integers(1, 3))
    events: list[dict[str, Any]] = []
    open_ops: dict[str, str] = {}
    invoked = 0
    for _ in range(draw(st.integers(0, 14))):
        process = f"p{draw(st.integers(0, n_processes - 1))}"
        if process in open_ops:
            f = open_ops.pop(process)
            outcome = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
            value = draw(st.integers(0, 2)) if f == "read" and outcome == "ok" else events_value(events, process)
            events.append({"process": process, "type": outcome, "f": f, "value": value, "time": float(len(events))})
        elif invoked < 7:
            invoked += 1
            f = draw(st.sampled_from(["read", "write", "cas"]))
            small = st.integers(0, 2)
            value = {"read": None, "write": draw(small), "cas": [draw(small), draw(small)]}[f]
            open_ops[process] = f
            events.append({"process": process, "type": "invoke", "f": f, "value": value, "time": float(len(events))})
    return events


def events_value(events: list[dict[str, Any]], process: str) -> Any:
    return next(e["value"] for e in reversed(events) if e["process"] == process and e["type"] == "invoke")


@settings(max_examples=300, deadline=None)
@given(arbitrary_histories())
def test_the_checker_agrees_with_brute_force_on_small_random_histories(events):
    """On random small histories, PASS exactly when some real-time-respecting order explains every result."""
    outcome = check(events).outcome
    assert outcome is not Outcome.UNKNOWN
    assert (outcome is Outcome.PASS) == brute_force_linearizable(events), events


@settings(max_examples=150, deadline=None)
@given(arbitrary_histories())
def test_the_search_by_count_of_indeterminate_calls_agrees_with_brute_force(events):
    """The search's second order (fewest indeterminate calls first, for long searches) decides as the oracle does."""
    with pytest.MonkeyPatch.context() as patch:  # switch to the second order at once, not after many configurations
        patch.setattr(linearizability_module, "_DEPTH_FIRST_BUDGET", (0, 0))
        outcome = check(events).outcome
    assert (outcome is Outcome.PASS) == brute_force_linearizable(events), events


@settings(max_examples=150, deadline=None)
@given(arbitrary_histories())
def test_a_search_that_remembers_nothing_agrees_with_brute_force(events):
    """Past its memory bound the search goes on without remembering configurations, and decides as the oracle."""
    with pytest.MonkeyPatch.context() as patch:  # a bound of 0: no configuration is remembered at all
        patch.setattr(linearizability_module, "_REMEMBER", 0)
        outcome = check(events).outcome
    assert (outcome is Outcome.PASS) == brute_force_linearizable(events), events


# --- the benchmark's kind of history, for the time-limit tests ---------------------------------


def generated(seed: int, clients: int, operations: int) -> list[dict[str, Any]]:
    """A linearizable register history of ``clients`` overlapping clients, values 0..2, from a seed."""
    rng = random.Random(seed)
    clock = [0.0] * clients
    ops = []
    for n in range(operations):
        p = n % clients
        start = clock[p] + rng.expovariate(2.0)
        end = start + rng.expovariate(1.0) + 1e-3
        clock[p] = end
        ops.append({
            "process": f"c{p}", "f": rng.choice(["read", "read", "write", "cas"]), "key": None,
            "new": rng.randrange(3), "expected": rng.randrange(3), "start": start, "end": end,
            "point": rng.uniform(start, end), "fate": "ok",
        })
    return sequential_history(ops)


def broken(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history with its last successful read returning a value never written."""
    events = [dict(e) for e in events]
    last = max(i for i, e in enumerate(events) if e["type"] == "ok" and e["f"] == "read")
    events[last]["value"] = -1
    return events
