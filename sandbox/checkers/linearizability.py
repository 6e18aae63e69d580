"""Linearizability: could the operations of a history have happened one at a time, in real-time order?

A history is *linearizable* when every operation can be given a single instant, somewhere between
its invocation and its response, such that running the operations one by one in the order of those
instants, against a plain sequential model (one register, one map), gives exactly the results the
clients saw. It is the promise a single-node database makes, and the one replicated systems
most often break: a stale read after an acknowledged write, a compare-and-set that "succeeded" twice.

The checker is the Wing & Gong search as improved by Lowe ("Testing for linearizability", 2016),
the algorithm of Knossos and Porcupine: walk the invocations and responses in history order, try to
linearize an operation that is already invoked before the first response still unexplained,
backtrack when a response cannot be explained, and remember every (operations linearized, model
state) configuration already explored so that none is explored twice. Operations on different keys
of a map are checked independently (linearizability is *local*: a history is linearizable if and
only if each key's sub-history is), which keeps the search small.

Example::

    from sandbox.checkers import RegisterModel, check_linearizability

    history = [
        {"process": "a", "type": "invoke", "f": "write", "value": 1, "time": 0.0},
        {"process": "a", "type": "ok",     "f": "write", "value": 1, "time": 1.0},
        {"process": "b", "type": "invoke", "f": "read", "value": None, "time": 2.0},
        {"process": "b", "type": "ok",     "f": "read", "value": None, "time": 3.0},
    ]
    print(check_linearizability(history, RegisterModel()))
    # FAIL linearizability: read of the register by b returned None, but nothing before it
    # explains it: the register could only hold 1 at that point
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameterError
from ..history import OP_TYPES, History, Op
from .models import (
    Call,
    Model,
    _alternatives,
    _freeze,
    _nothing_explains,
    _plural,
)
from .verdict import Verdict

__all__ = ["check_linearizability"]

INVARIANT = "linearizability"

# The real clock: inside sandbox tasks, time.perf_counter answers with the node's virtual clock.
_perf_counter = inspect.unwrap(time.perf_counter)
_CLOCK_EVERY = 256  # configurations explored between two looks at the clock
_DEPTH_FIRST_BUDGET = (20, 1000)  # depth first for up to 20 configurations per call, plus 1000


def check_linearizability(
    history: History | Iterable[Op | Mapping[str, Any]], model: Model, *, time_limit: float = 1.0
) -> Verdict:
    """Decide whether ``history`` is linearizable with respect to ``model``: PASS, FAIL or UNKNOWN.

    ``history`` is a ``sandbox.History`` or a list of ``Op``s or dicts with ``process``, ``type``
    (invoke / ok / fail / info), ``f``, ``value`` and ``time``, in the order they happened.
    Operations are paired per process. A ``fail`` operation did not happen and is dropped; an
    ``info`` one, or one never completed, may have taken effect at any time after its invocation,
    or never. The search stops after ``time_limit`` seconds of real (wall-clock) time and then
    answers UNKNOWN, which never counts as a pass. A FAIL carries the operations involved (the
    first response that no order explains, the operations concurrent with it and the ones just
    before it, as ``Op`` records) and says in words what went wrong.

    Example::

        verdict = check_linearizability(world.history, KeyValueModel(), time_limit=1.0)
        assert verdict, str(verdict)

    Raises:
        InvalidParameterError: ``model`` is not a model, ``time_limit`` is not a positive finite
        number, or the history is malformed (an unknown type, an operation the model does not
        know, a completion without an invocation, times going backwards...).
    """
    if isinstance(model, type) or not isinstance(model, Model):
        hint = f"; pass an instance: {model.__name__}()" if isinstance(model, type) else ""
        raise InvalidParameterError(
            f"model={model!r} is not a model: it needs init() and step(state, call) methods, "
            f"e.g. RegisterModel() or KeyValueModel(){hint}"
        )
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not 0 < time_limit < math.inf:
        raise InvalidParameterError(f"time_limit={time_limit!r}: give a positive, finite number of seconds, e.g. 1.0")
    deadline = _perf_counter() + time_limit

    entries, dropped = _calls(history)
    processes = len({call.process for call, _, _ in entries})
    indeterminate = sum(not call.known for call, _, _ in entries)
    counts = (
        f"{_plural(len(entries) + dropped, 'operation')} from {_plural(processes, 'process')} "
        f"({dropped} failed, so dropped; {indeterminate} indeterminate)"
    )
    prepare = getattr(model, "prepare", None)
    if prepare is not None:
        entries = [(c, i, r) for call, i, r in entries if (c := prepare(call)) is not None]
    groups: dict[Any, list[tuple[Call, int, float]]] = {}
    split = getattr(model, "split", None)
    for call, i, r in entries:
        key, sub = split(call) if split is not None else (None, call)
        groups.setdefault(_freeze(key), []).append((sub, i, r))

    if split is not None:
        counts += f", {len(groups)} keys checked one by one"
    failures: list[tuple[int, str, tuple[Op, ...]]] = []
    explored = 0
    for decided, (key, group) in enumerate(groups.items()):
        sub_model = model.per_key(key) if split is not None else model  # type: ignore[attr-defined]
        prune = getattr(sub_model, "prune", None)
        if prune is not None:
            kept = {id(call) for call in prune([call for call, _, _ in group])}
            group = [entry for entry in group if id(entry[0]) in kept]
        result = _search(group, sub_model, deadline)
        explored += result.explored
        if result.outcome == "fail":
            failures.append(_explain(group, sub_model, result))
        elif result.outcome == "unknown":
            where = f" after deciding {decided} of {len(groups)} keys" if split is not None else ""
            if failures:
                break
            return Verdict.unknown(
                INVARIANT,
                f"ran out of time: the {time_limit:g} s limit passed{where}, after exploring {explored} "
                f"configurations of {counts}; not proven linearizable (raise time_limit, or check a "
                f"shorter history or one with fewer indeterminate operations)",
            )
    if failures:
        _, summary, evidence = min(failures, key=lambda failure: failure[0])
        more = f" ({len(failures)} keys fail; the first shown)" if len(failures) > 1 else ""
        return Verdict.failing(INVARIANT, f"{summary}{more}", evidence)
    return Verdict.passing(INVARIANT, f"every response fits one sequential order: {counts}")


# --- the history, as calls with positions ----------------------------------------------------


def _calls(history: Any) -> tuple[list[tuple[Call, int, float]], int]:
    """Pair the history's operations into calls, each with its invoke and response positions."""
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, (History, Iterable)):
        raise InvalidParameterError(
            f"history={history!r}: give a sandbox.History or a list of Ops or dicts with "
            f"process, type, f, value and time"
        )
    open_calls: dict[str, tuple[Op, int]] = {}
    done: list[tuple[Op, Op | None, int, float]] = []
    dropped = 0
    last_time = -math.inf
    for position, raw in enumerate(history):
        op = _as_op(raw, position)
        if op.time < last_time:
            raise InvalidParameterError(
                f"{op} (position {position}) happened at {op.time!r}, before the operation listed ahead of it "
                f"({last_time!r}): list the history in the order it happened"
            )
        last_time = op.time
        if op.type == "invoke":
            if op.process in open_calls:
                raise InvalidParameterError(
                    f"{op} (position {position}): process {op.process!r} invoked again before its "
                    f"{open_calls[op.process][0].f!r} completed; a process does one operation at a time"
                )
            open_calls[op.process] = (op, position)
            continue
        if op.process not in open_calls:
            raise InvalidParameterError(f"{op} (position {position}) completes nothing: {op.process!r} has no open operation")
        invoke, start = open_calls.pop(op.process)
        if op.f != invoke.f:
            raise InvalidParameterError(f"{op} (position {position}) completes {invoke.f!r} with a different f, {op.f!r}")
        if op.type == "fail":
            dropped += 1
        else:
            done.append((invoke, op, start, position if op.type == "ok" else math.inf))
    done += [(invoke, None, start, math.inf) for invoke, start in open_calls.values()]
    done.sort(key=lambda item: item[2])
    calls = []
    for invoke, completion, start, end in done:
        known = end != math.inf
        output = _freeze(completion.value) if known else None  # type: ignore[union-attr]
        calls.append((Call(invoke.process, invoke.f, _freeze(invoke.value), output, known, invoke, completion), start, end))
    return calls, dropped


def _as_op(raw: Any, position: int) -> Op:
    if not isinstance(raw, Op):
        if not isinstance(raw, (dict, Mapping)):  # dict first: much faster to check than Mapping
            raise InvalidParameterError(f"history entry {raw!r} (position {position}) is neither an Op nor a dict")
        if "process" not in raw or "type" not in raw or "f" not in raw:
            missing = [name for name in ("process", "type", "f") if name not in raw]
            raise InvalidParameterError(f"history entry {raw!r} (position {position}) lacks {', '.join(missing)}")
        get = raw.get  # Op's fields in order (index, time, process, type, f, value, error): positional
        # arguments build it twice as fast as keywords, which counts in a history of thousands of operations
        raw = Op(get("index", position), get("time", float(position)), raw["process"], raw["type"], raw["f"],
                 get("value"), get("error"))
    if raw.type not in OP_TYPES:
        raise InvalidParameterError(f"type={raw.type!r} in {raw!r}: an operation's type is one of {OP_TYPES}")
    at = raw.time
    if type(at) is float and at == at:  # the common case first: a float, not NaN
        return raw
    if isinstance(at, bool) or not isinstance(at, (int, float)) or math.isnan(at):
        raise InvalidParameterError(f"time={raw.time!r} in {raw!r}: a time is a number")
    return raw


# --- the search ------------------------------------------------------------------------------


@dataclass
class _Result:
    outcome: str  # "pass", "fail" or "unknown"
    explored: int = 0
    stuck: int = -1  # the call whose response no order explains
    states: list[Any] | None = None  # the states the model could be in just before it


def _search(group: list[tuple[Call, int, float]], model: Model, deadline: float) -> _Result:
    """Search for an order of the calls that the model accepts: Wing & Gong's, as improved by Lowe.

    A configuration is (completed calls linearized, indeterminate calls linearized, model
    state). From one, the candidates are the calls not linearized yet and invoked before the
    first response still unexplained (that of a completed call not linearized): each one the
    model accepts from the state gives a new configuration. The search explores configurations
    depth first, and each only once (memoised); it succeeds when every completed call is
    linearized (indeterminate calls left over may never have happened), and fails when none is
    left to explore.

    One configuration with more indeterminate calls linearized and the rest equal can do nothing
    the other cannot (those calls may simply never happen): for each (completed, state) the
    search keeps the smallest sets of indeterminate calls it met and skips supersets of them.
    Depth first, a superset is often met before its subset, which then explores its part of the
    search again; so after a budget of configurations (enough for most histories that pass) the
    search turns to exploring configurations by number of indeterminate calls linearized, fewest
    first, which meets every subset before its supersets.
    """
    calls = [call for call, _, _ in group]
    known = sorted((start, end, i) for i, (_, start, end) in enumerate(group) if end != math.inf)
    invoked = [start for start, _, _ in known]
    returned = [end for _, end, _ in known]
    known_calls = [calls[i] for _, _, i in known]
    maybes = sorted((start, i) for i, (_, start, end) in enumerate(group) if end == math.inf)
    maybe_invoked = [start for start, _ in maybes]
    maybe_calls = [calls[i] for _, i in maybes]
    # Indeterminate calls alike (same f and input) are interchangeable once invoked: place them in
    # invocation order only, so that the search never explores the same story twice.
    earlier_alike: list[int] = []  # the bits of the alike calls invoked before each one
    classes: dict[Any, int] = {}
    for u, call in enumerate(maybe_calls):
        try:
            alike = classes.get((call.f, call.input), 0)
            classes[(call.f, call.input)] = alike | (1 << u)
        except TypeError:  # an unhashable input: alike to none
            alike = 0
        earlier_alike.append(alike)
    n_known = len(known)
    known_bits = [1 << j for j in range(n_known)]
    everything = (1 << n_known) - 1
    per_call, extra = _DEPTH_FIRST_BUDGET
    budget = per_call * len(group) + extra
    step = model.step
    start = (0, 0, model.init())
    seen: dict[tuple[int, Any], list[int]] = {(0, start[2]): [0]}
    stack: list[tuple[int, int, Any]] = [start]
    levels: list[list[tuple[int, int, Any]]] | None = None  # configurations by count of maybe calls
    level = 0
    explored = 0
    furthest, stuck, states = -1.0, -1, []
    countdown = _CLOCK_EVERY
    while True:
        if levels is None:
            if not stack:
                break
            done, maybe, state = stack.pop()
        else:
            while level < len(levels) and not levels[level]:
                level += 1
            if level == len(levels):
                break
            done, maybe, state = levels[level].pop()
        if maybe and maybe not in seen[(done, state)]:
            continue  # met since with fewer indeterminate calls, so explored (or to be) anyway
        if done == everything:
            return _Result("pass", explored)
        explored += 1
        countdown -= 1
        if not countdown:
            countdown = _CLOCK_EVERY
            if _perf_counter() > deadline:
                return _Result("unknown", explored)
        if explored > budget and levels is None and maybe_calls:
            levels = [[] for _ in range(len(maybe_calls) + 1)]
            for configuration in stack:
                levels[configuration[1].bit_count()].append(configuration)
            stack = []
        # The candidates: completed calls not linearized, invoked before the first response left.
        j = (~done & (done + 1)).bit_length() - 1
        first_response, candidates = math.inf, []
        while j < n_known and invoked[j] < first_response:
            if not done & known_bits[j]:
                candidates.append(j)
                if returned[j] < first_response:
                    first_response, waiting = returned[j], j
            j += 1
        if first_response > furthest:
            furthest, stuck, states = first_response, known[waiting][2], [state]
        elif first_response == furthest and state not in states:
            states.append(state)
        children = []
        for u, call in enumerate(maybe_calls):
            if maybe_invoked[u] > first_response:
                break
            bit = 1 << u
            if maybe & bit or earlier_alike[u] & maybe != earlier_alike[u]:
                continue  # placed already, or an alike one invoked earlier is not placed yet
            ok, new_state = step(state, call)
            if ok:
                children.append((done, maybe | bit, new_state))
        for j in reversed(candidates):
            ok, new_state = step(state, known_calls[j])
            if ok:
                children.append((done | known_bits[j], maybe, new_state))
        for child in children:  # the last pushed is explored first: completed calls before maybe ones,
            # and the one invoked first before the others
            new_done, new_maybe, new_state = child
            try:
                smallest = seen.get((new_done, new_state))
            except TypeError:
                raise InvalidParameterError(
                    f"{model!r} returned the state {new_state!r}, which is not hashable: states must be "
                    f"frozen values (tuples, frozensets, frozen dataclasses)"
                ) from None
            if smallest is None:
                seen[(new_done, new_state)] = [new_maybe]
            elif smallest[0] == 0 or any(m & new_maybe == m for m in smallest):
                continue  # explored already, with these indeterminate calls or fewer
            else:
                smallest[:] = [m for m in smallest if m & new_maybe != new_maybe] + [new_maybe]
                smallest.sort()  # 0, if there, first
            if levels is None:
                stack.append(child)
            else:
                levels[new_maybe.bit_count()].append(child)
    return _Result("fail", explored, stuck, states)


def _explain(group: list[tuple[Call, int, float]], model: Model, result: _Result) -> tuple[int, str, tuple[Op, ...]]:
    """The position, summary and evidence of a failure: the stuck call, its neighbours in time."""
    call, start, end = group[result.stuck]
    concurrent = [other for other in group if other[1] < end and other[2] > start and other[0] is not call]
    before = [other for other in group if other[2] < start]
    latest_start = max((other[1] for other in before), default=-1)
    frontier = [other for other in before if other[2] > latest_start]  # completed last before it
    states = result.states or []
    explain = getattr(model, "explain", None)
    if explain is not None:
        summary = explain(call, states, len(concurrent))
    else:
        asked = "" if call.input is None else f" {call.input!r}"
        summary = (
            f"{call.f}{asked} by {call.process} returned {call.output!r}, but "
            f"{_nothing_explains(len(concurrent))} (the model could only be in {_alternatives(states)})"
        )
    involved = sorted((*frontier, *concurrent, (call, start, end)), key=lambda entry: entry[1])
    ops = {id(op): op for other, _, _ in involved for op in (other.invoke, other.completion) if op is not None}
    return int(end), summary, tuple(sorted(ops.values(), key=lambda op: op.time))


# --- helpers ---------------------------------------------------------------------------------
