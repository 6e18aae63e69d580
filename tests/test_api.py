"""The public API: ``sandbox.__all__`` is honest, and using the sandbox leaves the host process sound."""

from __future__ import annotations

import ast
import gc
import inspect
import sys

import pytest
from fastapi import FastAPI

import sandbox
import sandbox.errors


def test_all_has_no_duplicates():
    """No name is listed twice in sandbox.__all__."""
    assert len(sandbox.__all__) == len(set(sandbox.__all__))


def test_every_name_in_all_exists():
    """Every name in sandbox.__all__ is an attribute of the package."""
    assert [name for name in sandbox.__all__ if not hasattr(sandbox, name)] == []


def test_star_import_gives_exactly_all():
    """`from sandbox import *` binds exactly the names of sandbox.__all__, to the package's objects."""
    namespace: dict = {}
    exec("from sandbox import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(sandbox.__all__)
    assert all(namespace[name] is getattr(sandbox, name) for name in namespace)


def test_every_error_is_public():
    """Every exception of sandbox.errors is importable from sandbox."""
    assert set(sandbox.errors.__all__) <= set(sandbox.__all__)


def test_every_public_name_has_a_docstring():
    """Each name in sandbox.__all__ has a docstring of its own (docstrings teach)."""
    missing = [name for name in sandbox.__all__ if not (getattr(sandbox, name).__doc__ or "").strip()]
    assert missing == []


def _app() -> FastAPI:
    return FastAPI()


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the symptom needs CPython 3.11's non-reentrant ast state")
def test_a_dropped_world_does_not_break_later_parsing():
    """Once a world with a service is dropped, parsing Python source (as pytest's rewriter does) still works."""
    source = inspect.getsource(inspect)
    gc.collect()
    gc.disable()  # keep the world's garbage young, so the first collection inside ast.parse frees it
    try:
        world = sandbox.World(seed=1)
        world.add_service("svc", _app)
        world.run(until=1)
        del world
    finally:
        gc.enable()
    assert isinstance(ast.parse(source), ast.Module)


SUBMODULES = ("sandbox.faults", "sandbox.checkers", "sandbox.explore", "sandbox.strategies", "sandbox.viz")


@pytest.mark.parametrize("name", SUBMODULES)
def test_documented_submodules_keep_an_honest_all(name: str) -> None:
    """Each documented submodule lists every public name once, each exists and has a docstring."""
    import importlib

    module = importlib.import_module(name)
    names = module.__all__
    assert len(names) == len(set(names))
    assert [n for n in names if not hasattr(module, n)] == []
    undocumented = [
        n for n in names
        if not isinstance(getattr(module, n), (dict, tuple, str)) and not (getattr(module, n).__doc__ or "").strip()
    ]
    assert undocumented == []


def test_resolve_gives_a_lifespan_loop_the_clients_a_request_would_get():
    """sandbox.resolve(app, dependency) hands a background loop a dependency's client, outside any request;
    anything that is not a request dependency is refused with what to pass instead."""
    import anyio

    app = FastAPI()

    async def main():
        db = await sandbox.resolve(app, sandbox.database("orders-db"))
        await db.put("orders", "o1", {"qty": 1})
        again = await sandbox.resolve(app, sandbox.database("orders-db"))
        return (await again.get("orders", "o1")), await sandbox.resolve(app, sandbox.producer)

    row, producer = anyio.run(main)
    assert row == {"qty": 1} and producer is not None
    with pytest.raises(sandbox.InvalidParameterError, match=r"sandbox.hostname\(\) needs no resolving"):
        anyio.run(sandbox.resolve, app, sandbox.hostname)
    with pytest.raises(sandbox.InvalidParameterError, match=r"dependency='orders-db'.*sandbox.database"):
        anyio.run(sandbox.resolve, app, "orders-db")
