"""Mutant: check, then charge, then store the key: no claim, so a race charges twice.

The key lives durably in payments-db, the payload is compared (422), a finished request's
response is replayed, a request without a key gets 400, and the consumer deduplicates in
one transaction with the charge. But the HTTP handler *reads* the key, charges if it was
not there, and only then writes it: between the read and the write there is no claim, no
lock and no "in flight" state. A double-click, or a retry sent while the first request is
still at the card network, reads "no such key" too, and the card is charged twice.
"""

import hashlib
import json
import random
import uuid

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import sandbox

CARD_NETWORK_TIME = (0.05, 0.08)
#: Tables of payments-db: the charges, the idempotency keys, the messages already charged.
CHARGES, KEYS, PROCESSED = "charges", "idempotency-keys", "processed-payments"


class PaymentRequest(BaseModel):
    """Charge ``amount`` cents to ``card`` for order ``order_id``."""

    order_id: str
    amount: int = Field(gt=0)  # cents
    card: str = Field(min_length=12)


class Payment(BaseModel):
    """A payment the card network accepted: the money has moved."""

    id: str
    order_id: str
    amount: int
    card_last4: str
    status: str = "succeeded"


def fingerprint(req: PaymentRequest) -> str:
    """A hash of the request's canonical JSON: equal payloads, equal fingerprints."""
    canonical = json.dumps(req.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def card_network(req: PaymentRequest, idempotency_key: str) -> None:
    """Ask the card network to move the money (simulated: it takes a while). Real card
    networks take an idempotency key too, so a charge retried by a new lease holder is one charge."""
    await sandbox.sleep(random.uniform(*CARD_NETWORK_TIME))


def new_payment(req: PaymentRequest) -> Payment:
    return Payment(id=f"pay-{uuid.uuid4().hex[:12]}", order_id=req.order_id, amount=req.amount, card_last4=req.card[-4:])


def create_app() -> FastAPI:
    """The payments service, idempotent: see the module docstring."""
    app = FastAPI(title="payments")

    @app.post("/payments", status_code=201)
    async def create_payment(
        req: PaymentRequest,
        idempotency_key: str | None = Header(None),
        db: sandbox.Database = Depends(sandbox.database("payments-db")),
    ) -> JSONResponse:
        if not idempotency_key:
            raise HTTPException(400, "POST /payments needs an Idempotency-Key header (a new UUID per payment)")
        key, fp = idempotency_key, fingerprint(req)
        seen = await db.get(KEYS, key)
        if seen is not None:
            if seen["fingerprint"] != fp:
                raise HTTPException(422, f"Idempotency-Key {key!r} was already used for a different payment")
            stored = seen["response"]
            return JSONResponse(stored["body"], status_code=stored["status"])

        await card_network(req, key)
        payment = new_payment(req)
        body = payment.model_dump(mode="json")
        async with db.transaction() as tx:
            await tx.insert(CHARGES, payment.id, body)
            await tx.put(KEYS, key, {"fingerprint": fp, "status": "done", "response": {"status": 201, "body": body}})
        return JSONResponse(body, status_code=201)

    @app.get("/payments/{payment_id}")
    async def get_payment(payment_id: str, db: sandbox.Database = Depends(sandbox.database("payments-db"))) -> Payment:
        row = await db.get(CHARGES, payment_id)
        if row is None:
            raise HTTPException(404, f"no payment {payment_id!r}")
        return Payment(**row)

    @sandbox.consumer(app, "payment-requested", group="payments")
    async def on_payment_requested(
        message: sandbox.Message,
        db: sandbox.Database = Depends(sandbox.database("payments-db")),
    ) -> dict:
        payment_id = message.headers.get("payment-id") or message.value["payment_id"]
        req = PaymentRequest(**message.value)
        try:
            async with db.transaction() as tx:
                # The id goes in with the charge, in one transaction: both or neither.
                await tx.insert(PROCESSED, payment_id, {"topic": message.topic, "offset": message.offset})
                await card_network(req, payment_id)
                payment = new_payment(req)
                await tx.insert(CHARGES, payment.id, payment.model_dump(mode="json"))
        except sandbox.DuplicateKey:
            return {"payment_id": payment_id, "duplicate": True}  # charged already: acknowledge it
        return {"payment_id": payment_id, "payment": payment.id}

    return app
