"""Seed banks for lab checks: visible and hidden banks, kept apart."""

from __future__ import annotations

import pytest

from autograder import GRADING_SECRET_ENV, seed_bank


def test_banks_are_deterministic():
    """The same lab, bank and size always give the same seeds."""
    assert seed_bank("01-cap", "visible", 5) == seed_bank("01-cap", "visible", 5)
    assert seed_bank("01-cap", "hidden", 20) == seed_bank("01-cap", "hidden", 20)


def test_a_larger_bank_extends_a_smaller_one():
    """Asking for more seeds keeps the first ones, so a bank can grow without reshuffling."""
    assert seed_bank("01-cap", "hidden", 30)[:10] == seed_bank("01-cap", "hidden", 10)


def test_hidden_and_visible_banks_never_overlap():
    """No hidden seed is one a learner can see in the visible bank."""
    visible = set(seed_bank("02-idempotency", "visible", 1000))
    for secret in (None, "grading-2026"):
        assert not visible & set(seed_bank("02-idempotency", "hidden", 500, secret=secret))


def test_labs_get_different_banks():
    """Each lab has its own seeds."""
    assert seed_bank("01-cap", "visible", 5) != seed_bank("03-sagas", "visible", 5)


def test_the_grading_secret_changes_the_hidden_bank(monkeypatch):
    """With a grading secret, the hidden bank is one no learner could compute."""
    monkeypatch.delenv(GRADING_SECRET_ENV, raising=False)
    default = seed_bank("01-cap", "hidden", 10)
    assert seed_bank("01-cap", "hidden", 10, secret="s3cret") != default
    monkeypatch.setenv(GRADING_SECRET_ENV, "s3cret")
    assert seed_bank("01-cap", "hidden", 10) == seed_bank("01-cap", "hidden", 10, secret="s3cret")
    assert seed_bank("01-cap", "visible", 10) == seed_bank("01-cap", "visible", 10, secret="other")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (("", "visible", 3), "''"),
        (("01-cap", "secret", 3), "'secret'"),
        (("01-cap", "visible", 0), "0"),
        (("01-cap", "hidden", 2.5), "2.5"),
        (("01-cap", "visible", 1001), "1001"),
    ],
)
def test_bad_requests_say_what_is_wrong(args, shown):
    """A bad lab name, bank or size raises ValueError showing the bad value."""
    with pytest.raises(ValueError, match=shown):
        seed_bank(*args)
