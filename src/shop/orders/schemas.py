from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shop.common.types import Id, Int, Money, Page, StrictModel

OrderStatus = Literal["pending", "paid", "shipped", "delivered", "failed", "cancelled"]
PaymentMethod = Literal["card", "paypal", "bank_transfer"]


class OrderCreate(StrictModel):
    product_id: Id
    quantity: Int = Field(ge=1, le=10_000)
    payment_method: PaymentMethod = "card"


class StatusChange(StrictModel):
    status: OrderStatus


class OrderRead(BaseModel):
    id: int
    user_id: int
    product_id: int
    quantity: int
    total_price: Money | None
    currency: str
    status: OrderStatus
    payment_id: str | None
    payment_method: PaymentMethod
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


OrderPage = Page[OrderRead]
