"""Catalogue search through the storefront: GraphQL ``products(q, ...)`` and ``categories``,
and the search page, over the real services (in-process, real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Platform
from tests.integration.test_storefront_graphql import Storefront, _storefront, codes

SEARCH = """
query ($q: String, $min: String, $max: String, $inStock: Boolean!, $sort: ProductSort) {
  products(q: $q, minPrice: $min, maxPrice: $max, inStock: $inStock, sort: $sort, limit: 10) {
    total items { name price stock } }
  categories { name count } }
"""


@pytest.fixture
async def bff(platform: Platform, tmp_path: Path) -> AsyncIterator[Storefront]:
    async for storefront in _storefront(platform, tmp_path):
        yield storefront


@pytest.fixture
async def catalogue(make_product: Callable[..., Any]) -> None:
    await make_product(name="Wireless Headphones", price="99.00", stock=4, category="audio")
    await make_product(name="Wireless Earbuds", price="49.00", stock=0, category="audio")
    await make_product(name="Wireless Mouse", price="19.00", stock=9, category="computers")


async def test_graphql_searches_filters_sorts_and_counts(bff: Storefront, catalogue) -> None:
    body = await bff.gql(SEARCH, q="wireles", inStock=True, sort="PRICE_DESC")
    assert "errors" not in body, body
    products = body["data"]["products"]
    assert [p["name"] for p in products["items"]] == ["Wireless Headphones", "Wireless Mouse"]
    assert products["total"] == 2
    assert body["data"]["categories"] == [
        {"name": "audio", "count": 2},
        {"name": "computers", "count": 1},
    ]
    cheap = await bff.gql(SEARCH, q="headphnes", max="60", inStock=False)
    assert cheap["data"]["products"]["total"] == 0


async def test_graphql_bad_search_input_is_bad_user_input(bff: Storefront) -> None:
    for variables in [{"min": "10", "max": "5"}, {"q": "x" * 201}, {"min": "cheap"}]:
        body = await bff.gql(SEARCH, inStock=False, **variables)
        assert codes(body) == ["BAD_USER_INPUT"], body
    wrong_sort = await bff.gql(SEARCH, inStock=False, sort="CHEAPEST")
    assert codes(wrong_sort) == ["BAD_USER_INPUT"]


async def test_the_search_page_shows_results_filters_counts_and_an_empty_state(
    bff: Storefront, catalogue
) -> None:
    page = await bff.client.get(
        "/search", params={"q": "wireles earbds", "sort": "NAME", "category": "audio"}
    )
    assert page.status_code == 200
    html = page.text
    assert html.count('data-testid="product-card"') == 1
    assert "Wireless Earbuds" in html
    assert "audio (2)" in html
    assert "computers (1)" in html
    assert 'data-testid="search-input"' in html
    assert 'data-testid="sort-select"' in html
    assert '<option value="NAME" selected>' in html
    none = await bff.client.get("/search", params={"q": "zzzzqqq", "in_stock": "true"})
    assert 'data-testid="no-results"' in none.text
    assert 'data-testid="filter-in-stock" data-autosubmit checked' in none.text
    refused = await bff.client.get("/search", params={"min_price": "9", "max_price": "1"})
    assert refused.status_code == 200
    assert 'data-testid="error"' in refused.text
    assert 'data-testid="no-results"' not in refused.text


async def test_every_page_has_the_search_box(bff: Storefront, catalogue) -> None:
    for path in ["/", "/login", "/cart"]:
        html = (await bff.client.get(path)).text
        assert 'data-testid="search-input"' in html, path
        assert 'data-testid="search-submit"' in html, path
    catalogue_page = (await bff.client.get("/")).text
    assert "audio (2)" in catalogue_page
