"""A customer's and an admin's journey across the four services running as processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_PASSWORD
from tests.harness import Platform

pytestmark = pytest.mark.e2e


def login(live: Platform, username: str, password: str) -> dict[str, str]:
    with live.sync_client("users") as users:
        response = users.post(
            "/api/v1/users/login", json={"username": username, "password": password}
        )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_admin_journey(live: Platform) -> None:
    admin = login(live, "admin", ADMIN_PASSWORD)
    with live.sync_client("products") as products, live.sync_client("users") as users:
        created = products.post(
            "/api/v1/products",
            headers=admin,
            json={"name": "E2E lamp", "price": "15.00", "stock": 5, "category": "e2e"},
        )
        assert created.status_code == 201
        pid = created.json()["id"]
        restocked = products.patch(
            f"/api/v1/products/{pid}/stock", headers=admin, json={"delta": 5}
        )
        assert restocked.json()["stock"] == 10
        assert users.get("/api/v1/users", headers=admin).status_code == 200


def test_customer_journey(live: Platform) -> None:
    admin = login(live, "admin", ADMIN_PASSWORD)
    with live.sync_client("products") as products:
        pid = products.post(
            "/api/v1/products", headers=admin, json={"name": "E2E mug", "price": "8.25", "stock": 3}
        ).json()["id"]
    with live.sync_client("users") as users:
        user = users.post(
            "/api/v1/users/register",
            json={
                "username": "e2e_customer",
                "email": "e2e@example.com",
                "password": "a long password",
            },
        )
        assert user.status_code == 201
    me = login(live, "e2e_customer", "a long password")
    user_id = user.json()["id"]
    with live.sync_client("products") as products:
        listing = products.get("/api/v1/products?limit=100").json()
        assert pid in [p["id"] for p in listing["items"]]
    with live.sync_client("orders") as orders, live.sync_client("payments") as payments:
        placed = orders.post(
            "/api/v1/orders",
            headers={**me, "X-Request-ID": "req-e2e-1"},
            json={"product_id": pid, "quantity": 2, "payment_method": "paypal"},
        )
        assert placed.status_code == 201, placed.text
        assert placed.headers["x-request-id"] == "req-e2e-1"
        order = placed.json()
        assert (order["status"], order["total_price"]) == ("paid", "16.50")
        payment = payments.get(f"/api/v1/payments/order/{order['id']}", headers=me).json()
        assert payment["status"] == "completed"
        assert payment["user_id"] == user_id
        too_many = orders.post(
            "/api/v1/orders", headers=me, json={"product_id": pid, "quantity": 2}
        )
        assert too_many.status_code == 409
        cancelled = orders.post(f"/api/v1/orders/{order['id']}/cancel", headers=me)
        assert cancelled.json()["status"] == "cancelled"
        refunded = payments.get(f"/api/v1/payments/{payment['payment_id']}", headers=me).json()
        assert refunded["status"] == "refunded"
        history = orders.get(f"/api/v1/orders/user/{user_id}", headers=me).json()
        assert history["total"] == 2
    with live.sync_client("products") as products:
        assert products.get(f"/api/v1/products/{pid}").json()["stock"] == 3
    # The request id reached the downstream services' logs.
    log = live.log_text()
    assert '"request_id":"req-e2e-1"' in log
    assert '"service":"product-service"' in log


def test_logs_are_json_lines_without_secrets(live: Platform) -> None:
    import json

    lines = [line for line in live.log_text().splitlines() if line.startswith("{")]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"timestamp", "level", "service", "pod", "message", "user_id", "request_id"} <= set(
            record
        )
    text = live.log_text()
    for secret in (ADMIN_PASSWORD, "a long password", "Bearer ey"):
        assert secret not in text


def test_smoke_script_passes_against_the_local_platform(live: Platform) -> None:
    script = ROOT / "scripts" / "smoke_test.py"
    if not script.exists():
        pytest.fail("scripts/smoke_test.py is missing")
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--users-url",
            live.url("users"),
            "--products-url",
            live.url("products"),
            "--orders-url",
            live.url("orders"),
            "--payments-url",
            live.url("payments"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
