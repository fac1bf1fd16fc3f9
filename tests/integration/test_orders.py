from __future__ import annotations

import asyncio

import pytest

from shop.ops.consistency import check
from shop.orders.recovery import recover
from tests.integration.conftest import Platform

pytestmark = pytest.mark.asyncio
USER = 7


@pytest.fixture(autouse=True)
async def consistent(platform: Platform):
    """After every order scenario, the three databases must agree (shop check-consistency)."""
    yield
    report = await check(
        platform.urls["orders"], platform.urls["products"], platform.urls["payments"]
    )
    assert report.problems == []


async def place(
    platform: Platform, product_id: int, quantity: int = 1, user: int = USER, **headers: str
):
    return await platform.orders.post(
        "/api/v1/orders",
        json={"product_id": product_id, "quantity": quantity, "payment_method": "card"},
        headers={**platform.token(user), **headers},
    )


async def stock_of(platform: Platform, product_id: int) -> int:
    return (await platform.products.get(f"/api/v1/products/{product_id}")).json()["stock"]


async def test_an_order_reserves_pays_and_ends_paid(platform: Platform, make_product) -> None:
    product = await make_product(price="12.50", stock=10)
    response = await place(platform, product["id"], quantity=3)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "paid"
    assert order["total_price"] == "37.50"
    assert order["user_id"] == USER
    assert order["payment_id"].startswith("pay_")
    assert await stock_of(platform, product["id"]) == 7
    payment = (
        await platform.payments.get(
            f"/api/v1/payments/{order['payment_id']}", headers=platform.token(USER)
        )
    ).json()
    assert (payment["status"], payment["amount"], payment["order_id"]) == (
        "completed",
        "37.50",
        order["id"],
    )
    read = await platform.orders.get(f"/api/v1/orders/{order['id']}", headers=platform.token(USER))
    assert read.json()["status"] == "paid"
    mine = await platform.orders.get(f"/api/v1/orders/user/{USER}", headers=platform.token(USER))
    assert mine.json()["total"] == 1


async def test_out_of_stock_is_409_and_charges_nothing(platform: Platform, make_product) -> None:
    product = await make_product(stock=2)
    response = await place(platform, product["id"], quantity=3)
    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_stock"
    assert await stock_of(platform, product["id"]) == 2
    assert await platform.sql("payments", "SELECT 1 FROM payments") == []


async def test_unknown_product_is_404(platform: Platform) -> None:
    response = await place(platform, 999_999)
    assert response.status_code == 404
    assert await platform.sql("payments", "SELECT 1 FROM payments") == []


async def test_declined_payment_is_402_order_failed_stock_back(
    platform: Platform, make_product
) -> None:
    product = await make_product(price="6000.00", stock=5)
    response = await place(platform, product["id"], quantity=2)  # 12000.00 > 10000.00
    assert response.status_code == 402
    order_id = response.json()["order_id"]
    order = await platform.orders.get(f"/api/v1/orders/{order_id}", headers=platform.token(USER))
    assert order.json()["status"] == "failed"
    assert order.json()["failure_reason"] == "payment_declined"
    assert await stock_of(platform, product["id"]) == 5


async def test_cancel_refunds_and_restocks_once(platform: Platform, make_product) -> None:
    product = await make_product(stock=4)
    order = (await place(platform, product["id"], quantity=4)).json()
    assert await stock_of(platform, product["id"]) == 0
    cancels = await asyncio.gather(
        *[
            platform.orders.post(
                f"/api/v1/orders/{order['id']}/cancel", headers=platform.token(USER)
            )
            for _ in range(5)
        ]
    )
    statuses = sorted(r.status_code for r in cancels)
    assert statuses.count(200) == 1
    assert set(statuses) == {200, 409}
    assert await stock_of(platform, product["id"]) == 4
    payment = await platform.sql("payments", "SELECT status FROM payments")
    assert [p["status"] for p in payment] == ["refunded"]
    again = await platform.orders.post(
        f"/api/v1/orders/{order['id']}/cancel", headers=platform.token(USER)
    )
    assert again.status_code == 409


async def test_status_follows_the_state_machine(platform: Platform, make_product) -> None:
    product = await make_product()
    order = (await place(platform, product["id"])).json()
    url = f"/api/v1/orders/{order['id']}/status"
    assert (
        await platform.orders.patch(url, json={"status": "delivered"}, headers=platform.admin)
    ).status_code == 409
    assert (
        await platform.orders.patch(url, json={"status": "shipped"}, headers=platform.token(USER))
    ).status_code == 403
    for status in ("shipped", "delivered"):
        response = await platform.orders.patch(url, json={"status": status}, headers=platform.admin)
        assert response.json()["status"] == status
    cancel = await platform.orders.post(
        f"/api/v1/orders/{order['id']}/cancel", headers=platform.token(USER)
    )
    assert cancel.status_code == 409
    assert (
        await platform.orders.patch(url, json={"status": "bogus"}, headers=platform.admin)
    ).status_code == 422


async def test_other_customers_orders_are_hidden(platform: Platform, make_product) -> None:
    product = await make_product()
    order = (await place(platform, product["id"])).json()
    other = platform.token(USER + 1)
    assert (
        await platform.orders.get(f"/api/v1/orders/{order['id']}", headers=other)
    ).status_code == 404
    assert (
        await platform.orders.post(f"/api/v1/orders/{order['id']}/cancel", headers=other)
    ).status_code == 404


async def test_same_idempotency_key_makes_one_order(platform: Platform, make_product) -> None:
    product = await make_product(stock=50)
    responses = await asyncio.gather(
        *[place(platform, product["id"], 2, **{"Idempotency-Key": "order-abc"}) for _ in range(20)]
    )
    # A duplicate that arrives while the first is still running may wait for it or be told
    # "in progress" (409 with Retry-After); retried, it gets the first answer.
    retried = []
    for response in responses:
        while response.status_code == 409 and "Retry-After" in response.headers:
            await asyncio.sleep(0.1)
            response = await place(platform, product["id"], 2, **{"Idempotency-Key": "order-abc"})
        retried.append(response)
    assert {r.status_code for r in retried} == {201}, [
        r.text for r in retried if r.status_code != 201
    ]
    assert len({r.json()["id"] for r in retried}) == 1
    assert await stock_of(platform, product["id"]) == 48
    assert len(await platform.sql("orders", "SELECT 1 FROM orders")) == 1
    assert len(await platform.sql("payments", "SELECT 1 FROM payments")) == 1


async def test_payment_service_down_is_503_then_recovery_finishes(
    platform: Platform, make_product
) -> None:
    product = await make_product(stock=3)
    platform.payments_link.down = True
    response = await place(platform, product["id"], quantity=1)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "Retry-After" in response.headers
    assert await stock_of(platform, product["id"]) == 2  # reserved, not yet compensated
    platform.payments_link.down = False
    saga = platform.apps["orders"].state.saga
    for client in (saga.products.http, saga.payments.http):
        client._breaker.failures, client._breaker.opened_at = 0, None
    outcomes = await recover(saga)
    assert outcomes["compensated"] == 1, outcomes
    orders = await platform.sql("orders", "SELECT status FROM orders")
    assert [o["status"] for o in orders] == ["failed"]
    assert await stock_of(platform, product["id"]) == 3


async def test_product_service_down_is_503_and_nothing_is_charged(
    platform: Platform, make_product
) -> None:
    product = await make_product(stock=3)
    platform.products_link.down = True
    response = await place(platform, product["id"])
    assert response.status_code == 503
    assert await platform.sql("payments", "SELECT 1 FROM payments") == []
    platform.products_link.down = False


async def test_200_concurrent_orders_never_oversell(platform: Platform, make_product) -> None:
    """200 orders from 10 users, quantities 1-3, race for a stock of 50."""
    product = await make_product(price="3.00", stock=50)
    plan = [(100 + i % 10, 1 + i % 3) for i in range(200)]
    responses = await asyncio.gather(
        *[place(platform, product["id"], quantity, user=user) for user, quantity in plan]
    )
    assert {r.status_code for r in responses} <= {201, 409}, {
        r.text for r in responses if r.status_code == 503
    }
    sold = sum(q for (_, q), r in zip(plan, responses, strict=True) if r.status_code == 201)
    assert sold == 50  # every unit sold once: quantities 1-3 always fill the last units
    assert await stock_of(platform, product["id"]) == 0
    paid = await platform.sql("orders", "SELECT id, total_price FROM orders WHERE status = 'paid'")
    payments = await platform.sql(
        "payments", "SELECT order_id, amount FROM payments WHERE status = 'completed'"
    )
    assert sorted(p["order_id"] for p in payments) == sorted(o["id"] for o in paid)
    assert sum(p["amount"] for p in payments) == sum(o["total_price"] for o in paid)


async def test_admins_list_every_order_newest_first_and_by_status(
    platform: Platform, make_product
) -> None:
    product = await make_product(price="5.00", stock=10)
    first = (await place(platform, product["id"], user=31)).json()
    second = (await place(platform, product["id"], user=32)).json()
    cancel = await platform.orders.post(
        f"/api/v1/orders/{first['id']}/cancel", headers=platform.token(31)
    )
    assert cancel.status_code == 200, cancel.text

    every = await platform.orders.get("/api/v1/orders?limit=100", headers=platform.admin)
    assert every.status_code == 200, every.text
    ids = [o["id"] for o in every.json()["items"]]
    assert ids == sorted(ids, reverse=True)
    assert {first["id"], second["id"]} <= set(ids)
    assert every.json()["total"] >= 2

    paid = (
        await platform.orders.get("/api/v1/orders?status=paid&limit=100", headers=platform.admin)
    ).json()
    assert {o["status"] for o in paid["items"]} == {"paid"}
    assert second["id"] in [o["id"] for o in paid["items"]]
    assert first["id"] not in [o["id"] for o in paid["items"]]

    assert (
        await platform.orders.get("/api/v1/orders", headers=platform.token(31))
    ).status_code == 403
    assert (await platform.orders.get("/api/v1/orders")).status_code == 401
    bad = await platform.orders.get("/api/v1/orders?status=lost", headers=platform.admin)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


async def test_the_order_paths_pools_plan_each_statement_once(platform: Platform) -> None:
    """Orders and payments (keyed look-ups and writes only) run on generic plans, made once per
    connection and statement; users and products leave the choice to PostgreSQL, whose custom
    plans suit a search's arguments (ServiceSettings.db_plan_cache_mode)."""
    modes = {}
    for name, app in platform.apps.items():
        async with app.state.db.acquire() as conn:
            modes[name] = await conn.fetchval("SHOW plan_cache_mode")
    assert modes == {
        "users": "auto",
        "products": "auto",
        "payments": "force_generic_plan",
        "orders": "force_generic_plan",
    }
    async with platform.apps["orders"].state.db.acquire() as conn:
        for order_id in range(3):
            await conn.fetchval("SELECT count(*) FROM orders WHERE id = $1 /* plans */", order_id)
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%/* plans */'"
        )
    assert (plans["generic_plans"], plans["custom_plans"]) == (3, 0)
