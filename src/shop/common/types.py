"""Types shared by the services' schemas: money, pages of results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    WithJsonSchema,
)

# A JSON value as orjson writes and reads it, and a JSON object: the type of bodies, events and
# config documents that are built or read as data rather than through a model.
# Containers as Mapping and Sequence (covariant), so a dict[str, str] or a list of objects is
# JSON too; a document being built is a JsonObject.
Json: TypeAlias = "Mapping[str, Json] | Sequence[Json] | str | int | float | bool | None"
JsonObject: TypeAlias = "dict[str, Json]"

MAX_MONEY = Decimal("9999999999.99")  # NUMERIC(12, 2)
CENT = Decimal("0.01")


def parse_money(value: object) -> Decimal:
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
            "anyOf": [
                {"type": "string", "pattern": _MONEY_PATTERN},
                {
                    "type": "number",
                    "minimum": -float(MAX_MONEY),
                    "maximum": float(MAX_MONEY),
                    "multipleOf": 0.01,
                },
            ],
            "examples": ["19.99"],
        },
        mode="validation",
    ),
    WithJsonSchema(
        {"type": "string", "pattern": _MONEY_PATTERN, "examples": ["19.99"]}, mode="serialization"
    ),
]
# Above zero, as the schema says too: a string with a non-zero digit, or a number of cents.
_POSITIVE_PATTERN = r"^(0{0,9}[1-9]\d{0,9}(\.\d{1,2})?|0{1,10}\.(0[1-9]|[1-9]\d?))$"
PositiveMoney = Annotated[
    Money,
    Field(gt=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _POSITIVE_PATTERN},
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": float(MAX_MONEY),
                    "multipleOf": 0.01,
                },
            ],
            "examples": ["19.99"],
        },
        mode="validation",
    ),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["USD"])]

# Ids in bodies and paths: at most 2**53 - 1, the largest integer every JSON client (and
# JSON Schema validators that compare as doubles) holds exactly; sequences never get near.
MAX_ID = 2**53 - 1

# The contract's other bounds, declared once: the FastAPI routes (and so the OpenAPI) and the
# lean routes (``shop.common.fastpath``) both read them here.
IDEMPOTENCY_KEY_MAX = 255  # characters of an Idempotency-Key
PAGE_LIMIT_MAX = 100  # items per page
PAGE_OFFSET_MAX = 1_000_000  # items a page may skip
# An order (API.md, "Orders with lines"): its lines, one line's quantity, and the quantity of
# the seed's one-product body (which predates lines and kept its bound).
ORDER_LINES_MAX = 50
LINE_QUANTITY_MAX = 1_000
ORDER_QUANTITY_MAX = 10_000


def _json_int(value: object) -> object:
    # JSON's integers: 3 and 3.0 (JSON Schema's "integer"), never true or "3".
    if isinstance(value, bool | str | bytes):
        raise ValueError("Input should be a valid integer")
    return value


Int = Annotated[int, BeforeValidator(_json_int)]


Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_json_int)]

# For a bounded integer of one's own: Annotated[int, Field(ge=..., le=...), JSON_INT], the
# bounds before the validator, so they reach the schema as minimum and maximum (also inside
# an ``X | None``, where a field's own ge/le would land as unknown keywords).
JSON_INT = BeforeValidator(_json_int)
Bool = StrictBool  # true or false only (not 0, 1, "yes")

# Whitespace as request bodies trim it (pydantic's str_strip_whitespace: Unicode White_Space).
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\x00]*$"


def text(min_length: int, max_length: int, *, chars: str | None = None, **kw: Any) -> Any:
    """A trimmed string field whose schema says exactly what is accepted: after trimming,
    ``min_length``..``max_length`` characters (of ``chars``, a regex class body, if given),
    never NUL (PostgreSQL text cannot hold it). The schema states it as one pattern over the
    untrimmed string, since a validator sees the string as sent."""
    edge = f"[{chars}]" if chars else f"[^\\x00{_WS}]"
    middle = f"[{chars}]" if chars else "[^\\x00]"
    if min_length >= 2:
        core = f"{edge}{middle}{{{min_length - 2},{max_length - 2}}}{edge}"
    else:
        core = f"{edge}(?:{middle}{{0,{max_length - 2}}}{edge})?"
        if min_length == 0:
            core = f"(?:{core})?"
    pattern = f"^[{_WS}]*{core}[{_WS}]*$"
    return Field(
        min_length=min_length,
        max_length=max_length,
        json_schema_extra=_replace_length(pattern),
        pattern=f"^[{chars}]*$" if chars else NO_NUL,
        **kw,
    )


def _replace_length(pattern: str) -> Any:
    def fix(schema: dict[str, Any]) -> None:
        for part in schema.get("anyOf", [schema]):
            if part.get("type") == "string":
                part.pop("minLength", None)
                part.pop("maxLength", None)
                part["pattern"] = pattern

    return fix


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
    errors: list[dict[str, Any]] | None = Field(
        default=None,
        description="What was wrong, one entry per place in the request ({loc, msg}; a line"
        " refused for stock adds available).",
    )
