"""Mutant: orders accepted for later (202) when inventory is down, and never sent on.

The checkout writes the order to its outbox and answers 202 "accepted", but its relay waits
for a "later" that never comes (a nightly job nobody scheduled): the shopper was promised an
order that nobody reserves or charges. A 202 that is never honoured is a refusal in disguise,
and the shopper, told "accepted", will not try again.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the accept-for-later alternative, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from its file, unpatched).
_alternative = load_module(Path(__file__).parent.parent, "alternatives/accept_for_later",
                           "chaos_dojo_labs.lab06.accepted_never_sent")
_alternative.RELAY_EVERY = 1e9  # "later"


def create_app():
    """The accept-for-later checkout, patched as the module docstring says."""
    return _alternative.create_app()
