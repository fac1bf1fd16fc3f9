"""The lean list route takes only requests the FastAPI route would answer the same way."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shop.products.api import list_query, page_query
from shop.products.cache import CachedBody
from shop.products.db import SearchQuery


@pytest.mark.parametrize(
    ("query", "key"),
    [
        (b"", "20:0:"),
        (b"limit=5", "5:0:"),
        (b"limit=100&offset=40&category=category-02", "100:40:category-02"),
        (b"category=a%20b", "20:0:a b"),
        (b"offset=007", "20:7:"),
    ],
)
def test_plain_pages_have_a_cache_key(query: bytes, key: str) -> None:
    assert page_query(query) == key


@pytest.mark.parametrize(
    "query",
    [
        b"ids=1,2",
        b"limit=0",
        b"limit=101",
        b"limit=-1",
        b"limit=+5",
        b"limit=5&limit=6",
        b"offset=1000001",
        b"category=",
        b"category=" + b"x" * 101,
        b"category=a%00b",
        b"unknown=1",
        b"limit=abc",
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


def test_a_search_the_route_would_answer_as_is_goes_lean() -> None:
    found = list_query(b"q=Wireless+Headphones&in_stock=true&max_price=100&limit=5&offset=10")
    assert found == SearchQuery(
        words=("wireless", "headphones"),
        category=None,
        min_price=None,
        max_price=Decimal("100"),
        in_stock=True,
        sort="relevance",
        limit=5,
        offset=10,
    )
    by_price = list_query(b"q=chair&category=category-03&sort=price")
    assert isinstance(by_price, SearchQuery)
    assert (by_price.sort, by_price.category) == ("price", "category-03")
    assert isinstance(list_query(b"min_price=20&max_price=30.5&sort=-price"), SearchQuery)
    assert isinstance(list_query(b"q=" + b"a" * 200), SearchQuery)
    assert list_query(b"limit=5") == "5:0:"  # a plain page is still a page


@pytest.mark.parametrize(
    "query",
    [
        b"q=",
        b"q=" + b"a" * 201,
        b"q=a%00b",
        b"q=a&q=b",
        b"q=a&sort=cheapest",
        b"q=a&in_stock=1",
        b"q=a&in_stock=True",
        b"q=a&min_price=1.234",
        b"q=a&min_price=-1",
        b"q=a&max_price=10%0A",
        b"q=a&min_price=5&max_price=4",  # the route's 422
        b"q=a&limit=0",
        b"q=a&ids=1,2",
        b"sort=relevance",  # plain pages in disguise: the route's
        b"in_stock=false&limit=3",
    ],
)
def test_any_other_search_goes_to_the_fastapi_route(query: bytes) -> None:
    assert list_query(query) is None
