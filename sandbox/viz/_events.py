"""Log entries for a person: who sent what to whom, what broke, what was written, in plain words.

The world's log (``world.recorder.log``) is for programs: ``(t, kind, *fields)``, with message ids, raw
delays and nested tuples. The stepper's "Last events" shows each entry through ``describe``: times rounded to
the millisecond, messages named by what they carry (``POST /orders``, not ``#41``), and nothing cut mid-word.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from typing import Any

#: The longest a described event runs (characters); longer values are shortened at a word boundary.
WIDTH = 150


def _short(value: Any, width: int = 60) -> str:
    """``value`` as text, shortened at a word boundary (never mid-word), with an ellipsis when cut."""
    text = value if isinstance(value, str) else repr(value)
    return textwrap.shorten(text, width=width, placeholder=" …") or text[:width]


def _names(value: Any) -> str:
    if isinstance(value, (tuple, list, set, frozenset)):
        return ", ".join(sorted(map(str, value)))
    return str(value)


def describe(entry: tuple, labels: Mapping[tuple[str, int], str] | None = None) -> str:
    """``entry`` (a log entry, ``(t, kind, *fields)``) as a sentence, without its time.

    ``labels`` names messages by their kind and id (``WireMessage.label``: a request ``("http", 7)`` is
    ``"POST /orders"``, its reply ``("http.reply", 7)`` is ``"201"``); without one a message is named by its
    kind. An entry of a kind not known here reads as its kind and fields, shortened.
    """
    labels = labels or {}
    kind, fields = entry[1], entry[2:]

    def message(kind_of: Any, msg_id: Any, otherwise: str | None = None) -> str:
        return labels.get((str(kind_of), msg_id)) or otherwise or str(kind_of)

    try:
        describer = _DESCRIBE.get(kind)
        if describer is not None:
            return textwrap.shorten(describer(fields, message), width=WIDTH, placeholder=" …")
    except (IndexError, TypeError, ValueError):  # an entry of an older shape: fall back to the plain form
        pass
    shown = " ".join(_short(f, 40) for f in fields)
    return textwrap.shorten(f"{kind} {shown}".strip(), width=WIDTH, placeholder=" …")


def _fault_start(f: tuple, _: Callable) -> str:
    index, family, action, label = (list(f) + [None] * 4)[:4]
    number = f"{index}. " if isinstance(index, int) else ""
    return f"fault {number}starts: {label or action or family}"


def _fault_end(f: tuple, _: Callable) -> str:
    return f"fault {f[0]}. ends" if f and isinstance(f[0], int) else "a fault ends"


def _user_event(f: tuple, _: Callable) -> str:
    node, what, pairs = f[0], f[1], f[2] if len(f) > 2 else ()
    details = ", ".join(f"{k}={_short(v, 30)}" for k, v in pairs)
    return f"{node}: {what}" + (f" ({details})" if details else "")


_DESCRIBE: dict[str, Callable[[tuple, Callable], str]] = {
    "net.send": lambda f, m: f"{f[0]} sends {m(f[2], f[3])} to {f[1]}",
    "net.deliver": lambda f, m: f"{f[1]} receives {m(f[2], f[3])} from {f[0]}",
    "net.drop": lambda f, m: f"{m(f[2], f[3])} from {f[0]} to {f[1]} is lost ({f[4]})",
    "net.duplicate": lambda f, m: f"{m(f[2], f[3])} from {f[0]} to {f[1]} is duplicated",
    "net.late": lambda f, m: f"{f[0]}: an answer that came too late is dropped ({f[2]})",
    "net.partition": lambda f, m: f"network partition: {_names(f[0])} | {_names(f[1])}",
    "net.isolate": lambda f, m: f"network: {_names(f[0])} cut off from everyone",
    "net.heal": lambda f, m: "network healed: every link works again",
    "http.request": lambda f, m: f"{f[0]} starts serving {f[3]} {_short(f[4], 40)} for {f[1]}",
    "http.response": lambda f, m: f"{f[0]} answers {f[1]}: {f[3]}",
    "http.response.incomplete": lambda f, m: f"{f[0]} answers {f[1]} {f[3]}, but the body breaks off",
    "http.refused": lambda f, m: f"{f[0]} refuses {f[1]}'s request: nothing listening",
    "rpc.timeout": lambda f, m: f"{f[0]} gives up waiting for the answer to {m('http', f[1], 'its request')} "
                                f"after {f[2]:g} s",
    "node.crash": lambda f, m: f"{f[0]} crashes",
    "node.restart": lambda f, m: f"{f[0]} restarts",
    "node.pause": lambda f, m: f"{f[0]} pauses (frozen, not dead)",
    "node.resume": lambda f, m: f"{f[0]} resumes",
    "disk.lost": lambda f, m: f"{f[0]} loses its disk",
    "fault.start": _fault_start,
    "fault.end": _fault_end,
    "db.write": lambda f, m: f"{f[0]}: {f[1]}[{_short(f[2], 30)}] written (version {f[3]})",
    "db.commit": lambda f, m: f"{f[0]}: transaction {f[1]} commits {f[2]} write(s)",
    "db.abort": lambda f, m: f"{f[0]}: transaction {f[1]} aborted",
    "db.rollback": lambda f, m: f"{f[0]}: transaction {f[1]} rolled back",
    "db.lock_wait": lambda f, m: f"{f[0]}: transaction {f[3]} waits for the lock on {f[1]}[{_short(f[2], 30)}] "
                                 f"(held by {f[4]})",
    "db.lock_timeout": lambda f, m: f"{f[0]}: a lock wait on {f[1]}[{_short(f[2], 30)}] runs out",
    "db.stalled": lambda f, m: f"{f[0]}: a statement stalls ({f[2]})",
    "db.lost": lambda f, m: f"{f[0]}: a statement is lost on the way",
    "broker.append": lambda f, m: f"broker: a message appended to {f[0]}/{f[1]} at offset {f[2]}",
    "broker.deliver": lambda f, m: f"broker delivers {f[2]}/{f[3]} offset {f[4]} to {f[1]} ({f[0]})",
    "broker.commit": lambda f, m: f"{f[0]} commits {f[1]}/{f[2]} up to offset {f[3]}",
    "broker.commit_lost": lambda f, m: f"{f[1]}'s commit of {f[2]}/{f[3]} offset {f[4]} is lost",
    "broker.commit_rejected": lambda f, m: f"{f[1]}'s commit of {f[2]}/{f[3]} offset {f[4]} is rejected (rebalanced)",
    "broker.rebalance": lambda f, m: f"group {f[0]} rebalances (generation {f[1]})",
    "consumer.handle": lambda f, m: f"{f[0]} handles {f[2]}/{f[3]} offset {f[4]}",
    "consumer.failed": lambda f, m: f"{f[0]} fails to handle {f[2]}/{f[3]} offset {f[4]} ({f[5]})",
    "service.start": lambda f, m: f"{f[0]} starts",
    "service.ready": lambda f, m: f"{f[0]} is ready",
    "service.error": lambda f, m: f"{f[0]}: an error in {f[1]} ({_short(f[2], 40)})",
    "event": _user_event,
}
