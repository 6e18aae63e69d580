"""A correct alternative: a pessimistic design, one transaction per payment holding the key's row lock.

Unlike the reference solution, nothing is ever "in flight" in the table, and there is no lease:

* ``POST /payments`` opens one transaction and **inserts the key's row first**. The insert
  takes the row's lock until the transaction ends (as a unique index does in PostgreSQL), so
  a second request with the same key waits on it: when the first commits, its insert fails
  with ``DuplicateKey`` and it answers the stored response (or 422 for another payload); if
  the first aborts, it goes on and charges. A wait longer than ``LOCK_WAIT`` is answered 409
  (still in flight). The charge and the response are written in the same transaction, so
  the key row only ever becomes visible with its response.
* A holder that dies (a crash: the database aborts its connection's transactions; a lost
  reply or a partition: its transaction goes idle and the database aborts it) releases the
  lock with its transaction, and nothing it did is kept: the retry charges. The database's
  own timeouts are the lease.
* The request's fingerprint is a SHA-256 over its **normalized fields** (the card's digits
  without spaces), not over its JSON.

The consumer has no processed-messages table: the charge's own row key is derived from the
payment id (a unique business key), so a second charge of one payment request, redelivered or
published twice, fails with ``DuplicateKey`` and is acknowledged.
"""

import hashlib
import random
import uuid

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import sandbox

CARD_NETWORK_TIME = (0.05, 0.08)
CHARGES, KEYS = "charges", "idempotency-keys"
#: How long (seconds) a request waits for the lock of another request with its key before answering 409.
LOCK_WAIT = 0.1


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
    """SHA-256 of the request's fields, normalized: ``order|amount|card digits``."""
    card = "".join(ch for ch in req.card if ch.isdigit())
    return hashlib.sha256(f"{req.order_id}|{req.amount}|{card}".encode()).hexdigest()


async def card_network(req: PaymentRequest, idempotency_key: str) -> None:
    """Ask the card network to move the money (simulated: it takes a while)."""
    await sandbox.sleep(random.uniform(*CARD_NETWORK_TIME))


def create_app() -> FastAPI:
    """The payments service: see the module docstring."""
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
        try:
            async with db.transaction(lock_timeout=LOCK_WAIT) as tx:
                await tx.insert(KEYS, key, {"fingerprint": fp})  # the key's lock, held until we commit
                await card_network(req, key)
                payment = Payment(id=f"pay-{uuid.uuid4().hex[:12]}", order_id=req.order_id, amount=req.amount,
                                  card_last4=req.card[-4:])
                body = payment.model_dump(mode="json")
                await tx.insert(CHARGES, payment.id, body)
                await tx.put(KEYS, key, {"fingerprint": fp, "status": 201, "body": body})
        except sandbox.DuplicateKey:
            stored = await db.get(KEYS, key)  # committed: it has its response
            if stored["fingerprint"] != fp:
                raise HTTPException(422, f"Idempotency-Key {key!r} was already used for a different payment") from None
            return JSONResponse(stored["body"], status_code=stored["status"])
        except sandbox.LockTimeout:
            raise HTTPException(409, f"a request with Idempotency-Key {key!r} is in flight; retry later") from None
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
        # One charge per payment request: its row key comes from the payment id, not from chance.
        charge_id = "pay-" + hashlib.sha256(payment_id.encode()).hexdigest()[:12]
        payment = Payment(id=charge_id, order_id=req.order_id, amount=req.amount, card_last4=req.card[-4:])
        try:
            await card_network(req, payment_id)  # the card network deduplicates by the same id
            await db.insert(CHARGES, charge_id, payment.model_dump(mode="json"))
        except sandbox.DuplicateKey:
            return {"payment_id": payment_id, "duplicate": True}
        return {"payment_id": payment_id, "payment": charge_id}

    return app
