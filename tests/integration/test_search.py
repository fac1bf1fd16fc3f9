"""Catalogue search against the real PostgreSQL (API.md, "Catalogue search"; docs/search.md):
stems, typos, ranking, filters, sorts, totals, the categories and the 422s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import Platform

pytestmark = pytest.mark.asyncio
PRODUCTS = "/api/v1/products"


async def _search(platform: Platform, **params: Any) -> dict[str, Any]:
    response = await platform.products.get(PRODUCTS, params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _names(page: dict[str, Any]) -> list[str]:
    return [p["name"] for p in page["items"]]


@pytest.fixture
async def catalogue(make_product: Callable[..., Any]) -> dict[str, dict[str, Any]]:
    made = {}
    for name, price, stock, category, description in [
        ("Wireless Headphones", "99.00", 5, "audio", "Over-ear, noise cancelling"),
        ("Wired Headphones", "19.00", 0, "audio", "A cable and two speakers"),
        ("Bluetooth Speaker", "49.00", 3, "audio", "Pairs with wireless headphones too"),
        ("Running Shoes", "79.00", 2, "sport", "Light shoes for long runs"),
        ("Mechanical Keyboard", "120.00", 7, "computers", "Clicky switches"),
        ("Desk Lamp", "25.00", 1, None, "An adjustable lamp for the keyboard desk"),
    ]:
        made[name] = await make_product(
            name=name, price=price, stock=stock, category=category, description=description
        )
    return made


async def test_typos_in_each_word_still_find_the_product(platform: Platform, catalogue) -> None:
    page = await _search(platform, q="wireles headphnes")
    assert _names(page)[0] == "Wireless Headphones"
    assert page["total"] == 1
    # A transposition and a wrong letter, each one edit from the name's word.
    assert _names(await _search(platform, q="keybaord"))[0] == "Mechanical Keyboard"
    assert _names(await _search(platform, q="mechanikal")) == ["Mechanical Keyboard"]


async def test_stems_and_every_field_are_searched(platform: Platform, catalogue) -> None:
    # "running" and "runs" share the stem "run": the shoes by name and by description.
    assert _names(await _search(platform, q="run")) == ["Running Shoes"]
    # A word of the category and one of the description.
    assert set(_names(await _search(platform, q="sport"))) == {"Running Shoes"}
    assert _names(await _search(platform, q="clicky")) == ["Mechanical Keyboard"]
    # Every word must match, each in any field: "cable" is only in the wired pair's description.
    assert _names(await _search(platform, q="headphones cable")) == ["Wired Headphones"]
    both = _names(await _search(platform, q="headphones speakers"))
    assert set(both) == {"Wired Headphones", "Bluetooth Speaker"}


async def test_a_name_match_outranks_a_description_match(platform: Platform, catalogue) -> None:
    page = await _search(platform, q="headphones")
    names = _names(page)
    assert set(names) == {"Wireless Headphones", "Wired Headphones", "Bluetooth Speaker"}
    assert names[-1] == "Bluetooth Speaker"  # only its description says headphones
    keyboard = _names(await _search(platform, q="keyboard"))
    assert keyboard == ["Mechanical Keyboard", "Desk Lamp"]


async def test_ranks_go_name_then_typo_then_category_then_description(
    platform: Platform, make_product: Callable[..., Any]
) -> None:
    """The rank tiers (docs/search.md, "Ranking"): every word spelled right in the name, then
    in the name with a typo, then in the name or category, then a word in the name, then the
    description only; ties by id."""
    for name, category, description in [
        ("Cable Box", None, "For audio gear and a studio lamp"),  # description only
        ("Studio Monitor", "audio", "Flat response"),  # category
        ("Audo Mixer", "studio", "Eight channels"),  # one letter off in the name
        ("Audio Mixer", "studio", "Eight channels"),  # the name, spelled right
        ("Audio Lamp", None, "Warm light for a studio"),  # the name, spelled right, made last
    ]:
        await make_product(
            name=name, price="10.00", stock=1, category=category, description=description
        )
    assert _names(await _search(platform, q="audio")) == [
        "Audio Mixer",
        "Audio Lamp",
        "Audo Mixer",
        "Studio Monitor",
        "Cable Box",
    ]
    # Two words, each in the name or the category: one tier, by id; the description last.
    assert _names(await _search(platform, q="studio audio")) == [
        "Studio Monitor",
        "Audo Mixer",
        "Audio Mixer",
        "Audio Lamp",  # a word in the name, the other in the description
        "Cable Box",  # both in the description
    ]
    assert _names(await _search(platform, q="studio lamp")) == ["Audio Lamp", "Cable Box"]
    assert _names(await _search(platform, q="audio lamp")) == ["Audio Lamp", "Cable Box"]


async def test_stop_words_are_left_out_unless_nothing_else_is_left(
    platform: Platform, catalogue
) -> None:
    assert _names(await _search(platform, q="the shoes for running")) == ["Running Shoes"]
    assert (await _search(platform, q="the"))["total"] == 0
    assert (await _search(platform, q="!!! ***"))["total"] == 0


async def test_filters_combine_with_the_query(platform: Platform, catalogue) -> None:
    audio = await _search(platform, q="headphones", category="audio", max_price="50")
    assert set(_names(audio)) == {"Wired Headphones", "Bluetooth Speaker"}
    in_stock = await _search(platform, q="headphones", in_stock="true")
    assert set(_names(in_stock)) == {"Wireless Headphones", "Bluetooth Speaker"}
    cheap = await _search(platform, min_price="20", max_price="80.00", sort="price")
    assert _names(cheap) == ["Desk Lamp", "Bluetooth Speaker", "Running Shoes"]
    assert (await _search(platform, q="headphones", min_price="100"))["total"] == 0


async def test_a_category_filter_with_words_is_exact(
    platform: Platform, make_product: Callable[..., Any]
) -> None:
    """The category's words narrow the index scan (db.search_statement); the category itself,
    exactly, decides: of stop words only, punctuation, or words in other fields."""
    for name, category in [
        ("Garden Lamp", "Home & Garden"),
        ("Reading Lamp", "The"),
        ("Home Lamp", "garden"),  # the words of "Home & Garden", in the name and category
        ("Desk Lamp", "home-office"),
    ]:
        await make_product(name=name, price="5.00", stock=1, category=category)
    for category, names in [
        ("Home & Garden", ["Garden Lamp"]),
        ("The", ["Reading Lamp"]),
        ("garden", ["Home Lamp"]),
        ("home-office", ["Desk Lamp"]),
        ("home", []),
    ]:
        page = await _search(platform, q="lamp", category=category)
        assert (_names(page), page["total"]) == (names, len(names)), category


async def test_sorts_and_paging_with_the_total(platform: Platform, catalogue) -> None:
    by_price = await _search(platform, q="headphones", sort="-price", limit=2)
    assert _names(by_price) == ["Wireless Headphones", "Bluetooth Speaker"]
    assert (by_price["total"], by_price["limit"], by_price["offset"]) == (3, 2, 0)
    rest = await _search(platform, q="headphones", sort="-price", limit=2, offset=2)
    assert _names(rest) == ["Wired Headphones"]
    assert rest["total"] == 3
    beyond = await _search(platform, q="headphones", offset=10)
    assert (beyond["items"], beyond["total"]) == ([], 3)
    assert _names(await _search(platform, q="headphones", sort="name")) == [
        "Bluetooth Speaker",
        "Wired Headphones",
        "Wireless Headphones",
    ]
    newest = _names(await _search(platform, sort="newest", limit=2))
    assert newest == ["Desk Lamp", "Mechanical Keyboard"]
    in_stock = await _search(platform, in_stock="true", limit=100)
    assert in_stock["total"] == 5


async def test_without_the_new_parameters_the_page_is_unchanged(
    platform: Platform, catalogue
) -> None:
    plain = await platform.products.get(PRODUCTS, params={"limit": 3, "offset": 1})
    # The FastAPI route (a parameter the lean route does not take) answers the same bytes.
    relevance = await platform.products.get(
        PRODUCTS, params={"limit": 3, "offset": 1, "sort": "relevance", "in_stock": "false"}
    )
    assert plain.content == relevance.content
    assert _names(plain.json()) == ["Wired Headphones", "Bluetooth Speaker", "Running Shoes"]


async def test_sql_in_q_is_only_text(platform: Platform, catalogue) -> None:
    for q in ["'; DROP TABLE products; --", "headphones' OR '1'='1", "a\\b $1 %_"]:
        assert (await _search(platform, q=q))["total"] == 0
    assert (await _search(platform))["total"] == 6


async def test_bad_search_parameters_are_422_problems(platform: Platform) -> None:
    for params in [
        {"sort": "cheapest"},
        {"min_price": "10", "max_price": "5"},
        {"q": "x" * 201},
        {"q": ""},
        {"min_price": "-1"},
        {"max_price": "1.234"},
    ]:
        response = await platform.products.get(PRODUCTS, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 422
    ok = await platform.products.get(PRODUCTS, params={"q": "x" * 200})
    assert ok.status_code == 200


async def test_categories_count_live_products(platform: Platform, catalogue, make_product) -> None:
    extra = await make_product(name="Tennis Ball", category="sport")
    response = await platform.products.get("/api/v1/categories")
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {"name": "audio", "count": 3},
            {"name": "computers", "count": 1},
            {"name": "sport", "count": 2},
        ]
    }
    await platform.products.delete(f"{PRODUCTS}/{extra['id']}", headers=platform.admin)
    items = (await platform.products.get("/api/v1/categories")).json()["items"]
    assert {"name": "sport", "count": 1} in items


async def test_a_rename_shows_in_search(platform: Platform, catalogue) -> None:
    lamp = catalogue["Desk Lamp"]
    body = {"name": "Reading Light", "price": "25.00", "description": "", "category": None}
    response = await platform.products.put(
        f"{PRODUCTS}/{lamp['id']}", json=body, headers=platform.admin
    )
    assert response.status_code == 200
    assert _names(await _search(platform, q="readng")) == ["Reading Light"]
    assert (await _search(platform, q="lamp"))["total"] == 0
