"""Module 02's blackboard (course/lessons/idempotency.py): the runs the notebook shows compute what its prose says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "course"))

from lessons import idempotency

SLOW = {"delay": 0.08, "timeout": 0.2, "retries": 3}


def test_a_retry_without_a_key_charges_once_per_attempt_that_reached_the_service():
    """Over the slow link every attempt times out, and the naive service charges each one: four charges."""
    run = idempotency.retry_run(idempotency.SEED, keyed=False, service="naive", **SLOW)
    assert len(run.attempts) == 4 and all(a.status is None for a in run.attempts)
    assert len(run.charges) == 4
    assert not run.answered


def test_a_retry_with_a_key_charges_once_and_gets_the_stored_response():
    """With a key: one charge; the answer that finally arrives is the first charge's stored response."""
    run = idempotency.retry_run(idempotency.SEED, keyed=True, **SLOW)
    assert len(run.charges) == 1
    assert run.answered and len(run.attempts) > 1
    answer = [a for a in run.attempts if a.status == 201][-1]
    assert answer.charge_id == run.charges[0]["id"]
    assert run.charges[0]["at"] < answer.sent  # charged before the answered attempt was even sent


@pytest.mark.parametrize("seed", [idempotency.SEED, idempotency.SEED + 1, idempotency.SEED + 2])
@pytest.mark.parametrize("delay", idempotency.DELAYS)
def test_the_keyed_service_never_charges_twice(seed, delay):
    """Whatever the delay and seed, the keyed service charges exactly once when every attempt carries the key."""
    assert len(idempotency.retry_run(seed, delay=delay, keyed=True).charges) == 1


def test_a_fast_link_needs_no_retry():
    """At 20 ms each way the first attempt is answered: one attempt, one charge, key or not."""
    for keyed in (False, True):
        run = idempotency.retry_run(idempotency.SEED, delay=0.02, keyed=keyed)
        assert len(run.attempts) == 1 and len(run.charges) == 1 and run.answered


def test_runs_are_deterministic_and_cached():
    """The same parameters give the same run (cached: the very same object); a new world gives the same fingerprint."""
    a = idempotency.retry_run(idempotency.SEED + 1, keyed=False, **SLOW)
    assert idempotency.retry_run(idempotency.SEED + 1, keyed=False, **SLOW) is a
    world, _ = idempotency.build_retry_world(idempotency.SEED + 1, keyed=False, **SLOW)
    world.run(limit=30.0)
    assert world.fingerprint() == a.fingerprint


def test_check_then_act_races_on_a_double_click_and_the_atomic_claim_does_not():
    """Two requests with one key at once: naive and check-first both charge twice; the keyed service once, with a 409."""
    assert idempotency.double_click("naive")[1] == 2
    assert idempotency.double_click("check first")[1] == 2
    statuses, charges = idempotency.double_click("keyed")
    assert charges == 1 and sorted(statuses) == [201, 409]


def test_redelivery_repeats_the_plain_consumer_and_not_the_deduplicating_one():
    """Lost commits redeliver: the plain consumer awards some orders twice; the deduplicating one exactly 10 each."""
    plain = idempotency.consumer_run(dedup=False)
    assert len(plain.points) == 6 and any(p > 10 for p in plain.points.values())
    dedup = idempotency.consumer_run(dedup=True)
    assert dedup.points == {f"o-{i}": 10 for i in range(6)}


def test_without_redelivery_even_the_plain_consumer_awards_once():
    """The duplicates come from the lost commits, not from the consumer itself."""
    calm = idempotency.consumer_run(dedup=False, redelivery=False)
    assert calm.points == {f"o-{i}": 10 for i in range(6)}


def test_the_pictures_and_the_table():
    """The timeline titles count the charges; the table has one row per seed and delay; the PNG is a PNG."""
    run = idempotency.retry_run(idempotency.SEED, keyed=False, **SLOW)
    fig = idempotency.retry_timeline(run)
    assert "4 charges" in fig.axes[0].get_title(loc="left")
    assert idempotency.png(fig).startswith(b"\x89PNG")
    both = idempotency.retry_comparison(idempotency.SEED, **SLOW)
    assert [ax.get_title(loc="left") for ax in both.axes] == [
        "without an Idempotency-Key: 4 attempts, 4 charges", "with an Idempotency-Key: 3 attempts, 1 charge"]
    assert len(idempotency.retry_table().splitlines()) == 1 + 3 * 4


def test_the_widget_redraws_from_the_cache():
    """The widget builds headless; switching the key on changes the summary to one charge."""
    pytest.importorskip("ipywidgets")
    box = idempotency.retry_widget()
    controls, summary, image = box.children
    assert "4 charge(s)" in summary.value and bytes(image.value).startswith(b"\x89PNG")
    key = controls.children[1].children[1]
    key.value = True
    assert "1 charge(s)" in summary.value
