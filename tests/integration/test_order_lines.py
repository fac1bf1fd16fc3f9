"""Orders with lines (API.md, "Orders with lines"): one order for a whole cart, every line
reserved or none, one payment for the total, every line released or restocked together."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest

from shop.ops.consistency import check
from tests.integration.conftest import Platform

pytestmark = pytest.mark.asyncio
USER = 8


@pytest.fixture(autouse=True)
async def consistent(platform: Platform):
    """After every scenario the three databases agree, line by line (shop check-consistency)."""
    yield
    report = await check(
        platform.urls["orders"], platform.urls["products"], platform.urls["payments"]
    )
    assert report.problems == []


async def place(platform: Platform, lines: list[tuple[int, int]], **headers: str):
    return await platform.orders.post(
        "/api/v1/orders",
        json={
            "lines": [{"product_id": p, "quantity": q} for p, q in lines],
            "payment_method": "card",
        },
        headers={**platform.token(USER), **headers},
    )


async def stocks(platform: Platform, *products: dict[str, Any]) -> list[int]:
    return [
        (await platform.products.get(f"/api/v1/products/{p['id']}")).json()["stock"]
        for p in products
    ]


async def payments_of(platform: Platform, order_id: int) -> list[Any]:
    return await platform.sql(
        "payments", "SELECT status, amount FROM payments WHERE order_id = $1", order_id
    )


async def test_a_three_line_order_is_one_order_paid_once_for_its_total(
    platform: Platform, make_product
) -> None:
    a = await make_product(name="Keyboard", price="49.90", stock=5)
    b = await make_product(name="Mouse", price="19.99", stock=5)
    c = await make_product(name="Cable", price="3.50", stock=5)
    response = await place(platform, [(a["id"], 1), (b["id"], 2), (c["id"], 4)])
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "paid"
    assert (order["product_id"], order["quantity"]) == (None, None)
    assert order["lines"] == [
        {"product_id": a["id"], "name": "Keyboard", "quantity": 1, "unit_price": "49.90",
         "line_total": "49.90"},
        {"product_id": b["id"], "name": "Mouse", "quantity": 2, "unit_price": "19.99",
         "line_total": "39.98"},
        {"product_id": c["id"], "name": "Cable", "quantity": 4, "unit_price": "3.50",
         "line_total": "14.00"},
    ]  # fmt: skip
    assert order["total_price"] == "103.88"
    assert await stocks(platform, a, b, c) == [4, 3, 1]
    assert [(p["status"], str(p["amount"])) for p in await payments_of(platform, order["id"])] == [
        ("completed", "103.88")
    ]
    # Read back, alone and in the customer's list, with its lines as placed.
    await platform.products.put(
        f"/api/v1/products/{a['id']}",
        json={"name": "Keyboard II", "price": "59.90", "description": ""},
        headers=platform.admin,
    )
    read = await platform.orders.get(f"/api/v1/orders/{order['id']}", headers=platform.token(USER))
    assert read.json()["lines"] == order["lines"]
    mine = await platform.orders.get(f"/api/v1/orders/user/{USER}", headers=platform.token(USER))
    assert [o["lines"] for o in mine.json()["items"] if o["id"] == order["id"]] == [order["lines"]]


async def test_the_seeds_body_is_a_one_line_order_with_every_field_it_had(
    platform: Platform, make_product
) -> None:
    product = await make_product(name="Lamp", price="12.50", stock=10)
    response = await platform.orders.post(
        "/api/v1/orders",
        json={"product_id": product["id"], "quantity": 3, "payment_method": "card"},
        headers=platform.token(USER),
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["product_id"], order["quantity"], order["total_price"]) == (
        product["id"],
        3,
        "37.50",
    )
    assert order["lines"] == [
        {"product_id": product["id"], "name": "Lamp", "quantity": 3, "unit_price": "12.50",
         "line_total": "37.50"}
    ]  # fmt: skip


async def test_one_short_line_fails_the_order_names_the_line_and_charges_nothing(
    platform: Platform, make_product
) -> None:
    a, b, c = [await make_product(stock=s) for s in (5, 1, 5)]
    key = {"Idempotency-Key": "short-cart"}
    response = await place(platform, [(a["id"], 2), (b["id"], 3), (c["id"], 1)], **key)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == "insufficient_stock"
    assert problem["errors"] == [
        {"loc": ["body", "lines", 1, "quantity"], "msg": problem["errors"][0]["msg"],
         "available": 1}
    ]  # fmt: skip
    assert await stocks(platform, a, b, c) == [5, 1, 5]
    assert await payments_of(platform, problem["order_id"]) == []
    # The same key answers the same, and does nothing again.
    again = await place(platform, [(a["id"], 2), (b["id"], 3), (c["id"], 1)], **key)
    assert (again.status_code, again.json()) == (409, problem)


async def test_an_unknown_product_in_a_line_is_404_and_reserves_nothing(
    platform: Platform, make_product
) -> None:
    a = await make_product(stock=5)
    response = await place(platform, [(a["id"], 1), (99999999, 1)])
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "product_not_found"
    assert await stocks(platform, a) == [5]


async def test_a_declined_payment_fails_the_order_and_releases_every_line(
    platform: Platform, make_product
) -> None:
    a = await make_product(price="6000.00", stock=3)
    b = await make_product(price="5000.00", stock=3)  # 11000.00 > the 10000.00 decline limit
    response = await place(platform, [(a["id"], 1), (b["id"], 1)])
    assert response.status_code == 402, response.text
    assert await stocks(platform, a, b) == [3, 3]
    [payment] = await payments_of(platform, response.json()["order_id"])
    assert (payment["status"], str(payment["amount"])) == ("failed", "11000.00")


async def test_cancel_refunds_once_and_restocks_every_line(
    platform: Platform, make_product
) -> None:
    a, b, c = [await make_product(price="2.00", stock=4) for _ in range(3)]
    order = (await place(platform, [(a["id"], 1), (b["id"], 2), (c["id"], 3)])).json()
    assert await stocks(platform, a, b, c) == [3, 2, 1]
    cancels = await asyncio.gather(
        *[
            platform.orders.post(
                f"/api/v1/orders/{order['id']}/cancel", headers=platform.token(USER)
            )
            for _ in range(3)
        ]
    )
    assert 200 in [r.status_code for r in cancels], [r.text for r in cancels]
    assert {r.status_code for r in cancels} <= {200, 409}
    assert await stocks(platform, a, b, c) == [4, 4, 4]
    [payment] = await payments_of(platform, order["id"])
    assert payment["status"] == "refunded"


async def test_bad_order_bodies_are_422_and_reserve_nothing(
    platform: Platform, make_product
) -> None:
    product = await make_product(stock=5)
    pid = product["id"]
    one = {"product_id": pid, "quantity": 1}
    for body in (
        {"lines": []},
        {"lines": [one, {"product_id": pid, "quantity": 2}]},  # a product in two lines
        {"lines": [{"product_id": i, "quantity": 1} for i in range(1, 52)]},  # 51 lines
        {"lines": [{"product_id": pid, "quantity": 1001}]},
        {"lines": [one], "product_id": pid, "quantity": 1},  # both forms
        {"payment_method": "card"},  # neither
        {"product_id": pid},
    ):
        response = await platform.orders.post(
            "/api/v1/orders", json=body, headers=platform.token(USER)
        )
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert await stocks(platform, product) == [5]
    assert await platform.sql("orders", "SELECT 1 FROM orders WHERE user_id = $1", USER) == []


async def test_concurrent_carts_over_overlapping_products_never_deadlock_or_oversell(
    platform: Platform, make_product
) -> None:
    """60 three-line carts over three hot products, each cart's lines in another order: every
    cart is paid with all its lines or fails with none, and no product goes below zero."""
    hot = [await make_product(price="1.00", stock=20) for _ in range(3)]
    orders = itertools.cycle(itertools.permutations(hot))
    carts = [[(p["id"], 1) for p in next(orders)] for _ in range(60)]
    results = await asyncio.gather(*[place(platform, cart) for cart in carts])
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] * 20 + [409] * 40, statuses
    assert await stocks(platform, *hot) == [0, 0, 0]
    paid = await platform.sql(
        "payments", "SELECT count(*) AS n FROM payments WHERE status = 'completed'"
    )
    assert paid[0]["n"] == 20  # one payment per paid cart, none for a refused one


async def test_the_orders_events_carry_its_lines_and_each_product_moved_has_its_own(
    platform: Platform, make_product
) -> None:
    from shop.orders.app import RENDER

    a = await make_product(name="Mug", price="3.00", stock=5)
    b = await make_product(name="Spoon", price="1.25", stock=5)
    order = (await place(platform, [(a["id"], 2), (b["id"], 4)])).json()
    events = await platform.sql(
        "orders",
        "SELECT type, data::text FROM outbox WHERE subject = $1 ORDER BY id",
        str(order["id"]),
    )
    assert [e["type"] for e in events] == ["shop.order.placed", "shop.order.paid"]
    placed, paid = (orjson.loads(RENDER(e["type"], e["data"])) for e in events)
    assert [(line["product_id"], line["quantity"]) for line in placed["lines"]] == [
        (a["id"], 2),
        (b["id"], 4),
    ]
    assert paid["lines"] == order["lines"]
    assert paid["total_price"] == "11.00"
    moved = await platform.sql(
        "products",
        "SELECT subject FROM outbox WHERE type = 'shop.product.stock_changed'"
        " AND subject = ANY($1::text[]) ORDER BY subject",
        [str(a["id"]), str(b["id"])],
    )
    assert sorted(m["subject"] for m in moved) == sorted([str(a["id"]), str(b["id"])])
