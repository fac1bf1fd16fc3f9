from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from shop.common.types import (
    JSON_INT,
    LINE_QUANTITY_MAX,
    ORDER_LINES_MAX,
    ORDER_QUANTITY_MAX,
    Id,
    Int,
    Money,
    Page,
    StrictModel,
)

OrderStatus = Literal["pending", "paid", "shipped", "delivered", "failed", "cancelled"]
PaymentMethod = Literal["card", "paypal", "bank_transfer"]


SeedQuantity = Annotated[int, Field(ge=1, le=ORDER_QUANTITY_MAX), JSON_INT]


class OrderLineCreate(StrictModel):
    product_id: Id
    quantity: Int = Field(ge=1, le=LINE_QUANTITY_MAX)


class OrderCreate(StrictModel):
    """An order of ``lines`` (each product at most once), or the seed's one-product body
    (``product_id`` and ``quantity``), which is a one-line order. One form or the other is
    checked by the validator, not stated as a ``oneOf``: generated clients (openapi-python-
    client) turn a oneOf into two anonymous types, and OrderCreate is the seed's name."""

    lines: list[OrderLineCreate] | None = Field(
        default=None, min_length=1, max_length=ORDER_LINES_MAX
    )
    product_id: Id | None = None
    quantity: SeedQuantity | None = None
    payment_method: PaymentMethod = "card"

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        single = self.product_id is not None or self.quantity is not None
        if self.lines is None:
            if self.product_id is None or self.quantity is None:
                raise ValueError("give 'lines', or both 'product_id' and 'quantity'")
        elif single:
            raise ValueError("give 'lines' or 'product_id' and 'quantity', not both")
        elif len({line.product_id for line in self.lines}) != len(self.lines):
            raise ValueError("each product may appear in one line only")
        return self

    def pairs(self) -> list[tuple[int, int]]:
        """The order's lines as ``(product_id, quantity)``, in the order given."""
        if self.lines is None:
            assert self.product_id is not None
            assert self.quantity is not None
            return [(self.product_id, self.quantity)]
        return [(line.product_id, line.quantity) for line in self.lines]


class StatusChange(StrictModel):
    status: OrderStatus


class OrderLineRead(BaseModel):
    product_id: int
    name: str | None = Field(
        description="The product's name when the order was placed (null if its stock was"
        " never reserved, or for an order placed before orders had lines)"
    )
    quantity: int
    unit_price: Money | None = Field(description="The price when the order was placed")
    line_total: Money | None = Field(description="unit_price x quantity")


class OrderRead(BaseModel):
    id: int
    user_id: int
    product_id: int | None = Field(description="A one-line order's product; null for more lines")
    quantity: int | None = Field(description="A one-line order's quantity; null for more lines")
    lines: list[OrderLineRead]
    total_price: Money | None = Field(description="The sum of the lines' totals")
    currency: str
    status: OrderStatus
    payment_id: str | None
    payment_method: PaymentMethod
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


class OrderCustomer(BaseModel):
    username: str
    email: str


class OrderEvent(OrderRead):
    """The data of a ``shop.order.*`` event: the order as the REST API answers it, and the
    customer's contact as at placement, so a consumer can write to them without asking the
    user service (null for an order placed before orders recorded it)."""

    customer: OrderCustomer | None = None


OrderPage = Page[OrderRead]
