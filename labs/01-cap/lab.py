"""Lab 01, CAP: a replicated inventory that claims to be both consistent and available.

Three replicas of ``inventory`` (``inventory-0``, ``inventory-1``, ``inventory-2``) each keep
their own copy of the stock on their own disk (``sandbox.disk``). The API is two calls:

* ``GET /stock/{sku}`` -> ``{"sku": sku, "stock": n}``;
* ``POST /stock/{sku}/adjust`` with ``{"delta": d}`` -> ``{"sku": sku, "stock": n}``, the
  stock after the adjustment (``d`` may be negative).

A refusal says what the client may conclude (Jepsen's ``ok`` / ``fail`` / ``info``): **503
Service Unavailable means refused and applied nowhere** (a definite failure: safe to try
again), while **504 Gateway Timeout** (a replica whose call to another timed out), any other
error, or no answer at all means the outcome is unknown. The clients hold a service to it: an
adjustment refused with 503 is recorded as ``fail`` (it did not happen) and a clerk tries it
again, so a service that says 503 but keeps the write counts it twice. (The checks know one more
thing the client does not: a request sent to a replica that was down all along did not happen.)

When the network between the replicas splits, a replica can no longer both answer and
agree with the others: the learner **declares** which promise the service keeps, with
module-level constants next to ``create_app``::

    CAP_CHOICE = "CP"          # or "AP"
    PRIMARY = "inventory-0"    # CP only, if one fixed replica orders everything (None or absent: none)

and the grader checks the behaviour against the declaration (``cap_choice``, ``primary``):

* ``"CP"``, during a partition: ``linearizable()``: every read and adjustment the clients saw
  fits one sequential order of a single counter per sku (``CounterModel``, checked with
  ``sandbox.checkers.check_linearizability``; UNKNOWN is not a pass); and
  ``majority_available()``: a replica refuses only where no majority is reachable (a request
  at a replica that is up, connected to a majority of the replicas, the declared PRIMARY among
  them, and settled for ``RECOVERY`` seconds, gets a 2xx). After it: ``no_lost_writes()``:
  every replica reads the sum of the acknowledged adjustments (plus some of those whose
  outcome the client never learned), also after a replica lost its disk (``DiskLoss``).
* ``"AP"``, during a partition: ``available()``: every request that reached a live replica got
  a 2xx answer within the client's timeout, on the minority side too; and ``counted_once()``:
  while messages between replicas are duplicated, reordered or delayed (and none lost), every
  adjustment counts once on every replica. After it: ``converged()``: every replica returns
  the same stock for every sku, and it is the sum of the acknowledged adjustments.

Workload clients (``client-0``...) send reads and adjustments, each to one replica chosen
at random **by node name** (``http://inventory-1/...``), so a partition between replicas
leaves clients on both sides. After every client finished, every fault has healed and a
quiet phase has passed, the ``auditor`` reads every sku from every replica.

Everything a notebook and the grader need is here, and is not edited:

* ``build_world(seed, create_app, **workload)``, ``scenario(create_app)``;
* ``schedules(seed, choice=None)`` (the nemesis: replica partitions, loss, delay, kills; for CP
  also a lost disk, for AP duplicated and reordered messages; ``schedules_for(choice)`` as a
  function of the seed) and ``adversarial(choice)`` (``ADVERSARIAL``, the schedules both
  choices face, and ``ADVERSARIAL_BY_CHOICE``);
* ``invariants(choice)``: the checks for a declared choice;
* ``happy_path(create_app)``: the "works in staging" test (one replica, FastAPI's TestClient);
* ``check(create_app, bank)``: the self-checks (``"visible"``) and the grading (``"hidden"``);
* ``mutants()`` and ``alternatives()``: the partial fixes the checks must catch, and the correct
  fixes unlike the references that they must pass;
* ``promise(create_app, part)``: the invariants the declared choice promises ``"during"`` a
  partition or ``"after"`` it (``PROMISES``), for one-line grade cells:
  ``grade(create_app, promise(create_app, "during"))``.

Example::

    generated = lab.load("generated")
    lab.happy_path(generated.create_app)        # passes
    print(lab.check(generated.create_app))      # Counterexample: a stale read (declared CP)
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from types import ModuleType
from typing import Any

import sandbox
from autograder.labs import (
    TestClient,
    alternative_names,
    check_bank,
    grader,
    load_module,
    mutant_names,
    service_factory,
)
from sandbox.checkers import Call, Verdict, check_linearizability
from sandbox.explore import Counterexample, Passed, Scenario
from sandbox.faults import (
    Delay,
    DiskLoss,
    Duplicate,
    Isolate,
    Kill,
    LinkFault,
    Loss,
    Partition,
    Reorder,
    Schedule,
    SplitHalves,
    Targets,
    nemesis,
)

LAB = "01-cap"
VISIBLE = 5
HIDDEN = 30
HERE = Path(__file__).resolve().parent

SERVICE = "inventory"
#: The replicas' node names: a replica calls another as ``http://inventory-1/...``.
REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
#: A majority of the replicas: two of three.
MAJORITY = len(REPLICAS) // 2 + 1
SKUS = ("lamp", "kettle")
CHOICES = ("CP", "AP")

#: How long a client waits for an answer (seconds); a timeout is an unknown outcome.
CLIENT_TIMEOUT = 0.5
#: The one refusal that says "not applied anywhere": the clients record it as ``fail``.
REFUSED = 503
#: A clerk tries an adjustment refused with 503 again, at most CLERK_RETRIES times, CLERK_BACKOFF,
#: 2 * CLERK_BACKOFF... seconds later, each time at a replica drawn at random.
CLERK_RETRIES = 2
CLERK_BACKOFF = 0.1
#: Clients come in during the first ARRIVAL seconds and think THINK seconds (on average) between requests.
ARRIVAL = 0.2
THINK = 0.1
#: The share of requests that are reads.
READS = 0.5
#: The nemesis draws its faults in the first FAULT_WINDOW seconds, each lasting up to 1.2 s.
FAULT_WINDOW = 2.0
#: The auditor reads every replica this long after the last fault healed and the last client
#: finished (and not before AUDIT_AT).
QUIET = 1.5
AUDIT_AT = 3.5
#: The auditor's attempts per replica and sku.
AUDIT_ATTEMPTS = 5
SETTLE = 0.2
LIMIT = 30.0
#: Wall-clock seconds the linearizability search may take per run before it answers UNKNOWN.
TIME_LIMIT = 10.0
#: A request sent within this many seconds of a replica's crash or restart may go unanswered (AP).
RESTART_GRACE = 0.1
#: A request reaches its replica within this many seconds on a link with no fault (the network's
#: latency is about 1 ms): a replica down from before a request until that long after it never saw it.
DELIVERY = 0.01
#: CP: how long after a fault on a majority ended (a heal, a restart, a lost disk's recovery) its
#: replicas may still refuse: time for requests caught in the fault to time out and for a replica
#: to learn what it missed. A client's timeout: every correct design we know needs less.
RECOVERY = 0.5

Result = Counterexample | Passed
AppFactory = Callable[[], Any]


# --- loading the lab's modules ----------------------------------------------------------


def load(name: str) -> ModuleType:
    """The module ``name`` of this lab (``"generated"``, a solution, ``"mutants/NAME"``,
    ``"alternatives/NAME"``), a fresh copy per replica in a world (see ``autograder.labs.load_module``)."""
    return load_module(HERE, name, "chaos_dojo_labs.lab01")


def mutants() -> list[str]:
    """The names of the partial fixes in ``mutants/``, sorted (``"mutants/NAME"``)."""
    return mutant_names(HERE)


def alternatives() -> list[str]:
    """The names of the correct fixes in ``alternatives/`` (unlike the references in shape), sorted
    (``"alternatives/NAME"``)."""
    return alternative_names(HERE)


def _module_of(create_app: AppFactory) -> ModuleType | None:
    create_app = getattr(create_app, "__chaos_dojo_cell__", create_app)  # a notebook cell's factory
    return sys.modules.get(getattr(create_app, "__module__", "") or "")


def cap_choice(create_app: AppFactory) -> str:
    """The CAP choice the code declares: ``CAP_CHOICE`` of the module defining ``create_app``.

    Example: ``cap_choice(load("generated").create_app) == "CP"``.

    Raises:
        sandbox.ConfigError: the module has no ``CAP_CHOICE``, or it is neither "CP" nor "AP".
    """
    module = _module_of(create_app)
    choice = getattr(module, "CAP_CHOICE", None)
    if choice not in CHOICES:
        where = getattr(module, "__name__", repr(module))
        raise sandbox.ConfigError(
            f"CAP_CHOICE={choice!r} in {where}: declare what the service keeps when the network splits, "
            f'with a module-level constant next to create_app: CAP_CHOICE = "CP" (consistent: refuse '
            f'on the minority side) or CAP_CHOICE = "AP" (available: answer everywhere, converge later)'
        )
    return choice


def primary(create_app: AppFactory) -> str | None:
    """The fixed primary the code declares: ``PRIMARY`` of the module defining ``create_app`` (None if
    absent). A CP design in which one replica orders every request, and no other ever takes over,
    declares it, and may then refuse while that replica is cut off from a majority.

    Example: ``primary(load("solution_cp").create_app) == "inventory-0"``.

    Raises:
        sandbox.ConfigError: a PRIMARY that is not one of the replicas.
    """
    module = _module_of(create_app)
    value = getattr(module, "PRIMARY", None)
    if value is not None and value not in REPLICAS:
        where = getattr(module, "__name__", repr(module))
        raise sandbox.ConfigError(
            f"PRIMARY={value!r} in {where}: name the replica that orders every request, one of "
            f"{', '.join(map(repr, REPLICAS))} (e.g. PRIMARY = \"inventory-0\"), or None if no replica is fixed"
        )
    return value


# --- the workload -------------------------------------------------------------------------


async def _request(client: sandbox.Client, method: str, url: str, body: dict | None) -> tuple[int | None, Any]:
    """One request: (status, body), or (None, None) if no answer came within CLIENT_TIMEOUT."""
    try:
        if method == "GET":
            r = await client.http.get(url, timeout=CLIENT_TIMEOUT)
        else:
            r = await client.http.post(url, json=body, timeout=CLIENT_TIMEOUT)
    except sandbox.RequestTimeout:
        return None, None
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text[:200]


def _stock(body: Any) -> int | None:
    stock = body.get("stock") if isinstance(body, dict) else None
    return stock if isinstance(stock, int) and not isinstance(stock, bool) else None


async def read(client: sandbox.Client, sku: str, replica: str, f: str = "read") -> int | None:
    """Read ``sku`` at ``replica``, recorded as a ``read`` operation; the stock seen, or None."""
    async with client.operation(f, {"sku": sku, "replica": replica}) as op:
        status, body = await _request(client, "GET", f"http://{replica}/stock/{sku}", None)
        stock = _stock(body)
        answer = {"sku": sku, "replica": replica, "status": status}
        if status is not None and 200 <= status < 300 and stock is not None:
            op.ok({**answer, "stock": stock})
            return stock
        if status is None:
            op.info(answer, "no answer within the timeout")
        else:
            op.fail(answer, f"answered {status}: {body!r}")
    return None


async def adjust(client: sandbox.Client, sku: str, delta: int, replica: str) -> int | None:
    """Adjust ``sku`` by ``delta`` at ``replica``, recorded as an ``adjust`` operation; the status
    answered (None: no answer).

    A 2xx answer is ``ok`` (the stock after it, as the replica says); a 503 is ``fail``: the
    service said it applied it nowhere; anything else (a 504, a 500, no answer) is ``info``:
    it may or may not have been applied.
    """
    async with client.operation("adjust", {"sku": sku, "delta": delta, "replica": replica}) as op:
        status, body = await _request(client, "POST", f"http://{replica}/stock/{sku}/adjust", {"delta": delta})
        stock = _stock(body)
        answer = {"sku": sku, "delta": delta, "replica": replica, "status": status}
        if status is not None and 200 <= status < 300:
            op.ok({**answer, "stock": stock})
        elif status == REFUSED:
            op.fail(answer, f"answered {status} (refused, applied nowhere): {body!r}")
        else:
            op.info(answer, "no answer within the timeout" if status is None else f"answered {status}: {body!r}")
    return status


async def shopper(client: sandbox.Client, requests: int, finished: list[float] | None = None) -> None:
    """A client sending ``requests`` reads and adjustments, each to a replica drawn at random.

    An adjustment refused with 503 is tried again (the same delta, at a replica drawn at random,
    after a short backoff), up to CLERK_RETRIES times: a 503 promised it was applied nowhere.
    When done, the client appends the time to ``finished`` (the auditor waits for every client).
    """
    try:
        await client.sleep(client.random.uniform(0.0, ARRIVAL))
        for _ in range(requests):
            sku = client.random.choice(SKUS)
            replica = client.random.choice(REPLICAS)
            if client.random.random() < READS:
                await read(client, sku, replica)
            else:
                delta = client.random.choice((-3, -2, -1, 1, 2, 3, 4, 5))
                status = await adjust(client, sku, delta, replica)
                for attempt in range(CLERK_RETRIES):
                    if status != REFUSED:
                        break
                    await client.sleep(CLERK_BACKOFF * (attempt + 1))
                    status = await adjust(client, sku, delta, client.random.choice(REPLICAS))
            await client.sleep(client.random.expovariate(1.0 / THINK))
    finally:
        if finished is not None:
            finished.append(client.now)


def _auditor(world: sandbox.World, finished: list[float], clients: int) -> Callable[[sandbox.Client], Any]:
    async def auditor(client: sandbox.Client) -> None:
        """Once every client finished, every fault healed and QUIET seconds more passed, read every
        sku at every replica."""
        chaos = world.chaos
        heal_at = chaos.heal_at if chaos is not None else 0.0
        await client.sleep(max(AUDIT_AT, heal_at + QUIET) - client.now)
        while len(finished) < clients:
            await client.sleep(0.1)
        await client.sleep(max(0.0, max(finished, default=0.0) + QUIET - client.now))
        for sku in SKUS:
            for replica in REPLICAS:
                for attempt in range(AUDIT_ATTEMPTS):
                    if await read(client, sku, replica, "audit") is not None:
                        break
                    await client.sleep(0.1 * (attempt + 1))

    return auditor


# --- the world ------------------------------------------------------------------------------


def build_world(seed: int, create_app: AppFactory, *, clients: int = 4, requests: int = 12) -> sandbox.World:
    """The datacenter for ``seed``: three replicas of the learner's inventory, ``clients`` clients
    (``client-0``...) sending ``requests`` requests each, and the ``auditor``. Built, not run.

    Raises:
        sandbox.BadSeedError: a bad seed. sandbox.InvalidParameterError: a workload size below 1.
    """
    for name, value in (("clients", clients), ("requests", requests)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise sandbox.InvalidParameterError(f"{name}={value!r}: use a whole number >= 1")
    world = sandbox.World(seed=seed)
    world.add_service(SERVICE, create_app, replicas=len(REPLICAS))
    finished: list[float] = []
    for i in range(clients):
        world.add_client(f"client-{i}", shopper, requests, finished)
    world.add_client("auditor", _auditor(world, finished, clients))
    return world


def scenario(create_app: AppFactory, **workload: int) -> Scenario:
    """The lab as a scenario to explore: four clients sending twelve requests each, then the audit."""
    create_app = service_factory(create_app)

    def build(seed: int, clients: int = 4, requests: int = 12) -> sandbox.World:
        return build_world(seed, create_app, clients=clients, requests=requests)

    sizes = {"clients": 4, "requests": 12, **workload}
    return Scenario(LAB, build, sizes, settle=SETTLE, limit=LIMIT)


# --- faults ------------------------------------------------------------------------------

TARGETS = Targets(REPLICAS)
#: What the nemesis draws for either choice ...
KINDS = ("isolate", "halves", "loss", "delay", "kill")
#: ... and what it adds for one: CP must survive a lost disk (a write acknowledged by a majority
#: is on another disk too); AP must count once what the network duplicates or reorders. (CP is
#: not sent duplicated requests: deduplicating them is module 02's subject. AP loses no disk: a
#: write acknowledged by one replica alone is lost with its disk, whatever the design.)
EXTRA_KINDS = {"CP": ("disk-loss",), "AP": ("duplicate", "reorder")}


def _others(node: str) -> list[str]:
    return [r for r in REPLICAS if r != node]


def _between_replicas(fault: Any) -> Any:
    """The fault on the links between replicas only: clients always reach every live replica."""
    if isinstance(fault, Isolate):
        (node,) = fault.target
        return Partition(node, _others(node), start=fault.start, duration=fault.duration)
    if isinstance(fault, LinkFault) and fault.peer is None:
        (node,) = fault.target
        return fault.replace(peer=_others(node))
    return fault


def _one_disk_loss(faults: Iterable[Any]) -> list[Any]:
    """At most one lost disk per run, the others drawn as plain kills: a second disk lost before the
    replicas copied the first one's data back could take the only other copy of a write, which no
    majority design survives."""
    out, lost = [], False
    for fault in faults:
        if isinstance(fault, DiskLoss):
            if lost:
                fault = Kill(fault.target, start=fault.start, restart_after=fault.restart_after)
            lost = True
        out.append(fault)
    return out


def schedules(seed: int, choice: str | None = None) -> Schedule:
    """The lab's nemesis: three faults drawn from ``seed`` in the first two seconds, among one
    replica cut off from the others, the replicas split in two, message loss and delay between
    replicas, and a killed replica; for ``choice="CP"`` also a replica that loses its disk (at
    most one per run), for ``"AP"`` duplicated and reordered messages between replicas. Clients
    always reach every live replica: a partition leaves clients on both sides of it.

    Raises:
        sandbox.InvalidParameterError: a choice other than None, "CP" or "AP".
    """
    if choice is not None and choice not in CHOICES:
        raise sandbox.InvalidParameterError(f"choice={choice!r}: a CAP choice is 'CP' or 'AP' (or None: both)")
    kinds = KINDS + EXTRA_KINDS.get(choice or "", ())
    drawn = nemesis(seed, TARGETS, kinds=kinds, count=3, within=FAULT_WINDOW, duration=(0.4, 1.2))
    return Schedule(_one_disk_loss(_between_replicas(f) for f in drawn))


def schedules_for(choice: str) -> Callable[[int], Schedule]:
    """The nemesis a declared ``choice`` is checked under: ``schedules(seed, choice)`` as a function of the seed."""
    schedules(0, choice)  # a bad choice fails here, not in a worker
    return functools.partial(schedules, choice=choice)


#: The pattern's known failure modes, each hit on purpose: the schedules both choices face.
ADVERSARIAL: list[Schedule] = [
    # 1. inventory-0 is cut off from the other replicas while clients write on both sides, then heals.
    Schedule([Partition("inventory-0", _others("inventory-0"), start=0.2, duration=1.5)]),
    # 2. The same for inventory-2.
    Schedule([Partition("inventory-2", _others("inventory-2"), start=0.2, duration=1.5)]),
    # 3. The replicas split in two halves (one against two) for most of the run.
    Schedule([SplitHalves(list(REPLICAS), start=0.1, duration=1.8)]),
    # 4. Most messages between inventory-1 and the others are lost for a while.
    Schedule([Loss("inventory-1", peer=_others("inventory-1"), probability=0.7, start=0.0, duration=2.0)]),
    # 5. inventory-0 dies for a while; the links between the others are slow.
    Schedule([
        Kill("inventory-0", start=0.6, restart_after=0.6),
        Delay("inventory-1", peer="inventory-2", latency=0.2, start=0.0, duration=1.5),
    ]),
]

#: The schedules aimed at what only one choice promises.
ADVERSARIAL_BY_CHOICE: dict[str, list[Schedule]] = {
    "CP": [
        # 6-8. In the middle of the writes, each replica in turn loses its disk and comes back empty:
        # every write acknowledged before must still be there (on a majority, so on another disk).
        *(Schedule([DiskLoss(r, start=1.0, restart_after=0.3)]) for r in REPLICAS),
        # 9-11. Each replica in turn is left alone (the two others down) while clients write, then
        # loses its disk: one that acknowledged writes stored on its own disk alone has nothing to
        # recover them from.
        *(Schedule([*(Kill(o, start=0.05, restart_after=1.5) for o in _others(r)),
                    DiskLoss(r, start=1.6, restart_after=0.2)]) for r in REPLICAS),
        # 12-13. One follower misses the writes committed on the other two, then inventory-0 loses its
        # disk and the other follower is slow to answer it: a replica that recovers from the first
        # other replica to answer takes the stale copy.
        *(Schedule([
            Partition(stale, _others(stale), start=0.1, duration=1.1),
            DiskLoss("inventory-0", start=1.2, restart_after=0.2),
            Delay(slow, peer="inventory-0", latency=0.1, start=1.25, duration=0.6),
        ]) for stale, slow in (("inventory-2", "inventory-1"), ("inventory-1", "inventory-2"))),
    ],
    "AP": [
        # 6. Messages between the replicas are often delivered twice: merging must not count twice.
        Schedule([Duplicate(r, peer=_others(r), probability=0.5, start=0.0, duration=2.0) for r in REPLICAS[:2]]),
        # 7. Messages overtake each other, and some take longer than a sender waits (a sender that
        # gives up and sends again delivers twice).
        Schedule([
            Reorder("inventory-0", peer=_others("inventory-0"), probability=0.5, gap=0.05, start=0.0, duration=2.0),
            Delay("inventory-2", peer=_others("inventory-2"), latency=0.3, jitter=0.05, start=0.2, duration=1.5),
        ]),
    ],
}


def adversarial(choice: str) -> list[Schedule]:
    """The hand-written schedules a declared ``choice`` is checked under: ``ADVERSARIAL``, then its own.

    Raises:
        sandbox.InvalidParameterError: a choice other than "CP" or "AP".
    """
    if choice not in CHOICES:
        raise sandbox.InvalidParameterError(f"choice={choice!r}: a CAP choice is 'CP' or 'AP'")
    return ADVERSARIAL + ADVERSARIAL_BY_CHOICE[choice]


# --- the model and the invariants ----------------------------------------------------------


class CounterModel:
    """A counter per sku: ``adjust`` adds its delta, ``read`` sees the sum so far.

    Each operation's value is ``[sku, payload]``: an adjust's invoke payload is the delta and
    its ok payload the stock after it (None if the service did not say); a read's ok payload
    is the stock seen. Skus are checked one by one (linearizability is local).

    Example::

        check_linearizability(history, CounterModel(), time_limit=1.0)
    """

    fs = ("read", "adjust", "audit")

    def __init__(self, initial: int = 0, *, name: str = "the stock") -> None:
        self.initial = initial
        self.name = name

    def __repr__(self) -> str:
        return f"CounterModel(initial={self.initial!r})"

    def init(self) -> Hashable:
        return self.initial

    def step(self, state: Any, call: Call) -> tuple[bool, Any]:
        if call.f == "adjust":
            new = state + call.input
            return (not call.known or call.output is None or call.output == new), new
        return (not call.known or call.output == state), state

    def prepare(self, call: Call) -> Call | None:
        if call.f not in self.fs:
            raise sandbox.InvalidParameterError(f"f={call.f!r}: {self!r} knows only 'read' and 'adjust'")
        if call.f != "adjust" and not call.known:
            return None  # an unseen read constrains nothing
        return call

    def split(self, call: Call) -> tuple[Hashable, Call]:
        sku, payload = call.input
        seen = call.output[1] if call.output is not None else None
        return sku, replace(call, input=payload, output=seen)

    def per_key(self, key: Hashable) -> CounterModel:
        return CounterModel(self.initial, name=f"the stock of {key!r}")

    def explain(self, call: Call, states: list[Any], concurrent: int) -> str:
        if call.f == "adjust":
            what = f"adjust of {self.name} by {call.input:+d} at {call.process} answered {call.output!r}"
        else:
            what = f"read of {self.name} by {call.process} returned {call.output!r}"
        shown = sorted(states)[:6]
        more = "..." if len(states) > 6 else ""
        noun = "nothing before it" if not concurrent else f"no order of the {concurrent} concurrent operation(s)"
        return f"{what}, but {noun} explains it: {self.name} could only be {', '.join(map(str, shown))}{more}"


def _unreached(world: sandbox.World) -> set[int]:
    """The completions of adjustments that no replica can have received: sent to a replica that was
    down (crashed, not yet restarted) from before the request until well after it arrived (DELIVERY),
    on a link with no fault. The client recorded them as unknown (``info``); the world knows that a
    crashed replica drops what reaches it, so they did not happen."""
    chaos = world.chaos
    windows = list(chaos.windows) if chaos is not None else []
    down = [(w.start, w.end if w.end is not None else _INF, set(w.nodes)) for w in windows
            if w.fault.action in ("kill", "disk-loss", "failure")]
    if not down:
        return set()
    links = [w for w in windows if w.fault.family == "NetworkChaos"]
    out = set()
    for invoke, done in _pairs(world, "adjust"):
        if done is None or done.type != "info":
            continue
        replica, client = invoke.value["replica"], invoke.process.split("#")[0]
        arrived = invoke.time + DELIVERY
        if not any(s <= invoke.time and arrived <= e and replica in nodes for s, e, nodes in down):
            continue
        if not any(w.start <= arrived and invoke.time <= (w.end if w.end is not None else _INF)
                   and _on_link(w, client, replica) for w in links):
            out.add(done.index)
    return out


def _on_link(window: Any, a: str, b: str) -> bool:
    """Whether a network fault's window acts on the link between nodes ``a`` and ``b``."""
    nodes, peers = set(window.nodes), set(window.peers)
    return (a in nodes and (not peers or b in peers)) or (b in nodes and (not peers or a in peers))


def _as_counter_ops(world: sandbox.World) -> list[dict[str, Any]]:
    """The clients' history with each value as ``[sku, payload]``, for ``CounterModel`` (an adjustment
    no replica received, see ``_unreached``, as ``fail``: it did not happen)."""
    unreached = _unreached(world)
    ops = []
    for op in world.history:
        if op.f not in CounterModel.fs:
            continue
        value = op.value if isinstance(op.value, dict) else {}
        if op.type == "invoke":
            payload = value.get("delta") if op.f == "adjust" else None
        else:
            payload = value.get("stock")
        kind = "fail" if op.index in unreached else op.type
        ops.append({"index": op.index, "time": op.time, "process": op.process, "type": kind, "f": op.f,
                    "value": [value.get("sku"), payload], "error": op.error})
    return ops


def _pairs(world: sandbox.World, f: str) -> list[tuple[Any, Any]]:
    return [(i, d) for i, d in world.history.pairs() if i.f == f]


def _possible_totals(world: sandbox.World) -> dict[str, tuple[int, set[int], int, int]]:
    """Per sku: (sum of acknowledged deltas, every sum some of the unknown ones can add, how many
    unknown, how many refused with 503). A refused adjustment did not happen: it is in no total."""
    out: dict[str, tuple[int, set[int], int, int]] = {sku: (0, {0}, 0, 0) for sku in SKUS}
    unreached = _unreached(world)
    for invoke, done in _pairs(world, "adjust"):
        sku, delta = invoke.value["sku"], invoke.value["delta"]
        acked, extra, unknown, refused = out[sku]
        if done is not None and done.type == "ok":
            out[sku] = (acked + delta, extra, unknown, refused)
        elif done is not None and done.index in unreached:
            continue  # sent to a replica that was down all along: it did not happen
        elif done is None or done.type == "info":
            out[sku] = (acked, extra | {e + delta for e in extra}, unknown + 1, refused)
        else:
            out[sku] = (acked, extra, unknown, refused + 1)
    return out


def _audit(world: sandbox.World) -> dict[str, dict[str, Any]]:
    """What the auditor read: sku -> replica -> stock (only the reads that got an answer)."""
    seen: dict[str, dict[str, Any]] = {sku: {} for sku in SKUS}
    for invoke, done in _pairs(world, "audit"):
        if done is not None and done.type == "ok":
            seen[done.value["sku"]][done.value["replica"]] = (done.value["stock"], done)
    return seen


@dataclass(frozen=True)
class _Linearizable:
    """See ``linearizable``."""

    time_limit: float = TIME_LIMIT
    name: str = "linearizable()"

    def __call__(self, world: sandbox.World) -> Verdict:
        ops = _as_counter_ops(world)
        if not any(op["type"] == "ok" for op in ops):
            return Verdict.unknown(self.name, "no request got an answer: nothing to check")
        verdict = check_linearizability(ops, CounterModel(), time_limit=self.time_limit)
        if verdict.outcome.name == "FAIL":
            return Verdict.failing(self.name, verdict.summary, verdict.evidence)
        if verdict.outcome.name == "UNKNOWN":
            return Verdict.unknown(self.name, verdict.summary)
        return Verdict.passing(self.name, verdict.summary)


def linearizable(time_limit: float = TIME_LIMIT) -> _Linearizable:
    """CP: the reads and adjustments the clients (and the auditor) saw fit one sequential order
    of a counter per sku, each taking effect between its request and its answer; an adjustment
    refused with 503 takes effect never, one of unknown outcome (504, no answer) at most once.

    FAIL with the operations no order explains (a stale read, an adjustment that answered a
    stock no order gives); UNKNOWN if the search ran out of ``time_limit`` wall-clock seconds
    or nothing got an answer: neither counts as a pass.
    """
    return _Linearizable(time_limit)


def _lost(world: sandbox.World, name: str, *, same_everywhere: bool) -> Verdict:
    totals = _possible_totals(world)
    if not any(done is not None and done.type == "ok" for _, done in _pairs(world, "adjust")):
        return Verdict.unknown(name, "no adjustment was acknowledged (2xx): no write to keep, nothing to check")
    audit = _audit(world)
    problems: list[tuple[str, Any]] = []
    checked = 0
    for sku in SKUS:
        acked, extra, unknown, refused = totals[sku]
        allowed = sorted(acked + e for e in extra)
        seen = audit[sku]
        missing = [r for r in REPLICAS if r not in seen]
        if missing:
            return Verdict.unknown(name, f"the auditor got no answer for {sku!r} from {', '.join(missing)}: cannot tell")
        values = {r: seen[r][0] for r in REPLICAS}
        checked += len(values)
        if same_everywhere and len(set(values.values())) > 1:
            shown = ", ".join(f"{r} says {v}" for r, v in values.items())
            problems.append((f"the replicas disagree on {sku!r} long after the faults healed: {shown}", seen[REPLICAS[0]][1]))
            continue
        for replica, (value, op) in seen.items():
            if value not in allowed:
                why = f"the acknowledged adjustments sum to {acked}"
                if unknown:
                    why += f" ({unknown} more of unknown outcome could make it {_range(allowed)})"
                causes = "an acknowledged adjustment was lost, or one was counted twice"
                if refused:
                    causes += f", or one of the {refused} refused with 503 (applied nowhere, the answer said) was kept"
                problems.append((f"{replica} says the stock of {sku!r} is {value}, but {why}: {causes}", op))
    if problems:
        summary = problems[0][0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        return Verdict.failing(name, summary, tuple(chain.from_iterable(problems[:6])))
    return Verdict.passing(name, f"{checked} audited reads, each the sum of the acknowledged adjustments")


def _range(values: list[int]) -> str:
    return f"one of {values}" if len(values) <= 6 else f"between {values[0]} and {values[-1]}"


@dataclass(frozen=True)
class _NoLostWrites:
    """See ``no_lost_writes``."""

    name: str = "no_lost_writes()"

    def __call__(self, world: sandbox.World) -> Verdict:
        return _lost(world, self.name, same_everywhere=False)


def no_lost_writes() -> _NoLostWrites:
    """CP: after the quiet phase, every replica reads each sku as the sum of the acknowledged
    adjustments (plus some of those whose outcome is unknown; none refused with 503), also after
    a replica lost its disk. FAIL with the audit read that says otherwise; UNKNOWN if the auditor
    could not read every replica, or no adjustment at all was acknowledged (refusing every write
    keeps none)."""
    return _NoLostWrites()


@dataclass(frozen=True)
class _Converged:
    """See ``converged``."""

    name: str = "converged()"

    def __call__(self, world: sandbox.World) -> Verdict:
        return _lost(world, self.name, same_everywhere=True)


def converged() -> _Converged:
    """AP: after the faults healed and a quiet phase, every replica returns the same stock for
    every sku, and it is the sum of the acknowledged adjustments (plus some of those whose
    outcome is unknown). FAIL with the replicas that disagree or the total that is wrong;
    UNKNOWN if the auditor could not read every replica, or no adjustment was acknowledged."""
    return _Converged()


#: Faults that lose messages between replicas (or the replica they were sent to).
LOSING = ("loss", "partition", "isolate", "halves", "bridge", "clog", "kill", "disk-loss", "failure", "pause")


@dataclass(frozen=True)
class _CountedOnce:
    """See ``counted_once``."""

    name: str = "counted_once()"

    def __call__(self, world: sandbox.World) -> Verdict:
        chaos = world.chaos
        losing = [w for w in (chaos.windows if chaos is not None else ()) if w.fault.action in LOSING and w.fired]
        if losing:
            what = "; ".join(f"{w.label} ({w.fired}x)" for w in losing[:3])
            return Verdict.passing(self.name, f"not judged in this run: messages between replicas were lost ({what}); "
                                              f"converged() judges what a run with losses must end with")
        verdict = _lost(world, self.name, same_everywhere=False)
        if verdict.outcome.name == "PASS":
            acted = [w.label for w in (chaos.windows if chaos is not None else ()) if w.fired]
            under = f" under {', '.join(acted)}" if acted else ""
            return Verdict.passing(self.name, f"{verdict.summary}{under}: each counted once")
        if verdict.outcome.name == "FAIL":
            return Verdict.failing(self.name, f"no message between replicas was lost, yet {verdict.summary}",
                                   verdict.evidence)
        return verdict


def counted_once() -> _CountedOnce:
    """AP: in a run where no message between replicas was lost (they may have been duplicated,
    reordered, delayed past a sender's timeout and sent again), every replica reads each sku as
    the sum of the acknowledged adjustments after the quiet phase: a state that merges counts each
    adjustment once, however often and in whatever order it arrives. In a run with losses it
    passes without judging (``converged`` judges those runs); UNKNOWN as ``converged``."""
    return _CountedOnce()


#: Faults that take a replica down or freeze it (the others are on links).
NODE_ACTIONS = ("kill", "disk-loss", "failure", "pause")


def _excused(world: sandbox.World) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Per (client, replica), the windows in which no answer could come: the replica dead or
    restarting (widened by RESTART_GRACE), or the link between them cut, lossy or slowed."""
    excused: dict[tuple[str, str], list[tuple[float, float]]] = {}
    chaos = world.chaos
    clients = list(world.clients)
    for window in chaos.windows if chaos is not None else ():
        end = window.end if window.end is not None else float("inf")
        hit = set(window.nodes)
        if window.fault.action in NODE_ACTIONS:
            pairs = [(c, r) for c in clients for r in REPLICAS if r in hit]
            end += RESTART_GRACE
        elif window.fault.family == "NetworkChaos":
            peers = set(window.peers) if window.peers else None  # None: cut off from every node
            pairs = [(c, r) for c in clients for r in REPLICAS
                     if (r in hit and (peers is None or c in peers)) or (c in hit and (peers is None or r in peers))]
        else:
            continue
        for pair in pairs:
            excused.setdefault(pair, []).append((window.start, end))
    return excused


@dataclass(frozen=True)
class _Available:
    """See ``available``."""

    name: str = "available()"

    def __call__(self, world: sandbox.World) -> Verdict:
        excused = _excused(world)
        problems: list[tuple[str, Any]] = []
        answered = 0
        for invoke, done in chain(_pairs(world, "read"), _pairs(world, "adjust")):
            if done is None:
                continue
            status = done.value.get("status") if isinstance(done.value, dict) else None
            replica = invoke.value["replica"]
            if status is not None and 200 <= status < 300:
                answered += 1
                continue
            if status is None:
                client = invoke.process.split("#")[0]
                if any(s <= done.time and invoke.time <= e for s, e in excused.get((client, replica), ())):
                    continue  # the replica was dead or out of the client's reach: nobody could answer
                what = f"no answer within {CLIENT_TIMEOUT:g} s"
            else:
                what = f"answered {status}"
            problems.append((f"{invoke.f} of {invoke.value['sku']!r} at {replica} (alive) by {invoke.process}: {what}", done))
        if problems:
            summary = problems[0][0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            return Verdict.failing(self.name, f"refused service: {summary}", tuple(chain.from_iterable(problems[:6])))
        if not answered:
            return Verdict.unknown(self.name, "no request got an answer: nothing to check")
        return Verdict.passing(self.name, f"{answered} requests, each answered 2xx by a live replica")


def available() -> _Available:
    """AP: every read and adjustment sent to a live replica it could reach got a 2xx answer
    within the client's timeout, on both sides of every partition between replicas. FAIL with
    the requests that were refused or left unanswered; UNKNOWN if nothing got an answer."""
    return _Available()


# --- CP availability: a connected majority answers ---------------------------------------

#: How long a replica may take to start when nothing stops it (a fault in that time: see ``_learned``).
BOOT = 0.1
_INF = float("inf")


@dataclass(frozen=True)
class _Span:
    """A time a replica or a link was impaired: from ``start`` to ``end`` (the heal, the restart),
    and owed answers again from ``until`` (``end`` plus the time to recover)."""

    start: float
    end: float
    until: float
    what: str


def _calm_for(windows: list[Any], t: float, length: float) -> float:
    """The first moment at or after ``t`` from which no fault is in force for ``length`` seconds: a replica
    that starts empty can then ask every other one what it holds, and hear back."""
    spans = [(w.start, w.end if w.end is not None else _INF) for w in windows]
    moved = True
    while moved:
        moved = False
        for s, e in spans:
            if s < t + length and t < e:
                t, moved = e, True
    return t


def _learned(windows: list[Any], start: float, *, first: bool = False) -> float:
    """When a replica that started with an empty disk at ``start`` counts again: once every replica was
    reachable for RECOVERY seconds in a row (time to ask them all, retry, and hear back). At the first
    start, nothing in force in the first BOOT seconds is enough (the others then have nothing to tell)."""
    if first and _calm_for(windows, start, BOOT) == start:
        return start + BOOT
    return _calm_for(windows, start, RECOVERY) + RECOVERY


def _impairments(world: sandbox.World) -> tuple[dict[str, list[_Span]], dict[frozenset[str], list[_Span]]]:
    """Per replica and per link (a pair of nodes), when it was impaired (see ``majority_available``)."""
    chaos = world.chaos
    windows = list(chaos.windows) if chaos is not None else []
    nodes: dict[str, list[_Span]] = {r: [] for r in REPLICAS}
    links: dict[frozenset[str], list[_Span]] = {}
    everyone = list(REPLICAS) + list(world.clients)
    boot = _Span(0.0, 0.0, _learned(windows, 0.0, first=True), "starting with an empty disk")
    for replica in REPLICAS:
        nodes[replica].append(boot)
    for w in windows:
        end = w.end if w.end is not None else _INF
        action = w.fault.action
        if action in NODE_ACTIONS:
            if action == "disk-loss":
                span = _Span(w.start, end, _learned(windows, end), f"{w.label}, then recovering")
            else:
                span = _Span(w.start, end, end + RECOVERY, w.label)
            for node in w.nodes:
                if node in nodes:
                    nodes[node].append(span)
        elif w.fault.family == "NetworkChaos":
            span = _Span(w.start, end, end + RECOVERY, w.label)
            peers = [p for p in (w.peers or everyone) if p not in w.nodes]
            for node in w.nodes:
                for peer in peers:
                    links.setdefault(frozenset((node, peer)), []).append(span)
    return nodes, links


def _clear(spans: list[_Span], a: float, b: float) -> bool:
    return not any(s.start <= b and a < s.until for s in spans)


@dataclass(frozen=True)
class _MajorityAvailable:
    """See ``majority_available``."""

    primary: Any = "declared"
    name: str = "majority_available()"

    def _primary(self, world: sandbox.World) -> str | None:
        if self.primary != "declared":
            return self.primary
        service = world.services.get(SERVICE)
        return primary(service.factory) if service is not None else None

    def __call__(self, world: sandbox.World) -> Verdict:
        fixed = self._primary(world)
        nodes, links = _impairments(world)
        problems: list[tuple[str, Any]] = []
        owed = answered = 0
        for invoke, done in chain(_pairs(world, "read"), _pairs(world, "adjust")):
            if done is None:
                continue
            a, b = invoke.time, done.time
            replica = invoke.value["replica"]
            client = invoke.process.split("#")[0]
            if not _clear(links.get(frozenset((client, replica)), []), a, b):
                continue  # the client could not reach the replica: nobody could answer
            up = [r for r in REPLICAS if _clear(nodes[r], a, b)]
            if replica not in up:
                continue  # the replica was down, or had not recovered yet
            group = [r for r in up if r == replica or _clear(links.get(frozenset((r, replica)), []), a, b)]
            majority = _connected_majority(replica, group, links, a, b, fixed)
            if majority is None:
                continue  # no majority with this replica (and the primary) was reachable: refusing is allowed
            owed += 1
            status = done.value.get("status") if isinstance(done.value, dict) else None
            if status is not None and 200 <= status < 300:
                answered += 1
                continue
            what = f"no answer within {CLIENT_TIMEOUT:g} s" if status is None else f"answered {status}"
            others = " and ".join(r for r in majority if r != replica)
            pairs = [frozenset((x, y)) for x in majority for y in majority if x < y]
            spans = [*chain.from_iterable(nodes[r] for r in majority),
                     *chain.from_iterable(links.get(pair, []) for pair in pairs)]
            since = max((sp.end for sp in spans if sp.end <= a and sp.end > 0), default=0.0)
            problems.append((f"{invoke.f} of {invoke.value['sku']!r} at {replica} by {invoke.process} at "
                             f"t={a:.3f}: {what}, while {replica} and {others} (a majority) were up and connected to "
                             f"each other (since t={since:.3f})", done))
        if problems:
            summary = problems[0][0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            advice = "A CP service may refuse only where no majority is reachable."
            if fixed is None:
                advice += (" If one fixed replica orders every request (a primary that is never replaced), declare it "
                           "next to CAP_CHOICE, e.g. PRIMARY = \"inventory-0\": then only a majority that includes it "
                           "must answer.")
            return Verdict.failing(self.name, f"refused service: {summary}. {advice}",
                                   tuple(chain.from_iterable(problems[:6])))
        with_primary = f" with the primary {fixed}" if fixed else ""
        return Verdict.passing(self.name, f"{answered} of {answered} requests at a replica connected to a "
                                          f"majority{with_primary} answered 2xx")


def _connected_majority(replica: str, group: list[str], links: dict[frozenset[str], list[_Span]], a: float, b: float,
                        fixed: str | None) -> list[str] | None:
    """A majority of the replicas, ``replica`` (and ``fixed``, if any) among them, all in ``group`` (up and
    reachable from ``replica``) and connected pairwise during [a, b]; or None."""
    from itertools import combinations

    others = [r for r in group if r != replica]
    for size in range(MAJORITY - 1, len(others) + 1):
        for chosen in combinations(others, size):
            members = [replica, *chosen]
            if fixed is not None and fixed not in members:
                continue
            if all(_clear(links.get(frozenset((x, y)), []), a, b) for x, y in combinations(members, 2)):
                return sorted(members)
    return None


def majority_available(primary: str | None | Any = "declared") -> _MajorityAvailable:
    """CP: a replica refuses only where no majority is reachable. A read or adjustment at replica R gets
    a 2xx answer within the client's timeout whenever R and a majority of the replicas with it were up
    and connected to one another for the whole request: no fault in force on them or the links between
    them since RECOVERY seconds before it. A replica that starts with an empty disk (after a lost disk,
    or at the start of the run) may first learn from every other one: it counts once every replica was
    reachable for RECOVERY seconds in a row (at the start of the run, BOOT seconds with no fault are
    enough). With a fixed ``primary`` (by default the one the service declares, ``PRIMARY``; None: no
    fixed primary) the majority must include it.

    FAIL with the requests refused or left unanswered while such a majority was there (refusing
    everything keeps consistency and gives up the A with no partition at all); PASS if none was.

    Example::

        majority_available()(world)                      # the declared PRIMARY, if any
        majority_available(primary=None)(world)          # every connected majority must answer
    """
    if primary != "declared" and primary is not None and primary not in REPLICAS:
        raise sandbox.InvalidParameterError(f"primary={primary!r}: one of {', '.join(map(repr, REPLICAS))}, or None")
    return _MajorityAvailable(primary)


def invariants(choice: str = "CP", *, primary: str | None | Any = "declared") -> list:
    """What the declared ``choice`` promises: CP, linearizable, available where a majority is
    connected (``primary``: see ``majority_available``) and no lost writes; AP, available,
    counted once and converged.

    Raises:
        sandbox.InvalidParameterError: a choice other than "CP" or "AP".
    """
    if choice == "CP":
        return [linearizable(), majority_available(primary), no_lost_writes()]
    if choice == "AP":
        return [available(), counted_once(), converged()]
    raise sandbox.InvalidParameterError(f"choice={choice!r}: a CAP choice is 'CP' or 'AP'")


# --- works in staging ---------------------------------------------------------------------


def happy_path(create_app: AppFactory) -> None:
    """The test the assistant's code passes: one replica in staging, adjust and read through TestClient."""
    with TestClient(create_app()) as client:
        r = client.get("/stock/lamp")
        assert r.status_code == 200 and r.json() == {"sku": "lamp", "stock": 0}, r.text
        r = client.post("/stock/lamp/adjust", json={"delta": 10})
        assert r.status_code == 200 and r.json() == {"sku": "lamp", "stock": 10}, r.text
        r = client.post("/stock/lamp/adjust", json={"delta": -3})
        assert r.status_code == 200 and r.json()["stock"] == 7, r.text
        r = client.post("/stock/kettle/adjust", json={"delta": 2})
        assert r.status_code == 200 and r.json()["stock"] == 2, r.text
        assert client.get("/stock/lamp").json() == {"sku": "lamp", "stock": 7}
        assert client.get("/stock/kettle").json() == {"sku": "kettle", "stock": 2}
        assert client.post("/stock/lamp/adjust", json={"delta": "many"}).status_code == 422


# --- the checks ---------------------------------------------------------------------------


def check(
    create_app: AppFactory,
    bank: str = "visible",
    *,
    secret: str | None = None,
    choice: str | None = None,
    shrink: bool = True,
    workers: int | None = None,
    only: tuple[str, ...] = (),
) -> Result:
    """Run the lab's checks on ``create_app`` against its declared CAP choice (``choice``
    overrides it) and PRIMARY: the ``bank`` of seeds ("visible": VISIBLE seeds; "hidden": HIDDEN
    seeds, drawn from ``secret`` or the grading secret), each under its nemesis schedule
    (``schedules_for(choice)``), then each of the choice's ``adversarial`` schedules (paired with
    the bank's first seeds). Returns the first ``Counterexample`` (shrunk unless ``shrink=False``),
    or ``Passed`` over every run.

    Raises:
        sandbox.ConfigError: no valid ``CAP_CHOICE`` declared (see ``cap_choice``), or a bad ``PRIMARY``.
    """
    choice = cap_choice(create_app) if choice is None else choice
    size = VISIBLE if bank == "visible" else HIDDEN
    checks = invariants(choice, primary=primary(create_app))
    return check_bank(LAB, bank, size, scenario(create_app), checks, schedules_for(choice), adversarial(choice),
                      secret=secret, shrink=shrink, workers=workers, only=only)


_grade = grader(check, lab=LAB)

#: The graded parts, by the grade cell's nbgrader id: what each checks (a part of the declared choice's promise, see
#: ``PROMISES``). A grader that does not run the learner's notebook (``dojo grade``) reads the parts from here; a test
#: holds the notebook's grade cells to it.
PARTS: dict[str, str] = {"cap-during-partition": "during", "cap-after-heal": "after"}



def grade(create_app: AppFactory, *parts: str | Iterable[str], secret: str | None = None) -> None:
    """What a grade cell runs: ``grade(create_app, promise(create_app, "during"))`` checks the hidden
    bank for the invariants named (a name, or a tuple of names as ``promise`` returns; none: all),
    prints what was checked and returns nothing, or raises AssertionError with the counterexample
    (see ``autograder.labs.grader``)."""
    names = tuple(chain.from_iterable((part,) if isinstance(part, str) else tuple(part) for part in parts))
    _grade(create_app, *names, secret=secret)


#: What each declared choice promises, by graded part of the notebook: ``"during"`` a partition
#: (CP: every answer linearizable, and a replica connected to a majority answers; AP: every live
#: replica answers, and a merge counts each adjustment once) and ``"after"`` it, for every write
#: (CP: no acknowledged adjustment lost, not even with a disk; AP: every replica converges on their sum).
PROMISES = {
    "CP": {"during": ("linearizable", "majority_available"), "after": ("no_lost_writes",)},
    "AP": {"during": ("available", "counted_once"), "after": ("converged",)},
}


def promise(create_app: AppFactory, part: str) -> tuple[str, ...]:
    """The names of the invariants that ``create_app``'s declared choice promises for ``part``
    (``"during"`` or ``"after"``, see ``PROMISES``), so that a grade cell is one line:
    ``lab.grade(create_app, lab.promise(create_app, "during"))``.

    Raises:
        sandbox.ConfigError: no valid ``CAP_CHOICE`` declared. sandbox.InvalidParameterError: another part.
    """
    promises = PROMISES[cap_choice(create_app)]
    if part not in promises:
        raise sandbox.InvalidParameterError(f"part={part!r}: one of {sorted(promises)}")
    return promises[part]
