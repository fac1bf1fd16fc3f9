"""The order service's view of the product and payment services: calls that return outcomes.

Each method turns the other service's answer into one of the saga's outcomes
(``shop.orders.saga``); nothing else in the order service reads a status code or a JSON key
of theirs. Every field read here is listed in ``CONTRACT``, and
``tests/unit/test_client_contract.py`` fails when a service's OpenAPI stops offering one.
A 5xx, a timeout or a refused connection raises ``DownstreamUnavailable`` (``common.http``).

Each call is idempotent by the order's id (reservations are keyed by it, a payment is unique
per order, a refund carries a deterministic Idempotency-Key), so all of them may be retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shop.common.http import DownstreamUnavailable, ServiceClient
from shop.common.types import JsonObject
from shop.orders.saga import (
    Charged,
    Declined,
    Order,
    OutOfStock,
    PaymentInProgress,
    PaymentRefused,
    ProductMissing,
    Refunded,
    RefundRefused,
    Released,
    ReleaseRefused,
    ReservationRefused,
    Reserved,
    Voided,
    VoidRefused,
)


@dataclass(frozen=True, slots=True)
class Read:
    """A client reads ``fields`` from ``service``'s answer ``status`` to ``method path``."""

    service: str
    method: str
    path: str
    status: str
    fields: tuple[str, ...]
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (field, the values it matches on)


RESERVATIONS = "/api/v1/reservations"
RELEASE = "/api/v1/reservations/{order_id}"
PAYMENTS = "/api/v1/payments"
VOID = "/api/v1/payments/order/{order_id}/void"
REFUND = "/api/v1/payments/{payment_id}/refund"
# The payment statuses this client tells apart: its reading of the payment service's published
# enum, which the contract test checks (services never import each other).
COMPLETED, PROCESSING, REFUNDING, REFUNDED = "completed", "processing", "refunding", "refunded"
CONTRACT = (
    Read("products", "post", RESERVATIONS, "201", ("lines",)),
    Read("products", "post", RESERVATIONS, "200", ("lines",)),
    Read("products", "post", RESERVATIONS, "404", ("code",)),
    Read("products", "post", RESERVATIONS, "409", ("code", "errors")),
    Read(
        "payments", "post", PAYMENTS, "201", ("payment_id", "status"), (("status", (COMPLETED,)),)
    ),
    Read(
        "payments", "post", PAYMENTS, "200", ("payment_id", "status"), (("status", (COMPLETED,)),)
    ),
    Read("payments", "post", PAYMENTS, "402", ("detail",)),
    Read(
        "payments",
        "post",
        PAYMENTS,
        "409",
        ("code", "payment_status"),
        (("payment_status", (PROCESSING,)),),
    ),
    Read(
        "payments",
        "post",
        VOID,
        "409",
        ("code", "payment_status", "payment_id"),
        (("payment_status", (PROCESSING, REFUNDING, COMPLETED, REFUNDED)),),
    ),
    Read(
        "payments",
        "post",
        REFUND,
        "409",
        ("code", "payment_status", "detail"),
        (("payment_status", (REFUNDED, REFUNDING)),),
    ),
)


def _body(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body


class ProductsClient:
    def __init__(self, client: ServiceClient) -> None:
        self.http = client

    async def reserve(
        self, order: Order
    ) -> Reserved | OutOfStock | ProductMissing | ReservationRefused:
        """Reserve every line of the order, all or nothing (idempotent by the order id)."""
        response = await self.http.request(
            "POST",
            RESERVATIONS,
            json={
                "order_id": order.id,
                "lines": [
                    {"product_id": line.product_id, "quantity": line.quantity}
                    for line in order.lines
                ],
            },
            idempotent=True,
        )
        if response.status_code in (200, 201):
            lines = _body(response)["lines"]
            return Reserved(
                {line["product_id"]: (line["name"], Decimal(line["unit_price"])) for line in lines}
            )
        if response.status_code == 404:
            return ProductMissing(tuple(_body(response).get("product_ids", ())))
        body = _body(response)
        if response.status_code == 409 and body.get("code") == "insufficient_stock":
            # One entry per short line: loc ["body", "lines", index, "quantity"].
            return OutOfStock(
                {
                    order.lines[error["loc"][2]].product_id: error["available"]
                    for error in body.get("errors") or ()
                }
            )
        return ReservationRefused(f"status {response.status_code} {body.get('code')}")

    async def release(self, order: Order) -> Released | ReleaseRefused:
        """Give back the stock of every line (idempotent; before a reservation, refuses it)."""
        response = await self.http.request(
            "DELETE", RELEASE.format(order_id=order.id), idempotent=True
        )
        if response.status_code == 200:
            return Released()
        return ReleaseRefused(f"status {response.status_code}")


class PaymentsClient:
    def __init__(self, client: ServiceClient) -> None:
        self.http = client

    @staticmethod
    def _terms(order: Order) -> JsonObject:
        assert order.total_price is not None, "a payment needs the order's price"
        return {
            "user_id": order.user_id,
            "amount": f"{order.total_price:.2f}",
            "currency": order.currency,
            "payment_method": order.payment_method,
        }

    async def pay(self, order: Order) -> Charged | Declined | PaymentRefused | PaymentInProgress:
        """Create and confirm the order's payment in one call (idempotent by the order id)."""
        response = await self.http.request(
            "POST",
            PAYMENTS,
            json={"order_id": order.id, **self._terms(order), "confirm": True},
            idempotent=True,
        )
        body = _body(response)
        if response.status_code in (200, 201) and body["status"] == COMPLETED:
            return Charged(body["payment_id"])
        if response.status_code == 402:
            return Declined(body["detail"])
        if response.status_code == 409 and body.get("payment_status") == PROCESSING:
            return PaymentInProgress()
        return PaymentRefused(f"status {response.status_code} {body.get('code')}")

    async def void(self, order: Order) -> Voided | VoidRefused | PaymentInProgress:
        """Void the order's payment; if there is none yet, the payment service records a
        voided one, so a late create-and-confirm for this order is refused."""
        response = await self.http.request(
            "POST", VOID.format(order_id=order.id), json=self._terms(order), idempotent=True
        )
        if response.status_code == 200:
            return Voided()
        body = _body(response)
        if response.status_code == 409 and body.get("payment_status") in (PROCESSING, REFUNDING):
            return PaymentInProgress()
        if response.status_code == 409 and body.get("payment_status") in (COMPLETED, REFUNDED):
            return VoidRefused(body["payment_id"], completed=body["payment_status"] == COMPLETED)
        # Not in the contract: leave the order for a later attempt rather than guess.
        raise DownstreamUnavailable("payment-service", f"void answered {response.status_code}")

    async def refund(self, order: Order) -> Refunded | RefundRefused | PaymentInProgress:
        assert order.payment_id is not None, "a refund needs the payment"
        response = await self.http.request(
            "POST",
            REFUND.format(payment_id=order.payment_id),
            idempotency_key=f"order-{order.id}-refund",
            idempotent=True,
        )
        if response.status_code == 200:
            return Refunded()
        body = _body(response)
        if response.status_code == 409 and body.get("payment_status") == REFUNDED:
            return Refunded()  # refunded by an earlier attempt or an admin: the money is back
        if response.status_code == 409 and body.get("payment_status") == REFUNDING:
            return PaymentInProgress()
        return RefundRefused(str(body.get("detail", response.status_code)))
