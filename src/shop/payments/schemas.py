from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shop.common.types import Currency, Money, Page, PositiveMoney, StrictModel

PaymentMethod = Literal["card", "paypal", "bank_transfer"]
PaymentStatus = Literal["pending", "completed", "failed", "refunded"]


class PaymentCreate(StrictModel):
    order_id: int = Field(ge=1, le=2**63 - 1)
    user_id: int = Field(ge=1, le=2**63 - 1, description="Whose payment it is.")
    amount: PositiveMoney
    currency: Currency = "USD"
    payment_method: PaymentMethod


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
ORDER_ID_LIST_PATTERN = r"^[1-9][0-9]{0,18}(,[1-9][0-9]{0,18}){0,99}$"
ORDER_ID_LIST_DESCRIPTION = (
    "Comma-separated order ids (at most 100): the payments of those orders that the caller may"
    " see (a customer's own; every one for admins and services), in order-id order. Orders"
    " without a visible payment are left out."
)
