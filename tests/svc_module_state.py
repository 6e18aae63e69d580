"""A service that keeps its state in a module-level dict (helper for test_world.py).

The sandbox runs each replica from a fresh copy of this module, so ``CALLS`` is
per replica and lost on a crash, as a real process's globals are.
"""

from __future__ import annotations

from fastapi import FastAPI

CALLS: dict[str, int] = {"n": 0}


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/calls")
    async def count_call() -> dict[str, int]:
        CALLS["n"] += 1
        return {"n": CALLS["n"]}

    return app
