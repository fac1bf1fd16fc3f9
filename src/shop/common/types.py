"""Types shared by the services' schemas: money, pages of results."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

MAX_MONEY = Decimal("9999999999.99")  # NUMERIC(12, 2)
CENT = Decimal("0.01")


def parse_money(value: Any) -> Decimal:
    """Accept "19.99", 19.99 or 19; refuse floats' noise beyond cents, NaN, booleans."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError('must be a decimal number, as a string like "19.99" or a number')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError('must be a decimal number like "19.99"') from None
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if abs(amount) > MAX_MONEY:
        raise ValueError(f"must be at most {MAX_MONEY}")
    if amount != amount.quantize(CENT):
        raise ValueError("must have at most two decimal places")
    return amount.quantize(CENT)


def format_money(amount: Decimal) -> str:
    return f"{amount.quantize(CENT)}"


_MONEY_PATTERN = r"^-?\d{1,10}(\.\d{1,2})?$"
Money = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    PlainSerializer(format_money, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": _MONEY_PATTERN}, {"type": "number"}],
            "examples": ["19.99"],
        },
        mode="validation",
    ),
    WithJsonSchema(
        {"type": "string", "pattern": _MONEY_PATTERN, "examples": ["19.99"]}, mode="serialization"
    ),
]
PositiveMoney = Annotated[Money, Field(gt=0)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["USD"])]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused (no mass assignment), strings trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProblemRead(BaseModel):
    """An RFC 9457 problem as the services answer it (``application/problem+json``), for the
    OpenAPI of responses whose fields another service reads."""

    type: str
    title: str
    status: int
    detail: str
    code: str | None = Field(default=None, description="A stable machine-readable reason.")
