"""What the customer is told, per event, and how it is sent.

``compose`` is pure (tests/unit): an event and the customer give the message, or None for an
event that needs no mail. Each message's ``Message-ID`` is made from the event id, so a
redelivered event (at least once) yields the same message, which mail systems can recognise.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import aiosmtplib

from shop.common.db import Connection
from shop.common.events.consumer import Event, PermanentError
from shop.common.http import ServiceClient
from shop.notifications.settings import NotificationsSettings

KEYS = ("shop.user.registered", "shop.order.paid", "shop.order.cancelled", "shop.order.failed")

SUBJECTS = {
    "shop.user.registered": "Welcome to shop, {username}",
    "shop.order.paid": "Order {id} is paid",
    "shop.order.cancelled": "Order {id} is cancelled",
    "shop.order.failed": "Order {id} could not be completed",
}
BODIES = {
    "shop.user.registered": "Hello {username},\n\nyour account is ready. Happy shopping!\n",
    "shop.order.paid": (
        "Hello {username},\n\nthank you: order {id} is paid.\n\n{lines}\n\n"
        "Total: {total_price} {currency}\n\nWe will tell you when it ships.\n"
    ),
    "shop.order.cancelled": (
        "Hello {username},\n\norder {id} is cancelled. Any payment has been refunded.\n"
    ),
    "shop.order.failed": (
        "Hello {username},\n\norder {id} could not be completed ({failure_reason})."
        " Nothing was charged.\n"
    ),
}


def compose(event: Event, user: dict[str, Any], *, sender: str) -> EmailMessage | None:
    if event.type not in SUBJECTS:
        return None
    fields = {**event.data, "username": user["username"], "lines": _lines(event.data)}
    message = EmailMessage()
    message["From"] = sender
    message["To"] = user["email"]
    message["Subject"] = SUBJECTS[event.type].format(**fields)
    message["Message-ID"] = f"<{event.id}@shop.events>"
    message["X-Shop-Event"] = event.type
    message.set_content(BODIES[event.type].format_map(_Blank(fields)))
    return message


def _lines(order: dict[str, Any]) -> str:
    """The order's lines, one per row: quantity, name, unit price and line total."""
    lines = order.get("lines") or [
        {"product_id": order.get("product_id"), "quantity": order.get("quantity")}
    ]
    return "\n".join(_line(line) for line in lines)


def _line(line: dict[str, Any]) -> str:
    name = line.get("name") or f"product {line.get('product_id')}"
    price, total = line.get("unit_price") or "-", line.get("line_total") or "-"
    return f"  {line.get('quantity')} x {name} at {price} = {total}"


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "-"


class Notifier:
    """The handler: find the customer, compose, send over SMTP."""

    def __init__(self, settings: NotificationsSettings, users: ServiceClient) -> None:
        self.settings, self.users = settings, users

    async def customer(self, event: Event) -> dict[str, Any]:
        if event.type == "shop.user.registered":
            return event.data
        response = await self.users.request(
            "GET", f"/api/v1/users/{int(event.data['user_id'])}", idempotent=True
        )
        if response.status_code != 200:  # retried, then dead-lettered: never a mail to nobody
            raise LookupError(f"user service answered {response.status_code} for the customer")
        user: dict[str, Any] = response.json()
        return user

    async def __call__(self, event: Event, _conn: Connection | None) -> None:
        message = compose(event, await self.customer(event), sender=self.settings.mail_from)
        if message is None:
            return
        s = self.settings
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls,
                timeout=s.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(refused.code >= 500 for refused in exc.recipients):
                raise PermanentError(f"the relay refused every recipient: {exc}") from exc
            raise  # 4xx: try again later
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentError(f"the relay refused the mail: {exc}") from exc
            raise  # 4xx: try again later (a relay that is down or went away: OSError, too)
