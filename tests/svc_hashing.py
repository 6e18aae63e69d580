"""A service that answers what Python's hash() says in it (helper for test_determinism.py).

In production each replica is its own interpreter, with its own hash salt: hash("ord-1") differs from one
replica, or one restart, to the next. The sandbox runs every replica from a fresh copy of this module.
"""

from __future__ import annotations

from fastapi import FastAPI

import sandbox

AT_IMPORT = hash("ord-1")  # module level: runs when the world loads the module for a replica


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hashes")
    async def hashes() -> dict:
        return {"replica": sandbox.hostname(), "str": hash("ord-1"), "again": hash("ord-" + "1"),
                "tuple": hash(("ord-1", 2)), "int": hash(12345), "at_import": AT_IMPORT}

    return app
