"""What the customer is told, per event, and how it is sent.

``compose`` is pure (tests/unit): an event and the customer give the mail, or None for an
event that needs no mail. Each message's ``Message-ID`` is made from the event id, so a
redelivered event (at least once) yields the same message, which mail systems can recognise.

The mail is written as its RFC 5322 bytes directly (a plain-text part, UTF-8, headers
RFC 2047-encoded where they are not ASCII), not built as an ``EmailMessage``: the standard
library's header registry parsed every header again and was a third of the worker's CPU per
mail (docs/performance.md, "Events"). ``SmtpSender`` keeps one SMTP connection per worker and
sends every mail over it (connecting, EHLO and the local host name's look-up were a quarter),
with envelope addresses checked once, in ``compose``, and one deadline per mail (docs/events.md,
"Issue 31, third round").
"""

from __future__ import annotations

import asyncio
import quopri
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from functools import lru_cache
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPStatus
from aiosmtplib.email import parse_address

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


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail as SMTP sends it: the envelope's sender and recipient (bare addresses, safe on
    an SMTP command line: ``envelope``), and the message."""

    sender: str
    recipient: str
    data: bytes

    @property
    def international(self) -> bool:
        """An address outside ASCII (``zoë@exämple.com``): sent with SMTPUTF8 (RFC 6531)."""
        return not (self.sender.isascii() and self.recipient.isascii())

    @property
    def encoding(self) -> str:
        """How its envelope addresses go on the command line."""
        return "utf-8" if self.international else "ascii"


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


class SmtpSender:
    """One SMTP connection, kept and reused for every mail (one at a time, in order).

    It connects (STARTTLS and login if configured) on first use. A connection idle for
    ``smtp_idle_check_seconds`` is checked with a NOOP first (relays close idle ones), and one
    that has sent ``smtp_messages_per_connection`` mails is replaced, as a relay may cap them.
    Any failure closes the connection: the next mail opens a new one. The mail that failed is
    retried by the consumer (retry queue, backoff), as it was with a connection per mail: a
    kept connection adds no second send.
    """

    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._sent = 0
        self._last_used = 0.0
        self._lock = asyncio.Lock()

    async def _connected(self) -> tuple[aiosmtplib.SMTP, bool]:
        """The kept connection (and True), else a new one (and False)."""
        s = self.settings
        client = self._client
        if client is not None and client.is_connected:
            if self._sent >= s.smtp_messages_per_connection:
                await self.close()
            elif time.monotonic() - self._last_used > s.smtp_idle_check_seconds:
                try:
                    await client.noop()
                except (aiosmtplib.SMTPException, OSError):
                    await self.close()
            if self._client is not None:
                return self._client, True
        await self.close()
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
            local_hostname=s.smtp_local_hostname,
        )
        await client.connect()
        if client.is_ehlo_or_helo_needed:  # no STARTTLS or login greeted it: MAIL goes without
            try:  # aiosmtplib's ``mail``, which would
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        self._client, self._sent = client, 0
        return client, False

    async def send(self, mail: Mail) -> None:
        """One mail transaction (MAIL, RCPT, DATA) on the kept connection, under one deadline
        of ``smtp_timeout_seconds`` for the mail (connecting, when it must, included) rather
        than aiosmtplib's timer per reply: a timed-out mail drops its connection."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.settings.smtp_timeout_seconds):
                    client = await self._begin(mail)
                    await _rcpt_to(client, mail)
                    await client.data(mail.data, timeout=None)
            except TimeoutError:
                self._drop()  # the reply may still come: the connection is out of step
                raise
            except BaseException:
                await self.close()
                raise
            self._sent += 1
            self._last_used = time.monotonic()

    async def _begin(self, mail: Mail) -> aiosmtplib.SMTP:
        """MAIL on the kept connection; the client it went on. A kept connection the relay
        has closed fails here, before anything of the mail was sent: that one step is tried
        again, once, on a new connection."""
        client, kept = await self._connected()
        try:
            await _mail_from(client, mail)
        except (aiosmtplib.SMTPServerDisconnected, OSError):
            if not kept:
                raise
            await self.close()
            client, _ = await self._connected()
            await _mail_from(client, mail)
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await asyncio.wait_for(client.quit(), 1)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


# MAIL and RCPT as aiosmtplib's ``mail`` and ``rcpt`` send them and judge the reply, for
# addresses ``envelope`` made safe already (those two parse them again, per mail), with no
# timer per reply (``SmtpSender.send`` has one deadline); SMTPUTF8 for an address beyond ASCII.


async def _mail_from(client: aiosmtplib.SMTP, mail: Mail) -> None:
    options = [b"SMTPUTF8"] if mail.international else []
    reply = await client.execute_command(
        b"MAIL", b"FROM:<" + mail.sender.encode(mail.encoding) + b">", *options, timeout=None
    )
    if reply.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, mail.sender)


async def _rcpt_to(client: aiosmtplib.SMTP, mail: Mail) -> None:
    reply = await client.execute_command(
        b"RCPT", b"TO:<" + mail.recipient.encode(mail.encoding) + b">", timeout=None
    )
    if reply.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, mail.recipient)


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
