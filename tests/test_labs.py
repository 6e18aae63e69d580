"""What the labs share (autograder.labs): loading a lab's modules, and adding up green explorations."""

from __future__ import annotations

from pathlib import Path

import pytest

import sandbox
from autograder.labs import load_module, mutant_names
from sandbox.examples import order_system
from sandbox.explore import Passed

IDEMPOTENCY = Path(__file__).resolve().parent.parent / "labs" / "02-idempotency"


def test_two_green_explorations_add_up():
    """Runs, faults and recovery paths add up; an assertion is unexercised only if neither exercised it."""
    sc = order_system.scenario
    a = Passed(sc, 3, (1, 2, 3), (), 1.0, (2, 4), (("nodes restarted", 1),), ("retried", "compensated"))
    b = Passed(sc, 2, (1, 9), (), 0.5, (1, 2), (("nodes restarted", 2), ("requests timed out", 5)), ("retried",))
    total = a + b
    assert (total.runs, total.seeds, total.seconds, total.faults) == (5, (1, 2, 3, 9), 1.5, (3, 6))
    assert total.recovery == (("nodes restarted", 3), ("requests timed out", 5))
    assert total.unexercised == ("retried",)


def test_a_lab_module_loads_by_path_and_its_mutants_are_listed():
    """load_module finds a lab's module by name; the mutants are listed as "mutants/NAME", sorted."""
    module = load_module(IDEMPOTENCY, "solution", "chaos_dojo_labs.test")
    assert callable(module.create_app)
    names = mutant_names(IDEMPOTENCY)
    assert names == sorted(names) and all(n.startswith("mutants/") for n in names) and len(names) >= 3


def test_an_unknown_lab_module_is_named_with_the_known_ones():
    """A module that is not in the lab's folder raises UnknownNameError listing what is there."""
    with pytest.raises(sandbox.UnknownNameError, match=r"no module 'solutoin'.*'solution'"):
        load_module(IDEMPOTENCY, "solutoin", "chaos_dojo_labs.test")
