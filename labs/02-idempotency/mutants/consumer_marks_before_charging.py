"""Mutant: the consumer marks a payment request processed first, then charges, in two statements.

The HTTP side is the reference solution, and the consumer deduplicates by payment id with an
atomic insert, so two copies never both charge. But the mark and the charge are not one
transaction: when the handler fails between them (the replica is killed at the card network,
the charge's insert is lost on its way to the database), the message is delivered again,
finds its id already marked, and is acknowledged without ever being charged. The billing
job's renewal is lost. The mark must go in with the charge, in one transaction.
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
#: How long (seconds) a claim on a key holds before a retry may take it over.
LEASE = 1.5


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
        clock: sandbox.Clock = Depends(sandbox.clock),
    ) -> JSONResponse:
        if not idempotency_key:
            raise HTTPException(400, "POST /payments needs an Idempotency-Key header (a new UUID per payment)")
        key, fp, owner = idempotency_key, fingerprint(req), uuid.uuid4().hex
        claim = {"fingerprint": fp, "status": "in-flight", "owner": owner, "claimed_at": clock.time()}
        try:
            await db.insert(KEYS, key, claim)  # claim the key: only one request can
        except sandbox.DuplicateKey:
            row = await db.get_row(KEYS, key)
            seen = row.value
            if seen["fingerprint"] != fp:
                raise HTTPException(422, f"Idempotency-Key {key!r} was already used for a different payment")
            if seen["status"] == "done":
                stored = seen["response"]
                return JSONResponse(stored["body"], status_code=stored["status"])
            if clock.time() - seen["claimed_at"] < LEASE:
                raise HTTPException(409, f"a request with Idempotency-Key {key!r} is still in flight; retry later")
            try:  # the holder is gone (or very slow): take the claim over
                await db.put(KEYS, key, claim, if_version=row.version)
            except sandbox.VersionConflict:
                raise HTTPException(409, f"a request with Idempotency-Key {key!r} is still in flight; retry later") from None

        await card_network(req, key)
        payment = new_payment(req)
        body = payment.model_dump(mode="json")
        async with db.transaction() as tx:
            current = await tx.get(KEYS, key, for_update=True)
            if current is None or current["owner"] != owner:
                # Our claim was taken over while we were slow: the new holder charges, not us.
                raise HTTPException(409, f"a request with Idempotency-Key {key!r} is still in flight; retry later")
            await tx.insert(CHARGES, payment.id, body)
            await tx.put(KEYS, key, {**current, "status": "done", "response": {"status": 201, "body": body}})
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
            # Mark it first: an atomic insert, so that of two copies only one gets past this line.
            await db.insert(PROCESSED, payment_id, {"topic": message.topic, "offset": message.offset})
        except sandbox.DuplicateKey:
            return {"payment_id": payment_id, "duplicate": True}  # charged already: acknowledge it
        await card_network(req, payment_id)
        payment = new_payment(req)
        await db.insert(CHARGES, payment.id, payment.model_dump(mode="json"))
        return {"payment_id": payment_id, "payment": payment.id}

    return app
