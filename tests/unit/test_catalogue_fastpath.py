"""The lean list route takes only requests the FastAPI route would answer the same way."""

from __future__ import annotations

from typing import Any

import pytest

from shop.products.api import LIST_PRODUCTS
from shop.products.cache import CachedBody


def page_query(query: bytes) -> dict[str, Any] | None:
    """What the lean list route (made by ``fastpath.hot_get``) read from a query string."""
    assert LIST_PRODUCTS.query is not None
    return LIST_PRODUCTS.query(query)


@pytest.mark.parametrize(
    ("query", "values"),
    [
        (b"", {}),
        (b"limit=5", {"limit": 5}),
        (
            b"limit=100&offset=40&category=category-02",
            {"limit": 100, "offset": 40, "category": "category-02"},
        ),
        (b"category=a%20b", {"category": "a b"}),
        (b"offset=007", {"offset": 7}),
        (b"limit=+5", {"limit": 5}),  # pydantic's integer, as the FastAPI route reads it
        # Searches and filters too (issue 29), each value as its declaration reads it.
        (b"q=lamp", {"q": "lamp"}),
        (b"in_stock=true", {"in_stock": True}),
        (b"in_stock=1", {"in_stock": True}),
        (b"sort=price", {"sort": "price"}),
        (
            b"q=desk+lamp&min_price=1.50&max_price=9",
            {"q": "desk lamp", "min_price": "1.50", "max_price": "9"},
        ),
    ],
)
def test_plain_pages_are_read_by_their_declarations(query: bytes, values: dict[str, Any]) -> None:
    assert page_query(query) == values


@pytest.mark.parametrize(
    "query",
    [
        b"ids=1,2",
        b"limit=0",
        b"limit=101",
        b"limit=-1",
        b"limit=5&limit=6",
        b"offset=1000001",
        b"category=",
        b"category=" + b"x" * 101,
        b"category=a%00b",
        b"unknown=1",
        b"limit=abc",
        b"q=",
        b"q=" + b"a" * 201,
        b"in_stock=maybe",
        b"sort=cheapest",
        b"min_price=-1",
        b"q=lamp&q=desk",
    ],
)
def test_anything_else_goes_to_the_fastapi_route(query: bytes) -> None:
    assert page_query(query) is None


def test_if_none_match_forms() -> None:
    cached = CachedBody.of(b'{"id": 1}')
    assert cached.matches(cached.etag)
    assert cached.matches(f'"x", W/{cached.etag}')
    assert cached.matches("*")
    assert not cached.matches('"x"')
    assert not cached.matches(None)
    assert CachedBody.unpacked(cached.packed()) == cached
