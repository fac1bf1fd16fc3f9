"""The worker's SMTP client: one kept connection, each mail's transaction in as few round
trips as the relay allows.

aiosmtplib opens the connection: the greeting, EHLO, STARTTLS and login, each with its own
timeout (``smtp_timeout_seconds``). Then the connection's transport is handed to a
``_Session``, a small protocol that sends the mail transactions (MAIL, RCPT, DATA, the
message) and parses the replies as they come. Where the relay's EHLO offers ``PIPELINING``
(RFC 2920: Postfix, Exim and most hosted relays; the local sink, ``shop.devtools.mailsink``),
MAIL, RCPT and DATA go in one write and their three replies are read together: two round trips
per mail instead of four. Without it they go one at a time, as RFC 5321 has them.

Why not aiosmtplib for the transaction too: its protocol takes one reply per command written
(bytes that come while no reply is awaited, or while a parsed one waits to be picked up, are
dropped), so it cannot pipeline, and its path around each reply (a lock, a timer, a command
check, a new future) was most of the worker's CPU per mail after the libraries' own delivery
and claim (docs/events.md, "Issue 31, fifth round"). The judgement of each reply is
aiosmtplib's: the same ``SMTPStatus`` codes and exceptions (``SMTPSenderRefused``,
``SMTPRecipientRefused``, ``SMTPDataError``, ``SMTPServerDisconnected``), so the worker's
policy (5xx to the DLQ, anything else retried) is unchanged.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import aiosmtplib
from aiosmtplib import SMTPStatus

if TYPE_CHECKING:
    from shop.notifications.settings import NotificationsSettings

# A reply (with its continuation lines) longer than this is refused: a relay that streams
# without line ends cannot grow the buffer without bound (aiosmtplib's own limit).
MAX_REPLY_BYTES = 32 * 1024
# A line of the message that starts with a period gets a second one (RFC 5321 4.5.2).
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail as SMTP sends it: the envelope's sender and recipient (bare addresses, safe on
    an SMTP command line: ``service.envelope``), and the message with CRLF line ends."""

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


def content(data: bytes) -> bytes:
    """The message as DATA sends it: periods at line starts doubled, a CRLF at its end, then
    the lone period that ends it."""
    data = _LEADING_PERIOD.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class _Session(asyncio.Protocol):
    """One open SMTP connection, after its greeting and EHLO: commands written, replies parsed
    as they arrive (several to a read when the commands were pipelined) and handed out in
    order. ``in_step`` is False while a command's reply is outstanding or the message is being
    sent; a connection out of step is dropped, never sent QUIT (it could land in a message)."""

    def __init__(self, transport: asyncio.Transport, *, pipelining: bool) -> None:
        self.transport, self.pipelining = transport, pipelining
        self._loop = asyncio.get_running_loop()
        self.in_step = True
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # the reply being read, if it has several lines
        self._replies: deque[tuple[int, str]] = deque()
        self._wanted = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        transport.set_protocol(self)

    @property
    def is_open(self) -> bool:
        return self._error is None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if not self.is_open:
            raise self._error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.in_step = False
        self.transport.write(data)

    async def replies(self, count: int) -> list[tuple[int, str]]:
        """The next ``count`` replies, in order (for as many commands written)."""
        while len(self._replies) < count:
            if self._error is not None:
                raise self._error
            self._wanted, self._waiter = count, self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return [self._replies.popleft() for _ in range(count)]

    async def reply(self) -> tuple[int, str]:
        (answer,) = await self.replies(1)
        return answer

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start : end + 1])
            start = end + 1
            if not line[:3].isdigit():
                text = line.decode("utf-8", "replace").strip()
                self._fail(
                    aiosmtplib.SMTPResponseException(
                        SMTPStatus.invalid_response, f"Malformed SMTP response line: {text}"
                    )
                )
                return
            self._lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":  # the reply's last line
                text = b"\n".join(self._lines).decode("utf-8", "surrogateescape")
                self._replies.append((int(line[:3]), text))
                self._lines = []
        del buffer[:start]
        if len(buffer) + sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self._fail(
                aiosmtplib.SMTPResponseException(SMTPStatus.invalid_response, "Response too long")
            )
            return
        waiter = self._waiter
        if waiter is not None and len(self._replies) >= self._wanted and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        error = aiosmtplib.SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self.transport.close()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # replies() raises the error

    def close(self) -> None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Connection closed"))


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
        self._session: _Session | None = None
        self._sent = 0
        self._last_used = 0.0
        self._lock = asyncio.Lock()

    @property
    def pipelining(self) -> bool | None:
        """Whether the open connection pipelines (None: none is open)."""
        return None if self._session is None else self._session.pipelining

    async def _connected(self) -> tuple[_Session, bool]:
        """The kept connection (and True), else a new one (and False)."""
        s = self.settings
        session = self._session
        if session is not None and session.is_open:
            if self._sent >= s.smtp_messages_per_connection:
                await self.close()
            elif time.monotonic() - self._last_used > s.smtp_idle_check_seconds:
                try:
                    session.write(b"NOOP\r\n")
                    code, _ = await session.reply()
                    session.in_step = True
                    if code != SMTPStatus.completed:
                        await self.close()
                except (aiosmtplib.SMTPException, OSError):
                    self._drop()
            if self._session is not None:
                return self._session, True
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
        try:
            if client.is_ehlo_or_helo_needed:  # no STARTTLS or login greeted it
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            transport = client.transport
            if transport is None:  # connect() returned without one: never, but not a mail
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        except BaseException:
            client.close()
            raise
        # asyncio's transport or uvloop's (which does not subclass asyncio.Transport)
        stream = cast(asyncio.Transport, transport)
        session = _Session(stream, pipelining=client.supports_extension("pipelining"))
        self._session, self._sent = session, 0
        return session, False

    async def send(self, mail: Mail) -> None:
        """One mail transaction (MAIL, RCPT, DATA) on the kept connection, under one deadline
        of ``smtp_timeout_seconds`` for the mail (connecting, when it must, included) rather
        than a timer per reply: a timed-out mail drops its connection."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.settings.smtp_timeout_seconds):
                    session = await self._envelope(mail)
                    session.write(content(mail.data))
                    code, message = await session.reply()
                    session.in_step = True
                    if code != SMTPStatus.completed:
                        raise aiosmtplib.SMTPDataError(code, message)
            except BaseException:
                await self.close()  # QUIT if in step, else dropped
                raise
            self._sent += 1
            self._last_used = time.monotonic()

    async def _envelope(self, mail: Mail) -> _Session:
        """MAIL, RCPT and DATA on the kept connection, up to the relay's 354; the session it
        went on. A kept connection the relay has closed fails before any reply, with nothing of
        the mail sent: that step is tried again, once, on a new connection."""
        session, kept = await self._connected()
        try:
            await _start_data(session, mail)
        except (aiosmtplib.SMTPServerDisconnected, OSError):
            if not kept:
                raise
            self._drop()
            session, _ = await self._connected()
            await _start_data(session, mail)
        return session

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        if session.is_open and session.in_step:
            try:
                session.write(b"QUIT\r\n")
                await asyncio.wait_for(session.reply(), 1)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
        session.close()


async def _start_data(session: _Session, mail: Mail) -> None:
    """MAIL and RCPT as aiosmtplib's ``mail`` and ``rcpt`` judge their replies (SMTPUTF8 for an
    address beyond ASCII), then DATA up to its 354; pipelined where the relay offers it. A
    refusal raises aiosmtplib's exception for it, MAIL's first (the relay answers RCPT and DATA
    of a refused sender with errors of their own)."""
    encoding = mail.encoding
    options = b" SMTPUTF8" if mail.international else b""
    commands = (
        b"MAIL FROM:<" + mail.sender.encode(encoding) + b">" + options + b"\r\n",
        b"RCPT TO:<" + mail.recipient.encode(encoding) + b">\r\n",
        b"DATA\r\n",
    )
    if session.pipelining:
        session.write(b"".join(commands))
        replies = await session.replies(3)
    else:
        replies = []
        for command in commands:
            session.write(command)
            replies.append(reply := await session.reply())
            if reply[0] not in (SMTPStatus.completed, SMTPStatus.will_forward):
                break
    # Every reply read: in step again, unless the relay now waits for the message.
    session.in_step = replies[-1][0] != SMTPStatus.start_input
    (code, message), *rest = replies
    if code != SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(code, message, mail.sender)
    code, message = rest[0]
    if code not in (SMTPStatus.completed, SMTPStatus.will_forward):
        raise aiosmtplib.SMTPRecipientRefused(code, message, mail.recipient)
    code, message = rest[1]
    if code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(code, message)
