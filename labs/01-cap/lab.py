"""Lab 01, CAP: a replicated inventory that claims to be both consistent and available.

Three replicas of ``inventory`` (``inventory-0``, ``inventory-1``, ``inventory-2``) each keep
their own copy of the stock on their own disk (``sandbox.disk``). The API is two calls:

* ``GET /stock/{sku}`` -> ``{"sku": sku, "stock": n}``;
* ``POST /stock/{sku}/adjust`` with ``{"delta": d}`` -> ``{"sku": sku, "stock": n}``, the
  stock after the adjustment (``d`` may be negative).

When the network between the replicas splits, a replica can no longer both answer and
agree with the others: the learner **declares** which promise the service keeps, with a
module-level constant next to ``create_app``::

    CAP_CHOICE = "CP"   # or "AP"

and the grader checks the behaviour against the declaration (``cap_choice``):

* ``"CP"``: ``linearizable()``: every read and adjustment the clients saw fits one
  sequential order of a single counter per sku (``CounterModel``, checked with
  ``sandbox.checkers.check_linearizability``; UNKNOWN is not a pass), and
  ``no_lost_writes()``: after the quiet phase every replica reads the sum of the
  acknowledged adjustments (plus some of those whose outcome the client never learned).
  Refusing a request (503) is allowed: it is the price of consistency.
* ``"AP"``: ``available()``: every request that reached a live replica got a 2xx answer
  within the client's timeout, on the minority side of a partition too; and
  ``converged()``: after the quiet phase every replica returns the same stock for every
  sku, and it is the sum of the acknowledged adjustments (plus some of the unknown ones).

Workload clients (``client-0``...) send reads and adjustments, each to one replica chosen
at random **by node name** (``http://inventory-1/...``), so a partition between replicas
leaves clients on both sides. After every fault has healed and a quiet phase has passed,
the ``auditor`` reads every sku from every replica.

Everything a notebook and the grader need is here, and is not edited:

* ``build_world(seed, create_app, **workload)``, ``scenario(create_app)``;
* ``schedules(seed)`` (the nemesis: replica partitions, loss, delay, kills) and ``ADVERSARIAL``;
* ``invariants(choice)``: the checks for a declared choice;
* ``happy_path(create_app)``: the "works in staging" test (one replica, FastAPI's TestClient);
* ``check(create_app, bank)``: the self-checks (``"visible"``) and the grading (``"hidden"``).
* ``promise(create_app, part)``: the invariant the declared choice promises ``"during"`` a
  partition or ``"after"`` it (``PROMISES``), for one-line grade cells.

Example::

    generated = lab.load("generated")
    lab.happy_path(generated.create_app)        # passes
    print(lab.check(generated.create_app))      # Counterexample: a stale read (declared CP)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from types import ModuleType
from typing import Any

import sandbox
from autograder.labs import (
    TestClient,
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
    Isolate,
    Kill,
    LinkFault,
    Loss,
    Partition,
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
SKUS = ("lamp", "kettle")
CHOICES = ("CP", "AP")

#: How long a client waits for an answer (seconds); a timeout is an unknown outcome.
CLIENT_TIMEOUT = 0.5
#: Clients come in during the first ARRIVAL seconds and think THINK seconds (on average) between requests.
ARRIVAL = 0.2
THINK = 0.1
#: The share of requests that are reads.
READS = 0.5
#: The nemesis draws its faults in the first FAULT_WINDOW seconds, each lasting up to 1.2 s.
FAULT_WINDOW = 2.0
#: The auditor reads every replica this long after the last fault healed (and not before AUDIT_AT).
QUIET = 1.5
AUDIT_AT = 3.5
#: The auditor's attempts per replica and sku.
AUDIT_ATTEMPTS = 5
SETTLE = 0.2
LIMIT = 30.0
#: Wall-clock seconds the linearizability search may take per run before it answers UNKNOWN.
TIME_LIMIT = 10.0
#: A request sent within this many seconds of a replica's crash or restart may go unanswered.
RESTART_GRACE = 0.1

Result = Counterexample | Passed
AppFactory = Callable[[], Any]


# --- loading the lab's modules ----------------------------------------------------------


def load(name: str) -> ModuleType:
    """The module ``name`` of this lab (``"generated"``, a solution, ``"mutants/NAME"``), a fresh copy
    per replica in a world (see ``autograder.labs.load_module``)."""
    return load_module(HERE, name, "chaos_dojo_labs.lab01")


def mutants() -> list[str]:
    """The names of the partial fixes in ``mutants/``, sorted (``"mutants/NAME"``)."""
    return mutant_names(HERE)


def cap_choice(create_app: AppFactory) -> str:
    """The CAP choice the code declares: ``CAP_CHOICE`` of the module defining ``create_app``.

    Example: ``cap_choice(load("generated").create_app) == "CP"``.

    Raises:
        sandbox.ConfigError: the module has no ``CAP_CHOICE``, or it is neither "CP" nor "AP".
    """
    module = sys.modules.get(getattr(create_app, "__module__", "") or "")
    choice = getattr(module, "CAP_CHOICE", None)
    if choice not in CHOICES:
        where = getattr(module, "__name__", repr(module))
        raise sandbox.ConfigError(
            f"CAP_CHOICE={choice!r} in {where}: declare what the service keeps when the network splits, "
            f'with a module-level constant next to create_app: CAP_CHOICE = "CP" (consistent: refuse '
            f'on the minority side) or CAP_CHOICE = "AP" (available: answer everywhere, converge later)'
        )
    return choice


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


async def adjust(client: sandbox.Client, sku: str, delta: int, replica: str) -> None:
    """Adjust ``sku`` by ``delta`` at ``replica``, recorded as an ``adjust`` operation.

    A 2xx answer is ``ok`` (the stock after it, as the replica says); anything else is
    ``info``: a refusal may come after some replica applied it, a timeout says nothing.
    """
    async with client.operation("adjust", {"sku": sku, "delta": delta, "replica": replica}) as op:
        status, body = await _request(client, "POST", f"http://{replica}/stock/{sku}/adjust", {"delta": delta})
        stock = _stock(body)
        answer = {"sku": sku, "delta": delta, "replica": replica, "status": status}
        if status is not None and 200 <= status < 300:
            op.ok({**answer, "stock": stock})
        else:
            op.info(answer, "no answer within the timeout" if status is None else f"answered {status}: {body!r}")


async def shopper(client: sandbox.Client, requests: int) -> None:
    """A client sending ``requests`` reads and adjustments, each to a replica drawn at random."""
    await client.sleep(client.random.uniform(0.0, ARRIVAL))
    for _ in range(requests):
        sku = client.random.choice(SKUS)
        replica = client.random.choice(REPLICAS)
        if client.random.random() < READS:
            await read(client, sku, replica)
        else:
            delta = client.random.choice((-3, -2, -1, 1, 2, 3, 4, 5))
            await adjust(client, sku, delta, replica)
        await client.sleep(client.random.expovariate(1.0 / THINK))


def _auditor(world: sandbox.World) -> Callable[[sandbox.Client], Any]:
    async def auditor(client: sandbox.Client) -> None:
        """After every fault healed and QUIET seconds more, read every sku at every replica."""
        chaos = world.chaos
        heal_at = chaos.heal_at if chaos is not None else 0.0
        await client.sleep(max(AUDIT_AT, heal_at + QUIET) - client.now)
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
    for i in range(clients):
        world.add_client(f"client-{i}", shopper, requests)
    world.add_client("auditor", _auditor(world))
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
KINDS = ("isolate", "halves", "loss", "delay", "kill")


def _between_replicas(fault: Any) -> Any:
    """The fault on the links between replicas only: clients always reach every live replica."""
    if isinstance(fault, Isolate):
        (node,) = fault.target
        return Partition(node, [r for r in REPLICAS if r != node], start=fault.start, duration=fault.duration)
    if isinstance(fault, LinkFault) and fault.peer is None:
        (node,) = fault.target
        return fault.replace(peer=[r for r in REPLICAS if r != node])
    return fault


def schedules(seed: int) -> Schedule:
    """The lab's nemesis: three faults drawn from ``seed`` in the first two seconds, among one
    replica cut off from the others, the replicas split in two, message loss and delay between
    replicas, and a killed replica. Clients always reach every live replica: a partition
    leaves clients on both sides of it."""
    drawn = nemesis(seed, TARGETS, kinds=KINDS, count=3, within=FAULT_WINDOW, duration=(0.4, 1.2))
    return Schedule([_between_replicas(f) for f in drawn])


def _others(node: str) -> list[str]:
    return [r for r in REPLICAS if r != node]


#: The pattern's known failure modes, each hit on purpose.
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


def _as_counter_ops(world: sandbox.World) -> list[dict[str, Any]]:
    """The clients' history with each value as ``[sku, payload]``, for ``CounterModel``."""
    ops = []
    for op in world.history:
        if op.f not in CounterModel.fs:
            continue
        value = op.value if isinstance(op.value, dict) else {}
        if op.type == "invoke":
            payload = value.get("delta") if op.f == "adjust" else None
        else:
            payload = value.get("stock")
        ops.append({"index": op.index, "time": op.time, "process": op.process, "type": op.type, "f": op.f,
                    "value": [value.get("sku"), payload], "error": op.error})
    return ops


def _pairs(world: sandbox.World, f: str) -> list[tuple[Any, Any]]:
    return [(i, d) for i, d in world.history.pairs() if i.f == f]


def _possible_totals(world: sandbox.World) -> dict[str, tuple[int, set[int], int]]:
    """Per sku: (sum of acknowledged deltas, every sum some of the unknown ones can add, how many unknown)."""
    out: dict[str, tuple[int, set[int], int]] = {sku: (0, {0}, 0) for sku in SKUS}
    for invoke, done in _pairs(world, "adjust"):
        sku, delta = invoke.value["sku"], invoke.value["delta"]
        acked, extra, unknown = out[sku]
        if done is not None and done.type == "ok":
            out[sku] = (acked + delta, extra, unknown)
        elif done is None or done.type == "info":
            out[sku] = (acked, extra | {e + delta for e in extra}, unknown + 1)
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
    of a counter per sku, each taking effect between its request and its answer.

    FAIL with the operations no order explains (a stale read, an adjustment that answered a
    stock no order gives); UNKNOWN if the search ran out of ``time_limit`` wall-clock seconds
    or nothing got an answer: neither counts as a pass.
    """
    return _Linearizable(time_limit)


def _lost(world: sandbox.World, name: str, *, same_everywhere: bool) -> Verdict:
    totals = _possible_totals(world)
    audit = _audit(world)
    problems: list[tuple[str, Any]] = []
    checked = 0
    for sku in SKUS:
        acked, extra, unknown = totals[sku]
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
                verdict = "acknowledged writes were lost" if value < allowed[0] else "adjustments were counted twice"
                problems.append((f"{replica} says the stock of {sku!r} is {value}, but {why}: {verdict}", op))
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
    adjustments (plus some of those whose outcome is unknown). FAIL with the audit read that
    says otherwise; UNKNOWN if the auditor could not read every replica."""
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
    UNKNOWN if the auditor could not read every replica."""
    return _Converged()


def _excused(world: sandbox.World) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Per (client, replica), the windows in which no answer could come: the replica dead or
    restarting (widened by RESTART_GRACE), or the link between them cut, lossy or slowed."""
    excused: dict[tuple[str, str], list[tuple[float, float]]] = {}
    chaos = world.chaos
    clients = list(world.clients)
    for window in chaos.windows if chaos is not None else ():
        end = window.end if window.end is not None else float("inf")
        hit = set(window.nodes)
        if window.fault.action == "kill":
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
    within the client's timeout, on both sides of every partition between replicas. FAIL with the requests that were refused or
    left unanswered; UNKNOWN if nothing got an answer."""
    return _Available()


def invariants(choice: str = "CP") -> list:
    """What the declared ``choice`` promises: CP, linearizable and no lost writes; AP, available and converged.

    Raises:
        sandbox.InvalidParameterError: a choice other than "CP" or "AP".
    """
    if choice == "CP":
        return [linearizable(), no_lost_writes()]
    if choice == "AP":
        return [available(), converged()]
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
    overrides it): the ``bank`` of seeds ("visible": VISIBLE seeds; "hidden": HIDDEN seeds,
    drawn from ``secret`` or the grading secret), each under its nemesis schedule, then each
    ADVERSARIAL schedule (paired with the bank's first seeds). Returns the first
    ``Counterexample`` (shrunk unless ``shrink=False``), or ``Passed`` over every run.

    Raises:
        sandbox.ConfigError: no valid ``CAP_CHOICE`` declared (see ``cap_choice``).
    """
    choice = cap_choice(create_app) if choice is None else choice
    size = VISIBLE if bank == "visible" else HIDDEN
    return check_bank(LAB, bank, size, scenario(create_app), invariants(choice), schedules, ADVERSARIAL,
                      secret=secret, shrink=shrink, workers=workers, only=only)


#: What a grade cell runs: ``grade(create_app, *invariant_names)`` on the hidden bank (see ``autograder.labs.grader``).
grade = grader(check)


#: What each declared choice promises, by graded part of the notebook: ``"during"`` a partition
#: (CP: every answer linearizable, refusals allowed; AP: every live replica answers) and ``"after"``
#: it, for every write (CP: no acknowledged adjustment lost; AP: every replica converges on their sum).
PROMISES = {
    "CP": {"during": "linearizable", "after": "no_lost_writes"},
    "AP": {"during": "available", "after": "converged"},
}


def promise(create_app: AppFactory, part: str) -> str:
    """The name of the invariant that ``create_app``'s declared choice promises for ``part``
    (``"during"`` or ``"after"``, see ``PROMISES``), so that a grade cell is one line:
    ``lab.grade(create_app, lab.promise(create_app, "during"))``.

    Raises:
        sandbox.ConfigError: no valid ``CAP_CHOICE`` declared. sandbox.InvalidParameterError: another part.
    """
    promises = PROMISES[cap_choice(create_app)]
    if part not in promises:
        raise sandbox.InvalidParameterError(f"part={part!r}: one of {sorted(promises)}")
    return promises[part]
