"""A correct alternative: claims as versioned rows, fenced by their version; a consumer that charges by conditional write.

Unlike the reference solution:

* The key's row stores the **request itself** (its fields, as JSON data), not a hash: a
  request with a known key is compared field by field (422 if any differs).
* The claim is a **conditional write on a missing row** (``put(..., if_version=0)``: only
  one request can create it), with an expiry time in it. A retry finding an expired claim
  takes it over with another conditional write on the version it read.
* The holder is **fenced by the version** it wrote: the final transaction writes the key's
  stored response with ``if_version=`` that version, first, before the charge. If the
  claim was taken over meanwhile, the version moved on, the write fails with
  ``VersionConflict``, the transaction rolls back, and this request charges nothing.
* The consumer keeps one row per payment request in ``payment-requests`` and creates it with
  a conditional write (``if_version=0``) in the transaction that records the charge; a
  second copy of the request (redelivered, or published twice) waits for that row's lock
  and then fails with ``VersionConflict``: it is acknowledged without charging.
"""

import random
import uuid

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import sandbox

CARD_NETWORK_TIME = (0.05, 0.08)
CHARGES, KEYS, REQUESTS = "charges", "idempotency-keys", "payment-requests"
#: How long (seconds) a claim holds before a retry may take it over.
CLAIM_FOR = 1.0


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


async def card_network(req: PaymentRequest, idempotency_key: str) -> None:
    """Ask the card network to move the money (simulated: it takes a while)."""
    await sandbox.sleep(random.uniform(*CARD_NETWORK_TIME))


def in_flight(key: str) -> HTTPException:
    return HTTPException(409, f"a request with Idempotency-Key {key!r} is in flight; retry later")


def create_app() -> FastAPI:
    """The payments service: see the module docstring."""
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
        key, request = idempotency_key, req.model_dump(mode="json")
        claim = {"request": request, "response": None, "expires": clock.time() + CLAIM_FOR}
        try:
            version = await db.put(KEYS, key, claim, if_version=0)  # create it, only if nobody has
        except sandbox.VersionConflict:
            row = await db.get_row(KEYS, key)
            if row.value["request"] != request:
                raise HTTPException(422, f"Idempotency-Key {key!r} was already used for a different payment") from None
            if row.value["response"] is not None:
                return JSONResponse(row.value["response"]["body"], status_code=row.value["response"]["status"])
            if clock.time() < row.value["expires"]:
                raise in_flight(key) from None
            try:  # the claim expired: its holder died, or is very slow. Take it over
                version = await db.put(KEYS, key, claim, if_version=row.version)
            except sandbox.VersionConflict:
                raise in_flight(key) from None

        await card_network(req, key)
        payment = Payment(id=f"pay-{uuid.uuid4().hex[:12]}", order_id=req.order_id, amount=req.amount,
                          card_last4=req.card[-4:])
        body = payment.model_dump(mode="json")
        try:
            async with db.transaction() as tx:
                # Still ours only if nobody wrote the key since our claim: the version says so.
                await tx.put(KEYS, key, {**claim, "response": {"status": 201, "body": body}}, if_version=version)
                await tx.insert(CHARGES, payment.id, body)
        except sandbox.VersionConflict:
            raise in_flight(key) from None  # taken over: the new holder charges, not us
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
                # Created only if it does not exist: a second copy waits for this row's lock, then conflicts.
                await tx.put(REQUESTS, payment_id, {"offset": message.offset}, if_version=0)
                await card_network(req, payment_id)
                payment = Payment(id=f"pay-{uuid.uuid4().hex[:12]}", order_id=req.order_id, amount=req.amount,
                                  card_last4=req.card[-4:])
                await tx.insert(CHARGES, payment.id, payment.model_dump(mode="json"))
        except sandbox.VersionConflict:
            return {"payment_id": payment_id, "duplicate": True}  # charged already
        return {"payment_id": payment_id, "payment": payment.id}

    return app
