"""Process-wide sources of chance and time, answered by the world inside sandbox code.

Service code written for production calls ``time.time()``, ``uuid.uuid4()`` and
``random.random()`` directly; AI assistants write ids as ``str(uuid.uuid4())`` and
jitter as ``random.uniform(0, 0.1)`` all the time. Inside a world those would read
the real clock and the operating system's entropy, and a run would stop replaying
from its seed. So while a sandbox task runs, these module functions answer from the
world instead (and outside sandbox tasks they are exactly the originals):

==============================================  =============================================
``time.time()``, ``time.time_ns()``             the node's clock (offset and drift included)
``time.monotonic()``, ``time.perf_counter()``   the node's monotonic clock (and ``_ns``)
``time.sleep(s)``                               ``ForeignAwaitError``: it would block the
                                                real thread; ``await sandbox.sleep(s)``
``socket.create_connection``, ``getaddrinfo``,  ``ForeignAwaitError``: a real connection
``socket.connect`` (so urllib, requests...)     leaves the simulated network; use the
                                                sandbox HTTP client
``uuid.uuid4()``                                a UUID from the world's seeded stream
``random.random()``, ``random.uniform()``...    the node's seeded stream ``random/<node>``
==============================================  =============================================

Code that imported a function by name before the sandbox was imported (``from time
import time`` in a module loaded earlier) keeps the original; service modules loaded
by a world (``isolate_module=True``) always see these. ``datetime.now()`` cannot be
redirected: use ``sandbox.clock`` (``clock.now()``) in service code.

One more difference between processes is not a function of the world but of the
process: Python salts ``hash()`` of strings and bytes per interpreter
(``PYTHONHASHSEED``), so two replicas in production disagree on ``hash("ord-1")``, and
a fingerprint or a shard number computed with it differs from one replica (or one
restart) to the next. All replicas of a world share one interpreter, so the code that
each replica runs afresh (its service module, ``isolate_module=True``; a notebook
cell run again per replica) sees ``replica_globals()``: a ``hash`` salted per replica
incarnation, from the world's seed, as a separate process's would be. The builtin
itself is untouched (dictionaries and libraries hash as always).

What the builtin ``hash`` does decide is the order in which a ``set`` of strings is iterated:
service code that loops over one (or records one in the history) behaves by the hash seed
of the process it runs in. So the course runs every process with one fixed seed,
``PYTHONHASHSEED=0``: the JupyterLab of ``dojo course`` (its kernels inherit it), Binder's
(``binder/start``), and the grader's isolated processes. A failure found in a process
started otherwise (a Jupyter or a script of the learner's own) may not replay there;
``explore`` says so when it reports one (``HashSeedWarning``), once per process.
"""

from __future__ import annotations

import builtins as _builtins
import hashlib as _hashlib
import random as _random
import socket as _socket
import sys as _sys
import time as _time
import uuid as _uuid
import warnings as _warnings
from collections.abc import Callable
from typing import Any

from ._runtime import current_node
from .errors import ForeignAwaitError

_ORIGINALS: dict[tuple[Any, str], Callable[..., Any]] = {}

RANDOM_FUNCTIONS = (
    "random", "uniform", "randint", "randrange", "choice", "choices", "shuffle", "sample",
    "gauss", "normalvariate", "lognormvariate", "expovariate", "vonmisesvariate", "gammavariate",
    "betavariate", "paretovariate", "weibullvariate", "triangular", "getrandbits", "randbytes",
)


def _install(module: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    key = (module, name)
    if key in _ORIGINALS:
        return
    original = getattr(module, name, None)
    if original is None:
        return
    _ORIGINALS[key] = original
    replacement = make(original)
    replacement.__name__ = name
    replacement.__qualname__ = name
    replacement.__doc__ = (original.__doc__ or "") + "\n\n(Inside a Chaos Dojo sandbox task, answered by the world.)"
    replacement.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(module, name, replacement)


def _clock_reading(method: str, scale: float | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def reading() -> Any:
            node = current_node.get()
            if node is None:
                return original()
            value = getattr(node.clock, method)()
            return value if scale is None else round(value * scale)

        return reading

    return make


def _sleep(original: Callable[..., Any]) -> Callable[..., Any]:
    def sleep(seconds: float) -> None:
        node = current_node.get()
        if node is None:
            return original(seconds)
        raise ForeignAwaitError(
            f"time.sleep({seconds!r}) in service code on {node.name!r} would block the real thread and "
            f"not pass any virtual time: use `await sandbox.sleep({seconds!r})`"
        )

    return sleep


def _no_real_network(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A socket function that service code may not call: it would leave the simulated network (and block the
    real thread while it waits), so the run would neither replay nor meet the world's faults."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            node = current_node.get()
            if node is None:
                return original(*args, **kwargs)
            target = next((a for a in args if not isinstance(a, _socket.socket)), None)
            raise ForeignAwaitError(
                f"{what}({target!r}) in service code on {node.name!r} would open a real network connection "
                f"(urllib, requests, http.client and blocking sockets all do), outside the simulated network, "
                f"blocking the real thread: call other services with the sandbox HTTP client "
                f"(`http: sandbox.HttpClient = Depends(sandbox.http_client)`, whose methods mirror httpx's)"
            )

        return refused

    return make


def _uuid4(original: Callable[..., Any]) -> Callable[..., Any]:
    def uuid4() -> _uuid.UUID:
        node = current_node.get()
        if node is None:
            return original()
        return _uuid.UUID(int=node.world.streams[f"uuid/{node.name}"].getrandbits(128), version=4)

    return uuid4


def _seeded(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def draw(*args: Any, **kwargs: Any) -> Any:
            node = current_node.get()
            if node is None:
                return original(*args, **kwargs)
            return getattr(node.world.streams[f"random/{node.name}"], name)(*args, **kwargs)

        return draw

    return make


_HASH_BITS = 64
_HASH_MOD = 1 << _HASH_BITS


def _signed(digest: bytes) -> int:
    value = int.from_bytes(digest, "little", signed=True)
    return -2 if value == -1 else value  # as CPython: -1 is never a hash (it means "error" in C)


def salted_hash(salt: bytes) -> Callable[[object], int]:
    """``hash`` as an interpreter started with this ``salt`` would compute it (see the module docstring).

    Strings and bytes hash with the salt (BLAKE2b keyed by it, where CPython uses SipHash); tuples and
    frozensets combine their items' salted hashes (equal values, equal hashes, within one replica);
    numbers, ``None`` and every other object hash as the builtin does, unsalted as in CPython.
    """
    builtin = _builtins.hash

    def salted(obj: object, /) -> int:
        own = type(obj).__hash__  # a subclass with a __hash__ of its own hashes as it says
        if own is str.__hash__:
            data = b"s" + str.encode(obj, "utf-8", "surrogatepass")  # type: ignore[arg-type]
        elif own is bytes.__hash__:
            data = b"b" + bytes(obj)  # type: ignore[call-overload]
        elif own is tuple.__hash__:
            data = b"t" + b"".join((salted(item) % _HASH_MOD).to_bytes(8, "little") for item in obj)  # type: ignore[attr-defined]
        elif own is frozenset.__hash__:
            total = sum(salted(item) % _HASH_MOD for item in obj) % _HASH_MOD  # type: ignore[attr-defined]
            data = b"f" + total.to_bytes(8, "little")
        else:
            return builtin(obj)
        return _signed(_hashlib.blake2b(data, key=salt, digest_size=8).digest())

    salted.__name__ = salted.__qualname__ = "hash"
    salted.__doc__ = (builtin.__doc__ or "") + "\n\n(In a Chaos Dojo replica: salted per replica process.)"
    return salted


def replica_globals() -> dict[str, Any]:
    """The names that code run afresh for the current replica sees as that process's own: ``hash``,
    salted per replica incarnation from the world's seed. Merge them into the globals of a module
    before executing it for one replica; outside a sandbox task, ``{}``.

    Example::

        module = types.ModuleType("service")
        module.__dict__.update(sandbox.replica_globals())
        exec(code, module.__dict__)
    """
    node = current_node.get()
    if node is None:
        return {}
    salt = node.world.streams[f"hash-salt/{node.name}/{node.epoch}"].getrandbits(128).to_bytes(16, "little")
    return {"hash": salted_hash(salt)}


def install() -> None:
    """Redirect the functions in the module docstring's table (idempotent)."""
    _install(_time, "time", _clock_reading("time", None))
    _install(_time, "time_ns", _clock_reading("time_ns", None))
    _install(_time, "monotonic", _clock_reading("monotonic", None))
    _install(_time, "monotonic_ns", _clock_reading("monotonic", 1e9))
    _install(_time, "perf_counter", _clock_reading("monotonic", None))
    _install(_time, "perf_counter_ns", _clock_reading("monotonic", 1e9))
    _install(_time, "sleep", _sleep)
    _install(_uuid, "uuid4", _uuid4)
    for name in ("getaddrinfo", "create_connection", "gethostbyname", "gethostbyname_ex"):
        _install(_socket, name, _no_real_network(f"socket.{name}"))
    for name in ("connect", "connect_ex"):
        _install(_socket.socket, name, _no_real_network(f"socket.{name}"))
    for name in RANDOM_FUNCTIONS:
        _install(_random, name, _seeded(name))


install()


def answer_in_virtual_time(module: Any, name: str) -> None:
    """Make ``module.name``, a reference to ``time.perf_counter`` that a library took when it was imported
    (``from timeit import default_timer``), read the node's monotonic clock inside sandbox tasks, as
    ``time.perf_counter`` itself does (idempotent)."""
    _install(module, name, _clock_reading("monotonic", None))


#: The hash seed every process of the course runs with (``dojo course``, Binder, the grader's processes).
FIXED_HASH_SEED = "0"


class HashSeedWarning(UserWarning):
    """This interpreter salts string hashes at random, unlike the course's and the grader's processes."""


def hashing_is_fixed() -> bool:
    """Whether this interpreter hashes str and bytes unsalted (it was started with ``PYTHONHASHSEED=0``), as
    every process the course starts does; then a set of strings iterates in the same order in all of them."""
    return _sys.flags.hash_randomization == 0


_warned: list[bool] = []


def warn_if_hashing_varies() -> None:
    """Warn, once per process, that a failure found here may not replay under the grader: this process was not
    started with ``PYTHONHASHSEED=0``, so service code that iterates a set of strings may take another order
    there."""
    if hashing_is_fixed() or _warned:
        return
    _warned.append(True)
    _warnings.warn(
        "this Python salts string hashes at random (it was not started with PYTHONHASHSEED=0, as `dojo course`, "
        "Binder and the grader start theirs), so if the service iterates a set of strings, the failure found "
        "here may replay in another order elsewhere. Iterate sorted(the_set) in service code, or start Jupyter "
        "with `dojo course` (or PYTHONHASHSEED=0 in its environment).",
        HashSeedWarning,
        stacklevel=3,
    )
