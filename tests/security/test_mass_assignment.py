"""Extra fields in request bodies are refused (422, the models forbid unknown fields) and
nothing is written: no self-made admins, prices, owners or statuses."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Platform
from tests.security.helpers import assert_problem

EXTRAS = {
    "role": "admin",
    "id": 1,
    "user_id": 1,
    "is_admin": True,
    "password_hash": "x",
    "created_at": "2020-01-01T00:00:00Z",
    "status": "paid",
    "total_price": "0.01",
    "__proto__": {"admin": True},
}


@pytest.mark.parametrize("extra", list(EXTRAS))
async def test_extra_fields_are_refused_everywhere(
    platform: Platform, customers, make_product, extra: str
) -> None:
    alice, _ = customers
    product = await make_product(stock=5)
    pid = product["id"]
    as_alice, admin = platform.token(alice["id"]), platform.admin
    cases = [
        (
            platform.users,
            "POST",
            "/api/v1/users/register",
            None,
            {"username": "mallory", "email": "m@example.com", "password": "long enough pw"},
        ),
        (
            platform.users,
            "POST",
            "/api/v1/users/login",
            None,
            {"username": "alice", "password": "correct horse battery"},
        ),
        (platform.users, "POST", "/api/v1/users/refresh", None, {"refresh_token": "x" * 43}),
        (platform.users, "POST", "/api/v1/users/logout", None, {"refresh_token": "x" * 43}),
        (platform.products, "POST", "/api/v1/products", admin, {"name": "n", "price": "1.00"}),
        (
            platform.products,
            "PUT",
            f"/api/v1/products/{pid}",
            admin,
            {"name": "n", "price": "1.00"},
        ),
        (platform.products, "PATCH", f"/api/v1/products/{pid}/stock", admin, {"delta": 1}),
        (platform.orders, "POST", "/api/v1/orders", as_alice, {"product_id": pid, "quantity": 1}),
        (
            platform.payments,
            "POST",
            "/api/v1/payments",
            admin,
            {"order_id": 1, "user_id": 1, "amount": "1.00", "payment_method": "card"},
        ),
    ]
    for client, method, path, headers, body in cases:
        if extra in body:
            continue
        response = await client.request(
            method, path, json={**body, extra: EXTRAS[extra]}, headers=headers
        )
        problem = assert_problem(response, 422)
        assert any(extra in e["loc"] for e in problem["errors"]), (path, problem)
    assert await platform.sql("users", "SELECT 1 FROM users WHERE username = 'mallory'") == []
    assert await platform.sql("orders", "SELECT 1 FROM orders") == []
    assert await platform.sql("payments", "SELECT 1 FROM payments") == []
    after = (await platform.products.get(f"/api/v1/products/{pid}")).json()
    assert (after["name"], after["stock"]) == ("Widget", 5)


async def test_a_customers_order_is_always_its_own_at_the_server_price(
    platform: Platform, customers, make_product
) -> None:
    alice, bob = customers
    product = await make_product(price="50.00", stock=5)
    # the fields a client might try to set are not part of the order request at all
    response = await platform.orders.post(
        "/api/v1/orders",
        json={"product_id": product["id"], "quantity": 2},
        headers=platform.token(alice["id"]),
    )
    order = response.json()
    assert (order["user_id"], order["total_price"]) == (alice["id"], "100.00")
    assert order["user_id"] != bob["id"]
