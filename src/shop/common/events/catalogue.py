"""Every event type of the contract (EVENTS.md): the routing keys, who publishes each and when.

The one list: docs/events.md's AsyncAPI document is checked against it (tests/unit).
"""

from __future__ import annotations

EXCHANGE = "shop.events"
CONTENT_TYPE = "application/cloudevents+json"

EVENT_TYPES: dict[str, tuple[str, str]] = {
    "shop.user.registered": ("users", "a user was created (never a password or hash)"),
    "shop.product.created": ("products", "a product was added to the catalogue"),
    "shop.product.updated": ("products", "a product's editable fields were replaced"),
    "shop.product.deleted": ("products", "a product was removed from the catalogue"),
    "shop.product.stock_changed": ("products", "a product's stock changed (admin or order)"),
    "shop.order.placed": ("orders", "an order was accepted (status pending)"),
    "shop.order.paid": ("orders", "an order's payment went through"),
    "shop.order.failed": ("orders", "an order failed (stock, payment); its stock is back"),
    "shop.order.cancelled": ("orders", "an order was cancelled; refunded and restocked"),
    "shop.order.shipped": ("orders", "an order was shipped"),
    "shop.order.delivered": ("orders", "an order was delivered"),
    "shop.payment.completed": ("payments", "a payment was charged"),
    "shop.payment.failed": ("payments", "a payment was declined or voided"),
    "shop.payment.refunded": ("payments", "a payment was refunded"),
}


def source(service: str) -> str:
    """The CloudEvent ``source`` of a service's events."""
    return f"/shop/{service}"
