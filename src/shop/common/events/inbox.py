"""Inboxes for consumers without a database: the record of handled event ids in Redis.

A consumer with a database keeps its inbox in that database, in the handler's transaction
(``Consumer.handle``). One without (the notification worker, whose effect is an email) claims
the event id in Redis before the handler runs: ``SET <prefix><consumer>:<id> 1 NX EX
<retention>``. A claim that exists already means the event was handled (or is being handled by
another replica) and the delivery is only acked. A handler that fails releases its claim (DEL)
so the retry can run it; one that succeeds keeps it for ``retention`` seconds.

The guarantee, per event id, for redeliveries within ``retention`` while Redis keeps its keys:
the handler's effect happens once. A worker killed after sending and before the ack leaves its
claim, so the redelivery does nothing. A worker killed after claiming and before the send
completes also leaves its claim: that event's email is lost (the one gap, bounded to such a
crash). Where Redis cannot be reached, ``claim`` says yes: the worker still handles every event,
at least once (a redelivery may send again), and the ``shop_events_inbox_up`` gauge is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from shop.common.logging import get_logger
from shop.common.metrics import EVENTS_INBOX_UP

log = get_logger("shop.events.inbox")


@functools.cache
def _up(consumer: str) -> Gauge:
    """The consumer's ``shop_events_inbox_up`` child, looked up once, not per claim."""
    return EVENTS_INBOX_UP.labels(consumer)


class RedisInbox:
    """Claims of handled event ids in Redis, one key per (consumer, event id)."""

    def __init__(
        self,
        client: Redis,
        *,
        retention_seconds: int,
        prefix: str = "shop:inbox:",
        timeout: float = 0.5,
    ) -> None:
        self._redis, self._retention, self._prefix = client, retention_seconds, prefix
        self._timeout = timeout
        # SET's arguments after the key, as RESP: the same for every claim.
        ex = str(retention_seconds).encode()
        self._set_tail = b"\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(ex), ex)
        self._lock = asyncio.Lock()  # one command at a time on the one connection

    @classmethod
    def from_url(cls, url: str, *, retention_seconds: int, prefix: str) -> RedisInbox:
        """A client of one connection, kept (and made again after a failure), speaking RESP2:
        the worker claims one event at a time, so a pool has nothing to share; its checkout
        and RESP3's parser cost CPU on every claim (measured in docs/events.md, "Issue 31").
        No socket timeout of redis-py's: it wraps each write in a task of its own
        (``wait_for``) and each read in a timer, a third of a claim's CPU; each command here has
        one deadline instead (``timeout``, 0.5 s), and redis-py drops a connection whose
        command was cut, so the next claim starts on a new one."""
        client = Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=0.5,
            single_connection_client=True,
            protocol=2,
        )
        return cls(client, retention_seconds=retention_seconds, prefix=prefix)

    def key(self, consumer: str, event_id: str) -> str:
        return f"{self._prefix}{consumer}:{event_id}"

    async def available(self, consumer: str) -> bool:
        """Whether Redis answers now (for the start-up log); sets the gauge."""
        try:
            async with asyncio.timeout(self._timeout), self._lock:
                await self._redis.ping()
        except (RedisError, TimeoutError):
            _up(consumer).set(0)
            return False
        _up(consumer).set(1)
        return True

    async def claim(self, consumer: str, event_id: str) -> bool:
        """True if the event is to be handled now: claimed, or Redis unreachable."""
        try:
            async with asyncio.timeout(self._timeout):
                claimed = await self._set_nx(self.key(consumer, event_id))
        except (RedisError, TimeoutError) as exc:
            _up(consumer).set(0)
            log.warning(
                "inbox unreachable: handling anyway (at least once)",
                consumer=consumer,
                event_id=event_id,
                error=repr(exc),
            )
            return True
        _up(consumer).set(1)
        return claimed

    async def _set_nx(self, key: str) -> bool:
        """``SET key 1 NX EX retention`` on the client's one connection: True if it was set.

        Written as RESP here and sent with the connection's own ``send_packed_command`` and
        ``read_response`` (its reconnecting, its parser, hiredis where installed): the client's
        ``execute_command`` around them (the retry wrapper, its lock, the command's packing and
        its duration recorded for observability) was a fifth of the worker's CPU per mail
        (docs/events.md, "Issue 31, fifth round"). A connection lost meanwhile is dropped and
        the command sent once more on a new one, as the client's retry does; a second failure
        raises, and the claim answers as for Redis away."""
        raw = key.encode()
        command = b"*6\r\n$3\r\nSET\r\n$%d\r\n%s%s" % (len(raw), raw, self._set_tail)
        async with self._lock:
            connection = self._redis.connection
            if connection is None:  # the client makes its one connection on first use
                await self._redis.initialize()
                connection = self._redis.connection
                assert connection is not None
            try:
                return await _sent(connection, command)
            except (RedisConnectionError, OSError):
                await connection.disconnect()
            return await _sent(connection, command)  # once more, on a new connection

    async def release(self, consumer: str, event_id: str) -> None:
        """Forget a claim whose handler failed, so that the retry handles the event."""
        with contextlib.suppress(RedisError, TimeoutError):
            async with asyncio.timeout(self._timeout), self._lock:
                await self._redis.delete(self.key(consumer, event_id))

    async def aclose(self) -> None:
        await self._redis.aclose()


async def _sent(connection: AbstractConnection, command: bytes) -> bool:
    """One ``SET ... NX`` sent and its reply read: True for OK, False for nil (it existed)."""
    await connection.send_packed_command(command, check_health=False)
    return await connection.read_response() is not None
