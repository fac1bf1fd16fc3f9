from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import Platform

pytestmark = pytest.mark.asyncio


async def test_admin_creates_reads_updates_and_deletes(platform: Platform, make_product) -> None:
    product = await make_product(price="19.99", stock=3, category="books", name="A book")
    assert product["price"] == "19.99"
    assert product["stock"] == 3
    read = (await platform.products.get(f"/api/v1/products/{product['id']}")).json()
    assert read == product
    update = {"name": "A better book", "price": 25, "category": "books", "description": "new"}
    updated = await platform.products.put(
        f"/api/v1/products/{product['id']}", json=update, headers=platform.admin
    )
    assert updated.status_code == 200
    assert updated.json()["price"] == "25.00"
    assert updated.json()["stock"] == 3
    deleted = await platform.products.delete(
        f"/api/v1/products/{product['id']}", headers=platform.admin
    )
    assert deleted.status_code == 204
    assert (await platform.products.get(f"/api/v1/products/{product['id']}")).status_code == 404


async def test_list_paginates_and_filters(platform: Platform, make_product) -> None:
    for i in range(5):
        await make_product(name=f"p{i}", category="even" if i % 2 == 0 else "odd")
    page = (await platform.products.get("/api/v1/products?limit=2&offset=1")).json()
    assert [p["name"] for p in page["items"]] == ["p1", "p2"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    even = (await platform.products.get("/api/v1/products?category=even")).json()
    assert even["total"] == 3
    assert (await platform.products.get("/api/v1/products?limit=101")).status_code == 422


async def test_customers_cannot_write_products(platform: Platform, make_product) -> None:
    product = await make_product()
    customer = platform.token(42)
    body = {"name": "x", "price": "1.00"}
    assert (
        await platform.products.post("/api/v1/products", json=body, headers=customer)
    ).status_code == 403
    assert (
        await platform.products.patch(
            f"/api/v1/products/{product['id']}/stock", json={"delta": 5}, headers=customer
        )
    ).status_code == 403
    assert (await platform.products.post("/api/v1/products", json=body)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "price": "1.00"},
        {"name": "x", "price": "0"},
        {"name": "x", "price": "-1"},
        {"name": "x", "price": "1.001"},
        {"name": "x", "price": "abc"},
        {"name": "x", "price": "1.00", "stock": -1},
        {"name": "x" * 201, "price": "1"},
        {"name": "x", "price": True},
        {"name": "x", "price": "NaN"},
    ],
)
async def test_invalid_products_are_422_and_not_stored(platform: Platform, body: dict) -> None:
    response = await platform.products.post("/api/v1/products", json=body, headers=platform.admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await platform.sql("products", "SELECT 1 FROM products") == []


async def test_stock_delta_is_atomic_and_never_negative(platform: Platform, make_product) -> None:
    product = await make_product(stock=10)
    url = f"/api/v1/products/{product['id']}/stock"
    results = await asyncio.gather(
        *[
            platform.products.patch(url, json={"delta": -1}, headers=platform.admin)
            for _ in range(25)
        ]
    )
    assert sorted(r.status_code for r in results) == [200] * 10 + [409] * 15
    assert (await platform.products.get(f"/api/v1/products/{product['id']}")).json()["stock"] == 0
    set_to = await platform.products.patch(url, json={"stock": 7}, headers=platform.admin)
    assert set_to.json()["stock"] == 7
    both = await platform.products.patch(url, json={"stock": 1, "delta": 1}, headers=platform.admin)
    assert both.status_code == 422


async def test_reservations_take_once_and_release_once(platform: Platform, make_product) -> None:
    product = await make_product(stock=5, price="2.50")
    url = f"/api/v1/products/{product['id']}/reservations"
    svc = platform.service_token()
    first = await platform.products.post(url, json={"order_id": 7, "quantity": 3}, headers=svc)
    again = await platform.products.post(url, json={"order_id": 7, "quantity": 3}, headers=svc)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["unit_price"] == "2.50"
    stock = (await platform.products.get(f"/api/v1/products/{product['id']}")).json()["stock"]
    assert stock == 2
    releases = await asyncio.gather(
        *[platform.products.delete(f"{url}/7", headers=svc) for _ in range(5)]
    )
    assert {r.status_code for r in releases} == {200}
    stock = (await platform.products.get(f"/api/v1/products/{product['id']}")).json()["stock"]
    assert stock == 5
    # A late reservation after the release is refused (the tombstone/released row stays).
    late = await platform.products.post(url, json={"order_id": 7, "quantity": 3}, headers=svc)
    assert late.status_code == 409


async def test_release_before_reserve_blocks_the_reservation(
    platform: Platform, make_product
) -> None:
    product = await make_product(stock=5)
    url = f"/api/v1/products/{product['id']}/reservations"
    svc = platform.service_token()
    assert (await platform.products.delete(f"{url}/9", headers=svc)).status_code == 200
    late = await platform.products.post(url, json={"order_id": 9, "quantity": 1}, headers=svc)
    assert late.status_code == 409
    assert (await platform.products.get(f"/api/v1/products/{product['id']}")).json()["stock"] == 5


async def test_customers_cannot_reserve(platform: Platform, make_product) -> None:
    product = await make_product()
    response = await platform.products.post(
        f"/api/v1/products/{product['id']}/reservations",
        json={"order_id": 1, "quantity": 1},
        headers=platform.token(5),
    )
    assert response.status_code == 403


async def test_batch_read_by_ids(platform: Platform, make_product: Callable[..., Any]) -> None:
    a, b, c = [await make_product(name=n) for n in ("a", "b", "c")]
    await platform.products.delete(f"/api/v1/products/{b['id']}", headers=platform.admin)
    ids = f"{c['id']},{a['id']},{b['id']},999999,{a['id']}"
    page = (await platform.products.get(f"/api/v1/products?ids={ids}")).json()
    # Live products only, once each, in id order; unknown and deleted ids are left out.
    assert [p["id"] for p in page["items"]] == [a["id"], c["id"]]
    assert page["total"] == 2
    for bad in ("", "1,,2", "0", "x", ",".join(["1"] * 101), "99999999999999999999"):
        response = await platform.products.get("/api/v1/products", params={"ids": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == "application/problem+json"
