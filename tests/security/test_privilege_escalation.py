"""A customer reaching past its rights: other customers' orders and payments, admin-only
writes, internal (service) endpoints, its own role. Each attempt fails closed with the
contract's status (404 hides another's resource, 403 for a forbidden action) and changes
nothing."""

from __future__ import annotations

from typing import Any

import jwt

from tests.integration.conftest import Platform
from tests.security.helpers import PASSWORD, assert_problem, register


async def _order(platform: Platform, user: dict[str, Any], product_id: int) -> dict[str, Any]:
    response = await platform.orders.post(
        "/api/v1/orders",
        json={"product_id": product_id, "quantity": 1, "payment_method": "card"},
        headers=platform.token(user["id"]),
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def test_a_customer_cannot_see_or_touch_another_customers_order(
    platform: Platform, customers, make_product
) -> None:
    alice, bob = customers
    product = await make_product(stock=5)
    order = await _order(platform, alice, product["id"])
    as_bob = platform.token(bob["id"])
    oid, pid = order["id"], order["payment_id"]
    assert_problem(await platform.orders.get(f"/api/v1/orders/{oid}", headers=as_bob), 404)
    listing = await platform.orders.get(f"/api/v1/orders/user/{alice['id']}", headers=as_bob)
    assert_problem(listing, 404)
    cancel = await platform.orders.post(f"/api/v1/orders/{oid}/cancel", headers=as_bob)
    assert cancel.status_code in (403, 404)
    assert_problem(cancel, cancel.status_code)
    status = await platform.orders.patch(
        f"/api/v1/orders/{oid}/status", json={"status": "shipped"}, headers=as_bob
    )
    assert_problem(status, 403)
    # the payment behind it
    for path in (f"/api/v1/payments/{pid}", f"/api/v1/payments/order/{oid}"):
        assert_problem(await platform.payments.get(path, headers=as_bob), 404)
    assert_problem(
        await platform.payments.get(f"/api/v1/payments/user/{alice['id']}", headers=as_bob), 404
    )
    for action in ("refund", "void", "process"):
        response = await platform.payments.post(f"/api/v1/payments/{pid}/{action}", headers=as_bob)
        assert_problem(response, 403)
    # nothing changed
    mine = await platform.orders.get(f"/api/v1/orders/{oid}", headers=platform.token(alice["id"]))
    assert mine.json()["status"] == "paid"
    paid = await platform.payments.get(
        f"/api/v1/payments/{pid}", headers=platform.token(alice["id"])
    )
    assert paid.json()["status"] == "completed"


async def test_a_customer_cannot_refund_or_ship_its_own_order_directly(
    platform: Platform, customers, make_product
) -> None:
    alice, _ = customers
    order = await _order(platform, alice, (await make_product(stock=5))["id"])
    as_alice = platform.token(alice["id"])
    refund = await platform.payments.post(
        f"/api/v1/payments/{order['payment_id']}/refund", headers=as_alice
    )
    assert_problem(refund, 403)  # refunds go through cancelling the order (which restocks)
    ship = await platform.orders.patch(
        f"/api/v1/orders/{order['id']}/status", json={"status": "delivered"}, headers=as_alice
    )
    assert_problem(ship, 403)
    create = await platform.payments.post(
        "/api/v1/payments",
        json={
            "order_id": order["id"],
            "user_id": alice["id"],
            "amount": "0.01",
            "payment_method": "card",
        },
        headers=as_alice,
    )
    assert_problem(create, 403)  # customers pay only through orders, at the order's price


async def test_a_customer_cannot_write_products(
    platform: Platform, customers, make_product
) -> None:
    alice, _ = customers
    product = await make_product(price="10.00", stock=5)
    as_alice = platform.token(alice["id"])
    pid = product["id"]
    attempts = [
        ("POST", "/api/v1/products", {"name": "Free", "price": "0.01"}),
        ("PUT", f"/api/v1/products/{pid}", {"name": "Mine", "price": "0.01"}),
        ("PATCH", f"/api/v1/products/{pid}/stock", {"stock": 1_000_000}),
        ("PATCH", f"/api/v1/products/{pid}/stock", {"delta": -5}),
        ("DELETE", f"/api/v1/products/{pid}", None),
        (
            "POST",
            "/api/v1/reservations",
            {"order_id": 999, "lines": [{"product_id": pid, "quantity": 5}]},
        ),
        ("DELETE", "/api/v1/reservations/1", None),
    ]
    for method, path, body in attempts:
        response = await platform.products.request(method, path, json=body, headers=as_alice)
        assert_problem(response, 403)
    after = (await platform.products.get(f"/api/v1/products/{pid}")).json()
    assert (after["name"], after["price"], after["stock"]) == ("Widget", "10.00", 5)


async def test_a_customer_cannot_become_admin(platform: Platform, customers) -> None:
    alice, _ = customers
    as_alice = platform.token(alice["id"])
    path = f"/api/v1/users/{alice['id']}"
    for method in ("PUT", "PATCH", "POST"):
        response = await platform.users.request(
            method, path, json={"role": "admin"}, headers=as_alice
        )
        assert response.status_code == 405, (method, response.status_code)  # no such route
        assert_problem(response, 405)
    assert_problem(await platform.users.get("/api/v1/users", headers=as_alice), 403)
    # a token for alice with role admin can only come from a forged signature (see
    # test_token_tampering); logging in again still gives a customer token
    me = await platform.users.get(path, headers=as_alice)
    assert me.json()["role"] == "customer"
    rows = await platform.sql("users", "SELECT role FROM users WHERE id = $1", alice["id"])
    assert rows[0]["role"] == "customer"


async def test_a_demoted_admin_gets_a_customer_token_at_the_next_refresh(
    platform: Platform,
) -> None:
    carol = await register(platform, "carol")
    await platform.sql("users", "UPDATE users SET role = 'admin' WHERE id = $1", carol["id"])
    login = await platform.users.post(
        "/api/v1/users/login", json={"username": "carol", "password": PASSWORD}
    )
    assert _role(login.json()["access_token"]) == "admin"
    await platform.sql("users", "UPDATE users SET role = 'customer' WHERE id = $1", carol["id"])
    refreshed = await platform.users.post(
        "/api/v1/users/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert _role(refreshed.json()["access_token"]) == "customer"  # the database's, not the token's


def _role(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["role"])
