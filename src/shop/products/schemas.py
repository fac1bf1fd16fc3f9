from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from shop.common.types import (
    JSON_INT,
    ORDER_LINES_MAX,
    ORDER_QUANTITY_MAX,
    Id,
    Int,
    Money,
    Page,
    PositiveMoney,
    ProblemRead,
    StrictModel,
    text,
)
from shop.common.wire import Wire

Name = text(1, 200, examples=["Mechanical keyboard"])
CATEGORY_MAX_LENGTH = 100
Category = text(1, CATEGORY_MAX_LENGTH, default=None, examples=["electronics"])
Description = text(0, 10_000, default="")
STOCK_MAX = 1_000_000_000  # a product's stock stays within 0..STOCK_MAX (db and API check it)
StockLevel = Annotated[int, Field(ge=0, le=STOCK_MAX), JSON_INT]
StockDelta = Annotated[int, Field(ge=-STOCK_MAX, le=STOCK_MAX), JSON_INT]


class ProductCreate(StrictModel):
    name: str = Name
    description: str = Description
    price: PositiveMoney
    stock: StockLevel = 0
    category: str | None = Category


class ProductUpdate(StrictModel):
    """A full replacement of the editable fields. Stock changes go through PATCH .../stock."""

    name: str = Name
    description: str = Description
    price: PositiveMoney
    category: str | None = Category


DELTA: JsonDict = {"type": "integer", "minimum": -STOCK_MAX, "maximum": STOCK_MAX}
STOCK: JsonDict = {"type": "integer", "minimum": 0, "maximum": STOCK_MAX}


class StockUpdate(StrictModel):
    """Exactly one of: ``delta`` (atomic add/remove) or ``stock`` (set)."""

    # The schema says "exactly one" too: one of the two is a number, the other absent or null.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["delta"],
                    "properties": {"delta": DELTA, "stock": {"type": "null"}},
                },
                {
                    "required": ["stock"],
                    "properties": {"stock": STOCK, "delta": {"type": "null"}},
                },
            ]
        }
    )

    delta: StockDelta | None = None
    stock: StockLevel | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.delta is None) == (self.stock is None):
            raise ValueError("give exactly one of 'delta' or 'stock'")
        return self


class ProductRead(BaseModel):
    id: int
    name: str
    description: str
    price: Money
    stock: int
    category: str | None
    created_at: datetime
    updated_at: datetime


ProductPage = Page[ProductRead]

# Batch reads (`?ids=1,2,3`, for a client's dataloader): at most 100 ids, one page, at once.
ID_LIST_PATTERN = r"^[1-9][0-9]{0,14}(,[1-9][0-9]{0,14}){0,99}$"  # ids below 2**53
ID_LIST_DESCRIPTION = (
    "Comma-separated product ids (at most 100): the live products among them, in id order;"
    " unknown or deleted ids are left out. Paging and category do not apply."
)


# Catalogue search (API.md, "Catalogue search"; docs/search.md).
SEARCH_MAX_LENGTH = 200  # characters of q
SEARCH_MAX_WORDS = 10  # distinct words of q searched for; later ones are left out
# A price filter: a non-negative amount with at most two decimal places, as a query string.
PRICE_FILTER_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
_WORD = re.compile(r"[^\W_]+")


def search_words(q: str) -> tuple[str, ...]:
    """The words of a query as searched: lower case, letters and digits only (the split of
    the SQL function products_name_keys), each once, at most SEARCH_MAX_WORDS."""
    return tuple(dict.fromkeys(_WORD.findall(q.lower())))[:SEARCH_MAX_WORDS]


class CategoryRead(BaseModel):
    name: str
    count: int


class CategoryList(BaseModel):
    items: list[CategoryRead]


CATEGORY = Wire(CategoryRead)


def categories_json(categories: Sequence[object]) -> bytes:
    return orjson.dumps({"items": CATEGORY.many(categories)})


class ReservationLineIn(StrictModel):
    product_id: Id
    quantity: Int = Field(ge=1, le=ORDER_QUANTITY_MAX)


class ReservationCreate(StrictModel):
    """Every line of one order, reserved all or nothing (each product at most once)."""

    order_id: Id
    lines: list[ReservationLineIn] = Field(min_length=1, max_length=ORDER_LINES_MAX)

    @model_validator(mode="after")
    def _one_line_per_product(self) -> Self:
        if len({line.product_id for line in self.lines}) != len(self.lines):
            raise ValueError("each product may appear in one line only")
        return self

    def pairs(self) -> list[tuple[int, int]]:
        return [(line.product_id, line.quantity) for line in self.lines]


class ReservationRefusal(ProblemRead):
    product_ids: list[int] | None = Field(
        default=None, description="For product_not_found: the lines' products that do not exist"
    )


class ReservationLineRead(BaseModel):
    product_id: int
    name: str = Field(description="The product's name now")
    quantity: int
    unit_price: Money = Field(description="The price the stock was reserved at")


class ReservationRead(BaseModel):
    order_id: int
    status: Literal["reserved", "released"]
    lines: list[ReservationLineRead] = Field(
        description="Empty for an order released before it reserved anything"
    )


RESERVATION = Wire(ReservationRead)

# The wire form of a product, serialised once from the repository's typed row: these bytes
# are what the catalogue cache stores and every read sends.
PRODUCT = Wire(ProductRead)


def product_json(product: object) -> bytes:
    return orjson.dumps(PRODUCT(product))


def page_json(products: Sequence[object], *, total: int, limit: int, offset: int) -> bytes:
    """The contract's list shape (ProductPage): ``{"items", "total", "limit", "offset"}``."""
    items = PRODUCT.many(products)
    return orjson.dumps({"items": items, "total": total, "limit": limit, "offset": offset})
