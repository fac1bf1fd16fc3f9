"""The order service's clients read only what the other services publish: every field in
``shop.orders.clients.CONTRACT`` must be in that service's OpenAPI, for that answer."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from shop.orders.clients import CONTRACT, Read
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


def offered(read: Read) -> set[str]:
    spec = openapi(read.service)
    operation = spec["paths"][read.path][read.method]
    response = operation["responses"].get(read.status)
    if response is None:
        return set()
    schemas = [content["schema"] for content in response.get("content", {}).values()]
    return set().union(*(properties(spec, s) for s in schemas)) if schemas else set()


@pytest.mark.parametrize("read", CONTRACT, ids=lambda r: f"{r.service}-{r.path}-{r.status}")
def test_every_field_a_client_reads_is_published(read: Read) -> None:
    missing = set(read.fields) - offered(read)
    assert not missing, f"{read.service} {read.method} {read.path} {read.status}: {missing}"


def test_the_check_notices_a_field_that_is_not_published() -> None:
    assert "payment_status" not in offered(
        Read("products", "post", "/api/v1/products/{product_id}/reservations", "409", ())
    )
