"""The lean list route takes only requests the FastAPI route would answer the same way."""

from __future__ import annotations

import pytest

from shop.products.api import page_query
from shop.products.cache import CachedBody


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
