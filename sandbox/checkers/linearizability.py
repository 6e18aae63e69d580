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
state) configuration already explored so that none is explored twice. It runs the way Porcupine
(Athalye's checker in Go) does: the history is a doubly linked list that placing an operation lifts
entries out of and backtracking puts back, the configurations are a set of (bitset, state) pairs
hashed and compared by the model's own ``==``, and operations on different keys of a map are checked
independently (linearizability is *local*, P-compositionality: a history is linearizable if and only
if each key's sub-history is). The keys' searches take turns, as Porcupine runs them side by side,
and stop once a key fails; keys still undecided after a few milliseconds are shared with a second
process, as Porcupine uses every core (``_turns.py``: the turns are counted, so the verdict is the
same on one core or two). On 50 clients and two thousand operations, within a few times Porcupine's
own time (``benchmarks/bench_linearizability_scale.py`` measures both).

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

import gc
import math
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameterError
from ..history import OP_TYPES, History, Op
from ._turns import perf_counter as _perf_counter
from ._turns import take_turns
from .models import (
    _ATOMS,
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

_SLICE = 512  # calls placed or taken back by one key's search between two looks at the clock (and turns)
_DEPTH_FIRST_BUDGET = (20, 1000)  # depth first for up to 20 configurations per call, plus 1000
# Configurations remembered at most, over all keys (each is a bitset and a model state: a few hundred bytes): past
# it, a search goes on without remembering new ones, so that a long time_limit cannot exhaust the memory.
_REMEMBER = 4_000_000


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
    before it, as ``Op`` records) and says in words what went wrong. With a model that checks keys
    separately (``split``), the keys' searches take turns and stop once one fails, every key searched for
    at most one turn more than the failing one took: the summary shows the earliest failure found, and how
    many keys fail and how many were not searched to the end. Keys still undecided after a few milliseconds
    are shared with a forked second process (on Linux with two cores, when no other thread runs), with the
    same verdict, summary and evidence as in one.

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
    collecting = gc.isenabled()
    gc.disable()  # reading a history and searching make many small objects, none in a cycle: collections only slow
    try:  # them down (by a tenth or more), and a forked second process that collects copies the pages it shares
        return _check(history, model, time_limit, deadline)
    finally:
        if collecting:
            gc.enable()


def _check(history: Any, model: Model, time_limit: float, deadline: float) -> Verdict:
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
    groups_and_models = []
    searches = []
    room = [_REMEMBER > 0]  # whether the searches may remember more configurations: not past _REMEMBER
    for key, group in groups.items():
        sub_model = model.per_key(key) if split is not None else model  # type: ignore[attr-defined]
        prune = getattr(sub_model, "prune", None)
        if prune is not None:
            kept = {id(call) for call in prune([call for call, _, _ in group])}
            group = [entry for entry in group if id(entry[0]) in kept]
        groups_and_models.append((group, sub_model))
        searches.append(_search(group, sub_model, room))

    def explain(index: int, result: _Result) -> tuple[int, str, int]:
        return _explain(*groups_and_models[index], result)

    # The keys' searches take turns, a slice each, as Porcupine runs them side by side (on a second core once
    # they take a while): a key that fails is found without first deciding every key that passes.
    results, timed_out = take_turns(searches, explain, deadline, room, _REMEMBER)
    failing = [result.turns for result in results if result.outcome == "fail"]
    bound = min(failing) + 1 if failing else math.inf  # turns counted, so the same verdict on one core or two
    failures = [(r.failure, index) for index, r in enumerate(results) if r.outcome == "fail" and r.turns <= bound]
    undecided = sum(result.outcome == "open" or result.turns > bound for result in results)
    if failures:
        (_, summary, stuck), index = min(failures)  # type: ignore[type-var]
        more = [f"{len(failures)} keys fail; the first shown"] if len(failures) > 1 else []
        if undecided:
            more.append(f"{_plural(undecided, 'other key')} not searched to the end")
        evidence = _evidence(groups_and_models[index][0], stuck)
        return Verdict.failing(INVARIANT, f"{summary} ({'; '.join(more)})" if more else summary, evidence)
    if timed_out:
        where = f" after deciding {len(results) - undecided} of {len(groups)} keys" if split is not None else ""
        return Verdict.unknown(
            INVARIANT,
            f"ran out of time: the {time_limit:g} s limit passed{where}, after exploring "
            f"{sum(result.explored for result in results)} configurations of {counts}; not proven linearizable "
            f"(raise time_limit, or check a shorter history or one with fewer indeterminate operations)",
        )
    return Verdict.passing(INVARIANT, f"every response fits one sequential order: {counts}")


# --- the history, as calls with positions ----------------------------------------------------


def _calls(history: Any) -> tuple[list[tuple[Call, int, float]], int]:
    """Pair the history's operations into calls, each with its invoke and response positions (in invoke order)."""
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, (History, Iterable)):
        raise InvalidParameterError(
            f"history={history!r}: give a sandbox.History or a list of Ops or dicts with "
            f"process, type, f, value and time"
        )
    # One slot per invocation, in history order (so in invoke order, with no sorting): [invoke, its position,
    # completion, response position]; a failed call's response position is None, an indeterminate one's inf.
    slots: list[list[Any]] = []
    open_calls: dict[Any, list[Any]] = {}
    dropped = 0
    last_time = -math.inf
    for position, raw in enumerate(history):
        if type(raw) is dict and "process" in raw and "type" in raw and "f" in raw:  # the common case, inline
            get = raw.get  # Op's fields in order (index, time, process, type, f, value, error): positional
            # arguments build it twice as fast as keywords, which counts in a history of thousands of operations
            op = Op(get("index", position), get("time", float(position)), raw["process"], raw["type"], raw["f"],
                    get("value"), get("error"))
        else:
            op = raw if type(raw) is Op else _as_op(raw, position)
        at = op.time
        if type(at) is not float or not at >= last_time:  # not a float, NaN, or going backwards: say which
            _check_time(op, position, last_time)
        last_time = at
        kind = op.type
        if kind == "invoke":
            if op.process in open_calls:
                raise InvalidParameterError(
                    f"{op} (position {position}): process {op.process!r} invoked again before its "
                    f"{open_calls[op.process][0].f!r} completed; a process does one operation at a time"
                )
            open_calls[op.process] = slot = [op, position, None, math.inf]
            slots.append(slot)
            continue
        if kind not in OP_TYPES:
            raise InvalidParameterError(f"type={kind!r} in {op!r}: an operation's type is one of {OP_TYPES}")
        slot = open_calls.pop(op.process, None)
        if slot is None:
            raise InvalidParameterError(f"{op} (position {position}) completes nothing: {op.process!r} has no open operation")
        if op.f != slot[0].f:
            raise InvalidParameterError(f"{op} (position {position}) completes {slot[0].f!r} with a different f, {op.f!r}")
        slot[2] = op
        if kind == "ok":
            slot[3] = position
        elif kind == "fail":
            slot[3] = None
            dropped += 1
    calls = []
    append = calls.append
    for invoke, start, completion, end in slots:
        if end is None:
            continue
        value = invoke.value
        if type(value) not in _ATOMS:
            value = _freeze(value)
        if end == math.inf:
            append((Call(invoke.process, invoke.f, value, None, False, invoke, completion), start, end))
            continue
        output = completion.value
        if type(output) not in _ATOMS:
            output = _freeze(output)
        append((Call(invoke.process, invoke.f, value, output, True, invoke, completion), start, end))
    return calls, dropped


def _as_op(raw: Any, position: int) -> Op:
    """An Op from a history entry that is not a plain dict with process, type and f: refused saying why, or read."""
    if isinstance(raw, Op):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidParameterError(f"history entry {raw!r} (position {position}) is neither an Op nor a dict")
    if "process" not in raw or "type" not in raw or "f" not in raw:
        missing = [name for name in ("process", "type", "f") if name not in raw]
        raise InvalidParameterError(f"history entry {raw!r} (position {position}) lacks {', '.join(missing)}")
    get = raw.get
    return Op(get("index", position), get("time", float(position)), raw["process"], raw["type"], raw["f"],
              get("value"), get("error"))


def _check_time(op: Op, position: int, last_time: float) -> None:
    """Refuse a time that is not a number, or earlier than the one before it."""
    at = op.time
    if isinstance(at, bool) or not isinstance(at, (int, float)) or math.isnan(at):
        raise InvalidParameterError(f"time={at!r} in {op!r}: a time is a number")
    if at < last_time:
        raise InvalidParameterError(
            f"{op} (position {position}) happened at {at!r}, before the operation listed ahead of it "
            f"({last_time!r}): list the history in the order it happened"
        )


# --- the search ------------------------------------------------------------------------------


@dataclass
class _Result:
    outcome: str  # "pass" or "fail"
    explored: int = 0
    stuck: int = -1  # the call whose response no order explains
    states: list[Any] | None = None  # the states the model could be in just before it


def _search(group: list[tuple[Call, int, float]], model: Model, room: list[bool]) -> Generator[int, None, _Result]:
    """Search for an order of the calls that the model accepts: Wing & Gong's, as Lowe and Porcupine run it.

    A configuration is (completed calls linearized, indeterminate calls linearized, model state). From one,
    the candidates are the calls not linearized yet and invoked before the first response still unexplained
    (that of a completed call not linearized). The search goes depth first, trying the candidates one at a
    time, completed calls in the order they were invoked, then indeterminate ones; it remembers every
    configuration it entered (a set of (bitset, state) pairs, the state hashed and compared by the model's own
    ``==``), so that none is explored twice. It succeeds when every completed call is linearized
    (indeterminate calls left over may never have happened), and fails when nothing is left to try.

    As in Porcupine, the history is a doubly linked list of invocations and responses in history order: placing
    a call lifts its invocation and its response out of the list, and backtracking puts them back, so that the
    candidates of a configuration are the invocations from the head of the list to its first response.

    One configuration with more indeterminate calls linearized and the rest equal can do nothing the other
    cannot (those calls may simply never happen): for each (completed, state) the search keeps the smallest
    sets of indeterminate calls it met and skips supersets of them. Depth first, a superset is often met before
    its subset, which then explores its part of the search again; so after a budget of configurations (enough
    for most histories that pass) the search turns to exploring configurations by number of indeterminate calls
    linearized, fewest first, which meets every subset before its supersets.

    A generator: it yields the number of configurations explored so far every ``_SLICE`` calls placed or taken
    back, so that the caller can look at the clock and let other keys' searches take a turn, and returns a
    ``_Result``. Once the caller sets ``room[0]`` to False (memory is full), it remembers no new configuration.
    """
    calls = [call for call, _, _ in group]
    known = sorted((start, end, i) for i, (_, start, end) in enumerate(group) if end != math.inf)
    known_calls = [calls[i] for _, _, i in known]
    maybes = sorted((start, i) for i, (_, start, end) in enumerate(group) if end == math.inf)
    maybe_invoked = [start for start, _ in maybes]
    maybe_calls = [calls[i] for _, i in maybes]
    n_maybe = len(maybe_calls)
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
    everything = (1 << n_known) - 1
    step = model.step
    state = model.init()
    # Depth first with a set of (bitset, state) when every call completed; with indeterminate calls, a dict
    # from (completed bitset, state) to the smallest sets of indeterminate calls met.
    plain: set[tuple[int, Any]] | None = None if maybe_calls else set()
    seen: dict[tuple[int, Any], list[int]] = {}
    if not _remember(plain, seen, 0, 0, state, model, True) or not n_known:
        return _Result("pass")

    # The linked list: node 0 is the head, then every invocation and response of a completed call in history
    # order, then a tail. An invocation node has its call and its bit; a response node its position and its
    # call's index. The walk never reaches the tail: a response is always left before it.
    invocations = [(start, j) for j, (start, _, _) in enumerate(known)]
    nodes = sorted(invocations + [(end, ~j) for j, (_, end, _) in enumerate(known)])
    size = len(nodes) + 2
    nxt, prv = list(range(1, size + 1)), list(range(-1, size - 1))
    node_call: list[Call | None] = [None] * size
    node_bit, node_match, node_end, node_index = [0] * size, [0] * size, [0.0] * size, [0] * size
    response_of = [0] * n_known
    for node, (position, j) in enumerate(nodes, start=1):
        if j < 0:
            response_of[~j], node_end[node], node_index[node] = node, position, known[~j][2]
    for node, (_, j) in enumerate(nodes, start=1):
        if j >= 0:
            node_call[node], node_bit[node], node_match[node] = known_calls[j], 1 << j, response_of[j]

    per_call, extra = _DEPTH_FIRST_BUDGET
    budget = per_call * len(group) + extra if maybe_calls else math.inf
    explored = 0
    furthest, stuck, states = -1.0, -1, {}  # the latest first response met, and the states met before it
    stack: list[tuple[int, Any, int]] = []  # per call placed: its node (~u for indeterminate u), state, first
    done = maybe = 0
    node, u, first = nxt[0], -1, 0  # u >= 0: trying indeterminate calls from u, first response at node first
    growing = room[0]  # read again at every yield
    countdown = _SLICE  # calls placed, steps of indeterminate calls and returns, left before the next yield
    while True:
        if countdown <= 0:
            countdown = _SLICE
            yield explored
            growing = room[0]
            if explored > budget:
                break
        if u < 0:  # walking the list: the invocations before the first response left are the candidates
            call = node_call[node]
            while call is not None:
                ok, new = step(state, call)
                if ok:
                    placed = done | node_bit[node]
                    if plain is not None and growing:  # _remember's first case, inline: the innermost loop
                        size = len(plain)
                        try:
                            plain.add((placed, new))  # hashes the pair once, where "in" then "add" would twice
                        except TypeError:
                            _remember(plain, seen, placed, maybe, new, model, growing)  # raises, saying why
                        fresh = len(plain) != size
                    else:
                        fresh = _remember(plain, seen, placed, maybe, new, model, growing)
                    if fresh:
                        if placed == everything:
                            return _Result("pass", explored)
                        explored += 1
                        stack.append((node, state, 0))
                        before, after = prv[node], nxt[node]  # lift the invocation and the response out
                        nxt[before], prv[after] = after, before
                        response = node_match[node]
                        before, after = prv[response], nxt[response]
                        nxt[before], prv[after] = after, before
                        done, state, node = placed, new, nxt[0]  # and walk the list again from its head
                        call = node_call[node]
                        countdown -= 1
                        if countdown > 0:
                            continue
                        break  # to the yield, at the top of the outer loop
                node = nxt[node]
                call = node_call[node]
            if call is not None:
                continue
            end = node_end[node]  # the first response left
            if end > furthest:
                furthest, stuck, states = end, node_index[node], {state: None}
            elif end == furthest:
                states[state] = None
            first, u = node, 0
        while u < n_maybe and maybe_invoked[u] < node_end[first]:  # indeterminate calls invoked in time
            bit = 1 << u
            if not maybe & bit and earlier_alike[u] & maybe == earlier_alike[u]:
                countdown -= 1
                ok, new = step(state, maybe_calls[u])
                if ok and _remember(plain, seen, done, maybe | bit, new, model, growing):
                    explored += 1
                    stack.append((~u, state, first))
                    maybe, state, node, u = maybe | bit, new, nxt[0], -1
                    break
            u += 1
        else:
            if not stack:  # nothing left to try from the start: no order explains the first response
                return _Result("fail", explored, stuck, list(states))
            node, state, first = stack.pop()  # back to the configuration before the last call placed
            countdown -= 1
            if node < 0:
                u = ~node
                maybe &= ~(1 << u)
                u += 1
            else:
                done &= ~node_bit[node]
                response = node_match[node]  # put the response and the invocation back
                nxt[prv[response]] = prv[nxt[response]] = response
                nxt[prv[node]] = prv[nxt[node]] = node
                node, u = nxt[node], -1

    # Fewest indeterminate calls first: every configuration of the path taken so far, then their successors.
    levels: list[list[tuple[int, int, Any]]] = [[] for _ in range(n_maybe + 1)]
    placed = placed_maybe = 0
    for node, before, _ in stack:
        levels[placed_maybe.bit_count()].append((placed, placed_maybe, before))
        if node < 0:
            placed_maybe |= 1 << ~node
        else:
            placed |= node_bit[node]
    levels[maybe.bit_count()].append((done, maybe, state))
    invoked = [start for start, _, _ in known]
    returned = [end for _, end, _ in known]
    known_bits = [1 << j for j in range(n_known)]
    level = 0
    while True:
        while level < len(levels) and not levels[level]:
            level += 1
        if level == len(levels):
            return _Result("fail", explored, stuck, list(states))
        done, maybe, state = levels[level].pop()
        if maybe and maybe not in seen.get((done, state), (maybe,)):
            continue  # met since with fewer indeterminate calls, so explored (or to be) anyway
        if done == everything:
            return _Result("pass", explored)
        explored += 1
        countdown -= 1
        if countdown <= 0:
            countdown = _SLICE
            yield explored
            growing = room[0]
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
            furthest, stuck, states = first_response, known[waiting][2], {state: None}
        elif first_response == furthest:
            states[state] = None
        children = []
        for u, call in enumerate(maybe_calls):
            if maybe_invoked[u] > first_response:
                break
            bit = 1 << u
            if maybe & bit or earlier_alike[u] & maybe != earlier_alike[u]:
                continue  # placed already, or an alike one invoked earlier is not placed yet
            ok, new = step(state, call)
            if ok and _remember(None, seen, done, maybe | bit, new, model, growing):
                children.append((done, maybe | bit, new))
        for j in candidates:
            ok, new = step(state, known_calls[j])
            if ok and _remember(None, seen, done | known_bits[j], maybe, new, model, growing):
                children.append((done | known_bits[j], maybe, new))
        for child in children:
            levels[child[1].bit_count()].append(child)


def _remember(plain: set[tuple[int, Any]] | None, seen: dict[tuple[int, Any], list[int]], done: int, maybe: int,
              state: Any, model: Model, grow: bool) -> bool:
    """Note a configuration; False if it was met before, or one like it with fewer indeterminate calls.

    ``plain`` (a set) when no call is indeterminate; otherwise ``seen`` maps (completed, state) to the
    smallest sets of indeterminate calls met with them. Unless ``grow``, a configuration not met before is
    not noted (memory is full): the search goes on, and may meet it again.
    """
    try:
        if plain is not None:
            if (done, state) in plain:
                return False
            if grow:
                plain.add((done, state))
            return True
        smallest = seen.get((done, state))
    except TypeError:
        raise InvalidParameterError(
            f"{model!r} returned the state {state!r}, which is not hashable: states must be "
            f"frozen values (tuples, frozensets, frozen dataclasses)"
        ) from None
    if smallest is None:
        if grow:
            seen[(done, state)] = [maybe]
        return True
    for met in smallest:  # smallest first
        if met & maybe == met:
            return False  # explored already, with these indeterminate calls or fewer
    smallest[:] = [met for met in smallest if met & maybe != maybe] + [maybe]
    smallest.sort()
    return True


def _explain(group: list[tuple[Call, int, float]], model: Model, result: _Result) -> tuple[int, str, int]:
    """The position and summary of a failure, and the index of its stuck call in ``group``."""
    call, start, end = group[result.stuck]
    concurrent = sum(other[1] < end and other[2] > start for other in group) - 1  # but the call itself
    states = result.states or []
    explain = getattr(model, "explain", None)
    if explain is not None:
        summary = explain(call, states, concurrent)
    else:
        asked = "" if call.input is None else f" {call.input!r}"
        summary = (
            f"{call.f}{asked} by {call.process} returned {call.output!r}, but "
            f"{_nothing_explains(concurrent)} (the model could only be in {_alternatives(states)})"
        )
    return int(end), summary, result.stuck


def _evidence(group: list[tuple[Call, int, float]], stuck: int) -> tuple[Op, ...]:
    """The history's records of a failure: the stuck call, the calls concurrent with it and those just before it."""
    call, start, end = group[stuck]
    concurrent = [other for other in group if other[1] < end and other[2] > start and other[0] is not call]
    before = [other for other in group if other[2] < start]
    latest_start = max((other[1] for other in before), default=-1)
    frontier = [other for other in before if other[2] > latest_start]  # completed last before it
    involved = sorted((*frontier, *concurrent, (call, start, end)), key=lambda entry: entry[1])
    ops = {id(op): op for other, _, _ in involved for op in (other.invoke, other.completion) if op is not None}
    return tuple(sorted(ops.values(), key=lambda op: op.time))


# --- helpers ---------------------------------------------------------------------------------
