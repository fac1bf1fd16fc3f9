"""SQL-injection (and other hostile) strings in every text field and text path/query
parameter: values travel as bound parameters, so each is stored verbatim, refused by
validation (422), or simply not found; never a 500, never a changed table."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Platform

PAYLOADS = [
    "'; DROP TABLE users; --",
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "admin'--",
    "1; SELECT pg_sleep(5)",
    "' UNION SELECT password_hash, NULL FROM users --",
    "%' AND 1=0 UNION SELECT 1 --",
    "$1",
    "\\'; COPY users TO '/tmp/x'; --",
    "\u02bc OR 1=1 --",  # a look-alike apostrophe
]


async def _tables_intact(platform: Platform) -> None:
    for service, table in [
        ("users", "users"),
        ("products", "products"),
        ("orders", "orders"),
        ("payments", "payments"),
    ]:
        rows = await platform.sql(service, f"SELECT count(*) AS n FROM {table}")
        assert rows[0]["n"] >= 0


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_user_text_fields(platform: Platform, payload: str) -> None:
    bodies = [
        {"username": payload, "email": "x@example.com", "password": "long enough pw"},
        {"username": "okname", "email": payload, "password": "long enough pw"},
        {"username": "okname2", "email": "y@example.com", "password": payload + "padding"},
    ]
    for body in bodies:
        response = await platform.users.post("/api/v1/users/register", json=body)
        assert response.status_code in (201, 422), (body, response.text)
        if response.status_code == 201:  # stored exactly as sent
            assert response.json()["username"] == body["username"]
    for login in (
        {"username": payload, "password": "x"},
        {"username": "admin", "password": payload},
    ):
        response = await platform.users.post("/api/v1/users/login", json=login)
        assert response.status_code in (401, 422), response.text  # never logged in
    for path in ("/api/v1/users/refresh", "/api/v1/users/logout"):
        response = await platform.users.post(path, json={"refresh_token": payload + "x" * 16})
        assert response.status_code in (401, 204), response.text
    response = await platform.users.get(f"/api/v1/users/{payload}", headers=platform.admin)
    assert response.status_code in (404, 422)
    await _tables_intact(platform)


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_product_text_fields(platform: Platform, payload: str, make_product) -> None:
    for field in ("name", "description", "category"):
        body = {"name": "Widget", "price": "1.00", field: payload}
        response = await platform.products.post(
            "/api/v1/products", json=body, headers=platform.admin
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created[field] == payload  # stored verbatim
        got = (await platform.products.get(f"/api/v1/products/{created['id']}")).json()
        assert got[field] == payload
        update = await platform.products.put(
            f"/api/v1/products/{created['id']}",
            json={"name": payload, "price": "2.00", "description": payload, "category": payload},
            headers=platform.admin,
        )
        assert update.status_code == 200
    listed = await platform.products.get("/api/v1/products", params={"category": payload})
    assert listed.status_code == 200
    assert all(item["category"] == payload for item in listed.json()["items"])
    everything = await platform.products.get("/api/v1/products", params={"category": "' OR 1=1"})
    assert everything.json()["total"] == 0  # no filter bypass
    for path in (f"/api/v1/products/{payload}", f"/api/v1/products?limit={payload}"):
        assert (await platform.products.get(path)).status_code in (404, 422)
    await _tables_intact(platform)


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_order_and_payment_text_fields(platform: Platform, payload: str, customers) -> None:
    alice, _ = customers
    as_alice = platform.token(alice["id"])
    order = await platform.orders.post(
        "/api/v1/orders",
        json={"product_id": 1, "quantity": 1, "payment_method": payload},
        headers={**as_alice, "Idempotency-Key": payload.encode("ascii", "replace").decode()},
    )
    assert order.status_code == 422
    status = await platform.orders.patch(
        "/api/v1/orders/1/status", json={"status": payload}, headers=platform.admin
    )
    assert status.status_code == 422
    payment = await platform.payments.post(
        "/api/v1/payments",
        json={
            "order_id": 1,
            "user_id": 1,
            "amount": "1.00",
            "currency": payload,
            "payment_method": "card",
        },
        headers=platform.admin,
    )
    assert payment.status_code == 422
    for path in (
        f"/api/v1/payments/{payload}",
        f"/api/v1/payments/pay_{payload}",
        f"/api/v1/orders/{payload}",
    ):
        response = await platform.payments.get(path, headers=platform.admin)
        assert response.status_code in (404, 422), (path, response.status_code)
    await _tables_intact(platform)
    assert await platform.sql("orders", "SELECT 1 FROM orders") == []
