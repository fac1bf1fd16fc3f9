"""What the customer is told, per event, and how it is sent.

``compose`` is pure (tests/unit): an event and the customer give the mail, or None for an
event that needs no mail. Each message's ``Message-ID`` is made from the event id, so a
redelivered event (at least once) yields the same message, which mail systems can recognise.

The mail is written as its RFC 5322 bytes directly (a plain-text part, UTF-8, headers
RFC 2047-encoded where they are not ASCII), not built as an ``EmailMessage``: the standard
library's header registry parsed every header again and was a third of the worker's CPU per
mail (docs/performance.md, "Events"). Envelope addresses are checked once, in ``compose``
(docs/events.md, "Issue 31, third round"). Sending is ``notifications.smtp.SmtpSender``: one
kept SMTP connection per worker, each mail's MAIL, RCPT and DATA pipelined where the relay
offers it (docs/events.md, "Issue 31, fifth round").
"""

from __future__ import annotations

import quopri
from collections.abc import Mapping
from email.header import Header
from functools import lru_cache
from typing import Any

import aiosmtplib
from aiosmtplib.email import parse_address

from shop.common.db import Connection
from shop.common.events.consumer import Event, PermanentError
from shop.common.http import ServiceClient
from shop.notifications.settings import NotificationsSettings
from shop.notifications.smtp import Mail, SmtpSender

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


def compose(event: Event, user: dict[str, Any], *, sender: str) -> Mail | None:
    if event.type not in SUBJECTS:
        return None
    fields = {**event.data, "username": user["username"], "lines": _lines(event.data)}
    body = BODIES[event.type].format_map(_Blank(fields))
    encoded = body.encode()
    if body.isascii():
        transfer = "7bit"
    else:
        transfer, encoded = "quoted-printable", quopri.encodestring(encoded)
    head = "".join(
        _header(name, value, raw=name in ("From", "To"))
        for name, value in (
            ("From", sender),
            ("To", str(user["email"])),
            ("Subject", SUBJECTS[event.type].format(**fields)),
            ("Message-ID", f"<{event.id}@shop.events>"),
            ("X-Shop-Event", event.type),
            ("MIME-Version", "1.0"),
            ("Content-Type", 'text/plain; charset="utf-8"'),
            ("Content-Transfer-Encoding", transfer),
        )
    )
    return Mail(
        envelope(sender),
        envelope(str(user["email"])),
        head.encode() + b"\r\n" + encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
    )


# Characters that only a display name, a comment, a quoted part or a list brings into an address
# (RFC 5322): without any, the text is the address itself.
_NOT_BARE = frozenset('<>()",;: \t\r\n[]\\')


@lru_cache(maxsize=8)
def _parsed(address: str) -> str:
    return parse_address(address)


def envelope(text: str) -> str:
    """The envelope address of ``text`` (MAIL FROM, RCPT TO), safe on an SMTP command line. A
    bare address (a user's, as registered) is itself: it has none of the characters aiosmtplib's
    ``parse_address`` refuses there (whitespace, ``<>"``; tests/unit/test_notifications.py
    holds the two together), and parsing it, here or in aiosmtplib's ``mail``/``rcpt``, was
    most of composing and a sixth of sending (docs/events.md, "Issue 31"). Anything else (the
    sender with its display name, configured once, so remembered) is aiosmtplib's parse, which
    raises ValueError for what cannot be sent."""
    if (
        text.count("@") == 1
        and not text.endswith("@")
        and _NOT_BARE.isdisjoint(text)
        and text.isprintable()
    ):
        return text
    return _parsed(text)


def _header(name: str, value: str, *, raw: bool = False) -> str:
    """One header line; a line break in a value never starts another header. Text outside
    ASCII is RFC 2047-encoded, but an address (``raw``), which must stay as it is: a mail to
    one is sent with SMTPUTF8, whose headers are UTF-8 (RFC 6532)."""
    value = " ".join(value.splitlines())
    if not value.isascii() and not raw:
        value = Header(value, "utf-8", header_name=name).encode()
    return f"{name}: {value}\r\n"


def _lines(order: Mapping[str, object]) -> str:
    """The order's lines, one per row: quantity, name, unit price and line total."""
    lines = order.get("lines")
    if not isinstance(lines, list) or not lines:  # a seed-era order: its one product
        lines = [{"product_id": order.get("product_id"), "quantity": order.get("quantity")}]
    return "\n".join(_line(line) for line in lines if isinstance(line, Mapping))


def _line(line: Mapping[str, object]) -> str:
    name = line.get("name") or f"product {line.get('product_id')}"
    price, total = line.get("unit_price") or "-", line.get("line_total") or "-"
    return f"  {line.get('quantity')} x {name} at {price} = {total}"


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "-"


class Notifier:
    """The handler: find the customer (in the event, else from the user service), compose,
    send over SMTP (one kept connection)."""

    def __init__(self, settings: NotificationsSettings, users: ServiceClient) -> None:
        self.settings, self.users = settings, users
        self.sender = SmtpSender(settings)

    async def customer(self, event: Event) -> dict[str, Any]:
        """Whom the mail goes to: the registered user, the contact an order event carries
        (as at placement), or, for an order event without it (placed before orders recorded
        it, and in flight across that upgrade), the user as the user service has it now."""
        if event.type == "shop.user.registered":
            return event.data
        contact = event.data.get("customer")
        if isinstance(contact, dict) and contact.get("email") and contact.get("username"):
            return contact
        response = await self.users.request(
            "GET", f"/api/v1/users/{int(event.data['user_id'])}", idempotent=True
        )
        if response.status_code != 200:  # retried, then dead-lettered: never a mail to nobody
            raise LookupError(f"user service answered {response.status_code} for the customer")
        user: dict[str, Any] = response.json()
        return user

    async def __call__(self, event: Event, _conn: Connection | None) -> None:
        mail = compose(event, await self.customer(event), sender=self.settings.mail_from)
        if mail is None:
            return
        try:
            await self.sender.send(mail)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(refused.code >= 500 for refused in exc.recipients):
                raise PermanentError(f"the relay refused every recipient: {exc}") from exc
            raise  # 4xx: try again later
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentError(f"the relay refused the mail: {exc}") from exc
            raise  # 4xx: try again later (a relay that is down or went away: OSError, too)
