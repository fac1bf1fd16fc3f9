"""The worker's SMTP reply parser (notifications/smtp.py, ``_Session``): replies handed out
in order however the bytes are cut, several to a read when pipelined, multi-line replies
whole, and a line that is no reply an error rather than a hang."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from shop.notifications.smtp import _Session, content


class Transport(asyncio.Transport):
    """Where the session writes: kept in a list."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_pipelined_replies_come_in_order_however_the_bytes_are_cut() -> None:
    stream = b"250 2.1.0 OK\r\n250-first\r\n250 second\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    for cut in range(1, len(stream)):
        session = _Session(Transport(), pipelining=True)
        waiting = asyncio.ensure_future(session.replies(3))
        session.data_received(stream[:cut])
        await asyncio.sleep(0)
        session.data_received(stream[cut:])
        assert await waiting == [
            (250, "2.1.0 OK"),
            (250, "first\nsecond"),
            (354, "End data with <CR><LF>.<CR><LF>"),
        ]


async def test_a_reply_that_came_before_it_was_asked_for_is_kept() -> None:
    session = _Session(Transport(), pipelining=False)
    session.data_received(b"250 OK\r\n221 Bye\r\n")
    assert await session.reply() == (250, "OK")
    assert await session.reply() == (221, "Bye")


async def test_a_line_that_is_no_reply_fails_the_waiting_command() -> None:
    transport = Transport()
    session = _Session(transport, pipelining=False)
    waiting = asyncio.ensure_future(session.reply())
    session.data_received(b"hello there\r\n")
    with pytest.raises(aiosmtplib.SMTPResponseException, match="Malformed"):
        await waiting
    assert transport.closed
    assert not session.is_open


async def test_a_lost_connection_fails_the_waiting_command_and_every_later_write() -> None:
    session = _Session(Transport(), pipelining=True)
    waiting = asyncio.ensure_future(session.replies(3))
    session.data_received(b"250 OK\r\n")
    session.connection_lost(ConnectionResetError())
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await waiting
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        session.write(b"NOOP\r\n")


def test_the_message_is_sent_transparent_and_ended() -> None:
    assert content(b"a\r\n.\r\n.b\r\nc") == b"a\r\n..\r\n..b\r\nc\r\n.\r\n"
    assert content(b".x\r\n") == b"..x\r\n.\r\n"
