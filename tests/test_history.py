"""Jepsen-style histories: invocations, completions, pairing, and plain-data round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sandbox
from sandbox import History, Op

TESTS_DIR = Path(__file__).resolve().parent


def sample() -> History:
    """Two processes: alice's write completes, bob's read fails, alice's second write never completes."""
    h = History()
    h.invoke(0.0, "alice", "write", 1)
    h.invoke(0.1, "bob", "read")
    h.complete(0.2, "bob", "fail", None, "HTTP 503")
    h.complete(0.3, "alice", "ok", 1)
    h.invoke(0.4, "bob", "read")
    h.complete(0.5, "bob", "info", None, "RequestTimeout")
    h.invoke(0.6, "alice", "write", 2)
    return h


def test_operations_are_numbered_in_the_order_they_happen():
    """Each recorded Op gets the next index; the history is a sequence of them."""
    h = sample()
    assert len(h) == 7
    assert [op.index for op in h] == list(range(7))
    assert h[3] == Op(index=3, time=0.3, process="alice", type="ok", f="write", value=1, error=None)


def test_a_completion_takes_its_f_from_the_invocation():
    """complete() records the function name of the process's open invocation."""
    h = History()
    h.invoke(1.0, "alice", "transfer", {"amount": 5})
    op = h.complete(1.5, "alice", "ok", {"balance": 95})
    assert (op.f, op.type, op.value, op.time) == ("transfer", "ok", {"balance": 95}, 1.5)


def test_pairs_match_each_invocation_with_its_completion():
    """pairs() gives every invocation, in invoke order, with its own process's completion, or None if still open."""
    pairs = sample().pairs()
    assert [(i.process, i.index, c and c.type) for i, c in pairs] == [
        ("alice", 0, "ok"), ("bob", 1, "fail"), ("bob", 4, "info"), ("alice", 6, None),
    ]
    assert pairs[1][1].error == "HTTP 503"


def test_to_dicts_gives_plain_json_data():
    """to_dicts() gives one dict per op with every field, which JSON can carry."""
    dicts = sample().to_dicts()
    assert dicts[2] == {"index": 2, "time": 0.2, "process": "bob", "type": "fail", "f": "read", "value": None, "error": "HTTP 503"}
    assert json.loads(json.dumps(dicts)) == dicts


def test_from_ops_round_trips_dicts():
    """History.from_ops(h.to_dicts()) rebuilds the same history, open operation included."""
    h = sample()
    again = History.from_ops(h.to_dicts())
    assert list(again) == list(h)
    assert again.pairs() == h.pairs()


def test_from_ops_round_trips_ops():
    """History.from_ops accepts Op objects as well as dicts."""
    h = sample()
    assert list(History.from_ops(list(h))) == list(h)


def test_from_ops_needs_no_index():
    """Dicts without an index (from another tool) are numbered in order."""
    h = History.from_ops([
        {"time": 0.0, "process": "p", "type": "invoke", "f": "cas", "value": [1, 2]},
        {"time": 0.1, "process": "p", "type": "ok", "f": "cas", "value": [1, 2]},
    ])
    assert [(op.index, op.type) for op in h] == [(0, "invoke"), (1, "ok")]


@pytest.mark.parametrize("bad_type", ["invoke", "done", "OK", None])
def test_a_completion_of_an_unknown_type_raises(bad_type):
    """complete() accepts only ok, fail and info, and says so."""
    h = History()
    h.invoke(0.0, "alice", "write", 1)
    with pytest.raises(ValueError, match=repr(bad_type)):
        h.complete(0.1, "alice", bad_type)
    assert len(h) == 1


def test_completing_without_an_open_operation_raises():
    """complete() for a process with nothing open raises ValueError naming the process."""
    h = History()
    with pytest.raises(ValueError, match="'alice' has no open operation"):
        h.complete(0.0, "alice", "ok")
    h.invoke(0.0, "alice", "write", 1)
    h.complete(0.1, "alice", "ok")
    with pytest.raises(ValueError, match="'alice'"):
        h.complete(0.2, "alice", "ok")


def test_a_process_does_one_operation_at_a_time():
    """Invoking while the same process has an operation open raises ValueError naming the open one."""
    h = History()
    h.invoke(0.0, "alice", "write", 1)
    with pytest.raises(ValueError, match="'write' \\(index 0\\) is still open"):
        h.invoke(0.1, "alice", "read")
    h.invoke(0.1, "bob", "read")
    assert [op.process for op in h] == ["alice", "bob"]


def test_from_ops_rejects_an_invalid_history():
    """Rebuilding a history whose completion has no invocation raises ValueError."""
    with pytest.raises(ValueError, match="no open operation"):
        History.from_ops([{"time": 0.0, "process": "p", "type": "ok", "f": "read"}])


def test_an_op_prints_as_one_line():
    """str(op) shows time, process, type, f, value and the error, on one line."""
    h = sample()
    assert str(h[5]).split() == ["0.5000", "bob", "info", "read", "None", "(RequestTimeout)"]
    assert str(h[0]).split() == ["0.0000", "alice", "invoke", "write", "1"]


# --- a property: histories survive a round trip through plain data ----------------------------

_events = st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(["ok", "fail", "info", None]), st.integers(0, 5)), max_size=30)


@given(_events)
def test_any_history_round_trips_through_plain_dicts(events):
    """Any well-formed history rebuilt from to_dicts() (even through JSON) equals the original, pairs included."""
    h = History()
    for t, (process, outcome, value) in enumerate(events):
        if process in {op.process for op, done in h.pairs() if done is None}:
            if outcome is not None:
                h.complete(float(t), process, outcome, value)
        else:
            h.invoke(float(t), process, "write", value)
    again = History.from_ops(json.loads(json.dumps(h.to_dicts())))
    assert list(again) == list(h)
    assert again.pairs() == h.pairs()
    assert sum(1 for op in h if op.type == "invoke") == len(h.pairs())


class Receipt:  # an object with object's own repr (its memory address)
    def __init__(self, amount: int) -> None:
        self.amount = amount


def receipts_world(values: list) -> str:
    world = sandbox.World(seed=2)

    async def shopper(client: sandbox.Client) -> None:
        for value in values:
            async with client.operation("pay", value) as op:
                op.ok(value)

    world.add_client("shopper", shopper)
    world.run()
    return world.fingerprint()


def test_a_history_value_holding_a_set_or_an_object_fingerprints_alike_in_every_run_and_process():
    """A value recorded in the history that holds a set of strings, or an object with object's own repr, gives the
    same fingerprint in every run and under every PYTHONHASHSEED: sets read sorted, such objects by their class
    (before, the object's memory address, and the set's hash order, went into the hash)."""
    assert receipts_world([Receipt(5), {"lamp", "desk"}]) == receipts_world([Receipt(5), {"desk", "lamp"}])
    code = (
        "import sandbox, test_history\n"
        "print(test_history.receipts_world([test_history.Receipt(5), {'lamp', 'desk', 'chair', 'sofa', 'rug'}]))\n"
    )
    prints = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, cwd=TESTS_DIR,
                       capture_output=True, text=True, timeout=120, check=True).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(prints) == 1


def test_stable_repr_is_repr_for_plain_values():
    from sandbox.history import stable_repr

    for value in (1, -2.5, "a'b", None, True, b"x", {"a": [1, (2,), ()], "b": {"c": None}}, [], (), {}):
        assert stable_repr(value) == repr(value)
    assert stable_repr({"b", "a"}) == "{'a', 'b'}" and stable_repr(frozenset()) == "frozenset()"
    assert stable_repr(Receipt(1)) == f"<{__name__}.Receipt object>"
