"""The order service's clients read only what the other services publish: every field in
``shop.orders.clients.CONTRACT`` must be in that service's OpenAPI, for that answer, and every
value a client matches a field on must be one of that field's published values."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from shop.orders.clients import CONTRACT, PAYMENTS, Read
from shop.payments.app import create_app as payments_app
from shop.products.app import create_app as products_app

APPS = {"payments": payments_app, "products": products_app}


@cache
def openapi(service: str) -> dict[str, Any]:
    spec: dict[str, Any] = APPS[service]().openapi()
    return spec


def properties(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The property names a response schema offers ($ref and allOf resolved)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return properties(spec, spec["components"]["schemas"][name])
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= properties(spec, part)
    return names


def _resolved(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return _resolved(spec, spec["components"]["schemas"][schema["$ref"].split("/")[-1]])
    return schema


def _response_schemas(read: Read) -> list[dict[str, Any]]:
    spec = openapi(read.service)
    response = spec["paths"][read.path][read.method]["responses"].get(read.status)
    if response is None:
        return []
    return [content["schema"] for content in response.get("content", {}).values()]


def offered(read: Read) -> set[str]:
    spec = openapi(read.service)
    schemas = _response_schemas(read)
    return set().union(*(properties(spec, s) for s in schemas)) if schemas else set()


def _enum(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The values a property schema allows (through $ref, anyOf and allOf); empty: any."""
    schema = _resolved(spec, schema)
    values = {str(v) for v in schema.get("enum", ())}
    if "const" in schema:
        values.add(str(schema["const"]))
    for part in [*schema.get("anyOf", ()), *schema.get("allOf", ())]:
        values |= _enum(spec, part)
    return values


def published_values(read: Read, field: str) -> set[str]:
    spec = openapi(read.service)
    found: set[str] = set()
    pending = [_resolved(spec, s) for s in _response_schemas(read)]
    while pending:
        schema = pending.pop()
        if field in schema.get("properties", {}):
            found |= _enum(spec, schema["properties"][field])
        pending += [_resolved(spec, part) for part in schema.get("allOf", ())]
    return found


@pytest.mark.parametrize("read", CONTRACT, ids=lambda r: f"{r.service}-{r.path}-{r.status}")
def test_every_field_a_client_reads_is_published(read: Read) -> None:
    missing = set(read.fields) - offered(read)
    assert not missing, f"{read.service} {read.method} {read.path} {read.status}: {missing}"


VALUED = [(read, field, values) for read in CONTRACT for field, values in read.values]


@pytest.mark.parametrize(
    ("read", "field", "values"),
    VALUED,
    ids=[f"{r.service}-{r.path}-{r.status}-{f}" for r, f, _ in VALUED],
)
def test_every_value_a_client_matches_on_is_published(
    read: Read, field: str, values: tuple[str, ...]
) -> None:
    published = published_values(read, field)
    assert published, f"{read.path} {read.status}: {field} publishes no values to match on"
    assert set(values) <= published, (read.path, read.status, set(values) - published)


def test_the_payment_client_matches_statuses_on_every_answer_it_reads_them_from() -> None:
    assert {(r.path, r.status) for r, _, _ in VALUED} == {
        (r.path, r.status) for r in CONTRACT if {"status", "payment_status"} & set(r.fields)
    }


def test_the_value_check_notices_a_status_that_is_not_published() -> None:
    (created,) = [r for r in CONTRACT if r.path == PAYMENTS and r.status == "201"]
    assert "processed" not in published_values(created, "status")
    assert "completed" in published_values(created, "status")


def test_the_check_notices_a_field_that_is_not_published() -> None:
    assert "payment_status" not in offered(
        Read("products", "post", "/api/v1/reservations", "409", ())
    )
