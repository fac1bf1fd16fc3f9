from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shop.common.types import (
    Bool,
    Currency,
    Id,
    Money,
    Page,
    PositiveMoney,
    ProblemRead,
    StrictModel,
)

PaymentMethod = Literal["card", "paypal", "bank_transfer"]
PaymentStatus = Literal["pending", "processing", "completed", "failed", "refunding", "refunded"]


class PaymentCreate(StrictModel):
    order_id: Id
    user_id: Id = Field(description="Whose payment it is.")
    amount: PositiveMoney
    currency: Currency = "USD"
    payment_method: PaymentMethod
    confirm: Bool = Field(
        default=False,
        description="Create and charge in one call, idempotent by order id: a repeat answers"
        " with the payment's outcome (402 if it was declined; 409 with Retry-After while the"
        " provider is still being asked).",
    )


class PaymentVoid(StrictModel):
    """What a voided payment records if the order never got one (so a late charge is refused)."""

    user_id: Id
    amount: PositiveMoney
    currency: Currency = "USD"
    payment_method: PaymentMethod


class PaymentProblem(ProblemRead):
    payment_id: str | None = None
    payment_status: PaymentStatus | None = Field(
        default=None, description="The payment's status when it was the reason for the refusal."
    )


class PaymentRead(BaseModel):
    id: int
    payment_id: str
    order_id: int
    user_id: int
    amount: Money
    currency: str
    status: PaymentStatus
    payment_method: PaymentMethod
    transaction_id: str | None
    failure_reason: str | None = None
    created_at: datetime
    updated_at: datetime


PaymentPage = Page[PaymentRead]

# Batch reads (`?order_ids=1,2,3`, for a client's dataloader): at most 100 ids at once.
ORDER_ID_LIST_PATTERN = r"^[1-9][0-9]{0,14}(,[1-9][0-9]{0,14}){0,99}$"  # below 2**53
ORDER_ID_LIST_DESCRIPTION = (
    "Comma-separated order ids (at most 100): the payments of those orders that the caller may"
    " see (a customer's own; every one for admins and services), in order-id order. Orders"
    " without a visible payment are left out."
)
