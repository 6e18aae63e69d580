"""A service with a pydantic body model and a dependency (helper for test_world.py's memory test).

Each replica runs a fresh copy of this module, so each has its own ``Probe`` class and endpoint functions.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from pydantic import BaseModel

import sandbox


class Probe(BaseModel):
    """A body to validate: its class is made anew by every replica."""

    sku: str
    qty: int


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/probes")
    async def probe(body: Probe, db: sandbox.Database = Depends(sandbox.disk)) -> dict:
        await db.put("probes", body.sku, body.qty)
        return {"stored": body.sku}

    return app
