"""Module 05's blackboard (course/lessons/concurrency.py): the runs the notebook shows compute what its prose says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "course"))

from lessons import concurrency  # noqa: E402

SEED = concurrency.SEED


@pytest.mark.parametrize("strategy", ["naive", "transaction"])
def test_read_check_write_oversells_and_loses_updates_even_in_a_transaction(strategy):
    """Eight buyers for three lamps: the read-check-write sells all eight, and the stock forgets most of the sales
    (at read committed, a transaction changes nothing)."""
    b = concurrency.burst(strategy, 8, SEED, stock=3)
    assert b.sold == 8 and b.oversold == 5
    assert b.left > 0 and b.lost_updates == b.sold - (3 - b.left) > 0


def test_an_in_process_lock_works_in_one_replica_and_not_in_two():
    """An anyio.Lock makes one replica's requests take turns; with two replicas, each has its own and they race."""
    one = concurrency.burst("process lock", 8, SEED, stock=3, replicas=1)
    two = concurrency.burst("process lock", 8, SEED, stock=3, replicas=2)
    assert (one.sold, one.oversold, one.lost_updates) == (3, 0, 0)
    assert two.oversold > 0


@pytest.mark.parametrize("strategy", ["row lock", "compare-and-set"])
@pytest.mark.parametrize("seed", [SEED, SEED + 1, SEED + 2])
def test_row_locks_and_compare_and_set_never_oversell(strategy, seed):
    """Pessimistic and optimistic alike: exactly the stock is sold, nothing is lost, the rest refused with 409."""
    b = concurrency.burst(strategy, 8, seed, stock=3)
    assert (b.sold, b.refused, b.left, b.lost_updates) == (3, 5, 0, 0)


def test_under_contention_compare_and_set_retries_and_turns_buyers_away_while_the_row_lock_queues_them():
    """32 buyers on one product: the optimistic shop retries conflicts many times per sale and runs out of tries (503)
    for most buyers; the pessimistic shop serves every one. Spread over 8 products, compare-and-set serves all."""
    cas, lock = concurrency.burst("compare-and-set", 32, SEED), concurrency.burst("row lock", 32, SEED)
    assert lock.sold == 32 and lock.busy == 0 and lock.lock_waits > 0
    assert cas.busy > 16 and cas.conflicts / cas.sold > 10
    assert concurrency.burst("compare-and-set", 32, SEED, rows=8).busy == 0
    assert concurrency.burst("compare-and-set", 1, SEED).conflicts == 0


def test_transfers_in_opposite_directions_deadlock_until_the_lock_timeout_unless_locked_in_one_order():
    """Locks in request order: two seconds of nothing, then one transfer aborted (503) and the other through; locks in
    key order: both through at once."""
    stuck = concurrency.transfers_run(ordered=False)
    assert sorted(status for _, status, _ in stuck) == [201, 503]
    assert all(when >= concurrency.DEADLOCK_WAIT for _, _, when in stuck)
    ordered = concurrency.transfers_run(ordered=True)
    assert [status for _, status, _ in ordered] == [201, 201]
    assert all(when < 0.2 for _, _, when in ordered)


def test_the_contention_figure_has_its_three_panels_and_the_widget_builds():
    """The figure draws throughput, buyers turned away and conflicts per sale; the widget shows it with a table."""
    fig = concurrency.contention_figure(buyers=(1, 4))
    assert [ax.get_title() for ax in fig.axes] == [
        "sales per second (virtual)", "buyers turned away busy (503), %", "conflicts retried per sale"]
    assert concurrency._contention_png(1, SEED)[:4] == b"\x89PNG"
    widget = concurrency.contention_widget(seeds=(SEED,))
    assert "compare-and-set" in widget.children[2].value


def test_bad_input_is_refused_with_the_value():
    """An unknown strategy or a count below one is refused, naming the value and what to give."""
    import sandbox

    with pytest.raises(sandbox.InvalidParameterError, match=r"strategy='optimistic': choose one of"):
        concurrency.burst("optimistic", 4)
    with pytest.raises(sandbox.InvalidParameterError, match=r"buyers=0: use a whole number >= 1"):
        concurrency.burst("naive", 0)
