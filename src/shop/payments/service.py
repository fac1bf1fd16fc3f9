"""Use cases of the payment service. Every state change locks the payment's row first, so
concurrent process/refund/void calls on one payment are serialised and each sees the truth."""

from __future__ import annotations

import secrets
from typing import Any

from shop.common.db import Database
from shop.common.errors import Conflict, NotFound, PaymentDeclined
from shop.common.metrics import PAYMENT_AMOUNT, PAYMENTS, REFUNDS
from shop.payments.db import PaymentRepository
from shop.payments.provider import PaymentProvider
from shop.payments.schemas import PaymentCreate


def new_payment_id() -> str:
    return f"pay_{secrets.token_urlsafe(18)}"


def _record(payment: Any) -> None:
    PAYMENTS.labels(payment["status"], payment["currency"]).inc()
    PAYMENT_AMOUNT.labels(payment["status"], payment["currency"]).inc(float(payment["amount"]))


async def create_payment(*, db: Database, payment_in: PaymentCreate) -> tuple[Any, bool]:
    """A pending payment for an order; the same order gets the same payment back."""
    async with db.acquire() as conn:
        payments = PaymentRepository(conn)
        created = await payments.add(payment_id=new_payment_id(), **payment_in.model_dump())
        if created is not None:
            return created, True
        existing = await payments.by_order(payment_in.order_id)
    same = (
        existing["user_id"],
        existing["amount"],
        existing["currency"],
        existing["payment_method"],
    ) == (payment_in.user_id, payment_in.amount, payment_in.currency, payment_in.payment_method)
    if not same:
        raise Conflict(f"Order {payment_in.order_id} already has a different payment.")
    return existing, False


async def get_payment(*, db: Database, payment_id: str) -> Any:
    async with db.acquire() as conn:
        payment = await PaymentRepository(conn).get(payment_id)
    if payment is None:
        raise NotFound(f"Payment {payment_id} does not exist.")
    return payment


async def payment_for_order(*, db: Database, order_id: int) -> Any:
    async with db.acquire() as conn:
        payment = await PaymentRepository(conn).by_order(order_id)
    if payment is None:
        raise NotFound(f"Order {order_id} has no payment.")
    return payment


async def list_for_user(
    *, db: Database, user_id: int, limit: int, offset: int
) -> tuple[list[Any], int]:
    async with db.acquire() as conn:
        return await PaymentRepository(conn).page_for_user(user_id, limit=limit, offset=offset)


def declined(payment: Any) -> PaymentDeclined:
    return PaymentDeclined(
        f"The payment was declined: {payment['failure_reason']}.",
        extra={"payment_id": payment["payment_id"], "code": "payment_declined"},
    )


async def process_payment(*, db: Database, provider: PaymentProvider, payment_id: str) -> Any:
    """pending -> completed | failed. Processing again answers with the outcome it had."""
    async with db.acquire() as conn, conn.transaction():
        payments = PaymentRepository(conn)
        payment = await payments.get(payment_id, lock=True)
        if payment is None:
            raise NotFound(f"Payment {payment_id} does not exist.")
        if payment["status"] == "pending":
            result = await provider.charge(
                payment_id=payment_id,
                amount=payment["amount"],
                currency=payment["currency"],
                method=payment["payment_method"],
            )
            if result.approved:
                payment = await payments.set_status(
                    payment_id, "completed", transaction_id=result.transaction_id
                )
            else:
                payment = await payments.set_status(payment_id, "failed", reason=result.reason)
            _record(payment)
    if payment["status"] == "failed":
        raise declined(payment)
    if payment["status"] == "refunded":
        raise Conflict("The payment was refunded; it cannot be processed again.")
    return payment


async def refund_payment(*, db: Database, provider: PaymentProvider, payment_id: str) -> Any:
    """completed -> refunded, once. Refunding a refunded payment answers with it again."""
    async with db.acquire() as conn, conn.transaction():
        payments = PaymentRepository(conn)
        payment = await payments.get(payment_id, lock=True)
        if payment is None:
            raise NotFound(f"Payment {payment_id} does not exist.")
        if payment["status"] == "refunded":
            return payment
        if payment["status"] != "completed":
            raise Conflict(
                f"Only a completed payment can be refunded; this one is {payment['status']}.",
                extra={"code": "invalid_state"},
            )
        result = await provider.refund(
            payment_id=payment_id,
            transaction_id=payment["transaction_id"],
            amount=payment["amount"],
            currency=payment["currency"],
        )
        if not result.approved:
            raise Conflict(f"The provider refused the refund: {result.reason}.")
        payment = await payments.set_status(payment_id, "refunded", refund_id=result.transaction_id)
        _record(payment)
        REFUNDS.labels(payment["currency"]).inc()
    return payment


async def void_payment(*, db: Database, payment_id: str, reason: str) -> Any:
    """pending -> failed without charging (an abandoned order). Completed ones cannot be voided."""
    async with db.acquire() as conn, conn.transaction():
        payments = PaymentRepository(conn)
        payment = await payments.get(payment_id, lock=True)
        if payment is None:
            raise NotFound(f"Payment {payment_id} does not exist.")
        if payment["status"] == "pending":
            payment = await payments.set_status(payment_id, "failed", reason=reason)
            _record(payment)
        elif payment["status"] != "failed":
            raise Conflict(
                f"A {payment['status']} payment cannot be voided.",
                extra={"code": "invalid_state", "payment_status": payment["status"]},
            )
    return payment
