"""The Kafka-like broker: producing, Kafka's partitioner, consumer groups, commits, at-least-once delivery."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

import sandbox
from sandbox.broker import DEFAULT_PARTITIONS, murmur2
from sandbox.clocks import EPOCH
from sandbox.faults import Redelivery, Schedule

TOPIC = "orders"
GROUP = "billing"
DB = "billing-db"


# --- service code under test -----------------------------------------------------------


def shop_app() -> FastAPI:
    app = FastAPI()

    @app.post("/send")
    async def send(body: dict, producer: sandbox.Producer = Depends(sandbox.producer)):
        """Send each message in turn, and say where each was written."""
        written = []
        for m in body["messages"]:
            meta = await producer.send(body.get("topic", TOPIC), m["value"], key=m.get("key"), headers=m.get("headers"))
            written.append(
                {"is_record_metadata": isinstance(meta, sandbox.RecordMetadata), "topic": meta.topic,
                 "partition": meta.partition, "offset": meta.offset}
            )
        return written

    @app.post("/send-bad/{kind}")
    async def send_bad(kind: str, producer: sandbox.Producer = Depends(sandbox.producer)):
        args = {
            "int-key": ({"n": 1}, {"key": 7}),
            "int-header": ({"n": 1}, {"headers": {"attempt": 2}}),
            "set-value": ({"ids": {1, 2}}, {}),
        }[kind]
        try:
            await producer.send(TOPIC, args[0], **args[1])
        except sandbox.InvalidParameterError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        return {"sent": True}

    return app


def billing_app(**options: Any) -> FastAPI:
    """The billing consumer of TOPIC; ``options`` (commit=..., auto_commit_interval=...) go to sandbox.consumer."""
    app = FastAPI()

    @sandbox.consumer(app, TOPIC, group=GROUP, **options)
    async def on_order(message: sandbox.Message, request: Request, db: sandbox.Database = Depends(sandbox.database(DB))):
        """Log every delivery (which replica, in which order), then fail, pause or finish as the message asks."""
        where = f"{message.partition}/{message.offset}"
        replica = request.scope["server"][0]
        deliveries = await db.get("deliveries", where, [])
        await db.put("deliveries", where, deliveries + [replica])
        log = await db.get("log", replica, [])
        await db.put("log", replica, log + [where])
        if len(deliveries) < message.value.get("fail_times", 0):
            raise RuntimeError(f"cannot bill {where} yet")
        await sandbox.sleep(message.value.get("pause", 0))
        await db.put("handled", where, message.model_dump(mode="json"))

    return app


# --- helpers ---------------------------------------------------------------------------


def make_world(*, consumers: int = 0, partitions: int | None = None, seed: int = 5, **options: Any) -> sandbox.World:
    """A world with the shop (a producer) and, if asked, the billing consumers of TOPIC (declared with ``options``)."""
    world = sandbox.World(seed=seed)
    world.add_service("shop", shop_app)
    if partitions is not None:
        world.broker.create_topic(TOPIC, partitions=partitions)
    if consumers:
        world.add_database(DB)
        if options:
            world.add_service("billing", partial(billing_app, **options), replicas=consumers, isolate_module=False)
        else:
            world.add_service("billing", billing_app, replicas=consumers)
    return world


def send(world: sandbox.World, *messages: dict, topic: str = TOPIC, start: float = 0.0) -> dict:
    """Have a new workload client ask the shop to send ``messages``; the dict fills in as it runs."""
    out: dict = {}

    async def one_request(client: sandbox.Client) -> None:
        r = await client.http.post("http://shop/send", json={"topic": topic, "messages": list(messages)})
        out["status"] = r.status_code
        out["written"] = r.json()

    world.add_client(f"client-{len(world.clients)}", one_request, start=start)
    return out


def deliveries(world: sandbox.World) -> dict[str, list[str]]:
    """``{"partition/offset": [replica of each delivery]}`` as the handler logged them."""
    return world.database(DB).rows("deliveries")


def kafka_partition(key: str, partitions: int) -> int:
    """Kafka's DefaultPartitioner: toPositive(murmur2(keyBytes)) % numPartitions."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def run_until(world: sandbox.World, condition, *, step: float = 0.001, limit: float = 10.0) -> None:
    """Advance virtual time in small steps until ``condition()`` holds."""
    end = world.now + limit
    while not condition():
        assert world.now < end, "condition never held"
        world.run(until=world.now + step)


# --- Kafka's partitioner ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(data, expected):
    """murmur2 gives the values of Kafka's own UtilsTest.testMurmur2."""
    assert murmur2(data) == expected


def test_keyed_messages_go_to_the_partition_kafka_would_pick():
    """A keyed message lands in toPositive(murmur2(key)) % partitions, as with Kafka's default partitioner."""
    world = make_world(partitions=5)
    keys = ["lamp", "chair", "desk", "sofa", "rug", "bed", "shelf", "stool"]
    out = send(world, *({"key": k, "value": {"sku": k}} for k in keys))
    world.run()
    partitions = [w["partition"] for w in out["written"]]
    assert partitions == [kafka_partition(k, 5) for k in keys]
    assert len(set(partitions)) > 1
    assert {m.key: m.partition for m in world.broker.messages(TOPIC)} == dict(zip(keys, partitions))


# --- producing -------------------------------------------------------------------------


def test_send_returns_record_metadata():
    """producer.send returns a RecordMetadata naming the topic, partition and offset the message was written at."""
    world = make_world(partitions=1)
    out = send(world, {"value": {"n": 0}}, {"value": {"n": 1}})
    world.run()
    assert out["written"] == [
        {"is_record_metadata": True, "topic": TOPIC, "partition": 0, "offset": 0},
        {"is_record_metadata": True, "topic": TOPIC, "partition": 0, "offset": 1},
    ]


def test_messages_with_the_same_key_keep_their_order():
    """Messages sent one after another with one key go to one partition, at increasing offsets, in send order."""
    world = make_world(partitions=3)
    sent = [{"key": "lamp" if n % 2 == 0 else f"other-{n}", "value": {"n": n}} for n in range(10)]
    send(world, *sent)
    world.run()
    lamp = [m for m in world.broker.messages(TOPIC) if m.key == "lamp"]
    assert [m.value["n"] for m in lamp] == [0, 2, 4, 6, 8]
    assert {m.partition for m in lamp} == {kafka_partition("lamp", 3)}
    assert [m.offset for m in lamp] == sorted(m.offset for m in lamp)


def test_unkeyed_messages_are_spread_round_robin():
    """Messages without a key go to the partitions in turn."""
    world = make_world(partitions=3)
    out = send(world, *({"value": {"n": n}} for n in range(6)))
    world.run()
    assert [w["partition"] for w in out["written"]] == [0, 1, 2, 0, 1, 2]


def test_send_creates_a_missing_topic():
    """Sending to a topic that does not exist creates it with the default number of partitions."""
    world = make_world()
    with pytest.raises(sandbox.UnknownNameError, match="'audit'"):
        world.broker.messages("audit")
    send(world, {"value": {"n": 1}}, topic="audit")
    world.run()
    assert world.broker.partitions("audit") == DEFAULT_PARTITIONS
    assert [m.value for m in world.broker.messages("audit")] == [{"n": 1}]


@pytest.mark.parametrize(("kind", "shown"), [("int-key", "key=7"), ("int-header", "2"), ("set-value", "{1, 2}")])
def test_send_rejects_what_kafka_could_not_carry(kind, shown):
    """A non-str key or header, or a value that is not plain JSON data, raises InvalidParameterError showing it."""
    world = make_world()
    out: dict = {}

    async def one_request(client: sandbox.Client) -> None:
        out["body"] = (await client.http.post(f"http://shop/send-bad/{kind}")).json()

    world.add_client("client-0", one_request)
    world.run()
    assert out["body"]["error"] == "InvalidParameterError"
    assert shown in out["body"]["message"]


# --- consuming -------------------------------------------------------------------------


def test_a_consumer_handler_gets_each_message_with_its_dependencies():
    """The handler receives each message (topic, partition, offset, key, value, headers) and can use Depends."""
    world = make_world(consumers=1, partitions=2)
    send(world, {"key": "lamp", "value": {"n": 1}, "headers": {"idempotency-key": "k-1"}}, {"value": {"n": 2}})
    world.run(until=2)
    handled = world.database(DB).rows("handled")
    assert sorted(handled.values(), key=lambda m: m["value"]["n"]) == [
        m.model_dump(mode="json") for m in sorted(world.broker.messages(TOPIC), key=lambda m: m.value["n"])
    ]
    lamp = next(m for m in handled.values() if m["key"] == "lamp")
    assert lamp["headers"] == {"idempotency-key": "k-1"}
    assert lamp["topic"] == TOPIC
    assert lamp["partition"] == kafka_partition("lamp", 2)


def test_a_consumer_handles_one_keys_messages_in_order():
    """One replica handles the messages of one key in the order they were sent."""
    world = make_world(consumers=1, partitions=3)
    send(world, *({"key": "lamp", "value": {"n": n}} for n in range(6)))
    world.run(until=2)
    p = kafka_partition("lamp", 3)
    assert world.database(DB).read("log", "billing-0") == [f"{p}/{n}" for n in range(6)]


def test_a_consumer_group_shares_the_partitions_among_its_replicas():
    """Each partition is consumed by exactly one live replica of the group, and every replica gets some."""
    world = make_world(consumers=2, partitions=4)
    send(world, *({"value": {"n": n}} for n in range(12)), start=0.5)
    world.run(until=3)
    handled = deliveries(world)
    assert len(handled) == 12
    assert all(len(replicas) == 1 for replicas in handled.values())
    owners: dict[str, set[str]] = {}
    for where, replicas in handled.items():
        owners.setdefault(where.split("/")[0], set()).update(replicas)
    assert all(len(o) == 1 for o in owners.values())
    assert set().union(*owners.values()) == {"billing-0", "billing-1"}


def test_a_crashed_replicas_partitions_move_to_a_survivor_after_the_session_timeout():
    """Messages in a crashed replica's partitions wait until the session timeout, then the survivor handles them."""
    world = make_world(consumers=2, partitions=4)
    world.run(until=0.5)
    world.crash("billing-1")
    send(world, *({"value": {"n": n}} for n in range(8)))
    world.run(until=2)
    assert 0 < len(deliveries(world)) < 8
    world.run(until=6)
    handled = deliveries(world)
    assert len(handled) == 8
    assert {r for replicas in handled.values() for r in replicas} == {"billing-0"}
    assert world.broker.lag(GROUP, TOPIC) == 0


def test_offsets_are_committed_after_the_handler_returns():
    """While the handler runs its message is uncommitted; once it returns, the offset after it is committed."""
    world = make_world(consumers=1, partitions=1)
    send(world, {"value": {"n": 1, "pause": 1.0}})
    run_until(world, lambda: deliveries(world))
    world.run(until=world.now + 0.5)
    assert world.broker.committed(GROUP) == {}
    assert world.broker.lag(GROUP, TOPIC) == 1
    world.run(until=world.now + 1.0)
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 1}
    assert world.broker.lag(GROUP, TOPIC) == 0
    assert deliveries(world) == {"0/0": ["billing-0"]}


def test_a_handler_that_raises_gets_the_same_message_again():
    """At least once: a failing handler is handed the same message until it succeeds, and nothing after it is skipped."""
    world = make_world(consumers=1, partitions=1)
    send(world, {"value": {"n": 1, "fail_times": 2}}, {"value": {"n": 2}})
    world.run(until=3)
    assert world.database(DB).read("log", "billing-0") == ["0/0", "0/0", "0/0", "0/1"]
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 2}
    assert [e.type for e in world.errors] == ["RuntimeError", "RuntimeError"]
    assert all(e.where == f"consumer {GROUP}/{TOPIC} offset 0" for e in world.errors)


def test_a_failing_message_stays_uncommitted_until_it_succeeds():
    """Between the failed attempts the group's committed offset does not move."""
    world = make_world(consumers=1, partitions=1)
    send(world, {"value": {"n": 1, "fail_times": 2}})
    run_until(world, lambda: len(deliveries(world).get("0/0", [])) == 2)
    assert world.broker.committed(GROUP) == {}
    world.run(until=world.now + 1)
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 1}


def _crash_between_handling_and_commit(world: sandbox.World) -> str:
    """Send one message; crash the replica handling it once its work is stored but before it commits.

    With 10 ms links, the reply to the handler's last write is still on the wire when the write shows
    in the database, so the handler has not returned and no commit has been sent. Returns the replica.
    """
    world.network.set_defaults(latency=0.01, jitter=0, distribution="constant")
    send(world, {"value": {"n": 1}})
    run_until(world, lambda: world.database(DB).rows("handled"))
    (replica,) = deliveries(world)["0/0"]
    assert world.broker.committed(GROUP) == {}
    world.crash(replica)
    return replica


def test_a_crash_before_the_commit_redelivers_to_the_restarted_replica():
    """A replica that crashed after handling a message but before committing it gets the message again once restarted."""
    world = make_world(consumers=1, partitions=1)
    replica = _crash_between_handling_and_commit(world)
    crashed_at = world.now
    world.restart(replica)
    world.run(until=crashed_at + 6)
    assert deliveries(world) == {"0/0": ["billing-0", "billing-0"]}
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 1}
    redelivered_at = world.recorder.entries("consumer.handle")[-1][0]
    assert redelivered_at > crashed_at + 2.5  # once the dead incarnation's session timed out


def test_a_crash_before_the_commit_redelivers_to_another_replica():
    """A message whose consumer crashed before committing it is handled again by another replica of the group."""
    world = make_world(consumers=2, partitions=1)
    first = _crash_between_handling_and_commit(world)
    world.run(until=world.now + 6)
    survivor = {"billing-0": "billing-1", "billing-1": "billing-0"}[first]
    assert deliveries(world) == {"0/0": [first, survivor]}
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 1}


def test_a_forced_rebalance_redelivers_uncommitted_messages():
    """A rebalance while a message is being handled makes the group hand that message out again."""
    world = make_world(consumers=1, partitions=1)
    send(world, {"value": {"n": 1, "pause": 1.0}})
    run_until(world, lambda: deliveries(world))
    world.run(until=world.now + 0.5)
    world.broker.rebalance(GROUP)
    world.run(until=world.now + 3)
    assert deliveries(world) == {"0/0": ["billing-0", "billing-0"]}
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 1}


def test_a_rebalance_after_the_commit_redelivers_nothing():
    """Committed messages are not handed out again by a rebalance."""
    world = make_world(consumers=1, partitions=1)
    send(world, {"value": {"n": 1}})
    world.run(until=1)
    world.broker.rebalance(GROUP)
    world.run(until=2)
    assert deliveries(world) == {"0/0": ["billing-0"]}


def test_the_log_and_committed_offsets_survive_a_broker_crash():
    """After the broker crashes and restarts, its messages and the group's offsets are intact and consuming goes on."""
    world = make_world(consumers=1, partitions=1)
    send(world, {"value": {"n": 1}})
    world.run(until=1)
    world.crash("kafka")
    world.run(until=1.5)
    world.restart("kafka")
    send(world, {"value": {"n": 2}})
    world.run(until=5)
    assert [m.value["n"] for m in world.broker.messages(TOPIC)] == [1, 2]
    assert deliveries(world) == {"0/0": ["billing-0"], "0/1": ["billing-0"]}
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 2}


# --- inspection ------------------------------------------------------------------------


def test_messages_lists_every_message_by_partition_and_offset():
    """broker.messages(topic) gives every message, partition by partition, in offset order, with its append time."""
    world = make_world(partitions=2)
    send(world, *({"value": {"n": n}} for n in range(4)), start=1.0)
    world.run()
    messages = world.broker.messages(TOPIC)
    assert [(m.partition, m.offset, m.value["n"]) for m in messages] == [(0, 0, 0), (0, 1, 2), (1, 0, 1), (1, 1, 3)]
    assert all(isinstance(m, sandbox.Message) for m in messages)
    assert all(1.0 < m.timestamp - EPOCH < 1.1 for m in messages)  # the producer's clock


def test_committed_and_lag_report_a_groups_progress():
    """broker.committed(group) maps (topic, partition) to the next offset to read; lag counts what is left."""
    world = make_world(consumers=1, partitions=3)
    send(world, *({"value": {"n": n}} for n in range(5)))
    world.run(until=2)
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 2, (TOPIC, 1): 2, (TOPIC, 2): 1}
    assert world.broker.lag(GROUP, TOPIC) == 0
    assert world.broker.committed("nobody") == {}
    assert world.broker.lag("nobody", TOPIC) == 5


def test_inspecting_unknown_names_says_what_exists():
    """messages/lag of an unknown topic and rebalance of an unknown group raise UnknownNameError listing what exists."""
    world = make_world(partitions=1)
    with pytest.raises(sandbox.UnknownNameError, match=r"'order'.*\['orders'\]"):
        world.broker.messages("order")
    with pytest.raises(sandbox.UnknownNameError, match="'order'"):
        world.broker.lag(GROUP, "order")
    with pytest.raises(sandbox.UnknownNameError, match="'billing'"):
        world.broker.rebalance("billing")


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "partitions", "shown"), [
    ("orders/v2", 3, "'orders/v2'"),
    ("", 3, "''"),
    ("new orders", 3, "'new orders'"),
    ("x" * 250, 3, "'xxxxxxxx"),
    ("orders", 0, "partitions=0"),
    ("orders", -1, "partitions=-1"),
    ("orders", 2.0, "partitions=2.0"),
    ("orders", True, "partitions=True"),
])
def test_create_topic_rejects_bad_names_and_partition_counts(name, partitions, shown):
    """create_topic refuses, showing the value, a name Kafka would refuse or a partition count below 1."""
    world = make_world()
    with pytest.raises(sandbox.InvalidParameterError, match=shown):
        world.broker.create_topic(name, partitions=partitions)
    assert world.broker.topics() == []


def test_create_topic_refuses_an_existing_topic():
    """Creating a topic twice is a configuration error that names the topic and keeps the first one."""
    world = make_world(partitions=2)
    with pytest.raises(sandbox.ConfigError, match="'orders' already exists with 2 partitions"):
        world.broker.create_topic(TOPIC, partitions=5)
    assert world.broker.partitions(TOPIC) == 2


def test_create_topic_twice_raises_duplicate_name_error():
    """A topic name already taken raises DuplicateNameError, as the errors module documents."""
    world = make_world(partitions=2)
    with pytest.raises(sandbox.DuplicateNameError):
        world.broker.create_topic(TOPIC)


@pytest.mark.parametrize(("args", "options", "shown"), [
    ((TOPIC,), {"group": "Billing"}, "'Billing'"),
    ((TOPIC,), {"group": "billing team"}, "'billing team'"),
    ((TOPIC,), {"group": ""}, "''"),
    (("",), {"group": GROUP}, "topic=''"),
    ((TOPIC,), {"group": GROUP, "poll_interval": 0}, "poll_interval=0"),
    ((TOPIC,), {"group": GROUP, "poll_interval": -0.1}, "poll_interval=-0.1"),
    ((TOPIC,), {"group": GROUP, "poll_interval": True}, "poll_interval=True"),
    ((TOPIC,), {"group": GROUP, "retry_backoff": 0}, "retry_backoff=0"),
    ((TOPIC,), {"group": GROUP, "max_records": 0}, "max_records=0"),
    ((TOPIC,), {"group": GROUP, "commit": "during"}, "commit='during'"),
    ((TOPIC,), {"group": GROUP, "commit": None}, "commit=None"),
    ((TOPIC,), {"group": GROUP, "auto_commit_interval": 0}, "auto_commit_interval=0"),
    ((TOPIC,), {"group": GROUP, "auto_commit_interval": "5"}, "auto_commit_interval='5'"),
])
def test_consumer_rejects_bad_arguments(args, options, shown):
    """sandbox.consumer raises InvalidParameterError, showing the bad value, when it is declared."""
    app = FastAPI()
    with pytest.raises(sandbox.InvalidParameterError, match=shown):
        sandbox.consumer(app, *args, **options)
    assert not getattr(app.state, "chaos_dojo_consumers", None)


# --- regressions found in review -------------------------------------------------------


def tally_app() -> FastAPI:
    """Consumes TOPIC in group "tally", five records a poll, noting each message's partition under its "n"."""
    app = FastAPI()

    @sandbox.consumer(app, TOPIC, group="tally", max_records=5)
    async def on_order(message: sandbox.Message, db: sandbox.Database = Depends(sandbox.database(DB))):
        await db.put("seen", message.value["n"], message.partition)

    return app


def mailer_app() -> FastAPI:
    """Consumes another topic, "emails", in the same group "tally"."""
    app = FastAPI()

    @sandbox.consumer(app, "emails", group="tally")
    async def on_email(message: sandbox.Message):
        return None

    return app


class OrderEvent(BaseModel):
    id: str
    total: int


def model_consumer_app() -> FastAPI:
    """A handler that takes the payload model instead of sandbox.Message, so FastAPI answers 422 to every delivery."""
    app = FastAPI()

    @sandbox.consumer(app, TOPIC, group=GROUP)
    async def on_order(order: OrderEvent):
        return None

    return app


def header_shop_app() -> FastAPI:
    app = FastAPI()

    @app.post("/send-header")
    async def send_header(body: dict, producer: sandbox.Producer = Depends(sandbox.producer)):
        """Send one message with the given headers; say whether the producer refused it."""
        try:
            await producer.send(TOPIC, {"n": 0}, key="k", headers=body["headers"])
        except sandbox.InvalidParameterError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        return {"sent": True}

    return app


def tally_world() -> sandbox.World:
    """The shop and one "tally" consumer; the shop sends 30 messages of one key from t=1, after the consumer joined."""
    world = sandbox.World(seed=1)
    world.add_database(DB)
    world.add_service("shop", shop_app)
    world.add_service("billing", tally_app)
    send(world, *({"key": "k", "value": {"n": n}} for n in range(30)), start=1.0)
    return world


@pytest.mark.parametrize("fault", ["lost replies", "duplicated polls", "one-way partition"])
def test_lost_or_duplicated_poll_traffic_loses_no_message(fault):
    """Lost poll replies, duplicated polls or a one-way partition lose no message: all are handled, the lag drops to 0."""
    world = tally_world()
    world.run(until=0.5)
    if fault == "lost replies":
        world.network.set_links("kafka", "billing", loss=0.5)
    elif fault == "duplicated polls":
        world.network.set_links("billing", "kafka", duplicate=0.5)
    else:
        world.run(until=1.02)  # while the shop is producing
        world.network.partition(["kafka"], ["billing"], one_way=True)
        world.run(until=1.5)
        world.network.heal()
    world.run(until=30)
    world.network.set_links("kafka", "billing", loss=0.0)
    world.network.set_links("billing", "kafka", duplicate=0.0)
    world.run(until=60)
    last_handled = world.recorder.entries("consumer.handle")[-1][0]
    hit = world.recorder.entries("net.duplicate" if fault == "duplicated polls" else "net.drop")
    consuming = ("broker.poll", "broker.records", "broker.commit", "broker.commit_ack")
    assert [e for e in hit if e[4] in consuming and 1.0 < e[0] < last_handled]  # the fault met the stream
    assert len(world.broker.messages(TOPIC)) == 30
    assert sorted(world.database(DB).rows("seen")) == list(range(30))
    assert world.broker.lag("tally", TOPIC) == 0


def test_a_topic_name_with_a_dot_is_usable():
    """Kafka allows '.' in topic names: producing to 'order.created' writes the message and the world runs on."""
    world = make_world()
    out = send(world, {"value": {"n": 1}}, topic="order.created")
    world.run()
    assert out["status"] == 200
    assert [m.value for m in world.broker.messages("order.created")] == [{"n": 1}]
    assert world.errors == []


def test_an_invalid_topic_name_is_refused_in_the_service_not_the_world():
    """Producing to a topic name Kafka refuses raises InvalidParameterError in the endpoint (a 500); world.run returns."""
    world = make_world()
    out = send(world, {"value": {"n": 1}}, topic="new orders")
    world.run()
    assert out["status"] == 500
    [error] = [e for e in world.errors if e.node == "shop-0"]
    assert (error.where, error.type) == ("POST /send", "InvalidParameterError")
    assert "'new orders'" in error.message
    assert world.broker.topics() == []


def test_a_handler_answering_422_is_recorded_in_world_errors():
    """A consumer handler FastAPI cannot call (422) lands in world.errors with its status; the message stays uncommitted."""
    world = make_world(partitions=1)
    world.add_service("billing", model_consumer_app)
    send(world, {"value": {"id": "o1", "total": 5}})
    world.run(until=0.5)
    assert len(world.errors) >= 2  # redelivered after each retry_backoff
    assert {(e.node, e.where) for e in world.errors} == {("billing-0", f"consumer {GROUP}/{TOPIC} offset 0")}
    assert all("422" in e.message for e in world.errors)
    assert world.broker.lag(GROUP, TOPIC) == 1


def test_groups_are_assigned_per_topic():
    """Two services in one group subscribed to different topics: 'orders' partitions all go to its own subscriber."""
    world = make_world(partitions=3)
    world.add_database(DB)
    world.add_service("billing", tally_app)
    world.add_service("mailer", mailer_app)
    send(world, *({"key": f"k{n}", "value": {"n": n}} for n in range(9)), start=1.0)
    world.run(until=10)
    seen = world.database(DB).rows("seen")
    assert sorted(seen) == list(range(9))
    assert set(seen.values()) == {0, 1, 2}  # every partition was consumed
    assert world.broker.lag("tally", TOPIC) == 0


def test_a_header_that_is_not_latin_1_is_refused_at_send():
    """producer.send refuses a header that is not latin-1 with InvalidParameterError showing it, and writes nothing."""
    world = make_world()
    world.add_service("headers", header_shop_app)
    out: dict = {}

    async def one_request(client: sandbox.Client) -> None:
        r = await client.http.post("http://headers/send-header", json={"headers": {"customer": "Zoë ✓"}})
        out["body"] = r.json()

    world.add_client("client-0", one_request)
    world.run()
    assert out["body"]["error"] == "InvalidParameterError"
    assert "'Zoë ✓'" in out["body"]["message"]
    assert "latin-1" in out["body"]["message"]
    assert world.broker.topics() == []


def long_poll_world(max_wait: float) -> sandbox.World:
    """The shop and one consumer replica whose polls the broker holds up to ``max_wait`` seconds."""

    def waiting_app() -> FastAPI:
        app = FastAPI()

        @sandbox.consumer(app, TOPIC, group="tally", max_wait=max_wait)
        async def on_order(message: sandbox.Message, db: sandbox.Database = Depends(sandbox.database(DB))):
            await db.put("seen", message.value["n"], message.partition)

        return app

    world = sandbox.World(seed=2)
    world.add_database(DB)
    world.add_service("shop", shop_app)
    world.add_service("billing", waiting_app, isolate_module=False)
    return world


def test_an_idle_consumer_long_polls_about_once_per_max_wait():
    """With nothing to read, the broker holds each poll max_wait seconds: about 2 polls a second at 0.5, 20 at 0."""
    counts = {}
    for max_wait in (0.5, 0.0):
        world = long_poll_world(max_wait)
        world.run(until=5.0)
        counts[max_wait] = len([e for e in world.recorder.entries("net.send") if e[4] == "broker.poll"])
    assert 9 <= counts[0.5] <= 12
    assert 90 <= counts[0.0] <= 101


def test_a_held_poll_is_answered_as_soon_as_a_record_arrives():
    """A record produced while a poll is held reaches the consumer within a few milliseconds, not at max_wait."""
    world = long_poll_world(1.0)
    send(world, {"key": "k", "value": {"n": 1}}, start=2.25)
    world.run(until=5.0)
    appended = world.recorder.entries("broker.append")[0][0]
    handled = world.recorder.entries("consumer.handle")[0][0]
    assert 0 < handled - appended < 0.01


@pytest.mark.parametrize("max_wait", [-0.1, 1.5, True, "0.5"])
def test_max_wait_out_of_range_is_refused(max_wait):
    """max_wait must be seconds from 0 to half the poll timeout; the error shows the value."""
    app = FastAPI()
    with pytest.raises(sandbox.InvalidParameterError, match=f"max_wait={max_wait!r}"):
        sandbox.consumer(app, TOPIC, group="tally", max_wait=max_wait)


# --- commits as Kafka's consumer makes them (issue 11) ----------------------------------


def _lose_the_commit(world: sandbox.World) -> float:
    """Send one message; cut the consumer off the broker just before it commits, heal a second later.

    With 10 ms links, the handler's last write shows in the database while the reply to it is still on
    the wire, so the commit goes out into the partition. Returns when the commit was dropped.
    """
    world.network.set_defaults(latency=0.01, jitter=0, distribution="constant")
    send(world, {"value": {"n": 1}})
    run_until(world, lambda: world.database(DB).rows("handled"))
    world.network.partition(["kafka"], ["billing"])
    run_until(world, lambda: world.recorder.entries("net.drop"))
    [dropped] = world.recorder.entries("net.drop")
    assert dropped[4] == "broker.commit"
    world.run(until=world.now + 1.0)
    world.network.heal()
    return dropped[0]


@pytest.mark.parametrize("interval", [None, 3.0])
def test_a_lost_commit_is_made_again_within_the_auto_commit_interval(interval):
    """A final commit lost in a partition is sent again auto_commit_interval (5 s unless set) after it: the lag
    returns to 0 without a restart, and the message is not handled again."""
    options = {} if interval is None else {"auto_commit_interval": interval}
    world = make_world(consumers=1, partitions=1, **options)
    lost_at = _lose_the_commit(world)
    interval = interval or 5.0
    world.run(until=lost_at + interval - 0.2)
    assert world.broker.lag(GROUP, TOPIC) == 1
    world.run(until=lost_at + interval + 0.7)
    assert world.broker.lag(GROUP, TOPIC) == 0
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 1}
    assert deliveries(world) == {"0/0": ["billing-0"]}
    assert not world.recorder.entries("node.restart")


def test_an_idle_consumer_with_nothing_to_commit_sends_no_commit():
    """Once every handled message is committed, a consumer that waits for more sends polls and no commits."""
    world = make_world(consumers=2, partitions=2)
    send(world, {"value": {"n": 1}}, {"value": {"n": 2}})
    world.run(until=1)
    commits = len(world.recorder.entries("broker.commit"))
    assert commits == 2
    world.run(until=30)
    assert len(world.recorder.entries("broker.commit")) == commits
    assert world.broker.lag(GROUP, TOPIC) == 0


def _crash_while_handling(commit: str) -> sandbox.World:
    """One consumer replica committing ``commit`` the handler; it crashes in the handler and restarts at once."""
    world = make_world(consumers=1, partitions=1, commit=commit)
    send(world, {"value": {"n": 1, "pause": 1.0}})
    run_until(world, lambda: deliveries(world))
    world.run(until=world.now + 0.5)
    world.crash("billing-0")
    world.restart("billing-0")
    world.run(until=world.now + 6)
    return world


def test_commit_before_loses_the_message_whose_handler_crashed():
    """At most once: with commit="before", a replica that crashes in the handler never gets that message again."""
    world = _crash_while_handling("before")
    assert deliveries(world) == {"0/0": ["billing-0"]}
    assert world.database(DB).rows("handled") == {}
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 1}
    assert world.broker.lag(GROUP, TOPIC) == 0


def test_commit_after_hands_the_crashed_message_out_again():
    """At least once (the default, commit="after"): the same crash in the handler redelivers the message."""
    world = _crash_while_handling("after")
    assert deliveries(world) == {"0/0": ["billing-0", "billing-0"]}
    assert list(world.database(DB).rows("handled")) == ["0/0"]
    assert world.broker.committed(GROUP) == {(TOPIC, 0): 1}


def test_commit_before_does_not_retry_a_handler_that_raised():
    """With commit="before" a message whose handler raised is not delivered again; the next one is."""
    world = make_world(consumers=1, partitions=1, commit="before")
    send(world, {"value": {"n": 1, "fail_times": 1}}, {"value": {"n": 2}})
    world.run(until=3)
    assert world.database(DB).read("log", "billing-0") == ["0/0", "0/1"]
    assert list(world.database(DB).rows("handled")) == ["0/1"]
    assert [e.type for e in world.errors] == ["RuntimeError"]
    assert world.broker.lag(GROUP, TOPIC) == 0


def test_commit_before_handles_nothing_twice_when_commits_are_lost():
    """Under a Redelivery fault (lost commits, rebalances) a commit-before consumer handles each message once at most,
    and every message once the fault is over."""
    world = make_world(consumers=2, partitions=2, commit="before")
    world.inject(Schedule([Redelivery(GROUP, probability=0.7, start=0.0, duration=2.0)]))
    send(world, *({"value": {"n": n}} for n in range(8)), start=0.5)
    world.run(until=10)
    assert world.recorder.entries("broker.commit_lost")
    assert len(deliveries(world)) == 8
    assert all(len(replicas) == 1 for replicas in deliveries(world).values())
    assert world.broker.lag(GROUP, TOPIC) == 0


def test_the_commit_choices_are_named_in_the_error():
    """A commit= that is neither "after" nor "before" is refused, the error naming both and what each gives."""
    with pytest.raises(sandbox.InvalidParameterError) as caught:
        sandbox.consumer(FastAPI(), TOPIC, group=GROUP, commit="at-most-once")
    message = str(caught.value)
    assert "commit='at-most-once'" in message
    assert "'after'" in message and "'before'" in message
    assert "at least once" in message and "at most once" in message


# --- waking held polls (issue 11) -------------------------------------------------------


def many_consumers_world(replicas: int, messages: int, *, seed: int = 3) -> sandbox.World:
    """The shop and ``replicas`` replicas of a consumer that does nothing; ``messages`` keyed messages sent from t=1."""

    def quiet_app() -> FastAPI:
        app = FastAPI()

        @sandbox.consumer(app, TOPIC, group=GROUP)
        async def on_order(message: sandbox.Message) -> None:
            return None

        return app

    world = sandbox.World(seed=seed)
    world.add_service("shop", shop_app)
    world.broker.create_topic(TOPIC, partitions=DEFAULT_PARTITIONS)
    world.add_service("billing", quiet_app, replicas=replicas, isolate_module=False)
    if messages:
        send(world, *({"key": f"k{n}", "value": {"n": n}} for n in range(messages)), start=1.0)
    return world


def polls(world: sandbox.World) -> int:
    return sum(1 for e in world.recorder.entries("net.send") if e[4] == "broker.poll")


def test_a_message_wakes_only_the_poll_of_its_partitions_owner():
    """At 100 replicas a produced message costs about one poll (its partition owner's), not one per replica."""
    idle = many_consumers_world(100, 0)
    idle.run(until=4)
    busy = many_consumers_world(100, 40)
    busy.run(until=4)
    assert busy.broker.lag(GROUP, TOPIC) == 0
    assert len(busy.recorder.entries("consumer.handle")) == 40
    per_message = (polls(busy) - polls(idle)) / 40
    assert 0.5 <= per_message <= 1.5


def test_waking_only_the_owner_keeps_runs_deterministic_and_in_order():
    """Same seed, same fingerprint with many replicas and an owner crashing mid-stream; every message is handled, and
    each partition's messages first in offset order."""
    runs = []
    for _ in range(2):
        world = many_consumers_world(6, 30, seed=11)
        world.run(until=1.01)
        world.crash("billing-2")
        world.run(until=8)
        runs.append((world.fingerprint(), world.recorder.entries("consumer.handle")))
    assert runs[0] == runs[1]
    handled = [(partition, offset) for _t, _kind, _replica, _group, _topic, partition, offset in runs[0][1]]
    assert len(set(handled)) == 30
    for p in range(DEFAULT_PARTITIONS):
        first_times = list(dict.fromkeys(offset for partition, offset in handled if partition == p))
        assert first_times == sorted(first_times)
    assert {replica for _t, _k, replica, *_rest in runs[0][1]} > {"billing-2"}  # billing-2 handled some, then others


def test_a_message_right_after_a_forced_rebalance_is_handled_at_once():
    """With no partition owner (a rebalance cleared them), a new message wakes the group's held polls: one of them
    takes the partition and handles it within milliseconds, not after max_wait."""
    world = many_consumers_world(3, 0)
    world.run(until=2.0)
    world.broker.rebalance(GROUP)
    rebalanced_at = world.now
    send(world, {"key": "k0", "value": {"n": 0}})
    world.run(until=4.0)
    appended = world.recorder.entries("broker.append")[0][0]
    answered = [e for e in world.recorder.entries("net.send") if e[4] == "broker.records" and e[0] < appended]
    assert all(e[0] < rebalanced_at for e in answered)  # no poll reassigned the partitions before the append
    handled = world.recorder.entries("consumer.handle")[0][0]
    assert 0 < handled - appended < 0.01
