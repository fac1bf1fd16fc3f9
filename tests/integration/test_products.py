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


RESERVATIONS = "/api/v1/reservations"


def lines(*pairs: tuple[int, int]) -> list[dict[str, int]]:
    return [{"product_id": p, "quantity": q} for p, q in pairs]


async def stocks(platform: Platform, *products: dict[str, Any]) -> list[int]:
    return [
        (await platform.products.get(f"/api/v1/products/{p['id']}")).json()["stock"]
        for p in products
    ]


async def test_reservations_take_every_line_once_and_release_once(
    platform: Platform, make_product
) -> None:
    a = await make_product(stock=5, price="2.50", name="Pen")
    b = await make_product(stock=4, price="1.00", name="Ink")
    svc = platform.service_token()
    body = {"order_id": 7, "lines": lines((b["id"], 1), (a["id"], 3))}
    first = await platform.products.post(RESERVATIONS, json=body, headers=svc)
    again = await platform.products.post(RESERVATIONS, json=body, headers=svc)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert first.json() == again.json()
    assert first.json()["lines"] == [
        {"product_id": a["id"], "name": "Pen", "quantity": 3, "unit_price": "2.50"},
        {"product_id": b["id"], "name": "Ink", "quantity": 1, "unit_price": "1.00"},
    ]
    assert await stocks(platform, a, b) == [2, 3]
    other = {"order_id": 7, "lines": lines((a["id"], 1))}
    conflict = await platform.products.post(RESERVATIONS, json=other, headers=svc)
    assert (conflict.status_code, conflict.json()["code"]) == (409, "reservation_conflict")
    releases = await asyncio.gather(
        *[platform.products.delete(f"{RESERVATIONS}/7", headers=svc) for _ in range(5)]
    )
    assert {r.status_code for r in releases} == {200}
    assert {r.json()["status"] for r in releases} == {"released"}
    assert await stocks(platform, a, b) == [5, 4]
    # A late reservation after the release is refused (the released reservation stays).
    late = await platform.products.post(RESERVATIONS, json=body, headers=svc)
    assert (late.status_code, late.json()["code"]) == (409, "reservation_released")
    assert await stocks(platform, a, b) == [5, 4]


async def test_one_short_line_reserves_nothing_and_every_short_line_is_named(
    platform: Platform, make_product
) -> None:
    a, b, c = [await make_product(stock=s) for s in (5, 1, 0)]
    svc = platform.service_token()
    body = {"order_id": 8, "lines": lines((a["id"], 2), (b["id"], 2), (c["id"], 1))}
    short = await platform.products.post(RESERVATIONS, json=body, headers=svc)
    assert short.status_code == 409, short.text
    assert short.headers["content-type"] == "application/problem+json"
    assert short.json()["code"] == "insufficient_stock"
    assert [(e["loc"], e["available"]) for e in short.json()["errors"]] == [
        (["body", "lines", 1, "quantity"], 1),
        (["body", "lines", 2, "quantity"], 0),
    ]
    assert await stocks(platform, a, b, c) == [5, 1, 0]
    # Nothing was recorded either: the same order may reserve once stock is there.
    await platform.products.patch(
        f"/api/v1/products/{c['id']}/stock", json={"stock": 3}, headers=platform.admin
    )
    body["lines"] = lines((a["id"], 2), (c["id"], 1))
    assert (await platform.products.post(RESERVATIONS, json=body, headers=svc)).status_code == 201


async def test_an_unknown_product_in_any_line_is_404_and_reserves_nothing(
    platform: Platform, make_product
) -> None:
    a = await make_product(stock=5)
    body = {"order_id": 10, "lines": lines((a["id"], 1), (99999999, 1))}
    missing = await platform.products.post(
        RESERVATIONS, json=body, headers=platform.service_token()
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["product_ids"] == [99999999]
    assert await stocks(platform, a) == [5]


async def test_release_before_reserve_refuses_the_reservation(
    platform: Platform, make_product
) -> None:
    product = await make_product(stock=5)
    svc = platform.service_token()
    release = await platform.products.delete(f"{RESERVATIONS}/9", headers=svc)
    assert release.json() == {"order_id": 9, "status": "released", "lines": []}
    body = {"order_id": 9, "lines": lines((product["id"], 1))}
    late = await platform.products.post(RESERVATIONS, json=body, headers=svc)
    assert late.status_code == 409
    assert await stocks(platform, product) == [5]


async def test_reservation_bodies_are_checked(platform: Platform, make_product) -> None:
    product = await make_product(stock=5)
    svc, pid = platform.service_token(), product["id"]
    for body in (
        {"order_id": 11, "lines": []},
        {"order_id": 11, "lines": lines((pid, 1), (pid, 2))},  # one line per product
        {"order_id": 11, "lines": lines(*[(i, 1) for i in range(1, 52)])},
        {"order_id": 11, "lines": lines((pid, 0))},
        {"order_id": 11, "quantity": 1},
    ):
        response = await platform.products.post(RESERVATIONS, json=body, headers=svc)
        assert response.status_code == 422, (body, response.text)
    assert await stocks(platform, product) == [5]


async def test_customers_cannot_reserve(platform: Platform, make_product) -> None:
    product = await make_product()
    response = await platform.products.post(
        RESERVATIONS,
        json={"order_id": 1, "lines": lines((product["id"], 1))},
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
