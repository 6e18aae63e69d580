"""Lab 02, idempotency: the payments service that charges twice, and the proof that the fix holds.

A checkout page pays for orders with ``POST /payments``, sending an ``Idempotency-Key``
header (a new UUID per payment, the same on every retry of it) and retrying when the
call times out; a billing job asks the billing service to publish ``payment-requested``
events (retrying when billing answers late, so one request may be published twice), which
the payments service's Kafka consumer turns into charges. The service under test is the
learner's ``create_app`` (two replicas); everything else is here and is not edited:

* ``build_world(seed, create_app, **workload)``: the datacenter, not yet run;
* ``scenario(create_app)``: it as a ``sandbox.explore.Scenario``;
* ``schedules(seed)`` and ``ADVERSARIAL``: the lab's nemesis and hand-written schedules;
* ``invariants()``: what must hold: no double charge, every event charged exactly once,
  and the HTTP semantics of the IETF draft (``idempotency_semantics()``);
* ``happy_path(create_app)``: the "works in staging" test (FastAPI's TestClient);
* ``check(create_app, bank)``: the self-checks (``"visible"``) and the grading (``"hidden"``).
* ``production(create_app)``: the notebook's "Production" run (a retry after a timeout);
* ``mutants()`` and ``alternatives()``: the partial fixes that must fail, the correct fixes
  written unlike the reference that must pass.

Example::

    lab = load_lab()                      # or: import this file from the notebook
    generated = lab.load("generated")
    lab.happy_path(generated.create_app)  # passes
    print(lab.check(generated.create_app))   # Counterexample: a payment charged twice
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel

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
from sandbox.checkers import Verdict, exactly_once, no_double_charge
from sandbox.explore import Counterexample, Passed, Scenario
from sandbox.faults import (
    Delay,
    Duplicate,
    Fault,
    Kill,
    Loss,
    Redelivery,
    Schedule,
    StorageTimeout,
    Targets,
    nemesis,
)

LAB = "02-idempotency"
VISIBLE = 5
HIDDEN = 30
HERE = Path(__file__).resolve().parent

SERVICE = "payments"
DB = "payments-db"
TOPIC = "payment-requested"
GROUP = "payments"
CHARGES = "charges"
URL = "http://payments/payments"

#: How long the checkout page waits for an answer before it retries (seconds).
CLIENT_TIMEOUT = 0.2
#: How many times it sends one payment before it gives up (timeouts, 409 and 5xx answers are retried).
MAX_ATTEMPTS = 14
#: Shoppers come in during the first ARRIVAL seconds and think THINK seconds (on average) between payments.
ARRIVAL = 0.4
THINK = 0.15
#: When its shopping is done, a shopper's app resends each payment, with its key, this long afterwards (seconds):
#: longer than a replica waits for a lost database reply (5 s), so the key must outlive whatever failed then.
RESEND_AFTER = 6.0
#: How long the billing job waits for billing's answer before it asks again (seconds), and how many times it asks.
BILLING_TIMEOUT = 0.25
BILLING_ATTEMPTS = 6
#: The nemesis draws its faults in the first FAULT_WINDOW seconds, while the clients work.
FAULT_WINDOW = 2.0
SETTLE = 8.0
#: The database aborts a transaction idle this long (seconds): its client died or lost the connection.
IDLE_TIMEOUT = 2.0
LIMIT = 60.0

Result = Counterexample | Passed
AppFactory = Callable[[], Any]


# --- loading the lab's modules (folder names have dashes, so they are loaded by path) -------


def load(name: str) -> ModuleType:
    """The module ``name`` of this lab (``"generated"``, a solution, ``"mutants/NAME"``), a fresh copy
    per replica in a world (see ``autograder.labs.load_module``)."""
    return load_module(HERE, name, "chaos_dojo_labs.lab02")


def mutants() -> list[str]:
    """The names of the partial fixes in ``mutants/``, sorted (``"mutants/NAME"``)."""
    return mutant_names(HERE)


def alternatives() -> list[str]:
    """The names of the correct fixes in ``alternatives/`` (unlike the reference in shape), sorted
    (``"alternatives/NAME"``)."""
    return alternative_names(HERE)


# --- what surrounds the service: the billing job that publishes payment-requested events ----


class Renewal(BaseModel):
    """A subscription renewal to charge: published as one ``payment-requested`` event."""

    payment_id: str
    order_id: str
    amount: int
    card: str


def create_billing_app() -> FastAPI:
    """The billing service (not the learner's): ``POST /renewals`` publishes a payment request.

    It publishes every request it receives: asked twice for one renewal (the billing job retried
    after a late or lost answer, or the network duplicated the request), it publishes it twice, at
    two offsets, with the same ``payment_id``. Kafka's idempotent producer only deduplicates the
    producer's own retries, never the application's: the consumer must deduplicate by payment id.
    """
    app = FastAPI(title="billing")

    @app.post("/renewals", status_code=202)
    async def renew(r: Renewal, producer: sandbox.Producer = Depends(sandbox.producer)) -> dict:
        await producer.send(TOPIC, r.model_dump(), key=r.payment_id, headers={"payment-id": r.payment_id})
        return {"queued": r.payment_id}

    return app


# --- the workload ------------------------------------------------------------------------


def _key(client: sandbox.Client) -> str:
    """A new idempotency key: a UUID from the client's seeded stream."""
    import uuid

    return str(uuid.UUID(int=client.random.getrandbits(128), version=4))


def _card(client: sandbox.Client) -> str:
    return "4242 4242 4242 " + f"{client.random.randrange(10_000):04d}"


def _answer(r: sandbox.Response) -> dict:
    try:
        body = r.json()
    except ValueError:
        body = r.text[:200]
    return {"status": r.status_code, "body": body}


async def _send(client: sandbox.Client, body: dict, key: str | None) -> dict:
    """One attempt: the answer, or ``{"status": None}`` if none came within the timeout."""
    headers = {"Idempotency-Key": key} if key is not None else {}
    try:
        r = await client.http.post(URL, json=body, headers=headers, timeout=CLIENT_TIMEOUT)
    except sandbox.RequestTimeout:
        return {"status": None}
    return _answer(r)


def _final(answer: dict) -> bool:
    """An answer the client stops at: anything but a timeout, a 409 (in flight) or a 5xx."""
    status = answer["status"]
    return status is not None and status != 409 and status < 500


async def _until_answered(client: sandbox.Client, body: dict, key: str | None, answers: list[dict]) -> dict | None:
    """Send (the same key, the same body) until a final answer or MAX_ATTEMPTS, with backoff."""
    for attempt in range(MAX_ATTEMPTS - len(answers)):
        answer = await _send(client, body, key)
        answers.append(answer)
        if _final(answer):
            return answer
        await client.sleep(min(0.05 * 2**attempt, 0.4) * client.random.uniform(0.5, 1.0))
    return None


async def _record(op: sandbox.Operation, key: str | None, answers: list[dict], final: dict | None) -> None:
    value = {"key": key, "answers": answers}
    if final is None:
        op.info(value, "no final answer")
    elif 200 <= final["status"] < 300:
        op.ok(value)
    else:
        op.fail(value)


async def shopper(client: sandbox.Client, index: int, payments: int) -> None:
    """One shopper paying for ``payments`` orders, one after the other.

    Each payment is a ``pay`` operation: one key, retried (same key, same body) until it
    gets an answer. Besides, for every three orders the shopper:

    * after the first, pays again **with the same key and another amount or another card**
      (``pay-changed``: the IETF draft says 422);
    * on the second, **double-clicks**: two requests with one key at once, then retries
      until answered (``pay-twice``: the second gets 409 while the first is in flight, or
      the first one's stored response);
    * before the third, sends a payment **without a key** (``pay-without-key``: 400).

    When done, the shopper's app comes back RESEND_AFTER seconds later (a phone back online,
    an app restarted without its local state) and resends every payment it made, each with
    its key and body (``pay-again``): the key's stored response, and no new charge.
    """
    card = _card(client)
    sent: list[tuple[str, dict]] = []  # (key, body) of each payment made with a key, for the resend
    await client.sleep(client.random.uniform(0.0, ARRIVAL))
    for j in range(payments):
        body = {"order_id": f"ord-{index}-{j}", "amount": 100 * client.random.randint(5, 90), "card": card}
        if j % 3 == 2:
            loose = {**body, "order_id": f"ord-{index}-{j}-nokey"}
            async with client.operation("pay-without-key", loose) as op:
                answers: list[dict] = []
                await _record(op, None, answers, await _until_answered(client, loose, None, answers))
        key = _key(client)
        sent.append((key, body))
        if j % 3 == 1:
            async with client.operation("pay-twice", {"key": key, **body}) as op:
                first, second = await sandbox.gather(_send(client, body, key), _send(client, body, key))
                answers = [first, second]
                final = first if _final(first) else second if _final(second) else None
                if final is None:
                    final = await _until_answered(client, body, key, answers)
                await _record(op, key, answers, final)
        else:
            async with client.operation("pay", {"key": key, **body}) as op:
                answers = []
                final = await _until_answered(client, body, key, answers)
                await _record(op, key, answers, final)
            if j % 3 == 0 and final is not None and final["status"] == 201:
                if (index + j // 3) % 2 == 0:  # shoppers 0, 2... change the amount; 1, 3... the card
                    changed = {**body, "amount": body["amount"] + 100}
                else:
                    changed = {**body, "card": card[:-4] + f"{(int(card[-4:]) + 1) % 10_000:04d}"}
                async with client.operation("pay-changed", {"key": key, **changed}) as op:
                    answers = []
                    await _record(op, key, answers, await _until_answered(client, changed, key, answers))
        await client.sleep(client.random.expovariate(1.0 / THINK))
    await client.sleep(RESEND_AFTER * client.random.uniform(1.0, 1.2))
    for key, body in sent:
        async with client.operation("pay-again", {"key": key, **body}) as op:
            answers = []
            await _record(op, key, answers, await _until_answered(client, body, key, answers))


async def billing_job(client: sandbox.Client, renewals: int) -> None:
    """The nightly billing job: asks billing to publish ``renewals`` payment requests, one every ~0.1 s.

    Each request waits BILLING_TIMEOUT seconds for billing's 202 and is sent again (the same
    renewal, the same ``payment_id``) after a timeout or a 5xx, up to BILLING_ATTEMPTS times: a
    late or lost answer makes billing publish the same payment request twice.
    """
    card = _card(client)
    for i in range(renewals):
        renewal = {"payment_id": f"pr-{_key(client)[:8]}-{i}", "order_id": f"sub-{i}",
                   "amount": 100 * client.random.randint(5, 30), "card": card}
        async with client.operation("request-payment", renewal) as op:
            answers: list[dict] = []
            for attempt in range(BILLING_ATTEMPTS):
                try:
                    r = await client.http.post("http://billing/renewals", json=renewal, timeout=BILLING_TIMEOUT)
                except sandbox.RequestTimeout:
                    answers.append({"status": None})
                else:
                    answers.append(_answer(r))
                    if r.status_code < 500:
                        break
                await client.sleep(0.05 * 2**attempt * client.random.uniform(0.5, 1.0))
            last = answers[-1]["status"]
            if last == 202:
                op.ok({**renewal, "answers": answers})
            elif last is not None and last < 500:
                op.fail({**renewal, "answers": answers})
            else:
                op.info({**renewal, "answers": answers}, "no answer from billing")
        await client.sleep(client.random.uniform(0.05, 0.15))


# --- the world ----------------------------------------------------------------------------


def build_world(
    seed: int, create_app: AppFactory, *, shoppers: int = 4, payments: int = 3, renewals: int = 6
) -> sandbox.World:
    """The datacenter for ``seed``: the learner's payments service (2 replicas) and payments-db,
    the broker with topic ``payment-requested``, the billing service, ``shoppers`` shoppers
    (``shopper-0``...) paying ``payments`` orders each, and the ``billing-job`` client
    publishing ``renewals`` payment requests. Built, not run.

    Raises:
        sandbox.BadSeedError: a bad seed. sandbox.InvalidParameterError: a workload size below 1.
    """
    for name, value in (("shoppers", shoppers), ("payments", payments), ("renewals", renewals)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise sandbox.InvalidParameterError(f"{name}={value!r}: use a whole number >= 1")
    world = sandbox.World(seed=seed)
    world.add_database(DB, idle_timeout=IDLE_TIMEOUT)
    world.broker.create_topic(TOPIC, partitions=3)
    world.add_service(SERVICE, create_app, replicas=2)
    world.add_service("billing", create_billing_app, isolate_module=False)
    for i in range(shoppers):
        world.add_client(f"shopper-{i}", shopper, i, payments)
    world.add_client("billing-job", billing_job, renewals, start=0.1)
    return world


def scenario(create_app: AppFactory, **workload: int) -> Scenario:
    """The lab as a scenario to explore: four shoppers paying three orders each, six events."""
    create_app = service_factory(create_app)

    def build(seed: int, shoppers: int = 4, payments: int = 3, renewals: int = 6) -> sandbox.World:
        return build_world(seed, create_app, shoppers=shoppers, payments=payments, renewals=renewals)

    sizes = {"shoppers": 4, "payments": 3, "renewals": 6, **workload}
    return Scenario(LAB, build, sizes, settle=SETTLE, limit=LIMIT)


# --- faults ------------------------------------------------------------------------------

#: What the nemesis may break: the payments replicas and their database (never the clients:
#: a restarted client would start its workload again with new keys), and the consumer group.
TARGETS = Targets([SERVICE, DB], databases=[DB], groups=[GROUP])
KINDS = ("delay", "loss", "duplicate", "kill", "timeout", "rebalance", "redelivery")
#: What may go wrong between the billing job, billing and Kafka (one fault per schedule).
BILLING_KINDS = ("delay", "loss", "duplicate")


def billing_fault(seed: int) -> Fault:
    """One fault on the billing service's links drawn from ``seed``, while the billing job works:
    late answers (a delay), lost requests, answers and acknowledgements (a loss), or duplicated
    requests. Each makes the billing job ask again, or billing receive one request twice: billing
    publishes the same payment request twice, at two offsets."""
    import random

    rng = random.Random(f"{LAB}/billing/{seed}")  # a str seed: the same draw in every process
    kind = rng.choice(BILLING_KINDS)
    when = {"start": round(rng.uniform(0.0, 0.6), 3), "duration": round(rng.uniform(0.3, 1.0), 3)}
    direction = rng.choice(("both", "to", "from"))
    if kind == "delay":
        return Delay("billing", latency=round(rng.uniform(0.1, 0.5), 3), direction=direction, **when)
    if kind == "loss":
        return Loss("billing", probability=round(rng.uniform(0.2, 0.6), 2), direction=direction, **when)
    probability = round(rng.uniform(0.3, 0.8), 2)
    return Duplicate("billing", peer="billing-job", direction="from", probability=probability, **when)


def schedules(seed: int) -> Schedule:
    """The lab's nemesis: three faults drawn from ``seed`` among delays, losses and duplicates
    on the links of payments and payments-db, a killed payments replica, lost database replies
    (the statement took effect, its answer never came), and consumer-group rebalances and lost
    commits, in the first two seconds; and one fault on billing's links (``billing_fault``)."""
    drawn = nemesis(seed, TARGETS, kinds=KINDS, count=3, within=FAULT_WINDOW, duration=(0.3, 1.2))
    return Schedule(sorted([*drawn, billing_fault(seed)], key=lambda f: f.start))


#: The pattern's known failure modes, each hit on purpose.
ADVERSARIAL: list[Schedule] = [
    # 1. Every answer to shopper-0 arrives after its timeout: it retries, with the same key.
    Schedule([Delay(SERVICE, peer="shopper-0", direction="to", latency=0.3, start=0.0, duration=1.5)]),
    # 2. Every commit of the consumer group is lost for a while: every event comes again.
    Schedule([Redelivery(GROUP, probability=1.0, start=0.0, duration=1.5)]),
    # 3. One payments replica dies just as the first charges go through: what it kept in memory is gone.
    Schedule([Kill(SERVICE, start=0.3, restart_after=0.3), Kill(SERVICE, start=1.0, restart_after=0.3)]),
    # 4. The load balancer sends every request of shopper-0 twice.
    Schedule([Duplicate(SERVICE, peer="shopper-0", direction="from", probability=1.0, start=0.0, duration=1.5)]),
    # 5. Billing's answers reach the billing job after its timeout: it asks again, and billing publishes the same
    #    payment request again (at another offset, with the same payment id).
    Schedule([Delay("billing", peer="billing-job", direction="to", latency=0.3, start=0.0, duration=1.0)]),
    # 6. payments-db loses one answer in three (the statement took effect: a claim, a charge, a commit): the
    #    replica waits for it, times out, and must not conclude that nothing happened.
    Schedule([StorageTimeout(DB, probability=0.35, start=0.0, duration=1.5)]),
    # 7. One replica's link to payments-db is slow (a noisy neighbour): each of its statements takes 0.3 s, the other
    #    replica's a millisecond. A request there is overtaken by its own retry on the quick replica, which claims,
    #    charges and records the key while the slow one is between reading the key and writing it.
    Schedule([Delay(f"{SERVICE}-1", peer=DB, latency=0.15, start=0.0, duration=4.0)]),
    # 8. payments-db's answers to one replica take 0.8 s (its statements arrive at once, so it claims first). A request
    #    there outlives its lease: a retry on the quick replica takes the claim over and charges; the slow holder
    #    must find out before it records a second charge.
    Schedule([Delay(f"{SERVICE}-1", peer=DB, direction="from", latency=0.8, start=0.0, duration=4.0)]),
]


# --- the invariants ---------------------------------------------------------------------

_EXPECTED = {
    "pay": (201, 409), "pay-twice": (201, 409), "pay-again": (201, 409), "pay-changed": (422,), "pay-without-key": (400,),
}


@dataclass(frozen=True)
class _IdempotencySemantics:
    """See ``idempotency_semantics``."""

    name: str = "idempotency_semantics()"

    def __call__(self, world: sandbox.World) -> Verdict:
        problems: list[tuple[str, Any]] = []
        successes: dict[str, tuple[dict, Any]] = {}  # key -> first 2xx answer seen, and its operation
        last: dict[str, tuple[Any, Any]] = {}  # key -> the shopper's last payment with it (invoke, completion)
        checked = 0
        for invoke, done in world.history.pairs():
            expected = _EXPECTED.get(invoke.f)
            if expected is None or done is None or not isinstance(done.value, dict):
                continue
            key = done.value.get("key")
            for answer in done.value.get("answers", ()):
                status = answer["status"]
                if status is None or status >= 500:
                    continue  # no answer, or the server failed: the client retries
                checked += 1
                if status not in expected:
                    want = " or ".join(map(str, expected))
                    problems.append((f"{invoke.f} (key {key}) got {status}, expected {want}: {answer.get('body')!r}", invoke))
                elif 200 <= status < 300:
                    first = successes.setdefault(key, (answer, invoke))[0]
                    if first != answer:
                        problems.append((
                            f"key {key} got two different successful responses: {first['body']!r} and then "
                            f"{answer['body']!r}", invoke,
                        ))
            if invoke.f in ("pay", "pay-twice", "pay-again") and key is not None:
                last[key] = (invoke, done)
        for key, (invoke, done) in last.items():
            # A shopper may give up while a payment is legitimately in flight (its holder died and the lease has not
            # run out yet); but the last payment with a key comes seconds after every fault healed (the app's resend):
            # if it still hears "in flight" until it gives up, nothing will ever finish that payment.
            heard = [a["status"] for a in done.value.get("answers", ()) if a["status"] is not None]
            if done.type == "info" and heard and heard[-1] == 409:
                problems.append((
                    f"{invoke.f} (key {key}), the shopper's last request with that key, gave up after "
                    f"{len(done.value['answers'])} attempts, still answered 409 (in flight) at t={done.time:.4f}, long "
                    f"after its first request began and every fault healed: a key whose first request died (a crashed "
                    f"replica, a lost database reply) must be taken over after a while (a lease), or that payment can "
                    f"never complete", invoke,
                ))
        if problems:
            summary = problems[0][0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            evidence: list[Any] = []
            for text, op in problems[:6]:
                evidence += [text, op]
            return Verdict.failing(self.name, summary, tuple(evidence))
        if not checked:
            return Verdict.unknown(self.name, "no payment request got an answer: nothing to check")
        return Verdict.passing(self.name, f"{checked} answers checked: each as the IETF draft says")


def idempotency_semantics() -> _IdempotencySemantics:
    """The HTTP semantics of the Idempotency-Key draft, read from the clients' history.

    For each answer a shopper got (timeouts and 5xx aside): a payment with a key gets 201
    or, while the first request with that key is in flight, 409; a key reused with another
    payload gets 422; a payment without a key gets 400; and one key never gets two different
    successful responses (a retry, or the app's resend seconds later, gets the stored one: same
    status, same body); and no payment is left "in flight" for ever: a shopper whose last request
    with a key (the resend, long after every fault healed) gave up still hearing 409 found a key
    whose first request died and was never taken over. FAIL with the operations that saw
    otherwise; UNKNOWN if no request got an answer.
    """
    return _IdempotencySemantics()


def invariants() -> list:
    """Each event charged exactly once; no order charged twice; the draft's HTTP semantics."""
    return [
        exactly_once(DB, CHARGES, "order_id", topic=TOPIC, message_id="order_id", group=GROUP),
        no_double_charge(DB, CHARGES, "order_id"),
        idempotency_semantics(),
    ]


# --- works in staging ---------------------------------------------------------------------


def happy_path(create_app: AppFactory) -> None:
    """The test the assistant's code passes: two payments and a look-up, through FastAPI's TestClient."""
    with TestClient(create_app()) as client:
        body = {"order_id": "ord-1", "amount": 2500, "card": "4242 4242 4242 4242"}
        r = client.post("/payments", json=body, headers={"Idempotency-Key": "6f1c0c57-8a5e-4c1e-9a55-0d0b1f3e7a10"})
        assert r.status_code == 201, r.text
        payment = r.json()
        assert payment["order_id"] == "ord-1" and payment["amount"] == 2500 and payment["card_last4"] == "4242"
        assert payment["status"] == "succeeded"
        r = client.get(f"/payments/{payment['id']}")
        assert r.status_code == 200 and r.json() == payment
        other = {"order_id": "ord-2", "amount": 900, "card": "4000 0000 0000 0077"}
        r = client.post("/payments", json=other, headers={"Idempotency-Key": "a4b2d1f0-3c2e-4f0a-8d7b-2e9f6c5a1b44"})
        assert r.status_code == 201 and r.json()["id"] != payment["id"], r.text


# --- the checks ---------------------------------------------------------------------------


def check(
    create_app: AppFactory,
    bank: str = "visible",
    *,
    secret: str | None = None,
    shrink: bool = True,
    workers: int | None = None,
    only: tuple[str, ...] = (),
) -> Result:
    """Run the lab's checks on ``create_app``: the ``bank`` of seeds ("visible": VISIBLE seeds,
    the self-checks; "hidden": HIDDEN seeds, grading, drawn from ``secret`` or the grading
    secret), each under its nemesis schedule, then each ADVERSARIAL schedule (paired with the
    bank's first seeds). Returns the first ``Counterexample`` (shrunk unless ``shrink=False``),
    or ``Passed`` over every run. Deterministic: the same inputs give the same result.
    """
    size = VISIBLE if bank == "visible" else HIDDEN
    return check_bank(LAB, bank, size, scenario(create_app), invariants(), schedules, ADVERSARIAL,
                      secret=secret, shrink=shrink, workers=workers, only=only)


def production(create_app: AppFactory) -> Result:
    """The run the notebook's "Production" section shows: a retry after a timeout.

    The visible bank's first seed, one shopper paying one order (and resending it seconds later;
    one billing event), while every answer to the shopper arrives after its timeout
    (``ADVERSARIAL[0]``); only ``no_double_charge`` is checked. Not shrunk: the shopper's "same
    key, changed amount" request alone makes the generated code charge twice, so shrinking would
    drop the delay, and the delay (the retries it causes) is the story. Returns the ``Counterexample`` (the
    generated code: one charge per attempt) or ``Passed`` (a fixed service).
    """
    from autograder.labs import seed_bank, select
    from sandbox.explore import explore

    seeds = seed_bank(LAB, "visible", 1)
    return explore(scenario(create_app, shoppers=1, payments=1, renewals=1), select(invariants(), ("no_double_charge",)),
                   seeds=seeds, schedules=[ADVERSARIAL[0]], shrink=False, workers=1)


#: What a grade cell runs: ``grade(create_app, *invariant_names)`` on the hidden bank (see ``autograder.labs.grader``).
grade = grader(check, lab=LAB)

#: The graded parts, by the grade cell's nbgrader id: the invariants each checks. A grader that does not run the
#: learner's notebook (``dojo grade``) reads the parts from here; a test holds the notebook's grade cells to it.
PARTS: dict[str, tuple[str, ...]] = {
    "no-double-charge": ("no_double_charge",),
    "consumer-exactly-once": ("exactly_once",),
    "idempotency-key-semantics": ("idempotency_semantics",),
}

