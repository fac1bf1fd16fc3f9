"""The order service's view of the product and payment services, over their HTTP contract.

Each call the saga makes is idempotent by the order's id (reservations are keyed by it, and
payment calls carry a deterministic Idempotency-Key), so all of them may be retried.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from shop.common.http import ServiceClient


class ProductsClient:
    def __init__(self, client: ServiceClient) -> None:
        self.http = client

    async def reserve(self, *, product_id: int, order_id: int, quantity: int) -> httpx.Response:
        return await self.http.request(
            "POST",
            f"/api/v1/products/{product_id}/reservations",
            json={"order_id": order_id, "quantity": quantity},
            idempotent=True,
        )

    async def release(self, *, product_id: int, order_id: int) -> httpx.Response:
        return await self.http.request(
            "DELETE", f"/api/v1/products/{product_id}/reservations/{order_id}", idempotent=True
        )


class PaymentsClient:
    def __init__(self, client: ServiceClient) -> None:
        self.http = client

    async def create(
        self, *, order_id: int, user_id: int, amount: Decimal, currency: str, method: str
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "order_id": order_id,
            "user_id": user_id,
            "amount": f"{amount:.2f}",
            "currency": currency,
            "payment_method": method,
        }
        return await self.http.request(
            "POST",
            "/api/v1/payments",
            json=body,
            idempotency_key=f"order-{order_id}-create",
            idempotent=True,
        )

    async def process(self, *, order_id: int, payment_id: str) -> httpx.Response:
        return await self.http.request(
            "POST",
            f"/api/v1/payments/{payment_id}/process",
            idempotency_key=f"order-{order_id}-process",
            idempotent=True,
        )

    async def refund(self, *, order_id: int, payment_id: str) -> httpx.Response:
        return await self.http.request(
            "POST",
            f"/api/v1/payments/{payment_id}/refund",
            idempotency_key=f"order-{order_id}-refund",
            idempotent=True,
        )

    async def void(self, *, payment_id: str) -> httpx.Response:
        return await self.http.request(
            "POST", f"/api/v1/payments/{payment_id}/void", idempotent=True
        )

    async def for_order(self, *, order_id: int) -> httpx.Response:
        return await self.http.request("GET", f"/api/v1/payments/order/{order_id}", idempotent=True)
