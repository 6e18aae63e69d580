"""A service that draws an instance id at import and reads the time and a random number in its factory (helper for test_determinism.py).

The sandbox runs each replica from a fresh copy of this module, as that replica: the draws come from the seed.
"""

from __future__ import annotations

import random
import time
import uuid

from fastapi import Depends, FastAPI

import sandbox

INSTANCE_ID = uuid.uuid4().hex[:8]  # module level: runs when the world loads the module for a replica


def create_app() -> FastAPI:
    app = FastAPI()
    started = time.time()  # factory level
    jitter = random.random()

    @app.post("/orders/{n}")
    async def place(n: int, db: sandbox.Database = Depends(sandbox.database("orders-db"))) -> dict:
        await db.put("orders", f"{INSTANCE_ID}-{n}", {"started": started, "jitter": jitter})
        return {}

    return app
