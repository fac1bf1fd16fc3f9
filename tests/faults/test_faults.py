"""Crashes, timeouts and a lost database, against the services running as real processes.

Every scenario ends with `shop check-consistency` over the three databases reporting zero
problems, and with the order in a final state that agrees with the stock and the payments.
"""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.conftest import ADMIN_PASSWORD, FaultPlatform

pytestmark = pytest.mark.faults

PAY = "/api/v1/payments"  # create and confirm
RESERVE = r"/api/v1/reservations"
HELD = 60.0  # seconds a held response waits: far longer than the test needs to act


class Shopper:
    """An admin who stocks products and a customer who orders them, over HTTP."""

    def __init__(self, platform: FaultPlatform, admin: dict[str, str], me: dict[str, str]):
        self.platform, self.admin, self.me = platform, admin, me

    async def product(self, stock: int, price: str = "4.00") -> int:
        async with self.platform.client("products") as products:
            response = await products.post(
                "/api/v1/products",
                headers=self.admin,
                json={"name": f"fault-{secrets.token_hex(3)}", "price": price, "stock": stock},
            )
        assert response.status_code == 201, response.text
        product_id: int = response.json()["id"]
        return product_id

    async def place(self, product_id: int, quantity: int, key: str | None = None) -> httpx.Response:
        async with self.platform.client("orders") as orders:
            return await orders.post(
                "/api/v1/orders",
                headers={**self.me, **({"Idempotency-Key": key} if key else {})},
                json={"product_id": product_id, "quantity": quantity, "payment_method": "card"},
            )

    async def stock(self, product_id: int) -> int:
        rows = await self.platform.sql(
            "products", "SELECT stock FROM products WHERE id = $1", product_id
        )
        stock: int = rows[0]["stock"]
        return stock

    async def orders_of(self, product_id: int) -> list[Any]:
        return await self.platform.sql(
            "orders",
            "SELECT id, status, saga_step, failure_reason, total_price, payment_id FROM orders"
            " WHERE product_id = $1",
            product_id,
        )

    async def charged(self, product_id: int) -> bool:
        """Whether the (single) order for this product has a completed payment yet."""
        orders = await self.orders_of(product_id)
        return bool(orders) and any(
            p["status"] == "completed" for p in await self.payments_of(orders[0]["id"])
        )

    async def payments_of(self, order_id: int) -> list[Any]:
        return await self.platform.sql(
            "payments", "SELECT status, amount FROM payments WHERE order_id = $1", order_id
        )


async def _login(platform: FaultPlatform, username: str, password: str) -> dict[str, str]:
    async with platform.client("users") as users:
        response = await users.post(
            "/api/v1/users/login", json={"username": username, "password": password}
        )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def shopper(fresh: FaultPlatform) -> Shopper:
    name = f"buyer_{secrets.token_hex(4)}"
    async with fresh.client("users") as users:
        created = await users.post(
            "/api/v1/users/register",
            json={"username": name, "email": f"{name}@example.com", "password": "a long password"},
        )
    assert created.status_code == 201, created.text
    return Shopper(
        fresh,
        await _login(fresh, "admin", ADMIN_PASSWORD),
        await _login(fresh, name, "a long password"),
    )


def _is_problem(response: httpx.Response, status: int) -> bool:
    return (
        response.status_code == status
        and response.headers["content-type"] == "application/problem+json"
        and response.json()["status"] == status
    )


async def _counter(platform: FaultPlatform, service: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include ``labels``, read from /metrics."""
    async with platform.client(service) as client:
        text = (await client.get("/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def _recover(platform: FaultPlatform) -> str:
    result = platform.shop("recover")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]  # the outcome line, after the log lines


async def _order_charged_but_unanswered(
    fresh: FaultPlatform, shopper: Shopper, *, quantity: int
) -> tuple[int, asyncio.Task[httpx.Response]]:
    """An order for a new product (stock 5) whose payment is charged and committed while the
    payment service holds its answer: the window in which a test kills a process."""
    product = await shopper.product(stock=5)
    await fresh.inject("payments", {"path": PAY, "delay_after": HELD, "times": 0})
    placing = asyncio.create_task(shopper.place(product, quantity))
    await fresh.wait_for(lambda: shopper.charged(product), "the payment to be charged")
    return product, placing


async def test_payment_service_killed_after_charging_then_recovery_completes_the_order(
    fresh: FaultPlatform, shopper: Shopper
) -> None:
    product, placing = await _order_charged_but_unanswered(fresh, shopper, quantity=2)
    fresh.kill("payments")
    response = await placing
    assert _is_problem(response, 503), response.text
    [order] = await shopper.orders_of(product)
    # Paying is not recorded: the database shows the order as it was placed, with no price.
    assert (order["status"], order["saga_step"], order["total_price"]) == (
        "pending",
        "reserving",
        None,
    )

    fresh.restart("payments")
    assert _recover(fresh) == "forward=1 compensated=0 left=0"
    [order] = await shopper.orders_of(product)
    assert order["status"] == "paid"
    assert await shopper.stock(product) == 3
    assert [(p["status"], p["amount"]) for p in await shopper.payments_of(order["id"])] == [
        ("completed", Decimal("8.00"))
    ]
    assert "0 problems" in fresh.check_consistency()


async def test_product_service_killed_after_reserving_then_recovery_releases_the_stock(
    fresh: FaultPlatform, shopper: Shopper
) -> None:
    product = await shopper.product(stock=5)
    await fresh.inject("products", {"path": RESERVE, "delay_after": HELD, "times": 0})
    placing = asyncio.create_task(shopper.place(product, 3))

    async def reserved() -> Any:
        return await fresh.sql(
            "products",
            "SELECT 1 FROM reservation_lines JOIN reservations USING (order_id)"
            " WHERE product_id = $1 AND status = 'reserved'",
            product,
        )

    await fresh.wait_for(reserved, "the stock to be reserved")
    fresh.kill("products")
    response = await placing
    assert _is_problem(response, 503), response.text
    [order] = await shopper.orders_of(product)
    assert (order["status"], order["saga_step"]) == ("pending", "reserving")

    fresh.restart("products")
    assert await shopper.stock(product) == 2  # still held by the unfinished order
    assert _recover(fresh) == "forward=0 compensated=1 left=0"
    [order] = await shopper.orders_of(product)
    assert (order["status"], order["failure_reason"]) == ("failed", "abandoned")
    assert await shopper.stock(product) == 5
    # Recovery could not know whether the order had paid: it voided by order id, which left
    # a voided tombstone (nothing charged) that refuses a late charge.
    assert [(p["status"], p["amount"]) for p in await shopper.payments_of(order["id"])] == [
        ("failed", Decimal("12.00"))
    ]
    assert "0 problems" in fresh.check_consistency()


async def test_calls_that_time_out_after_committing_are_retried_without_doubling(
    fresh: FaultPlatform, shopper: Shopper
) -> None:
    """Each of the saga's two calls commits, then answers after the caller's 3 s timeout."""
    product = await shopper.product(stock=10, price="2.50")
    late = {"delay_after": 5.0, "times": 1}
    await fresh.inject("products", {"path": RESERVE, **late})
    await fresh.inject("payments", {"path": PAY, **late})
    charged_before = await _counter(fresh, "payments", "shop_payments_total", status="completed")

    response = await shopper.place(product, 4)

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "paid"
    # Every fault fired: each call timed out once and was retried (idempotent by order id).
    for service in ("products", "payments"):
        assert [rule["remaining"] for rule in await fresh.faults(service)] == [0]
    assert await shopper.stock(product) == 6  # reserved once
    [order] = await shopper.orders_of(product)
    assert [(p["status"], p["amount"]) for p in await shopper.payments_of(order["id"])] == [
        ("completed", Decimal("10.00"))
    ]
    charged = await _counter(fresh, "payments", "shop_payments_total", status="completed")
    assert charged - charged_before == 1  # the provider charged once
    assert "0 problems" in fresh.check_consistency()


async def test_the_product_database_stops_others_answer_503_and_all_recover(
    fresh: FaultPlatform, shopper: Shopper
) -> None:
    product = await shopper.product(stock=5)
    fresh.products_pg.stop()
    fresh.breakers_tripped = True
    try:
        async with fresh.client("products") as products:
            read = await products.get(f"/api/v1/products/{product}")
            assert _is_problem(read, 503), read.text
            assert "Retry-After" in read.headers
            assert (await products.get("/health/ready")).status_code == 503
            assert (await products.get("/health/live")).status_code == 200
        response = await shopper.place(product, 1)
        assert _is_problem(response, 503), response.text
        # The rest of the platform serves as usual.
        async with fresh.client("payments") as payments:
            assert (await payments.get("/health/ready")).status_code == 200
        assert await _login(fresh, "admin", ADMIN_PASSWORD)
    finally:
        fresh.products_pg.start()

    async def products_ready() -> bool:
        return fresh.procs["products"].ready()

    await fresh.wait_for(products_ready, "the product service to be ready again")
    async with fresh.client("products") as products:
        assert (await products.get(f"/api/v1/products/{product}")).json()["stock"] == 5

    # A client retries a 503 with the same Idempotency-Key until the order goes through (the
    # order service's circuit breaker lets a trial call through a few seconds after the last
    # failure); each retry resumes the same order instead of starting another.
    async def goes_through() -> httpx.Response | None:
        response = await shopper.place(product, 2, key="after-the-outage")
        if response.status_code == 503:
            return None
        return response

    placed = await fresh.wait_for(goes_through, "an order to go through again", interval=0.5)
    assert placed.status_code == 201, placed.text
    assert await shopper.stock(product) == 3
    # The order refused during the outage never reached the stock: recovery closes it.
    assert _recover(fresh) == "forward=0 compensated=1 left=0"
    statuses = sorted(o["status"] for o in await shopper.orders_of(product))
    assert statuses == ["failed", "paid"]
    assert await shopper.stock(product) == 3
    assert "0 problems" in fresh.check_consistency()


async def test_order_service_killed_mid_saga_its_recovery_worker_finishes_the_order(
    fresh: FaultPlatform, shopper: Shopper
) -> None:
    product, placing = await _order_charged_but_unanswered(fresh, shopper, quantity=1)
    fresh.kill("orders")
    with pytest.raises(httpx.TransportError):
        await placing  # the connection died with the process
    try:
        # A new order-service process, with its background recovery worker on: once the dead
        # driver's lease expires, the worker takes the order and settles it from the payment.
        fresh.restart("orders", SHOP_RECOVERY_ENABLED="true", SHOP_RECOVERY_INTERVAL_SECONDS="0.5")

        async def settled() -> Any:
            [order] = await shopper.orders_of(product)
            return order["status"] != "pending" and order

        order = await fresh.wait_for(settled, "the recovery worker to settle the order")
        assert order["status"] == "paid"
    finally:
        fresh.restart("orders")  # back to the worker-less process the other scenarios expect
    assert await shopper.stock(product) == 4
    assert "0 problems" in fresh.check_consistency()
