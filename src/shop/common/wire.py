"""The one way from a typed row to its response: ``Wire(XRead)`` reads the response model's
fields, in the model's order, as attributes of a repository's typed row (a frozen dataclass or
a named tuple, or their properties) and gives the JSON-ready dict, serialised once (orjson).

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
from typing import Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel

from shop.common.types import Json, JsonObject

M = TypeVar("M", bound=BaseModel)
Convert = Callable[[object], Json]


def iso(value: object) -> Json:
    assert isinstance(value, datetime)
    return value.isoformat()


def iso_z(value: object) -> Json:
    """A datetime as pydantic writes it: ``Z`` for UTC."""
    assert isinstance(value, datetime)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class Wire(Generic[M]):
    """The response form of ``model``, from any row whose attributes bear its field names.

    Compiled once into one function that builds the dict in a single expression (as
    ``dataclasses`` compiles ``__init__``): on the hot routes it costs what the hand-written
    dict literals it replaced did (docs/performance.md, "One mapper from typed rows")."""

    def __init__(self, model: type[M], *, datetimes: Convert = iso) -> None:
        self.model = model
        self._datetimes = datetimes
        self._names: dict[str, object] = {}
        items = ", ".join(
            f"{name!r}: {self._expr(f'row.{name}', field.annotation)}"
            for name, field in model.model_fields.items()
        )
        source = f"def encode(row):\n    return {{{items}}}\n"
        scope: dict[str, object] = {}
        exec(compile(source, f"<wire {model.__name__}>", "exec"), self._names, scope)  # noqa: S102
        encode = scope["encode"]
        assert callable(encode)
        self._encode: Callable[[object], JsonObject] = encode

    def __call__(self, row: object) -> JsonObject:
        return self._encode(row)

    def many(self, rows: Iterable[object]) -> list[Json]:
        encode = self._encode
        return [encode(row) for row in rows]

    def _expr(self, value: str, annotation: object) -> str:
        """The Python expression that encodes ``value``, an expression of this type."""
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is typing.Union or origin is types.UnionType:
            present = [a for a in args if a is not type(None)]
            if len(present) != 1:
                return value
            inner = self._expr("v", present[0])
            if inner == "v":
                return value
            return f"(None if (v := {value}) is None else {inner})"
        if origin is typing.Annotated:
            return self._expr(value, args[0])
        if origin is list:
            item = self._expr("item", args[0])
            return value if item == "item" else f"[{item} for item in {value}]"
        if isinstance(annotation, type):
            if issubclass(annotation, BaseModel):
                return f"{self._name(Wire(annotation, datetimes=self._datetimes))}({value})"
            if issubclass(annotation, Enum):
                return f"{value}.value"
            if issubclass(annotation, datetime):
                if self._datetimes is iso:
                    return f"{value}.isoformat()"
                return f"{self._name(self._datetimes)}({value})"
            if issubclass(annotation, Decimal):
                return f"f'{{{value}:.2f}}'"
        return value

    def _name(self, function: object) -> str:
        name = f"_f{len(self._names)}"
        self._names[name] = function
        return name
