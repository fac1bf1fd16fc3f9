"""Catalogue search in a real browser (API.md, "Catalogue search"): a query with a typo from
the header's search box, then the in-stock filter and the sort, on the real processes."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.e2e import test_storefront_browser as journeys
from tests.harness import Platform

# The browser journeys' fixtures and marks: one storefront process and browser per module.
storefront, browser, page = journeys.storefront, journeys.browser, journeys.page
pytestmark = journeys.pytestmark


def _zephyr(products: httpx.Client, token: str, name: str, price: str, stock: int) -> None:
    body = {"name": name, "price": price, "stock": stock, "category": "zephyrs"}
    r = products.post("/api/v1/products", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text


def test_a_typo_finds_then_filters_and_sorts(page: Page, live: Platform) -> None:
    token = journeys._admin_token(live)
    with live.sync_client("products") as products:
        _zephyr(products, token, "Zephyr Kettle", "30.00", 5)
        _zephyr(products, token, "Zephyr Toaster", "20.00", 0)
        _zephyr(products, token, "Zephyr Blender", "45.00", 2)

    page.goto("/")
    page.get_by_test_id("search-input").fill("zephir")  # one letter wrong
    page.get_by_test_id("search-submit").click()
    names = page.get_by_test_id("product-name")
    expect(names).to_have_count(3)
    expect(page.get_by_text("zephyrs (3)")).to_have_count(1)

    page.get_by_test_id("filter-in-stock").check()  # applies at once (search.js)
    expect(names).to_have_count(2)
    expect(page.get_by_test_id("filter-in-stock")).to_be_checked()

    page.get_by_test_id("sort-select").select_option("PRICE_DESC")
    expect(names).to_have_text(["Zephyr Blender", "Zephyr Kettle"])
    page.get_by_test_id("sort-select").select_option("PRICE")
    expect(names).to_have_text(["Zephyr Kettle", "Zephyr Blender"])
    journeys.shot(page, "search")

    page.get_by_test_id("search-input").fill("zzzyqqx")
    page.get_by_test_id("search-submit").click()
    expect(page.get_by_test_id("no-results")).to_be_visible()
