"""Sequential models for checkers: what one operation does to a state when run alone.

``RegisterModel`` (read, write, compare-and-set on one value) and ``KeyValueModel`` (the same
per key of a map) are the specifications ``check_linearizability`` compares a history against;
a learner can supply their own by following the ``Model`` protocol.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidParameterError
from ..history import Op

__all__ = ["Call", "KeyValueModel", "Model", "RegisterModel"]


@dataclass(frozen=True)
class Call:
    """One operation as a model sees it: what was asked (``input``) and what came back (``output``).

    ``known`` is True when the operation completed ``ok``, so ``output`` is what the client saw;
    it is False for an ``info`` operation or one that never completed, whose effect is unknown
    (``output`` is then None). Values arrive frozen so that model states stay hashable: lists
    become tuples, dicts and sets become frozensets. ``invoke`` and ``completion`` are the
    history's own records, for error messages and evidence.
    """

    process: str
    f: str
    input: Any
    output: Any
    known: bool
    invoke: Op
    completion: Op | None


@runtime_checkable
class Model(Protocol):
    """A sequential specification: what one operation does to a state, when run alone.

    ``init()`` returns the starting state; ``step(state, call)`` returns ``(ok, new_state)``,
    where ``ok`` says whether ``call`` (a ``Call``) could have returned what it returned from
    ``state``. States must be hashable and never mutated (the search remembers them).

    Example, a counter a learner could check::

        class CounterModel:
            def init(self):
                return 0
            def step(self, state, call):
                if call.f == "add":
                    return True, state + call.input
                return (not call.known or call.output == state), state   # "read"

    A model may also define, and the built-in ones do:

    * ``prepare(call) -> Call | None``: validate one call before the search (raise
      ``InvalidParameterError`` for one the model cannot interpret), or return None to drop a
      call that cannot matter (a read whose result was never seen);
    * ``explain(call, states, concurrent) -> str``: say in plain words why ``call`` could not
      be linearized when the model could only be in one of ``states``;
    * ``prune(calls) -> list[Call]``: drop indeterminate calls that cannot change the verdict;
    * ``split(call) -> (key, call)`` and ``per_key(key) -> Model``: check each key separately.
    """

    def init(self) -> Hashable: ...

    def step(self, state: Any, call: Call) -> tuple[bool, Any]: ...


class RegisterModel:
    """A single register holding one value: ``read``, ``write`` and ``cas`` (compare-and-set).

    * read: the ok value is the value read (the invoke's value may be None);
    * write: the value is the value written;
    * cas: the value is ``[expected, new]``; ``ok`` means it swapped, ``fail`` that it did not.

    Example::

        check_linearizability(world.history, RegisterModel(initial=0))

    Raises (from ``prepare``, before any search):
        InvalidParameterError: an operation other than read, write or cas, or a cas value that
        is not a pair.
    """

    fs = ("read", "write", "cas")

    def __init__(self, initial: Any = None, *, name: str = "the register") -> None:
        self.initial = initial
        self.name = name

    def __repr__(self) -> str:
        return f"RegisterModel(initial={self.initial!r})"

    def init(self) -> Hashable:
        return _freeze(self.initial)

    def step(self, state: Any, call: Call) -> tuple[bool, Any]:
        f = call.f
        if f == "read":
            return (not call.known or call.output == state), state
        if f == "write":
            return True, _written(call)
        expected, new = call.input
        if state == expected:
            return True, new
        return False, state

    def prepare(self, call: Call) -> Call | None:
        if call.f not in self.fs:
            raise InvalidParameterError(
                f"f={call.f!r} in {_where(call)}: {self!r} knows only 'read', 'write' and 'cas'; "
                f"filter the history to the register's operations first"
            )
        if call.f == "read":
            return call if call.known else None  # an unseen read constrains nothing
        if call.f == "cas" and not _is_pair(call.input):
            raise InvalidParameterError(
                f"cas value {call.invoke.value!r} in {_where(call)}: a cas value is [expected, new]"
            )
        return call

    def prune(self, calls: list[Call]) -> list[Call]:
        """Drop the indeterminate writes and cas whose value nobody could ever observe.

        An info write of a value that no read returned and no cas expected can only make later
        reads harder to explain, so the search may as well assume it never happened; keeping it
        doubles the configurations to explore for as long as it is pending.
        """
        observed = {c.output for c in calls if c.f == "read"} | {c.input[0] for c in calls if c.f == "cas" and c.known}
        grew = True
        while grew:  # an indeterminate cas matters if what it writes is observed
            before = len(observed)
            observed |= {c.input[0] for c in calls if c.f == "cas" and not c.known and c.input[1] in observed}
            grew = len(observed) > before
        return [c for c in calls if c.known or c.f == "read" or _new_value(c) in observed]

    def explain(self, call: Call, states: list[Any], concurrent: int) -> str:
        if call.f == "read":
            what = f"read of {self.name} by {call.process} returned {call.output!r}"
        else:
            expected, new = call.input
            what = f"cas of {self.name} by {call.process} from {expected!r} to {new!r} succeeded"
        return f"{what}, but {_nothing_explains(concurrent)}: {self.name} could only hold {_alternatives(states)} at that point"


class KeyValueModel:
    """A map of independent registers: each op's value is ``[key, payload]``.

    * read: ``[key, value_seen]`` (the invoke's payload may be None);
    * write: ``[key, value]``;
    * cas: ``[key, [expected, new]]``.

    Every key starts at ``initial``. The checker checks each key on its own as a
    ``RegisterModel`` (linearizability is local), and reports a failure with its key.

    Example::

        check_linearizability(world.history, KeyValueModel(initial=0), time_limit=2.0)

    Raises (from ``prepare``, before any search):
        InvalidParameterError: a value that is not a ``[key, payload]`` pair, or any error of
        ``RegisterModel`` on the payload.
    """

    fs = RegisterModel.fs

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial
        self._register = RegisterModel(initial)

    def __repr__(self) -> str:
        return f"KeyValueModel(initial={self.initial!r})"

    def init(self) -> Hashable:
        return frozenset()  # the (key, value) pairs of keys written so far

    def step(self, state: Any, call: Call) -> tuple[bool, Any]:
        """The whole map at once (the checker prefers ``split``, which is much faster)."""
        key, sub = self.split(call)
        values = dict(state)
        ok, new = self._register.step(values.get(key, self._register.init()), sub)
        values[key] = new
        return ok, frozenset(values.items())

    def prepare(self, call: Call) -> Call | None:
        if call.f not in self.fs:
            raise InvalidParameterError(
                f"f={call.f!r} in {_where(call)}: {self!r} knows only 'read', 'write' and 'cas'; "
                f"filter the history to the map's operations first"
            )
        # The invoke's value names the key; a read's ok value says what it saw; a write's or a
        # cas's ok value is not needed (it may be whatever the service answered).
        checks = ((call.input, call.invoke, call.input is not None), (call.output, call.completion, call.f == "read" and call.known))
        for value, record, needed in checks:
            if needed and not _is_pair(value):
                raise InvalidParameterError(
                    f"value {record.value!r} in {_where(call)}: a {type(self).__name__} operation's value is "  # type: ignore[union-attr]
                    f"[key, payload], e.g. ['x', 1] for a write, ['x', None] for a read's invoke, ['x', [1, 2]] for a cas"
                )
        if call.input is None and not (call.f == "read" and _is_pair(call.output)):
            if call.f == "read" and not call.known:
                return None  # an unseen read of an unnamed key constrains nothing
            raise InvalidParameterError(f"{_where(call)} has no [key, payload] value: it names no key")
        if call.f == "read" and call.input is not None and call.output is not None and call.input[0] != call.output[0]:
            raise InvalidParameterError(
                f"{_where(call)} was invoked on key {call.input[0]!r} but saw a value of key {call.output[0]!r}"
            )
        _, sub = self.split(call)
        return call if self._register.prepare(sub) is not None else None

    def split(self, call: Call) -> tuple[Hashable, Call]:
        key = (call.input if call.input is not None else call.output)[0]
        seen = call.output[1] if call.f == "read" and call.output is not None else None
        return key, replace(call, input=None if call.input is None else call.input[1], output=seen)

    def per_key(self, key: Hashable) -> Model:
        return RegisterModel(self.initial, name=repr(key))


def _freeze(value: Any) -> Any:
    """A hashable equal-meaning copy: lists become tuples, dicts and sets frozensets."""
    if type(value) in _ATOMS:  # the common case, checked first: a history holds thousands of values
        return value
    if isinstance(value, (list, tuple)):
        return tuple(map(_freeze, value))
    if isinstance(value, Mapping):
        return frozenset((_freeze(k), _freeze(v)) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return frozenset(map(_freeze, value))
    return value


_ATOMS = frozenset({str, int, float, bool, type(None), bytes})


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2


def _written(call: Call) -> Any:
    return call.input if call.input is not None or not call.known else call.output


def _new_value(call: Call) -> Any:
    return call.input[1] if call.f == "cas" else _written(call)


def _where(call: Call) -> str:
    return f"{call.process}'s {call.f} invoked at index {call.invoke.index} (time {call.invoke.time!r})"


def _nothing_explains(concurrent: int) -> str:
    if concurrent == 0:
        return "nothing before it explains it"
    return f"no order of the {_plural(concurrent, 'concurrent operation')} explains it"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}es" if noun.endswith("s") else f"{count} {noun}s"


def _alternatives(states: list[Any]) -> str:
    shown = sorted(repr(state) for state in states) or ["nothing"]
    if len(shown) > 5:
        return f"{', '.join(shown[:5])}... ({len(shown)} values)"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
