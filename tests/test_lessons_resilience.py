"""Module 06's blackboard (course/lessons/resilience.py): the runs the notebook shows compute what its prose says."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

import sandbox

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "course"))

from lessons import resilience  # noqa: E402

SEED = resilience.SEED
SEEDS = (SEED, SEED + 1, SEED + 2)


def test_only_a_deadline_answers_every_shopper_in_time_and_sends_nothing_after_they_left():
    """While inventory is slow, no timeout and a timeout per call leave shoppers without an answer (the per-call
    retries going on after they left); the propagated deadline answers every one in time and sends nothing late,
    though inventory still reserves for the orders refused (the caller's timeout does not stop the callee)."""
    none, per_call, deadline = (resilience.deadline_run(p, SEED) for p in resilience.DEADLINE_POLICIES)
    assert none.gave_up > 0 and none.orphans >= none.gave_up
    assert per_call.gave_up > 0 and per_call.wasted > 0
    assert deadline.gave_up == 0 and deadline.in_time == deadline.orders and deadline.wasted == 0
    assert deadline.orphans == deadline.orders - deadline.confirmed > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_jitter_sends_fewer_synchronized_calls_and_less_work_than_backoff_without_jitter(seed):
    """A burst of 100 orders: without jitter the refused orders come back together, in waves far above what
    inventory takes at once, and some run out of attempts; every jitter strategy has a lower peak per 100 ms,
    fewer calls in all, confirms every order, and finishes sooner."""
    plain = resilience.storm_run("no jitter", 100, seed)
    assert plain.peak >= 80 and plain.confirmed < plain.orders
    for strategy in ("full jitter", "equal jitter", "decorrelated jitter"):
        run = resilience.storm_run(strategy, 100, seed)
        assert run.peak < plain.peak * 0.75, (strategy, run.peak, plain.peak)
        assert run.calls < plain.calls * 0.6 and run.confirmed == run.orders
        assert run.done_at < plain.done_at / 4


def test_retrying_at_once_burns_every_attempt_in_milliseconds():
    """Retries without a wait: most orders spend all their attempts before inventory frees a slot, and fail."""
    run = resilience.storm_run("at once", 100, SEED)
    assert run.calls == pytest.approx(run.orders * resilience.ATTEMPTS * 0.9, rel=0.1)
    assert run.confirmed == resilience.CAPACITY and run.done_at < 0.1


def test_the_backoff_formulas_stay_in_their_ranges():
    """Each of AWS's formulas: no jitter is the capped exponential; full within [0, it]; equal within [it/2, it];
    decorrelated within [base, min(cap, 3 * previous)]."""
    rng = random.Random(1)
    base, cap = resilience.BASE, resilience.CAP
    for attempt in range(1, 8):
        top = min(cap, base * 2**attempt)
        assert resilience.backoff("no jitter", attempt, 0.0, rng) == top
        assert 0 <= resilience.backoff("full jitter", attempt, 0.0, rng) <= top
        assert top / 2 <= resilience.backoff("equal jitter", attempt, 0.0, rng) <= top
        assert base <= resilience.backoff("decorrelated jitter", attempt, 0.3, rng) <= min(cap, 0.9)
    assert resilience.backoff("at once", 5, 0.0, rng) == 0.0


def test_retries_multiply_through_layers_and_a_budget_keeps_them_near_one_per_order():
    """3 layers x 3 attempts: 27 calls reach the failing bottom per order; with a retry budget at every layer,
    under two."""
    assert resilience.amplification_run(1, 3) == 3
    assert resilience.amplification_run(2, 3) == 9
    assert resilience.amplification_run(3, 3) == 27
    assert resilience.amplification_run(4, 2) == 16
    assert 1.0 < resilience.amplification_run(3, 3, budget=True) < 2.0
    assert "27.00" in resilience.amplification_table()


def test_the_breaker_opens_within_the_bound_on_the_dashboard_and_closes_after_the_outage():
    """Through a four-second outage the breaker widget's data shows a breaker open (the circuit_breaker_state
    gauge, as the dashboard reads it) within lab 06's OPEN_WITHIN of the start; calls to inventory fall to
    probes; every breaker is closed again soon after; and its moves are legal, sending nothing while open."""
    from sandbox.checkers import breaker_transitions_legal
    from sandbox.viz import dashboard_data

    run = resilience.breaker_run(seed=SEED)
    d = dashboard_data(run.world, resilience.SERVICE, window=resilience.DASHBOARD_WINDOW)
    start = resilience.OUTAGE_AT
    curves = [c for (dependency, _replica), c in d.breaker.items() if dependency == resilience.INVENTORY]
    assert len(curves) == 2  # one breaker per replica
    first_open = min(t for t, *states in zip(d.times, *curves) if t >= start and any(v >= 1 for v in states))
    assert first_open - start <= resilience.lab.OPEN_WITHIN
    assert run.opened is not None and run.opened < 1.0
    assert run.calls_open <= resilience.lab.PROBES_PER_SECOND
    assert run.closed is not None and run.closed < 2 * run.settings.open_for
    assert breaker_transitions_legal(breaker=resilience.INVENTORY, callee=resilience.INVENTORY)(run.world)


def test_a_breaker_that_needs_more_calls_than_a_window_holds_never_opens():
    """A minimum of 200 calls in one second: the breaker never judges, and inventory gets every order's call."""
    run = resilience.breaker_run(50, 1.0, 200, 1.0, SEED)
    assert run.opened is None and run.calls_open > 4 * resilience.lab.PROBES_PER_SECOND


def test_bulkheads_keep_a_slow_payments_from_starving_the_cart_and_shedding_refuses_fast():
    """With one shared pool, slow charges hold its slots and cart holds (inventory only) wait; with a pool per
    dependency, every hold is fast; shedding refuses some orders at once and lowers the accepted ones' p99."""
    shared, bulkheads, shedding = (resilience.bulkhead_run(d, SEED) for d in resilience.BULKHEAD_DESIGNS)
    assert shared.holds_fast < 0.9 * shared.holds and shared.hold_p99 > resilience.HOLD_PATIENCE
    assert bulkheads.holds_fast == bulkheads.holds and bulkheads.hold_p99 < 0.1
    assert shedding.order_statuses.get(503, 0) > 0 and shedding.order_p99 < bulkheads.order_p99


def test_graceful_means_fast_and_honest():
    """Lab 06's checkers on its three checkouts: the generated one answers late, the partial fix refuses orders it
    charged, the reference answers in time, honestly (its unknown charges pending, 202)."""
    generated, partial, reference = (resilience.graceful_run(name, SEED) for name in resilience.CHECKOUTS)
    assert generated.late > 0 and generated.verdicts[0].startswith("FAIL")
    assert partial.refused_but_charged > 0 and partial.verdicts[1].startswith("FAIL")
    assert reference.late == 0 and reference.refused_but_charged == 0 and reference.pending > 0
    assert all(v.startswith("PASS") for v in reference.verdicts)


def test_the_same_seed_gives_the_same_runs_and_figures():
    """Runs rebuilt from the seed (caches bypassed) give the same numbers, the same breaker moves and the same
    picture bytes; another seed gives other numbers."""
    def fresh(f, *args):
        return f.__wrapped__(*args)

    assert fresh(resilience.storm_run, "full jitter", 100, SEED) == fresh(resilience.storm_run, "full jitter", 100, SEED)
    assert fresh(resilience.storm_run, "full jitter", 100, SEED) != fresh(resilience.storm_run, "full jitter", 100,
                                                                          SEED + 1)
    one, two = fresh(resilience.breaker_run, 50, 1.0, 10, 1.0, SEED), fresh(resilience.breaker_run, 50, 1.0, 10, 1.0,
                                                                             SEED)
    assert one.world.fingerprint() == two.world.fingerprint()
    assert (one.opened, one.calls_open, one.closed, one.statuses) == (two.opened, two.calls_open, two.closed,
                                                                      two.statuses)
    from sandbox.viz import to_png

    assert to_png(resilience.breaker_figure(one)) == to_png(resilience.breaker_figure(two))
    assert fresh(resilience._storm_png, 50, SEED, ("no jitter", "full jitter")) == \
        fresh(resilience._storm_png, 50, SEED, ("no jitter", "full jitter"))


def test_the_widgets_build_and_show_their_runs():
    """The jitter widget shows its figure and a table of the runs; the breaker widget the dashboard and a line."""
    jitter = resilience.jitter_widget(seeds=(SEED,))
    assert jitter.children[1].value[:4] == b"\x89PNG" and "full jitter" in jitter.children[2].value
    breaker = resilience.breaker_widget(seeds=(SEED,))
    assert "opened" in breaker.children[1].value and breaker.children[2].value[:4] == b"\x89PNG"
    fig = resilience.storm_figure(50, SEED, ("no jitter", "full jitter"))
    assert [ax.get_title() for ax in fig.axes] == ["calls reaching inventory per 100 ms", "work: calls per order",
                                                   "seconds until the last answer"]


@pytest.mark.parametrize("call, message", [
    (lambda: resilience.storm_run("fast", 10), r"strategy='fast': choose one of \['at once', 'no jitter'"),
    (lambda: resilience.storm_run("full jitter", 0), r"orders=0: use a whole number >= 1 and <= 400"),
    (lambda: resilience.storm_figure(50, SEED, ()), r"strategies=\(\): give a tuple of at least one of"),
    (lambda: resilience.storm_figure(50, SEED, "no jitter"), r"strategies='no jitter': give a tuple"),
    (lambda: resilience.jitter_widget(seeds=()), r"seeds=\(\): give a tuple of one or more seeds"),
    (lambda: resilience.breaker_widget(seeds=7), r"seeds=7: give a tuple of one or more seeds"),
    (lambda: resilience.deadline_run("patience"), r"policy='patience': choose one of"),
    (lambda: resilience.breaker_run(150), r"failure_rate=150: use a whole number >= 1 and <= 100"),
    (lambda: resilience.breaker_run(50, 0.0), r"window=0.0: use a number above 0 and at most 10"),
    (lambda: resilience.breaker_run(50, 1.0, True), r"min_calls=True: use a whole number >= 1"),
    (lambda: resilience.breaker_run(50, 1.0, 10, "1s"), r"open_for='1s': use a number above 0 and at most 10"),
    (lambda: resilience.amplification_run(7, 3), r"layers=7: use a whole number >= 1 and <= 4"),
    (lambda: resilience.bulkhead_run("moat"), r"design='moat': choose one of"),
    (lambda: resilience.graceful_run("mine"), r"checkout='mine': choose one of"),
    (lambda: resilience.check_answers(calls=27), r"no question named 'calls': the questions are"),
])
def test_bad_input_is_refused_with_the_value_and_what_to_give(call, message):
    """Every helper refuses a bad value with an InvalidParameterError that shows it and says what to give."""
    with pytest.raises(sandbox.InvalidParameterError, match=message):
        call()


def test_a_widget_refuses_a_bad_seed_before_drawing_anything():
    """A seed the sandbox would refuse is refused by the widget at once, with the sandbox's own message."""
    with pytest.raises(sandbox.BadSeedError, match=r"seed=-1 is negative"):
        resilience.breaker_widget(seeds=(SEED, -1))


def test_the_full_jitter_check_accepts_full_jitter_and_says_what_is_wrong_otherwise(capsys):
    """The self-check's code question: the right formula passes; an unanswered stub, a wait without jitter, an
    uncapped one and one that raises are each refused with a message naming the value."""
    assert resilience.check_full_jitter(lambda a, b, c, rng: rng.uniform(0, min(c, b * 2**a)))
    assert "right" in capsys.readouterr().out
    for wrong, said in [(lambda a, b, c, rng: ..., "returned Ellipsis"),
                        (lambda a, b, c, rng: min(c, b * 2**a), "only 1 values"),
                        (lambda a, b, c, rng: rng.uniform(0, b * 2**a), "a wait of"),
                        (lambda a, b, c, rng: rng.uniform(0, min(c, b * 2**a)) / 10, "average"),
                        (lambda a, b, c, rng: 1 / 0, "raised ZeroDivisionError")]:
        assert not resilience.check_full_jitter(wrong)
        assert said in capsys.readouterr().out


def test_the_answers_check_counts_right_answers_and_explains(capsys):
    """Right answers are counted, a wrong one is explained, an unanswered one is said to be so."""
    assert resilience.check_answers(calls_at_the_bottom=16, breaker_opens=False, status_after_charge_timeout=503,
                                    remaining_budget=None) == 2
    out = capsys.readouterr().out
    assert "calls_at_the_bottom: right" in out and "measured: amplification_run(4, 2) gives 16" in out
    assert "status_after_charge_timeout: 503 is not it" in out and "remaining_budget: not answered yet" in out
    assert resilience.check_answers(remaining_budget=0.30000000000000004, breaker_opens=0) == 1
