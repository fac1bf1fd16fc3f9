"""The one way from a typed row to its response: ``Wire(XRead)`` reads the response model's
fields, in the model's order, as attributes of a row (a frozen dataclass of a repository, or
its properties) and gives the JSON-ready dict, to be serialised once (orjson).

The encoding of each field follows its annotation in the model, compiled once per model:
``Money`` as "19.99", an enum as its value, a datetime in ISO 8601 (``isoformat``, or with
``Z`` for UTC where the contract has always said it so: pydantic's form, see users), a nested
model (or a list of them) by its own ``Wire``; anything else as it is. The OpenAPI states the
same models, so the published schema and the bytes sent come from one declaration;
tests/unit/test_wire.py checks each service's encoder against pydantic's own dump.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from operator import attrgetter
from typing import Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel

from shop.common.types import Json, JsonObject

M = TypeVar("M", bound=BaseModel)
Convert = Callable[[object], Json]


def money(value: object) -> Json:
    assert isinstance(value, Decimal)
    return f"{value:.2f}"


def iso(value: object) -> Json:
    assert isinstance(value, datetime)
    return value.isoformat()


def iso_z(value: object) -> Json:
    """A datetime as pydantic writes it: ``Z`` for UTC."""
    assert isinstance(value, datetime)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _value(value: object) -> Json:
    assert isinstance(value, Enum)
    result: Json = value.value
    return result


def _nullable(convert: Convert) -> Convert:
    def nullable(value: object) -> Json:
        return None if value is None else convert(value)

    return nullable


class Wire(Generic[M]):
    """The response form of ``model``, from any row whose attributes bear its field names."""

    def __init__(self, model: type[M], *, datetimes: Convert = iso) -> None:
        self.model = model
        self._datetimes = datetimes
        # A field's value as read: JSON as it is unless it has a conversion (its type says so).
        self._fields: tuple[tuple[str, Convert, Convert | None], ...] = tuple(
            (name, attrgetter(name), self._converter(field.annotation, field.metadata))
            for name, field in model.model_fields.items()
        )

    def __call__(self, row: object) -> JsonObject:
        return {
            name: value if convert is None else convert(value)
            for name, get, convert in self._fields
            for value in (get(row),)
        }

    def many(self, rows: Iterable[object]) -> list[Json]:
        return [self(row) for row in rows]

    def _converter(self, annotation: object, metadata: list[object]) -> Convert | None:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is typing.Union or origin is types.UnionType:
            present = [a for a in args if a is not type(None)]
            inner = self._converter(present[0], metadata) if len(present) == 1 else None
            return None if inner is None else _nullable(inner)
        if origin is typing.Annotated:
            return self._converter(args[0], [*args[1:], *metadata])
        if origin is list:
            item = self._converter(args[0], [])
            return None if item is None else _each(item)
        if isinstance(annotation, type):
            if issubclass(annotation, BaseModel):
                return Wire(annotation, datetimes=self._datetimes)
            if issubclass(annotation, Enum):
                return _value
            if issubclass(annotation, datetime):
                return self._datetimes
            if issubclass(annotation, Decimal):
                return money
        return None


def _each(item: Convert) -> Convert:
    def each(values: object) -> Json:
        assert isinstance(values, Iterable)
        return [item(v) for v in values]

    return each
