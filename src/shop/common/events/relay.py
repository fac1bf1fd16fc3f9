"""The outbox relay: publishes committed events to ``shop.events`` and marks them sent.

Each round claims up to ``batch`` unsent rows with ``FOR UPDATE SKIP LOCKED`` (so replicas
relaying side by side never take the same row), leaves out any row whose stream has an earlier
unsent event outside the claim (held by another replica: order per resource wins), marks the
rest sent in the same statement, publishes them on a confirming channel, and commits the mark
only once the broker has confirmed every one (anything else rolls it back). A round's messages
are written as one write, in ``id`` order, under the channel's lock, and their confirms are
awaited together (one round trip per round, not per event; ``ConfirmingPublisher``): RabbitMQ
routes the messages of one channel in the order it receives them, so order per resource holds.
Publishing one message at a time through aio-pika (a task, a lock, a ``Message`` and its
properties per event) was most of the relay's CPU per order (docs/performance.md, "Events").
A crash
between publish and commit publishes those events again: at least once; consumers deduplicate
on the CloudEvent ``id``. A stop (:meth:`Relay.stop`, the relay process's SIGTERM) lets the
round in flight finish first, so a rolling update publishes nothing twice. While the broker is
away the relay retries with capped exponential backoff and the rows wait. Sent rows are deleted
after ``retention`` (settings ``outbox_retention_hours``, 24 h by default).

A round that finds nothing doubles the wait before the next, from ``poll_seconds`` (0.2 s) up
to ``idle_poll_seconds`` (1 s), and the first event sent resets it: an idle replica costs one
claim transaction a second per service instead of five, and an event written after a quiet
spell waits at most ``idle_poll_seconds`` for its relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import signal
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from pydantic import BaseModel

from shop.common.db import Database
from shop.common.events.broker import Topology, broker_down
from shop.common.events.catalogue import CONTENT_TYPE, source
from shop.common.logging import get_logger
from shop.common.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shop.common.settings import ServiceSettings

if TYPE_CHECKING:  # aio-pika itself is imported once connected (events/broker.py)
    import aiormq
    from aiormq.abc import ConfirmationFrameType

log = get_logger("shop.events.relay")

# (type, data as stored: JSON text or its object) -> the JSON of data in the resource's REST shape.
Render = Callable[[str, str | dict[str, Any]], bytes]

# Claim and mark sent in one statement: the round's transaction commits the mark only once
# the broker has confirmed every message (a failed or cut round rolls it back). RETURNING has
# no order of its own: the rows are sorted by id before publishing.
CLAIM = """
WITH claim AS (
    SELECT id FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
), ready AS (
    SELECT o.id FROM outbox o JOIN claim USING (id)
    WHERE NOT EXISTS (
        SELECT 1 FROM outbox p
        WHERE p.stream = o.stream AND p.sent_at IS NULL AND p.id < o.id
          AND p.id NOT IN (SELECT id FROM claim)
    )
)
UPDATE outbox o SET sent_at = now() FROM ready WHERE o.id = ready.id
RETURNING o.id, o.event_id, o.type, o.subject, o.data, o.traceparent, o.created_at
"""
BACKLOG = (
    "SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM outbox WHERE sent_at IS NULL"
)


def _utc(value: datetime) -> datetime:
    """``value`` in UTC, which orjson writes with ``OPT_UTC_Z`` as ISO 8601 ``...Z`` (what
    ``isoformat()`` with ``+00:00`` as ``Z`` gave, in C): asyncpg gives timestamptz in UTC."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


# orjson's options for a CloudEvent: its ``time``, a datetime in UTC, as ``...Z``.
JSON_OPTIONS = orjson.OPT_UTC_Z


def encode(event: dict[str, Any]) -> bytes:
    """The JSON of a CloudEvent from :func:`cloudevent`."""
    return orjson.dumps(event, option=JSON_OPTIONS)


def cloudevent(
    service: str,
    row: Any,
    data: dict[str, Any] | orjson.Fragment,
    *,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The structured-mode CloudEvent 1.0 of an outbox row (EVENTS.md); ``data`` as an object
    or as its JSON already made (``orjson.Fragment``); ``time`` is a UTC datetime, to be
    written by :func:`encode`."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(row["event_id"]),
        "source": source(service),
        "type": row["type"],
        "subject": row["subject"],
        "time": _utc(row["created_at"]),  # ISO 8601 "Z" in orjson.dumps(option=JSON_OPTIONS)
        "datacontenttype": "application/json",
        "data": data,
    }
    if row["traceparent"]:
        event["traceparent"] = row["traceparent"]
    return event


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event as the relay publishes it: its routing key (the type, also the AMQP ``type``
    property), body, ``message_id`` (the event id) and ``app_id`` (the service); persistent,
    ``content-type`` CloudEvents JSON."""

    routing_key: str
    body: bytes
    message_id: str
    app_id: str


# AMQP 0-9-1 framing of basic.publish (method 60.40), its content header and body frames,
# written here as bytes: pamqp's generic marshalling (each field's type looked up, a
# BasicProperties walked field by field) was a quarter of the relay's CPU per event (docs/
# events.md, "Issue 31"). tests/unit/test_events.py checks these bytes against pamqp's.
_FRAME_END = b"\xce"
# content-type, delivery-mode, message-id, type, app-id (basic's property flags, bit 15 first)
_PROPERTY_FLAGS = (1 << 15) | (1 << 12) | (1 << 7) | (1 << 5) | (1 << 3)
_CONTENT_TYPE = CONTENT_TYPE.encode()
# content-type (a short string) and delivery-mode 2 (persistent): the header's fixed properties
_HEADER_FIXED = bytes((len(_CONTENT_TYPE),)) + _CONTENT_TYPE + b"\x02"


def _shortstr(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"an AMQP short string is at most 255 bytes: {text[:40]!r}...")
    return bytes((len(raw),)) + raw


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + _FRAME_END


@functools.lru_cache(maxsize=256)
def _method_frame(channel: int, exchange: str, routing_key: str) -> bytes:
    """The basic.publish method frame, the same for every event of one type on one channel."""
    method = b"\x00\x3c\x00\x28\x00\x00" + _shortstr(exchange) + _shortstr(routing_key) + b"\x00"
    return _frame(1, channel, method)


@functools.lru_cache(maxsize=256)
def _header_tail(routing_key: str, app_id: str) -> bytes:
    """The content header's last two properties (type, app id), the same per type and service."""
    return _shortstr(routing_key) + _shortstr(app_id)


def publish_frames(channel: int, exchange: str, message: Outgoing, max_body: int) -> bytes:
    """The frames of one persistent basic.publish of ``message`` on ``channel``: what
    ``aiormq.Channel.basic_publish`` writes for it (mandatory and immediate off). What depends
    only on the event's type and the service is made once (``_method_frame``, ``_header_tail``)."""
    body = message.body
    header = struct.pack(">HHQH", 60, 0, len(body), _PROPERTY_FLAGS) + _HEADER_FIXED
    header += _shortstr(message.message_id) + _header_tail(message.routing_key, message.app_id)
    parts = [_method_frame(channel, exchange, message.routing_key), _frame(2, channel, header)]
    parts += [_frame(3, channel, body[i : i + max_body]) for i in range(0, len(body), max_body)]
    return b"".join(parts)


class Publisher(Protocol):
    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish ``messages`` in order; return once the broker has confirmed every one."""


class ConfirmingPublisher:
    """Publishes a round's messages on a confirming aiormq channel as one write, under the
    channel's lock (its numbering of delivery tags), then awaits their confirms together.

    The same steps as ``aiormq.Channel.basic_publish`` for one message (delivery tag,
    confirmation future, frames), done once for the whole round: no task, lock or timeout per
    message. A nack, a lost channel or ``timeout`` raises: the round rolls back and is
    published again (at least once)."""

    def __init__(self, channel: aiormq.Channel, exchange: str, timeout: float = 30.0) -> None:
        self.channel, self.exchange, self.timeout = channel, exchange, timeout

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        from aiormq.abc import ChannelFrame

        channel = self.channel
        if channel.is_closed:
            raise ConnectionError("the relay's channel is closed")
        if not messages:
            return
        size, loop = channel.max_content_size, asyncio.get_running_loop()
        confirms: list[asyncio.Future[ConfirmationFrameType]] = []
        async with channel.lock:
            first = channel.delivery_tag
            number, exchange = channel.number, self.exchange
            frames: list[bytes] = []
            for message in messages:
                channel.delivery_tag += 1
                confirm: asyncio.Future[ConfirmationFrameType] = loop.create_future()
                channel.confirmations[channel.delivery_tag] = confirm
                confirms.append(confirm)
                frames.append(publish_frames(number, exchange, message, size))
            # The last one from the channel's future store, which fails it if the channel
            # closes; the others are plain futures (the store's bookkeeping per message was a
            # tenth of a round's CPU), awaited once the last has settled (below).
            last = channel.create_future()
            confirms[-1] = channel.confirmations[channel.delivery_tag] = last
            drained = channel.create_future()
            try:
                await channel.write_queue.put(
                    ChannelFrame(payload=b"".join(frames), should_close=False, drain_future=drained)
                )
            except BaseException:  # nothing written: give the delivery tags back
                for tag in range(first + 1, channel.delivery_tag + 1):
                    channel.confirmations.pop(tag, None)
                channel.delivery_tag = first
                for confirm in confirms:
                    confirm.cancel()
                raise
            await drained
        try:
            async with asyncio.timeout(self.timeout):
                await last  # a closed channel raises here; a nack raises aiormq's DeliveryError
                for confirm in confirms[:-1]:  # confirmed by now, mostly (in order, or multiple)
                    await confirm
        except BaseException:
            for confirm in confirms:  # a nack not awaited above is not "never retrieved"
                if confirm.done() and not confirm.cancelled():
                    confirm.exception()
            raise


class Relay:
    def __init__(
        self,
        db: Database,
        topology: Topology,
        *,
        service: str,
        render: Render,
        batch: int = 200,
        poll_seconds: float = 0.2,
        idle_poll_seconds: float = 1.0,
        retention_seconds: float = 86400.0,
    ) -> None:
        self.db, self.topology, self.service, self.render = db, topology, service, render
        self.batch, self.poll, self.retention = batch, poll_seconds, retention_seconds
        self.idle_poll = max(idle_poll_seconds, poll_seconds)
        self._last_cleanup = 0.0
        # Fault injection (tests/eventfaults): SIGKILL this process after publishing a batch,
        # before marking it sent. Only settable where the settings allow fault injection.
        self.crash_after_publish = False
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the round in flight (published and marked sent):
        a graceful stop publishes nothing twice. Cancelling the task cuts the round instead."""
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a stop is asked for meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def message(self, row: Any) -> Outgoing:
        data = orjson.Fragment(self.render(row["type"], row["data"]))
        event_id = str(row["event_id"])
        return Outgoing(
            row["type"],
            encode(cloudevent(self.service, row, data, event_id=event_id)),
            event_id,
            self.service,
        )

    async def publish_once(self, publisher: Publisher) -> int:
        """One round: publish what can be published now. Returns how many were sent."""
        async with self.db.acquire() as conn, conn.transaction():
            rows = sorted(await conn.fetch(CLAIM, self.batch), key=lambda r: r["id"])
            if not rows:
                return 0
            messages = [self.message(row) for row in rows]  # a row that cannot render: none
            # In id order, in one write; any unconfirmed: roll back, the claim is retried.
            await publisher.publish(messages)
            for event_type, count in Counter(row["type"] for row in rows).items():
                EVENTS_PUBLISHED.labels(event_type).inc(count)
            if self.crash_after_publish:  # before the commit of the claim's mark
                os.kill(os.getpid(), signal.SIGKILL)
        return len(rows)

    async def observe(self) -> None:
        """Backlog gauges; and, at most hourly, delete rows sent longer ago than retention."""
        async with self.db.acquire() as conn:
            count, age = await conn.fetchrow(BACKLOG)
            OUTBOX_BACKLOG.labels(self.service).set(count)
            OUTBOX_OLDEST_AGE.labels(self.service).set(float(age or 0))
            if time.monotonic() - self._last_cleanup > 3600:
                self._last_cleanup = time.monotonic()
                await conn.execute(
                    "DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)",
                    self.retention,
                )

    async def run(self) -> None:
        """Relay until :meth:`stop` (after the round in flight) or cancelled (the round cut),
        reconnecting with backoff while the broker is away."""
        import aiormq  # loaded with aio-pika, which connect() imports

        delay = 0.5
        while not self._stopping.is_set():
            try:
                connection = await self.topology.connect()
                async with connection:
                    channel = await connection.channel(publisher_confirms=True)
                    await self.topology.declare_exchange(channel)
                    underlay = await channel.get_underlay_channel()
                    assert isinstance(underlay, aiormq.Channel)  # aio-pika's own, always
                    publisher = ConfirmingPublisher(underlay, self.topology.exchange)
                    log.info("relay connected", exchange=self.topology.exchange)
                    delay = 0.5
                    next_observe, wait = 0.0, self.poll
                    while not self._stopping.is_set():
                        sent = await self.publish_once(publisher)
                        if time.monotonic() >= next_observe:
                            await self.observe()
                            next_observe = time.monotonic() + 5
                        wait = self.poll if sent else min(wait * 2, self.idle_poll)
                        if sent < self.batch:
                            await self._pause(wait)
                    return
            except asyncio.CancelledError:
                raise
            except broker_down() as exc:
                log.warning("broker unavailable; events wait in the outbox", error=repr(exc))
            except Exception as exc:  # the database away, or a bug: keep the relay alive
                log.warning("relay round failed", error=repr(exc))
            with contextlib.suppress(Exception):
                await self.observe()
            await self._pause(delay * (1 + random.random() / 2))  # noqa: S311 - jitter
            delay = min(delay * 2, 30.0)


def build_relay(
    settings: ServiceSettings, db: Database, render: Render, *, service: str
) -> Relay | None:
    topology = Topology.from_settings(settings)
    if topology is None:
        return None
    return Relay(
        db,
        topology,
        service=service,
        render=render,
        batch=settings.relay_batch,
        poll_seconds=settings.relay_poll_seconds,
        idle_poll_seconds=settings.relay_idle_poll_seconds,
        retention_seconds=settings.outbox_retention_hours * 3600,
    )


def render_as(model: type[BaseModel]) -> Render:
    """A renderer that gives every event's data the REST shape of ``model`` (XRead): the
    model's own validator and serializer (pydantic-core), straight from the stored JSON text
    to the JSON of the REST resource, without Python dicts or a model instance between."""
    validator, serializer = model.__pydantic_validator__, model.__pydantic_serializer__

    def render(_type: str, data: str | dict[str, Any]) -> bytes:
        value = (
            validator.validate_json(data)
            if isinstance(data, str)
            else validator.validate_python(data)
        )
        return serializer.to_json(value)

    return render


def crash_after_publish(settings: ServiceSettings, service: str) -> bool:
    """Fault injection (tests/eventfaults): ``SHOP_FAULT_RELAY_CRASH_AFTER_PUBLISH`` names the
    services whose relay dies after publishing (comma-separated; ``1``: every one), and only
    where the settings allow fault injection (never in production)."""
    wanted = os.environ.get("SHOP_FAULT_RELAY_CRASH_AFTER_PUBLISH", "")
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    return settings.fault_injection and bool(names & {"1", service})


def relay_extension(service: str, render: Render) -> Callable[[Any], Any]:
    """An app extension (``create_service_app(extensions=...)``) that relays the service's
    outbox for the app's lifetime when ``relay_in_process`` is set; by default it does nothing
    and the relay is its own process (``shop relay``, ``shop.common.events.sidecar``). Without
    a broker it says so once and keeps the events."""

    @asynccontextmanager
    async def extension(app: Any) -> AsyncIterator[None]:
        settings: ServiceSettings = app.state.settings
        if not settings.relay_in_process:
            yield
            return
        relay = build_relay(settings, app.state.db, render, service=service)
        if relay is None:
            log.warning("no broker configured (SHOP_AMQP_URL): events are kept in the outbox")
            yield
            return
        relay.crash_after_publish = crash_after_publish(settings, service)
        async with running(relay.run(), f"{service}-relay"):
            yield

    return extension


@asynccontextmanager
async def running(task_body: Any, name: str) -> AsyncIterator[None]:
    """Run a background coroutine (a relay or a consumer) for the lifetime of the block."""
    task = asyncio.create_task(task_body, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
