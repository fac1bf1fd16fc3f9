"""What the notification worker does with each answer of a real SMTP server (aiosmtpd on a
local port): a mail the relay refuses for good (5xx) goes to the DLQ at once, anything that may
pass later (4xx, a relay that is down) is retried; and the retry waits double up to their cap,
so a long SMTP outage costs one attempt every 30 s, not the event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP

from shop.common.auth import ServiceTokens
from shop.common.events.consumer import Consumer, Event, PermanentError
from shop.common.http import ServiceClient
from shop.common.loop import run
from shop.devtools import mailsink
from shop.devtools.processes import free_port
from shop.notifications.service import Notifier
from shop.notifications.settings import NotificationsSettings
from shop.notifications.smtp import Mail, SmtpSender

REGISTERED = Event(
    id="e-1",
    type="shop.user.registered",
    source="/shop/user-service",
    subject="users/1",
    time="2026-12-06T00:00:00Z",
    data={"id": 1, "username": "ada", "email": "ada@example.com"},
)


class Offering:
    """A handler whose EHLO offers PIPELINING (RFC 2920) or not: the worker pipelines MAIL,
    RCPT and DATA where it is offered and sends them one at a time where it is not."""

    pipelining = False

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses


@pytest.fixture(params=[False, True], ids=["one-at-a-time", "pipelined"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class Answering(Offering):
    """An SMTP server that answers every RCPT (or DATA) with ``reply``."""

    def __init__(self, reply: str, *, at: str = "RCPT", pipelining: bool = False) -> None:
        self.reply, self.at, self.pipelining = reply, at, pipelining

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, _: Any
    ) -> str:
        if self.at == "RCPT":
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self.reply if self.at == "DATA" else "250 OK"


@pytest.fixture
def smtp(pipelining: bool) -> Iterator[Any]:
    started: list[Controller] = []

    def serve(reply: str, *, at: str = "RCPT") -> int:
        port = free_port()
        handler = Answering(reply, at=at, pipelining=pipelining)
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        started.append(controller)
        return port

    yield serve
    for controller in started:
        controller.stop()


def _notifier(port: int) -> Notifier:
    users = ServiceClient(  # never called: a registration carries the customer's address
        target="user-service", base_url="http://users", tokens=ServiceTokens("n", "s"), timeout=1
    )
    return Notifier(NotificationsSettings(smtp_port=port, smtp_timeout_seconds=5), users)


@pytest.mark.parametrize(
    ("reply", "at"),
    [("550 5.1.1 No such user", "RCPT"), ("554 5.6.0 Message rejected", "DATA")],
)
async def test_a_mail_the_relay_refuses_for_good_goes_to_the_dlq(
    smtp: Any, reply: str, at: str
) -> None:
    with pytest.raises(PermanentError, match="refused"):
        await _notifier(smtp(reply, at=at))(REGISTERED, None)


@pytest.mark.parametrize(
    ("reply", "at"),
    [("450 4.2.1 Mailbox busy", "RCPT"), ("451 4.3.0 Try again later", "DATA")],
)
async def test_a_mail_the_relay_defers_is_retried(smtp: Any, reply: str, at: str) -> None:
    with pytest.raises(aiosmtplib.SMTPException) as raised:
        await _notifier(smtp(reply, at=at))(REGISTERED, None)
    assert not isinstance(raised.value, PermanentError)


async def test_a_relay_that_is_down_is_retried() -> None:
    with pytest.raises(aiosmtplib.SMTPConnectError) as raised:
        await _notifier(free_port())(REGISTERED, None)
    assert not isinstance(raised.value, PermanentError)


def test_the_worker_rides_out_half_an_hour_of_smtp_outage() -> None:
    settings = NotificationsSettings()
    consumer = Consumer(
        name="notifications",
        keys=(),
        handler=lambda *_: None,  # type: ignore[arg-type,return-value]
        topology=None,  # type: ignore[arg-type]
        max_attempts=settings.event_max_attempts,
        retry_base=settings.event_retry_base_seconds,
        retry_cap=settings.event_retry_cap_seconds,
    )
    waits = [consumer.backoff(attempt) for attempt in range(1, settings.event_max_attempts)]
    assert waits[:6] == [1, 2, 4, 8, 16, 30]
    assert max(waits) == 30  # one attempt every 30 s at most while the relay is down
    assert 25 * 60 <= sum(waits) <= 35 * 60  # about half an hour before the DLQ
    assert (
        Consumer(
            name="x",
            keys=(),
            handler=consumer.handler,
            topology=None,  # type: ignore[arg-type]
        ).backoff(10)
        == 512
    )  # other consumers keep plain doubling


class Counting(Offering):
    """An SMTP server that accepts every mail and counts its sessions (EHLOs) and mails."""

    def __init__(self, *, pipelining: bool = False) -> None:
        self.sessions, self.mails, self.pipelining = 0, [], pipelining
        self.envelopes: list[tuple[str, list[str]]] = []  # (recipient, MAIL FROM options)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(envelope.original_content or envelope.content)
        self.envelopes.append((envelope.rcpt_tos[0], list(envelope.mail_options)))
        return "250 OK"


def _registered(n: int) -> Event:
    data = {"id": n, "username": f"u{n}", "email": f"u{n}@example.com"}
    return Event(f"e-{n}", "shop.user.registered", "/shop/users", str(n), "t", data)


async def test_one_connection_carries_every_mail_and_a_closed_one_is_replaced(
    pipelining: bool,
) -> None:
    """The worker keeps one SMTP connection (issue 31): three mails, one session, pipelined
    where the relay offers it. The relay restarted meanwhile closes it: the next mail opens a
    new one and goes out once, without waiting for the consumer's retry."""
    port = free_port()
    first = Counting(pipelining=pipelining)
    controller = Controller(first, hostname="127.0.0.1", port=port)
    controller.start()
    notifier = _notifier(port)
    try:
        for n in range(3):
            await notifier(_registered(n), None)
        assert (first.sessions, len(first.mails)) == (1, 3)
        assert notifier.sender.pipelining is pipelining
        assert b"To: u2@example.com" in first.mails[2]
        controller.stop()
        second = Counting(pipelining=pipelining)
        controller = Controller(second, hostname="127.0.0.1", port=port)
        controller.start()
        await notifier(_registered(3), None)
        assert (second.sessions, len(second.mails)) == (1, 1)
        assert len(first.mails) == 3
    finally:
        await notifier.sender.close()
        controller.stop()


async def test_a_mail_to_an_address_outside_ascii_goes_with_smtputf8(pipelining: bool) -> None:
    """An internationalised address (RFC 6531) is sent as it is, with SMTPUTF8, as the
    standard library's one-call send did; the subject and body are still plain UTF-8 text."""
    port = free_port()
    received = Counting(pipelining=pipelining)
    controller = Controller(received, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    notifier = _notifier(port)
    try:
        data = {"id": 9, "username": "Zoë", "email": "zoë@exämple.com"}
        await notifier(Event("e-9", "shop.user.registered", "/shop/users", "9", "t", data), None)
        (mail,) = received.mails
        assert "To: zoë@exämple.com".encode() in mail
        assert received.envelopes[0] == ("zoë@exämple.com", ["SMTPUTF8"])
    finally:
        await notifier.sender.close()
        controller.stop()


async def test_a_line_that_starts_with_a_period_arrives_as_written(pipelining: bool) -> None:
    """DATA's transparency (RFC 5321 4.5.2): a line of the message that is a lone period, or
    starts with one, is sent with its period doubled and received as written; the mail before
    and after it on the same connection are whole."""
    port = free_port()
    received = Counting(pipelining=pipelining)
    controller = Controller(received, hostname="127.0.0.1", port=port)
    controller.start()
    sender = SmtpSender(NotificationsSettings(smtp_port=port, smtp_timeout_seconds=5))
    data = b"Subject: dots\r\n\r\nfirst\r\n.\r\n..two\r\n.three\r\nlast"
    try:
        for n in range(3):
            await sender.send(Mail("a@example.com", f"u{n}@example.com", data))
        assert received.mails == [data + b"\r\n"] * 3
        assert [recipient for recipient, _ in received.envelopes] == [
            "u0@example.com",
            "u1@example.com",
            "u2@example.com",
        ]
    finally:
        await sender.close()
        controller.stop()


@pytest.mark.parametrize("pipelining", [False, True], ids=["by-default", "asked-for"])
def test_the_mail_sink_of_make_run_offers_pipelining_when_asked(
    tmp_path: Any, pipelining: bool
) -> None:
    """``shop.devtools.mailsink`` (make run's and make bench's SES stand-in) offers
    PIPELINING only with ``--pipelining``, and the worker pipelines exactly when it does; the
    mails are written either way; on the worker's own loop (uvloop, ``shop.common.loop``),
    whose transports are its own."""
    port = free_port()
    controller = mailsink.start(tmp_path, port=port, pipelining=pipelining)
    sender = SmtpSender(NotificationsSettings(smtp_port=port, smtp_timeout_seconds=5))

    async def send() -> bool | None:
        try:
            for _ in range(2):
                await sender.send(Mail("a@example.com", "b@example.com", b"Subject: hi"))
            return sender.pipelining
        finally:
            await sender.close()

    try:
        assert run(send()) is pipelining
        assert [path.read_bytes() for path in tmp_path.glob("*.eml")] == [b"Subject: hi\r\n"] * 2
    finally:
        controller.stop()


@pytest.mark.parametrize(
    "arg",
    [
        "<a@example.com>",  # what the worker sends
        "<a@example.com> SMTPUTF8",
        "<a@example.com>  BODY=8BITMIME SMTPUTF8",
        "<a@example.com> (a comment) SMTPUTF8",
        "<a@example.com>\tSMTPUTF8",
        "<a@example.com>>",
        "<a@example.com> <b@example.com>",
        "<zoë@exämple.com> SMTPUTF8",
        "<first.last+tag@sub.example.com>",
        '<"two words"@example.com>',  # the rest: aiosmtpd's parse
        "<a@[127.0.0.1]>",
        "<@relay.example:a@example.com>",
        "<a@b@example.com>",
        "<>",
        "<a@example.com",
        " <a@example.com>",
        "a@example.com",
        "<a b@example.com>",
        "<a@>",
        "<@example.com>",
        "<" + "x" * 65 + "@example.com>",  # a local part beyond RFC 5321's 64
        "",
    ],
)
def test_the_mail_sink_reads_an_envelope_address_as_aiosmtpd_does(arg: str) -> None:
    """The sink reads a plain ``<local@domain>`` off the command line without aiosmtpd's
    RFC 5322 parse (``mailsink._SinkSMTP``, for its CPU per mail); whatever the line, it
    takes the address (or refuses it) exactly as aiosmtpd's own server does."""
    ours = mailsink._SinkSMTP(Sink(), loop=asyncio.new_event_loop())
    theirs = SMTP(Sink(), loop=asyncio.new_event_loop())
    assert ours._getaddr(arg) == theirs._getaddr(arg)


def test_the_mail_sink_closes_an_idle_connection_and_only_an_idle_one(tmp_path: Any) -> None:
    """The sink's idle timeout (one timer moved forward per command, ``mailsink._SinkSMTP``)
    keeps a connection that sends a command now and then past the timeout, and closes one
    that stops, about a timeout after its last command."""
    port = free_port()
    controller = mailsink.start(tmp_path, port=port, timeout=1.0)

    async def talk() -> tuple[list[int], float]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5)
        await client.connect()
        codes = []
        for _ in range(6):  # 2.4 s of commands, 0.4 s apart: never idle for the timeout
            await asyncio.sleep(0.4)
            codes.append((await client.noop()).code)
        quiet = time.monotonic()
        for _ in range(100):  # no command: idle, until the sink closes it (5 s at most)
            if not client.is_connected:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.noop()
        return codes, time.monotonic() - quiet

    try:
        codes, closed_after = run(talk())
        assert codes == [250] * 6
        assert 0.9 <= closed_after < 3.0
    finally:
        controller.stop()
