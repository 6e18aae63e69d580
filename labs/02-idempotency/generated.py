"""The prompt given to the assistant:

    "a payments service: POST /payments charges a card and records the payment;
    also consume 'payment-requested' events from Kafka and charge them"

What came back is below: clean, commented, and correct on the happy path. A checkout
page calls ``POST /payments`` (and retries when the call times out); the billing job
publishes ``payment-requested`` events, which the consumer turns into charges.
"""

import random
import uuid

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox

#: How long the card network takes to approve a charge (seconds), at the least and at the most.
CARD_NETWORK_TIME = (0.05, 0.08)


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


async def charge(db: sandbox.Database, req: PaymentRequest) -> Payment:
    """Charge the card through the card network, then record the payment."""
    # The card network approves the charge (simulated: it just takes a while).
    await sandbox.sleep(random.uniform(*CARD_NETWORK_TIME))
    payment = Payment(id=f"pay-{uuid.uuid4().hex[:12]}", order_id=req.order_id, amount=req.amount, card_last4=req.card[-4:])
    await db.insert("charges", payment.id, payment.model_dump())
    return payment


def create_app() -> FastAPI:
    """The payments service: charges cards over HTTP and from Kafka events."""
    app = FastAPI(title="payments")

    # --- FIX REGION 1: POST /payments charges once per Idempotency-Key, and answers as the IETF draft says ---
    @app.post("/payments", status_code=201)
    async def create_payment(
        req: PaymentRequest,
        db: sandbox.Database = Depends(sandbox.database("payments-db")),
    ) -> Payment:
        return await charge(db, req)
    # --- END FIX REGION 1 ---

    @app.get("/payments/{payment_id}")
    async def get_payment(payment_id: str, db: sandbox.Database = Depends(sandbox.database("payments-db"))) -> Payment:
        row = await db.get("charges", payment_id)
        if row is None:
            raise HTTPException(404, f"no payment {payment_id!r}")
        return Payment(**row)

    # --- FIX REGION 2: each payment-requested event is charged once, however often Kafka delivers it ---
    @sandbox.consumer(app, "payment-requested", group="payments")
    async def on_payment_requested(
        message: sandbox.Message,
        db: sandbox.Database = Depends(sandbox.database("payments-db")),
    ) -> dict:
        # The billing job asks us to charge a card: do it.
        payment = await charge(db, PaymentRequest(**message.value))
        return {"payment": payment.id}
    # --- END FIX REGION 2 ---

    return app
