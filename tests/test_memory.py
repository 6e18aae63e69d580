"""Tests of a long run's memory: the event log and the spans kept in a window (``keep_events``, ``keep_spans``)."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc

import pytest
from fastapi import Depends, FastAPI

import sandbox
import sandbox.viz as viz
from sandbox.checkers import check, no_double_charge
from sandbox.checkers.verdict import Outcome
from sandbox.evidence import snapshot
from sandbox.recorder import WindowedRunError


def notes_app() -> FastAPI:
    """Writes a note per call to ``notes-db`` and says a domain event for it."""
    app = FastAPI()

    @app.post("/notes/{key}")
    async def put_note(key: str, db: sandbox.Database = Depends(sandbox.database("notes-db"))) -> dict:
        await db.put("notes", key, {"key": key})
        sandbox.event("note", key=key)
        return {"key": key}

    return app


async def writer(client: sandbox.Client) -> None:
    """Writes notes for ever, one at a time, with no history: what grows is the log and the spans only."""
    n = 0
    while True:
        await client.http.post(f"http://notes/notes/k{n % 50}")
        n += 1
        await client.sleep(0.01)


def notes_world(seed: int = 3, **options) -> sandbox.World:
    world = sandbox.World(seed, **options)
    world.add_database("notes-db")
    world.add_service("notes", notes_app, replicas=2)
    world.add_client("writer", writer)
    return world


def fingerprint_as_before(world: sandbox.World) -> str:
    """The fingerprint as World.fingerprint computed it before windows: SHA-256 of every entry, then every op."""
    digest = hashlib.sha256()
    for line in [repr(entry) for entry in world.recorder.log] + [repr(op) for op in world.history]:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def test_a_window_keeps_memory_flat_as_the_run_doubles_and_the_fingerprint_is_the_whole_logs():
    """With keep_events and keep_spans, doubling the run keeps as many entries and spans (and about as much
    memory), where the whole log doubles; the fingerprint is the one the whole log gives, as before windows."""
    kept, traced = {}, {}
    for window in (False, True):
        options = {"keep_events": 300, "keep_spans": 40} if window else {}
        gc.collect()
        tracemalloc.start()
        try:
            world = notes_world(tracing=True, **options)
            world.run(until=1.0)
            gc.collect()
            at_one = tracemalloc.get_traced_memory()[0]
            first = (len(world.recorder.recent()), len(world.tracing.recent_spans()), len(world.recorder))
            world.run(until=2.0)
            gc.collect()
            traced[window] = tracemalloc.get_traced_memory()[0] - at_one
        finally:
            tracemalloc.stop()
        kept[window] = (first, (len(world.recorder.recent()), len(world.tracing.recent_spans()), len(world.recorder)))
        if not window:
            whole = world
        else:
            assert world.fingerprint() == whole.fingerprint() == fingerprint_as_before(whole)
    (log_1, spans_1, recorded_1), (log_2, spans_2, recorded_2) = kept[False]
    assert (log_1, log_2) == (recorded_1, recorded_2)  # the whole log keeps everything
    assert recorded_2 > 1.8 * recorded_1 and spans_2 > 1.8 * spans_1
    assert kept[True] == ((300, 40, recorded_1), (300, 40, recorded_2))  # the same run, 300 entries and 40 spans kept
    assert traced[True] < traced[False] / 5, traced  # the whole log's second second costs memory; the window's not


def test_the_window_keeps_the_last_entries_and_spans_and_counts_them_all():
    """What a windowed world keeps is the end of what the whole world has: its last entries, domain events and
    spans; counts() still counts every entry of the run."""
    whole = notes_world(tracing=True)
    windowed = notes_world(tracing=True, keep_events=250, keep_spans=30)
    for world in (whole, windowed):
        world.run(until=1.5)
    assert windowed.recorder.recent() == whole.recorder.log[-250:]
    assert windowed.recorder.recent("event") == [e for e in whole.recorder.log[-250:] if e[1] == "event"]
    assert windowed.recorder.counts() == whole.recorder.counts()
    assert len(windowed.recorder) == len(whole.recorder) == windowed.recorder.dropped + 250
    ids = [span.context.span_id for span in whole.spans()[-30:]]
    assert [span.context.span_id for span in windowed.tracing.recent_spans()] == ids
    assert windowed.tracing.dropped == len(whole.spans()) - 30


def test_every_reader_of_the_whole_log_refuses_a_windowed_run_and_says_what_to_do():
    """Once entries were let go, the whole log, the domain events, the spans, snapshot(), the pictures and the
    checkers refuse (a checker's verdict is UNKNOWN, never a pass), naming keep_events or keep_spans."""
    world = notes_world(tracing=True, keep_events=50, keep_spans=10)
    world.run(until=1.0)
    readers = {
        "log": lambda: world.recorder.log,
        "entries": lambda: world.recorder.entries("net.send"),
        "events": lambda: world.events,
        "spans": world.spans,
        "otlp": world.tracing.otlp_json,
        "snapshot": lambda: snapshot(world),
        "sequence diagram": lambda: viz.sequence_diagram(world),
        "state": lambda: viz.state_at(world, 0.5),
    }
    for name, read in readers.items():
        with pytest.raises(WindowedRunError, match=r"keep_(events|spans)=(50|10)\)") as raised:
            read()
        assert "without keep_" in str(raised.value), name
    (verdict,) = check(world, [no_double_charge(db="notes-db", table="notes", key=None, amount=None)])
    assert verdict.outcome is Outcome.UNKNOWN and "keep_events=50" in verdict.summary
    assert isinstance(WindowedRunError("x"), sandbox.ConfigError)


def test_a_window_the_run_never_filled_changes_nothing():
    """A window larger than the run lets nothing go: every reader answers as for a world without one."""
    world = notes_world(tracing=True, keep_events=100_000, keep_spans=10_000)
    whole = notes_world(tracing=True)
    for w in (world, whole):
        w.run(until=0.5)
    assert world.recorder.dropped == world.tracing.dropped == 0
    assert world.recorder.log == whole.recorder.log and len(world.events) == len(whole.events) > 0
    assert snapshot(world) == snapshot(whole)


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"keep_events": -1}, "keep_events=-1"),
        ({"keep_events": 1.5}, "keep_events=1.5"),
        ({"keep_events": True}, "keep_events=True"),
        ({"keep_events": "100"}, "keep_events='100'"),
        ({"keep_spans": -5, "tracing": True}, "keep_spans=-5"),
        ({"keep_spans": 100}, "keep_spans=100 without tracing=True"),
    ],
)
def test_a_bad_window_is_refused_showing_the_value_and_a_good_one(options, shown):
    """keep_events and keep_spans take None or a whole number >= 0; keep_spans needs tracing=True."""
    with pytest.raises(sandbox.InvalidParameterError) as raised:
        sandbox.World(1, **options)
    message = str(raised.value)
    assert message.startswith(shown)
    assert "tracing=True as well" in message if "without" in shown else "e.g. keep_" in message
