"""Tests of the pictures of a run (sandbox.viz): what they show, and the state the stepper walks through."""

from __future__ import annotations

import html
import re
from xml.etree import ElementTree

import pytest
from fastapi import Depends, FastAPI, HTTPException
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

import sandbox
import sandbox.viz as viz
from sandbox.checkers import Verdict

# --- the services (isolate_module=False: the replicas share this module) --------------


def store_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    @app.put("/items/{key}")
    async def put_item(key: str, db: sandbox.Database = Depends(sandbox.database("store-db"))) -> dict:
        await db.put("items", key, {"key": key})
        return {"key": key}

    @app.post("/events")
    async def publish(producer: sandbox.Producer = Depends(sandbox.producer)) -> dict:
        await producer.send("events", {"hello": 1})
        return {"sent": True}

    @app.get("/slow")
    async def slow() -> dict:
        await sandbox.sleep(0.5)
        return {"slow": True}

    @app.get("/boom")
    async def boom() -> dict:
        raise HTTPException(status_code=500, detail="boom")

    return app


def calls(*urls: str, method: str = "get", timeout: float = 1.0):
    """A workload doing one operation per URL, in turn."""

    async def workload(client: sandbox.Client) -> None:
        for url in urls:
            async with client.operation("call", url) as op:
                try:
                    r = await getattr(client.http, method)(url, timeout=timeout)
                except sandbox.RequestTimeout:
                    op.info("timeout")
                else:
                    op.ok(r.status_code)

    return workload


def world_with(*, seed: int = 1, replicas: int = 1, tracing: bool = False, latency: float = 0.25) -> sandbox.World:
    """A world with service "api" (and its database "store-db"), every link `latency` seconds long."""
    world = sandbox.World(seed=seed, tracing=tracing)
    world.network.set_defaults(latency=latency, distribution="constant")
    world.add_database("store-db")
    world.add_service("api", store_app, replicas=replicas, isolate_module=False)
    return world


def at(world: sandbox.World, when: float, action) -> None:
    """Run `action()` at virtual time `when` (as a fault injector would)."""

    def process():
        yield world.env.timeout(when)
        action()

    world.env.process(process())


def arrows(fig: Figure) -> dict[str, FancyArrowPatch]:
    """The message arrows of a sequence diagram, by gid ("msg:<id>:<kind>[:dup]")."""
    return {p.get_gid(): p for ax in fig.axes for p in ax.patches if (p.get_gid() or "").startswith("msg:")}


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def lifelines(fig: Figure) -> list[str]:
    return [label.get_text() for label in fig.axes[0].get_xticklabels()]


# --- sequence diagram -----------------------------------------------------------------------


def test_lifelines_run_from_clients_to_services_to_databases_to_the_broker():
    """One lifeline per node, left to right: clients, service replicas, databases, then kafka."""
    world = world_with(replicas=2, latency=0.001)
    world.broker.create_topic("events")
    world.add_client("zed", calls("http://api-1/items/a", method="put"))
    world.add_client("amy", calls("http://api-0/events", method="post"))
    world.run(until=2)
    assert lifelines(viz.sequence_diagram(world)) == ["zed", "amy", "api-0", "api-1", "store-db", "kafka"]


def test_nodes_argument_orders_lifelines_and_expands_services():
    """`nodes` sets the lifelines and their order; a service name stands for all its replicas."""
    world = world_with(replicas=2, latency=0.001)
    world.add_client("amy", calls("http://api-0/items/a", method="put"))
    world.run(until=1)
    assert lifelines(viz.sequence_diagram(world, nodes=["store-db", "api"])) == ["store-db", "api-0", "api-1"]


def test_quiet_nodes_are_left_out_and_the_title_says_so():
    """A node that sent and received nothing in the window gets no lifeline, and the notes count it."""
    world = world_with(replicas=2, latency=0.001)
    world.add_client("amy", calls("http://api-0/ping"))
    world.run(until=1)
    fig = viz.sequence_diagram(world)
    assert lifelines(fig) == ["amy", "api-0"]
    assert any("2 quiet nodes not shown" in text for text in texts(fig))


def test_a_message_is_an_arrow_from_its_send_to_its_delivery_labelled_with_method_and_path():
    """An HTTP request reads 'GET /ping' and its reply '200', each one arrow from sender to receiver."""
    world = world_with()
    world.add_client("amy", calls("http://api/ping"))
    world.run(until=1)
    fig = viz.sequence_diagram(world)
    request = next(a for gid, a in arrows(fig).items() if gid.endswith(":http"))
    reply = next(a for gid, a in arrows(fig).items() if gid.endswith(":http.reply"))
    lanes = lifelines(fig)
    (x0, y0), (x1, y1) = request._posA_posB
    assert (x0, x1) == (lanes.index("amy"), lanes.index("api-0")) and y1 > y0  # time flows down
    assert reply._posA_posB[0][0] == lanes.index("api-0") and reply._posA_posB[1][0] == lanes.index("amy")
    assert {"GET /ping", "200"} <= set(texts(fig))


def test_a_dropped_message_ends_in_a_red_x_with_its_reason():
    """A request cut by a partition is drawn with the text 'dropped: partition' in the drop colour."""
    world = world_with()
    world.add_client("amy", calls("http://api/ping", timeout=0.5))
    world.network.partition(["amy"], ["api"])
    world.run(until=1)
    fig = viz.sequence_diagram(world)
    drop = next(t for t in fig.axes[0].texts if t.get_text() == "dropped: partition")
    assert to_hex(drop.get_color()) == viz.DROP_COLOR
    marks = [line for line in fig.axes[0].lines if line.get_marker() == "x"]
    assert len(marks) == 1 and to_hex(marks[0].get_color()) == viz.DROP_COLOR


def test_a_message_to_a_crashed_node_is_dropped_with_reason_down():
    """A request arriving at a node that crashed meanwhile says 'dropped: down'."""
    world = world_with()
    world.add_client("amy", calls("http://api/ping", timeout=0.5))
    at(world, 0.1, lambda: world.crash("api"))
    world.run(until=1)
    assert "dropped: down" in texts(viz.sequence_diagram(world))


def test_a_duplicated_message_is_dashed_and_says_dup():
    """A request the network delivered twice shows a second, dashed arrow labelled 'dup GET /ping'."""
    world = world_with()
    world.add_client("amy", calls("http://api/ping"))
    world.network.link("amy", "api-0").duplicate = 1.0
    world.run(until=2)
    fig = viz.sequence_diagram(world)
    copies = [a for gid, a in arrows(fig).items() if gid.endswith(":http:dup")]
    assert len(copies) == 1 and copies[0].get_linestyle() != "solid"
    assert "dup GET /ping" in texts(fig)


def test_a_crash_and_restart_are_marked_and_the_lifeline_is_dashed_while_down():
    """A crashed node's lifeline says 'crashed', turns dashed until 'restarted'."""
    world = world_with(latency=0.01)
    world.add_client("amy", calls("http://api/ping"))
    at(world, 0.2, lambda: world.crash("api"))
    at(world, 0.4, lambda: world.restart("api"))
    world.run(until=0.6)
    fig = viz.sequence_diagram(world, nodes=["amy", "api"])
    ax = fig.axes[0]
    assert {"crashed", "restarted"} <= set(texts(fig))
    down = [line for line in ax.lines if line.get_gid() == "down:api-0"]
    assert len(down) == 1 and down[0].get_linestyle() != "-"


def test_a_paused_node_has_a_dotted_lifeline_and_its_held_messages_never_arrive():
    """A node paused to the end draws a dotted lifeline, and a request held by it says it never arrived."""
    world = world_with()
    world.add_client("amy", calls("http://api/ping", timeout=0.5))
    at(world, 0.1, lambda: world.pause("api"))
    world.run(until=1)
    fig = viz.sequence_diagram(world)
    assert [line.get_gid() for line in fig.axes[0].lines if line.get_gid() == "paused:api-0"] == ["paused:api-0"]
    assert {"paused", "request (never arrived)"} <= set(texts(fig))  # never served: its path was never logged


def test_a_highlighted_operation_draws_its_messages_in_the_highlight_colour():
    """Highlighting one Op colours the messages it caused, its server's db call too, and mutes the rest,
    even while the same replica serves another client's request that makes its own db call."""
    world = world_with(latency=0.01)
    world.add_client("amy", calls("http://api/items/a", method="put"))
    world.add_client("bob", calls("http://api/items/b", method="put"), start=0.005)
    world.run(until=1)
    amy_op = next(op for op in world.history if op.process == "amy")
    fig = viz.sequence_diagram(world, highlight=[amy_op])
    sends = world.recorder.entries("net.send")
    amy_ids = {e[5] for e in sends if e[2] == "amy"}
    amy_arrived = next(e[0] for e in world.recorder.entries("net.deliver") if e[2] == "amy")
    amy_db = {e[5] for e in sends if e[4] == "db" and e[0] == amy_arrived}
    bob_db = {e[5] for e in sends if e[4] == "db"} - amy_db
    assert len(amy_db) == 1 and len(bob_db) == 1
    colours = {int(gid.split(":")[1]): to_hex(a.get_edgecolor()) for gid, a in arrows(fig).items()}
    assert {colours[i] for i in amy_ids | amy_db} == {viz.HIGHLIGHT_COLOR}
    assert {c for i, c in colours.items() if i not in amy_ids | amy_db} == {viz.MUTED_COLOR}


def test_highlight_accepts_a_verdict_and_closes_the_window_on_its_evidence():
    """A Verdict's Op evidence is highlighted, and the window starts near the op, not at t=0."""
    world = world_with(latency=0.01)
    world.add_client("amy", calls("http://api/ping", "http://api/ping", "http://api/ping"))
    world.run(until=1)
    last = [op for op in world.history if op.type == "ok"][-1]
    verdict = Verdict.failing("demo", "the last call looks wrong", (last,))
    fig = viz.sequence_diagram(world, highlight=verdict)
    highlighted = [gid for gid, a in arrows(fig).items() if to_hex(a.get_edgecolor()) == viz.HIGHLIGHT_COLOR]
    assert len(highlighted) == 2  # the last request and its reply
    title = next(t for t in fig.texts if t.get_text().startswith("Messages"))
    start = float(title.get_text().split("t = ")[1].split(" to ")[0])
    invoked = next(op for op in world.history if op.index == last.index - 1)
    assert 0.03 < start < invoked.time  # the earlier calls (ended at 0.02 and 0.04) are left out


def test_highlight_accepts_message_ids():
    """A bare msg id highlights that request and its reply (they share the id)."""
    world = world_with(latency=0.01)
    world.add_client("amy", calls("http://api/ping", "http://api/ping"))
    world.run(until=1)
    msg_id = world.recorder.entries("net.send")[0][5]
    fig = viz.sequence_diagram(world, highlight=[msg_id])
    highlighted = sorted(gid for gid, a in arrows(fig).items() if to_hex(a.get_edgecolor()) == viz.HIGHLIGHT_COLOR)
    assert highlighted == [f"msg:{msg_id}:http", f"msg:{msg_id}:http.reply"]


def test_highlight_rejects_items_that_name_nothing():
    """A highlight item that is no Op, message id or timed record is refused, shown with repr."""
    world = world_with()
    world.run(until=1)
    with pytest.raises(sandbox.InvalidParameterError, match="'place-order'.*sandbox.Op items"):
        viz.sequence_diagram(world, highlight=["place-order"])


def test_max_messages_caps_the_diagram_and_the_title_says_so():
    """With more messages than max_messages, only the first are drawn and the notes say 'first N of M'."""
    world = world_with(latency=0.01)
    world.add_client("amy", calls(*["http://api/ping"] * 5))
    world.run(until=1)
    fig = viz.sequence_diagram(world, max_messages=3)
    assert len(arrows(fig)) == 3
    assert any("first 3 of 10 messages" in text for text in texts(fig))


def test_idle_polls_are_hidden_unless_asked_for(shop):
    """A consumer's empty polls of the broker are left out by default, counted in the notes."""
    quiet = viz.sequence_diagram(shop)
    chatty = viz.sequence_diagram(shop, idle_polls=True)
    polls = [gid for gid in arrows(chatty) if gid.endswith(":broker.poll")]
    assert len(polls) > len([gid for gid in arrows(quiet) if gid.endswith(":broker.poll")])
    assert any("idle polls hidden" in text for text in texts(quiet))


def test_sequence_diagram_rejects_a_window_that_ends_before_it_starts():
    """end < start is refused with both values shown."""
    world = world_with()
    world.run(until=1)
    with pytest.raises(sandbox.InvalidParameterError, match="end=0.2.*start=0.5"):
        viz.sequence_diagram(world, start=0.5, end=0.2)


def test_sequence_diagram_rejects_an_unknown_node_name():
    """A name in `nodes` that is no node or service of the world raises UnknownNameError."""
    world = world_with()
    world.run(until=1)
    with pytest.raises(sandbox.UnknownNameError, match="nope"):
        viz.sequence_diagram(world, nodes=["nope"])


# --- fault windows and the timeline ---------------------------------------------------------


def faulty_world() -> sandbox.World:
    """Faults logged as a fault injector logs them: #1 partition 0.2-0.6, #2 kill api-0 0.3-0.5, #3 never healed."""
    world = world_with(latency=0.01)
    world.add_client("amy", calls(*["http://api/ping"] * 3))

    def start_partition():
        world.record("fault.start", 1, "NetworkChaos", "partition", "partition amy | api", ("amy",), ("api-0",))
        world.network.partition(["amy"], ["api"])

    def end_partition():
        world.network.heal()
        world.record("fault.end", 1, "partition amy | api")

    at(world, 0.2, start_partition)
    at(world, 0.6, end_partition)
    at(world, 0.3, lambda: (world.record("fault.start", 2, "PodChaos", "kill", "kill api-0", ("api-0",), ()),
                            world.crash("api-0")))
    at(world, 0.5, lambda: (world.restart("api-0"), world.record("fault.end", 2, "kill api-0")))
    at(world, 0.7, lambda: world.record("fault.start", 3, "TimeChaos", "clock-skew", "skew api-0 +1s", ("api-0",), ()))
    world.run(until=1.0)
    return world


def test_fault_windows_are_read_from_fault_start_and_end_entries():
    """Each fault.start / fault.end pair is one window with its index, family, label, nodes and times."""
    windows = viz.fault_windows(faulty_world())
    assert [(w.index, w.family, w.label, w.start, w.end) for w in windows] == [
        (1, "NetworkChaos", "partition amy | api", 0.2, 0.6),
        (2, "PodChaos", "kill api-0", 0.3, 0.5),
        (3, "TimeChaos", "skew api-0 +1s", 0.7, None),
    ]
    assert windows[0].nodes == ("amy",) and windows[0].peers == ("api-0",)


def test_a_direct_partition_until_heal_is_a_fault_window():
    """world.network.partition(...) then heal() gives a 'network' window labelled with both sides."""
    world = world_with()
    at(world, 0.1, lambda: world.network.partition(["store-db"], ["api"]))
    at(world, 0.4, world.network.heal)
    world.run(until=1)
    (window,) = viz.fault_windows(world)
    assert (window.family, window.label, window.start, window.end) == ("network", "partition store-db | api-0",
                                                                     0.1, 0.4)


def test_fault_timeline_draws_one_bar_per_window_with_its_label_and_extent():
    """Bars of the timeline span each fault's start to end (the unhealed one to the end of the run)."""
    world = faulty_world()
    fig = viz.fault_timeline(world)
    ax = fig.axes[0]
    bars = {p.get_gid(): (round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6)) for p in ax.patches}
    assert bars["fault:1"] == (0.2, 0.6)
    assert bars["fault:2"] == (0.3, 0.5)
    assert bars["fault:3"] == (0.7, 1.0)
    assert bars["node:api-0"] == (0.3, 0.5)  # the crash shows as the node's down time
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:3] == ["#1 partition amy | api", "#2 kill api-0", "#3 skew api-0 +1s"]
    assert "api-0 down" in labels


def test_fault_timeline_of_a_calm_run_says_there_was_nothing():
    """With no fault, crash or pause the timeline says so instead of drawing an empty frame."""
    world = world_with()
    world.run(until=1)
    assert "no faults, crashes or pauses in this run" in texts(viz.fault_timeline(world))


def test_sequence_diagram_shades_faults_on_the_nodes_they_touch():
    """Fault windows are shaded on the lifelines of their nodes and labelled in the margin."""
    fig = viz.sequence_diagram(faulty_world())
    shaded = {p.get_gid() for p in fig.axes[0].patches if (p.get_gid() or "").startswith("fault-shade:")}
    assert shaded == {"fault-shade:partition amy | api", "fault-shade:kill api-0", "fault-shade:skew api-0 +1s"}
    assert "#2 kill api-0" in texts(fig)


# --- state_at and the stepper ---------------------------------------------------------------


def test_state_at_shows_a_message_in_flight_from_its_sender_to_its_receiver():
    """Between send (t=0) and delivery (t=0.25) the request is in flight, seen from both ends."""
    world = world_with()
    world.add_client("amy", calls("http://api/ping"))
    world.run(until=1)
    state = viz.state_at(world, 0.1)
    (message,) = state.in_flight
    assert (message.src, message.dst, message.kind, message.label) == ("amy", "api-0", "http", "GET /ping")
    assert state.nodes["amy"].sending == (message,) and state.nodes["api-0"].receiving == (message,)
    assert [m.kind for m in viz.state_at(world, 0.3).in_flight] == ["http.reply"]
    assert viz.state_at(world, 0.6).in_flight == ()


def test_state_at_shows_what_a_node_is_serving_and_what_a_client_waits_for():
    """While /slow sleeps, the replica is serving it and the client's operation is open."""
    world = world_with(latency=0.01)
    world.add_client("amy", calls("http://api/slow"))
    world.run(until=1)
    state = viz.state_at(world, 0.3)
    assert state.nodes["api-0"].work == ("serving GET /slow for amy",)
    assert state.nodes["amy"].work[0].startswith("waiting: call")
    assert viz.state_at(world, 0.8).nodes["api-0"].work == ()


def test_state_at_follows_a_crash_and_a_restart():
    """A node is up before its crash, down after it, up again after its restart."""
    world = world_with()
    at(world, 0.2, lambda: world.crash("api"))
    at(world, 0.5, lambda: world.restart("api"))
    world.run(until=1)
    assert [viz.state_at(world, t).nodes["api-0"].status for t in (0.1, 0.2, 0.4, 0.5, 0.9)] == [
        "up", "down", "down", "up", "up",
    ]
    assert viz.state_at(world, 0.3).down == ("api-0",)


def test_state_at_shows_a_paused_node():
    """A paused node reads 'paused' until it resumes."""
    world = world_with()
    at(world, 0.2, lambda: world.pause("store-db"))
    at(world, 0.5, lambda: world.resume("store-db"))
    world.run(until=1)
    assert viz.state_at(world, 0.3).paused == ("store-db",)
    assert viz.state_at(world, 0.6).nodes["store-db"].status == "up"


def test_state_at_lists_the_faults_in_force():
    """The partition fault is active inside its window and gone after it; the unhealed one stays."""
    world = faulty_world()
    assert [w.index for w in viz.state_at(world, 0.35).faults] == [1, 2]
    assert [w.index for w in viz.state_at(world, 0.65).faults] == []
    assert [w.index for w in viz.state_at(world, 0.9).faults] == [3]


def test_state_at_lists_the_last_events_up_to_that_moment():
    """`recent` ends with the last log entry at or before t, and holds nothing later."""
    world = faulty_world()
    state = viz.state_at(world, 0.3)
    assert state.recent and all(entry[0] <= 0.3 for entry in state.recent)
    assert ("node.crash", "api-0") in [entry[1:3] for entry in state.recent]


def test_state_at_rejects_a_negative_time():
    """t must be a finite number of seconds >= 0."""
    with pytest.raises(sandbox.InvalidParameterError, match="t=-1"):
        viz.state_at(world_with(), -1)


def test_stepper_moves_through_the_run_and_shows_the_state():
    """Moving the slider changes the time shown and the HTML; 'next' steps to the next logged moment."""
    world = faulty_world()
    panel = viz.stepper(world)
    first = panel.view.value
    assert panel.time == 0.0 and "t = 0.0000 s" in first
    assert (panel.slider.min, panel.slider.value) == (1, 1) and f"moment 1 of {len(panel.times)}" in first
    panel.next.click()
    assert panel.slider.value == 2 and panel.time == panel.times[1] > 0.0
    assert f"moment 2 of {len(panel.times)}" in panel.view.value  # the heading counts as the slider does
    panel.slider.value = panel.times.index(0.3) + 1
    assert panel.state.nodes["api-0"].status == "down"
    assert "kill api-0" in panel.view.value and panel.view.value != first
    panel.slider.value = panel.slider.max
    panel.next.click()
    assert panel.slider.value == len(panel.times) and panel.time == panel.times[-1]


def test_a_caller_giving_up_shows_as_an_orange_timeout_on_its_lifeline():
    """The module's "case 3": the client stops waiting (rpc.timeout) while the reply is still on its way; the
    diagram marks the moment on the client's lifeline, in the orange of an operation that cannot tell."""
    world = world_with(latency=0.01)
    world.add_client("amy", calls("http://api/slow", timeout=0.2))
    world.run(until=1)
    from sandbox.viz._run import read_run

    assert [(round(t, 3), node, secs) for t, node, secs in read_run(world).timeouts] == [(0.2, "amy", 0.2)]
    fig = viz.sequence_diagram(world)
    ticks = [line for ax in fig.axes for line in ax.lines if (line.get_gid() or "").startswith("timeout:amy:")]
    assert len(ticks) == 1 and to_hex(ticks[0].get_color()) == "#e67700"
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "timeout (0.2 s)" in texts
    calm = world_with(latency=0.01)
    calm.add_client("amy", calls("http://api/ping"))
    calm.run(until=1)
    assert not [t for ax in viz.sequence_diagram(calm).axes for t in ax.texts if t.get_text().startswith("timeout")]


def test_the_last_events_read_as_sentences():
    """The stepper's "Last events" say who sent what to whom, with times to the millisecond: no message ids, raw
    delays or tuples, and nothing cut mid-word."""
    world = world_with()
    world.add_client("amy", calls("http://api/ping"))
    at(world, 0.6, lambda: world.crash("api"))
    world.run(until=1)
    panel = viz.stepper(world)
    panel.slider.value = panel.slider.max
    events = re.findall(r"<td style='[^']*'>([^<]*)</td>", panel.view.value.split("Last events")[1])
    sentences = [html.unescape(x) for x in events[1::2]]
    assert "amy sends GET /ping to api-0" in sentences and "api-0 sends 200 to amy" in sentences
    assert "api-0 starts serving GET /ping for amy" in sentences
    assert "api-0 answers amy: 200" in sentences and "api-0 crashes" in sentences
    assert all(t.endswith(" s") and len(t.split(".")[1]) == 5 for t in events[0::2])  # "0.250 s"
    assert not any("net.send" in x or "0.00134" in x for x in sentences)


def test_describe_shortens_long_values_at_a_word_boundary():
    from sandbox.viz._events import WIDTH, describe

    long = " ".join(["inventory"] * 40)
    text = describe((1.0, "event", "checkout-0", "breaker", (("why", long),)))
    assert text.startswith("checkout-0: breaker (why=inventory inventory") and text.endswith("…)")
    assert "invent …" not in text and "inventor …" not in text
    unknown = describe((1.0, "made.up", "x", {"note": long}))
    assert unknown.startswith("made.up x {'note': 'inventory") and len(unknown) <= WIDTH
    assert describe((0.5, "fault.start", 2, "NetworkChaos", "partition", "partition a | b")) == (
        "fault 2. starts: partition a | b")
    labels = {("http", 7): "POST /orders", ("http.reply", 7): "201"}
    assert describe((0.5, "net.send", "a", "b", "http", 7, 0.001), labels) == "a sends POST /orders to b"
    assert describe((0.6, "net.send", "b", "a", "http.reply", 7, 0.001), labels) == "b sends 201 to a"
    assert describe((0.9, "rpc.timeout", "a", 7, 0.25), labels) == (
        "a gives up waiting for the answer to POST /orders after 0.25 s")
    assert describe((0.5, "net.send", "a", "b", "http", 7, 0.001)) == "a sends http to b"


def test_stepper_jumps_to_the_next_trouble():
    """'next trouble' skips ordinary traffic and stops at the next fault, crash or drop."""
    world = faulty_world()
    panel = viz.stepper(world)
    panel.next_trouble.click()
    assert panel.time == 0.2  # the partition starts
    panel.next_trouble.click()
    assert panel.time > 0.2 and panel.time in {e[0] for e in world.recorder.log if e[1] in ("net.drop", "node.crash")}


# --- traces ---------------------------------------------------------------------------------


def traced_world() -> sandbox.World:
    world = world_with(tracing=True, latency=0.01)
    world.add_client("amy", calls("http://api/items/a", method="put"))
    world.add_client("bob", calls("http://api/boom"), start=0.5)
    world.run(until=2)
    return world


def span_labels(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("span-label:")]


def test_trace_waterfall_draws_the_biggest_trace_one_row_per_span_indented_by_depth():
    """The default trace is the one with most spans; each span is a row, children after their parent."""
    world = traced_world()
    spans = world.spans()
    biggest = max({s.context.trace_id for s in spans}, key=lambda t: sum(s.context.trace_id == t for s in spans))
    labels = span_labels(viz.trace_waterfall(world))
    assert len(labels) == sum(s.context.trace_id == biggest for s in spans)
    assert labels[0] == "amy  PUT api/items/a"
    assert labels[1] == "\u2514 api-0  PUT /items/{key}"


def test_trace_waterfall_draws_error_spans_red():
    """A request answered 500 has its spans drawn in the error colour."""
    world = traced_world()
    boom = next(s for s in world.spans() if s.name == "GET /boom")
    fig = viz.trace_waterfall(world, trace_id=boom.context.trace_id)
    bar = next(p for p in fig.axes[0].patches if p.get_gid() == f"span:{boom.context.span_id:016x}")
    assert to_hex(bar.get_facecolor()) == "#e03131"


def test_trace_waterfall_marks_spans_whose_parent_is_missing_as_orphans():
    """Without its root span, the server span is drawn at the top level and says '(orphan)'."""
    world = traced_world()
    spans = [s for s in world.spans() if s.parent is not None]  # every root left out
    labels = span_labels(viz.trace_waterfall(spans))
    assert labels[0].endswith("(orphan)") and not labels[0].startswith("\u2514")


def test_trace_waterfall_rejects_an_unknown_trace_id():
    """A trace id that no span has is refused, with the run's trace ids offered."""
    with pytest.raises(sandbox.InvalidParameterError, match="no span of this run has it"):
        viz.trace_waterfall(traced_world(), trace_id="ff" * 16)


def test_trace_waterfall_follows_a_highlighted_operation():
    """With highlight, the waterfall shows the trace the highlighted operation started."""
    world = traced_world()
    bob_op = next(op for op in world.history if op.process == "bob")
    labels = span_labels(viz.trace_waterfall(world, highlight=[bob_op]))
    assert labels[0] == "bob  GET api/boom"


# --- the counterexample figure and output ---------------------------------------------------


def test_counterexample_figure_adds_the_waterfall_when_traced_and_no_empty_fault_column():
    """A traced world adds the waterfall below the diagram; with no fault in the run there is no fault column (an
    empty one only took room from the diagram)."""
    world = traced_world()
    fig = viz.counterexample_figure(world, highlight=[next(op for op in world.history if op.process == "bob")])
    diagram, waterfall = fig.axes
    assert any(t.get_text().startswith("bob") for t in waterfall.texts)
    assert not any(t.get_text() == "faults" for ax in fig.axes for t in ax.texts)


def test_counterexample_figure_without_tracing_has_diagram_and_fault_column():
    """Untraced, the counterexample is the diagram and its fault column, with the faults' bars in it."""
    fig = viz.counterexample_figure(faulty_world())
    assert len(fig.axes) == 2
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    assert {p.get_gid() for p in fig.axes[1].patches} >= {"fault:1", "fault:2", "fault:3", "node:api-0"}


def test_to_png_gives_png_bytes():
    """to_png returns bytes that start with the PNG signature."""
    world = world_with()
    world.run(until=1)
    assert viz.to_png(viz.fault_timeline(world))[:8] == b"\x89PNG\r\n\x1a\n"


def test_to_svg_gives_the_same_xml_document_for_the_same_figure():
    """to_svg returns an SVG that parses as XML, identical each time (no random ids, no date)."""
    world = faulty_world()
    fig = viz.sequence_diagram(world)
    svg = viz.to_svg(fig)
    assert ElementTree.fromstring(svg).tag.endswith("svg")
    assert viz.to_svg(fig) == svg


def test_the_same_seed_gives_the_same_picture():
    """Two worlds built and run alike from one seed give byte-identical SVG diagrams."""
    svgs = []
    for _ in range(2):
        world = world_with(seed=5, latency=0.01)
        world.network.set_defaults(latency=0.01, jitter=0.005, distribution="uniform")
        world.add_client("amy", calls("http://api/items/a", "http://api/items/b", method="put"))
        world.run(until=1)
        svgs.append(viz.to_svg(viz.sequence_diagram(world)))
    assert svgs[0] == svgs[1]


def test_save_writes_png_or_svg_by_suffix(tmp_path):
    """save picks the format from the suffix (in any case) and returns the path."""
    world = world_with()
    world.run(until=1)
    fig = viz.fault_timeline(world)
    png = viz.save(fig, tmp_path / "faults.PNG")
    svg = viz.save(fig, str(tmp_path / "faults.svg"))
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert ElementTree.parse(svg).getroot().tag.endswith("svg")


def test_save_rejects_other_suffixes():
    """A .pdf path is refused, naming the path and the two formats."""
    with pytest.raises(sandbox.InvalidParameterError, match=r"'out\.pdf'.*\.png or \.svg"):
        viz.save(Figure(), "out.pdf")


def test_all_of_sandbox_viz_exists_and_has_docstrings():
    """Every name in sandbox.viz.__all__ is there, with a docstring of its own."""
    missing = [n for n in viz.__all__ if not hasattr(viz, n)]
    undocumented = [n for n in viz.__all__ if not n.endswith("COLOR") and not (getattr(viz, n).__doc__ or "").strip()]
    assert (missing, undocumented) == ([], [])


@pytest.fixture(scope="module")
def shop() -> sandbox.World:
    from sandbox.examples import order_system

    world = order_system.build_world(2, clients=1, orders_per_client=1, faults=False)
    return order_system.run_to_completion(world)


def test_the_stepper_says_when_no_trouble_lies_ahead():
    """In a calm run the "next trouble" button is disabled and says there is none, instead of doing nothing."""
    world = sandbox.World(seed=1)
    world.run(until=1.0)
    widget = viz.stepper(world)
    assert widget.next_trouble.disabled
    assert widget.next_trouble.description == "no trouble ahead"


def test_a_figure_shows_itself_in_ipython_without_pyplot():
    """In IPython, a figure that is a cell's last expression displays as a PNG (not '<Figure size ...>'),
    with or without pyplot's inline backend; outside IPython nothing is hooked."""
    from types import SimpleNamespace

    from IPython.core.formatters import PNGFormatter
    from matplotlib.figure import Figure

    png = PNGFormatter()
    shell = SimpleNamespace(display_formatter=SimpleNamespace(formatters={"image/png": png}))
    assert png(Figure()) is None
    assert viz.show_in_ipython(shell) is True
    assert png(Figure(figsize=(1, 1)))[:8] == b"\x89PNG\r\n\x1a\n"
    assert viz.show_in_ipython() is False  # pytest is not IPython


def test_a_world_that_was_drawn_is_freed_when_dropped():
    """The pictures cache what they read from a world's log; the cache must not keep the world alive (a notebook
    drawing run after run, or an exploration drawing its counterexamples, would keep every world)."""
    import gc
    import weakref

    world = world_with()
    world.add_client("c", calls("http://api/ping"))
    world.run()
    viz.sequence_diagram(world)
    from sandbox.viz._run import read_run

    assert read_run(world) is read_run(world)  # cached while the log is unchanged
    ref = weakref.ref(world)
    del world
    gc.collect()
    assert ref() is None


def test_a_highlighted_story_keeps_its_own_nodes_and_fits_a_notebook():
    """With more lifelines than a notebook shows at full size, a highlighted diagram keeps the nodes of its story
    (saying how many it left out, and which), and narrows its lanes so that its text is shown at its own size."""
    from sandbox.viz._sequence import FIT_IN, LANE_IN, MIN_LANE_IN, sequence_scene

    world = world_with(replicas=4, latency=0.01)
    world.add_client("amy", calls("http://api/items/a", method="put"))
    for i, name in enumerate(("bob", "cy", "dee", "eve")):
        world.add_client(name, calls(*["http://api/items/b"] * 3, method="put"), start=0.001 * i)
    world.run(until=2)
    amys = [op for op in world.history if op.process == "amy"]
    whole = sequence_scene(world)
    story = sequence_scene(world, highlight=amys)
    assert len(whole.lanes) > 6 and "amy" in story.lanes and "bob" not in story.lanes
    assert len(story.lanes) < len(whole.lanes)
    assert any(n.startswith(f"{len(whole.lanes) - len(story.lanes)} nodes outside the highlighted story") for n in story.notes)
    fig = viz.counterexample_figure(world, highlight=amys)
    assert fig.get_size_inches()[0] <= FIT_IN + 1e-6
    whole.fit(3.0)
    assert MIN_LANE_IN <= whole.lane_in < LANE_IN


def test_a_highlighted_story_under_load_keeps_a_few_messages_of_context_either_side():
    """Around a story, the window's margin under load holds many unrelated messages: at most CONTEXT_MESSAGES are
    kept before the story and after it, and a note says how many were left out; a window given by start and end is
    shown whole."""
    from sandbox.viz._sequence import CONTEXT_MESSAGES, sequence_scene

    world = world_with(latency=0.002)
    world.add_client("amy", calls("http://api/slow"), start=1.0)
    world.add_client("bob", calls(*["http://api/ping"] * 1000, timeout=5.0))
    world.run(until=3)
    amys = [op for op in world.history if op.process == "amy"]
    story = sequence_scene(world, highlight=amys)
    first, last = min(op.time for op in amys), max(op.time for op in amys)
    before = [m for _, m in story.messages if m.sent < first]
    after = [m for _, m in story.messages if m.sent > last]
    assert len(before) == CONTEXT_MESSAGES and len(after) == CONTEXT_MESSAGES, (len(before), len(after))
    whole_margin = sequence_scene(world, highlight=amys, start=story.start - 0.05, end=story.end + 0.05)
    assert len(whole_margin.messages) > len(story.messages) + 2 * CONTEXT_MESSAGES
    dropped = [n for n in story.notes if n.endswith("messages around the story not shown")]
    assert len(dropped) == 1 and int(dropped[0].split()[0].replace(",", "")) > 0
