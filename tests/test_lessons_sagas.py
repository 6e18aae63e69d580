"""Module 03's lessons (``course/lessons/sagas.py``): the trip saga does what the module says it does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "course"))

from lessons import sagas

SEED = 3
NONE = sagas.VARIANTS["no compensation"]
MEMORY = sagas.VARIANTS["compensate (log in memory)"]
NEW_IDS = sagas.VARIANTS["compensate + persisted log, new id per attempt"]
FULL = sagas.VARIANTS["compensate + persisted log + stable ids"]


def statuses(run: sagas.TripRun) -> dict[str, list[str]]:
    return {step: [b["status"] for b in bookings] for step, bookings in run.bookings.items()}


@pytest.fixture(scope="module")
def runs() -> dict:
    return sagas.all_runs(SEED)


def test_nothing_going_wrong_books_all_three_with_every_variant(runs):
    for variant in sagas.VARIANTS:
        run = runs[("nothing", variant)]
        assert statuses(run) == {"flight": ["booked"], "hotel": ["booked"], "car": ["booked"]}, variant
        assert run.verdict.outcome.name == "PASS"
        assert [op.type for op in run.world.history if op.f == "book-trip" and op.type != "invoke"] == ["ok"]


def test_without_compensation_a_refused_car_leaves_flight_and_hotel_booked():
    run = sagas.run_trip(SEED, "car refused", **NONE)
    assert statuses(run) == {"flight": ["booked"], "hotel": ["booked"], "car": []}
    assert run.verdict.outcome.name == "FAIL" and "then stopped" in run.verdict.summary
    assert run.outcome == "half done: flight, hotel booked"


def test_compensation_cancels_in_reverse_order_and_keeps_the_records(runs):
    run = runs[("car refused", "compensate (log in memory)")]
    assert statuses(run) == {"flight": ["cancelled"], "hotel": ["cancelled"], "car": []}
    undone = [e["step"] for e in run.world.events if e.kind == "saga" and e["action"] == "undo"]
    assert undone == ["hotel", "flight"]
    assert run.verdict.outcome.name == "PASS"
    # the unit goes back on sale: each provider's capacity is what it was
    for step in ("flight", "hotel"):
        assert run.world.database(f"{sagas.PROVIDER[step]}-db").read("capacity", "units") == {"n": 3}


def test_a_refused_first_step_needs_no_compensation(runs):
    run = runs[("flight refused", "no compensation")]
    assert statuses(run) == {"flight": [], "hotel": [], "car": []}
    assert run.outcome == "nothing booked"


@pytest.mark.parametrize("trouble", ["crash after flight", "crash after hotel"])
def test_a_crash_with_the_log_in_memory_leaves_the_saga_half_done(runs, trouble):
    run = runs[(trouble, "compensate (log in memory)")]
    assert run.outcome.startswith("half done"), run.outcome
    assert run.verdict.outcome.name == "FAIL"
    kinds = [e[1] for e in run.world.recorder.log if e[1] in ("node.crash", "node.restart")]
    assert kinds == ["node.crash", "node.restart"]


@pytest.mark.parametrize("trouble", ["crash after flight", "crash after hotel"])
def test_a_persisted_log_with_new_ids_books_the_step_twice(runs, trouble):
    run = runs[(trouble, "compensate + persisted log, new id per attempt")]
    step = trouble.removeprefix("crash after ")
    assert statuses(run)[step] == ["booked", "booked"]
    assert run.verdict.outcome.name == "FAIL" and "twice" in run.verdict.summary


@pytest.mark.parametrize("trouble", ["crash after flight", "crash after hotel"])
def test_a_persisted_log_with_stable_ids_finishes_the_saga_after_the_restart(runs, trouble):
    run = runs[(trouble, "compensate + persisted log + stable ids")]
    assert statuses(run) == {"flight": ["booked"], "hotel": ["booked"], "car": ["booked"]}
    assert run.verdict.outcome.name == "PASS"
    assert any(e.kind == "recovery" for e in run.world.events)
    # the customer's request died with the orchestrator: no answer, though the trip is booked
    assert [op.type for op in run.world.history if op.f == "book-trip" and op.type != "invoke"] == ["info"]


def test_the_log_tells_the_story_in_order_and_marks_the_memory_log_lost(runs):
    moments = sagas.saga_log(runs[("crash after hotel", "compensate (log in memory)")])
    times = [m.time for m in moments]
    assert times == sorted(times)
    crash = next(i for i, m in enumerate(moments) if m.kind == "crash")
    assert moments[crash].log.startswith("LOST")
    assert moments[crash].providers == {"flight": "booked", "hotel": "booked", "car": "-"}
    assert moments[-1].providers == {"flight": "booked", "hotel": "booked", "car": "-"}


def test_runs_are_deterministic():
    a = sagas.run_trip(SEED, "crash after hotel", **NEW_IDS)
    b = sagas.run_trip(SEED, "crash after hotel", **NEW_IDS)
    assert a.world.fingerprint() == b.world.fingerprint()


def test_the_widget_switches_runs_and_steps(runs):
    box = sagas.saga_explorer(SEED, runs)
    box.trouble.value, box.variant.value = "car refused", "no compensation"
    assert box.slider.value == 0 and "moment 1 of" in box.view.value
    box.slider.value = box.slider.max
    assert "half done" in box.view.value and "FAIL" in box.view.value
    box.variant.value = "compensate (log in memory)"
    assert box.slider.value == 0
    box.slider.value = box.slider.max
    assert "compensated: hotel, flight" in box.view.value


def test_the_summary_and_the_figure(runs):
    text = str(sagas.summary(runs))
    assert len(text.splitlines()) == 1 + len(sagas.TROUBLES)
    fig = sagas.strip_figure(runs, "crash after hotel")
    assert len(fig.axes) == len(sagas.VARIANTS)
