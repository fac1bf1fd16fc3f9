"""Idempotent consumers: manual acks, bounded prefetch, retries with backoff, a DLQ each.

A ``Consumer`` owns a durable queue ``shop.<name>`` bound to its routing keys (or, with
``exclusive``, an exclusive auto-delete queue for this replica alone, for caches). For each
message, in one database transaction: insert ``(consumer, event id)`` into the inbox; if it
was already there the event was handled and is only acked; else the handler runs on the same
connection, and the commit makes its database effects and the inbox row one. Only then is the
message acked, so a consumer killed mid-handling leaves the message to be redelivered and the
rolled-back transaction to be done again, once. Acks go in batches (``_Acks``: one
``multiple`` ack for the deliveries handled so far), so a crash leaves up to ``ack_every``
handled deliveries unacked; their redeliveries find the inbox row and are only acked. A
consumer without a database gets its
inbox from an ``Inbox`` (``RedisInbox``, events/inbox.py): a claim before the handler, released
if the handler fails.

A failing handler's message is republished (confirmed) to ``shop.<name>.retry`` with a TTL of
``retry_base * 2**attempt`` seconds and an ``x-attempt`` header, from where it dead-letters
back into the queue; after ``max_attempts`` it goes to ``shop.<name>.dlq``, as does a message
that is not a CloudEvent at all. Either way the original is acked: a poison message never
blocks its queue, and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter

from shop.common.db import Connection, Database
from shop.common.events.broker import Topology, broker_down
from shop.common.logging import get_logger
from shop.common.metrics import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED, EVENTS_RETRIED

if TYPE_CHECKING:  # aio-pika itself is imported once connected (events/broker.py)
    import aiormq
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
    from aiormq.abc import DeliveredMessage

log = get_logger("shop.events.consumer")
tracer = trace.get_tracer("shop.events")
_PROPAGATOR = TraceContextTextMapPropagator()


def _tracing() -> bool:
    """Whether a tracer provider is installed (``tracing_sdk.process_provider``, only where an
    OTLP endpoint is configured). Without one every span is a no-op: for an event without a
    ``traceparent`` (its writer traced nothing) the context, the propagator and the no-op span,
    3% of the worker's CPU per mail (docs/events.md, "Issue 31, fifth round"), are skipped."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@functools.cache
def _consumed(consumer: str, outcome: str) -> Counter:
    """The ``shop_events_consumed_total`` child of a consumer and outcome, looked up once."""
    return EVENTS_CONSUMED.labels(consumer, outcome)


@dataclass(frozen=True, slots=True)
class Event:
    """A received CloudEvent (EVENTS.md)."""

    id: str
    type: str
    source: str
    subject: str
    time: str
    data: dict[str, Any]
    traceparent: str | None = None

    @classmethod
    def parse(cls, body: bytes) -> Event:
        """Raises ValueError (or KeyError/TypeError) for anything that is not one."""
        raw = orjson.loads(body)
        if not isinstance(raw, dict) or raw.get("specversion") != "1.0":
            raise ValueError("not a CloudEvent 1.0")
        data = raw["data"]
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        return cls(
            id=str(raw["id"]),
            type=str(raw["type"]),
            source=str(raw["source"]),
            subject=str(raw["subject"]),
            time=str(raw["time"]),
            data=data,
            traceparent=raw.get("traceparent"),
        )


# Work a handler leaves for after its transaction commits (calls to other services): it runs
# once the inbox row is committed, before the ack; if it fails, the handler's committed state
# must let someone finish it (the orders consumer leaves a saga lease for recovery).
AfterCommit = Callable[[], Awaitable[None]]
# The handler gets the event and the open transaction's connection (None without a database).
Handler = Callable[[Event, Connection | None], Awaitable[AfterCommit | None]]


class Inbox(Protocol):
    """The record of handled event ids for a consumer without a database (events/inbox.py)."""

    async def claim(self, consumer: str, event_id: str) -> bool:
        """True if the event is to be handled now; False if it was handled already."""

    async def release(self, consumer: str, event_id: str) -> None:
        """Forget a claim whose handler failed, so that the retry handles the event."""


class Delivered(Protocol):
    """What the consumer reads of a delivery and does with it (a ``Delivery``, or aio-pika's
    ``IncomingMessage``)."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Any: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...

    async def ack(self, multiple: bool = False) -> None: ...

    async def reject(self, requeue: bool = True) -> None: ...


class Delivery:
    """One delivery as aiormq hands it over, settled on its channel by its delivery tag."""

    __slots__ = ("_channel", "_message", "body")

    def __init__(self, channel: aiormq.abc.AbstractChannel, message: DeliveredMessage) -> None:
        self._channel, self._message, self.body = channel, message, message.body

    @property
    def headers(self) -> Any:
        return self._message.header.properties.headers

    @property
    def message_id(self) -> str | None:
        return self._message.header.properties.message_id

    @property
    def content_type(self) -> str | None:
        return self._message.header.properties.content_type

    @property
    def type(self) -> str | None:
        return self._message.header.properties.message_type

    @property
    def delivery_tag(self) -> int:
        tag = self._message.delivery_tag
        assert tag is not None  # a basic.deliver always has one
        return tag

    async def ack(self, multiple: bool = False) -> None:
        await self._channel.basic_ack(self.delivery_tag, multiple=multiple)

    async def reject(self, requeue: bool = True) -> None:
        await self._channel.basic_reject(self.delivery_tag, requeue=requeue)


class PermanentError(Exception):
    """The handler can never succeed for this event: to the DLQ without more attempts."""


@dataclass
class Consumer:
    name: str
    keys: Sequence[str]
    handler: Handler
    topology: Topology
    db: Database | None = None
    inbox: Inbox | None = None  # used only without ``db`` (whose inbox is a table)
    exclusive: bool = False
    prefetch: int = 16
    max_attempts: int = 5
    retry_base: float = 1.0
    retry_cap: float | None = None  # the longest wait between attempts; None: doubling only
    # Acks: one ``multiple`` ack for the deliveries handled so far, after ``ack_every`` of
    # them or ``ack_delay`` seconds after the first not yet acked (class _Acks).
    ack_every: int = 8
    ack_delay: float = 0.05
    _channel: AbstractChannel | None = field(default=None, init=False, repr=False)
    ready: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def queue_name(self) -> str:
        return self.topology.queue(self.name)

    async def declare(self, channel: AbstractChannel) -> AbstractQueue:
        exchange = await self.topology.declare_exchange(channel)
        if self.exclusive:  # one per replica, gone with it; the broker names it
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        else:
            await channel.declare_queue(f"{self.queue_name}.dlq", durable=True)
            await channel.declare_queue(
                f"{self.queue_name}.retry",
                durable=True,
                arguments={
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.queue_name,
                },
            )
            queue = await channel.declare_queue(
                self.queue_name,
                durable=True,
                arguments={
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": f"{self.queue_name}.dlq",
                },
            )
        for key in self.keys:
            await queue.bind(exchange, routing_key=key)
        return queue

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff while the broker is away."""
        delay = 0.5
        while True:
            try:
                connection = await self.topology.connect()
                async with connection:
                    channel = await connection.channel(publisher_confirms=True)
                    await channel.set_qos(prefetch_count=self.prefetch)
                    self._channel = channel
                    queue = await self.declare(channel)
                    log.info("consumer started", consumer=self.name, queue=queue.name)
                    delay = 0.5
                    self.ready.set()
                    await self.consume(channel, queue.name)
            except asyncio.CancelledError:
                raise
            except broker_down() as exc:
                log.warning("broker unavailable", consumer=self.name, error=repr(exc))
            except Exception as exc:  # the database away: the unacked message comes back
                log.warning("consumer failed", consumer=self.name, error=repr(exc))
            self.ready.clear()
            await asyncio.sleep(delay * (1 + random.random() / 2))  # noqa: S311 - jitter
            delay = min(delay * 2, 30.0)

    async def consume(self, channel: AbstractChannel, queue: str) -> None:
        """Handle the queue's deliveries, one at a time in the order they come, until the
        channel closes. Straight from aiormq's channel: aio-pika's consumer wraps each
        delivery in a task of its own and an ``IncomingMessage`` (most of a delivery's cost in
        the worker, docs/events.md, "Issue 31"); here a delivery is a ``Delivery`` in a queue."""
        underlay = await channel.get_underlay_channel()
        deliveries: asyncio.Queue[Delivery | None] = asyncio.Queue()

        async def deliver(message: DeliveredMessage) -> None:
            deliveries.put_nowait(Delivery(underlay, message))

        closing = underlay.closing
        closing.add_done_callback(lambda _: deliveries.put_nowait(None))
        acks = _Acks(min(self.ack_every, max(self.prefetch // 2, 1)), self.ack_delay)
        tracing = _tracing()  # the process's provider is installed before its consumers run
        try:
            await underlay.basic_consume(queue, deliver, no_ack=False)
            while (message := await deliveries.get()) is not None:
                if await self.process(message, tracing=tracing):
                    await acks.done(message)
        finally:
            await acks.flush()  # best effort: an unacked one is redelivered, deduplicated

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """Handle one delivery and settle it alone (``run`` acks several at once instead)."""
        if await self.process(message):
            await message.ack()

    async def process(self, message: Delivered, *, tracing: bool | None = None) -> bool:
        """Handle one delivery. True: it is done with (handled, a duplicate, or republished,
        confirmed, to the retry queue or the DLQ) and is to be acked; False: it was settled
        here already (rejected: not a CloudEvent). ``tracing``: whether a tracer provider is
        installed, if the caller knows (else looked up)."""
        try:
            event = Event.parse(message.body)
        except (ValueError, KeyError, TypeError):
            log.warning("not a CloudEvent: dead-lettered", consumer=self.name)
            EVENTS_DEAD_LETTERED.labels(self.name).inc()
            await message.reject(requeue=False)  # the queue's dead-letter target: the DLQ
            return False
        try:
            if tracing is None:
                tracing = _tracing()
            traced = tracing or event.traceparent  # else nothing to join or record
            outcome = await (self.traced(event, tracing=tracing) if traced else self.handle(event))
        except Exception as exc:
            await self.retry_or_dead_letter(message, event, exc)
            return True
        _consumed(self.name, outcome).inc()
        return True

    async def traced(self, event: Event, *, tracing: bool) -> str:
        """``handle`` in the context of the span that wrote the event (the handler's logs
        carry its trace id), in a consumer span of its own where a provider is installed."""
        parent = (
            _PROPAGATOR.extract({"traceparent": event.traceparent})
            if event.traceparent
            else otel_context.Context()
        )
        token = otel_context.attach(parent)
        try:
            if not tracing:
                return await self.handle(event)
            with tracer.start_as_current_span(
                f"{self.name} {event.type}", kind=trace.SpanKind.CONSUMER
            ):
                return await self.handle(event)
        finally:
            otel_context.detach(token)

    async def handle(self, event: Event) -> str:
        """Run the handler once per event id; returns ``handled`` or ``duplicate``."""
        if self.db is None:
            if self.inbox is not None and not await self.inbox.claim(self.name, event.id):
                return "duplicate"
            try:
                after = await self.handler(event, None)
            except BaseException:
                if self.inbox is not None:
                    await self.inbox.release(self.name, event.id)
                raise
        else:
            async with self.db.acquire() as conn, conn.transaction():
                first = await conn.fetchval(
                    "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2::uuid)"
                    " ON CONFLICT DO NOTHING RETURNING true",
                    self.name,
                    event.id,
                )
                if not first:
                    return "duplicate"
                after = await self.handler(event, conn)
        if after is not None:
            try:
                await after()
            except Exception as exc:  # committed already: retrying the event would do nothing
                log.warning("after-commit work failed", consumer=self.name, error=repr(exc))
        return "handled"

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: ``retry_base`` doubled per attempt, capped."""
        wait: float = self.retry_base * 2.0 ** (attempt - 1)
        return wait if self.retry_cap is None else min(wait, self.retry_cap)

    async def retry_or_dead_letter(self, message: Delivered, event: Event, exc: Exception) -> None:
        previous = (message.headers or {}).get("x-attempt", 0)
        attempt = (previous if isinstance(previous, int) else 0) + 1
        channel = self._channel
        assert channel is not None
        permanent = isinstance(exc, PermanentError)
        if self.exclusive or permanent or attempt >= self.max_attempts:
            log.warning(
                "event dead-lettered", consumer=self.name, event_id=event.id, error=repr(exc)
            )
            EVENTS_DEAD_LETTERED.labels(self.name).inc()
            if self.exclusive:  # a cache's queue has no DLQ: the next event fixes it
                return  # acked by the caller
            target, expiration = f"{self.queue_name}.dlq", None
        else:
            log.info("event retried", consumer=self.name, event_id=event.id, attempt=attempt)
            EVENTS_RETRIED.labels(self.name).inc()
            target, expiration = f"{self.queue_name}.retry", self.backoff(attempt)
        import aio_pika  # loaded already: a message came in over it

        await channel.default_exchange.publish(
            aio_pika.Message(
                message.body,
                message_id=message.message_id,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                type=message.type,
                headers={
                    **(message.headers or {}),
                    "x-attempt": attempt,
                    "x-error": repr(exc)[:500],
                },
                expiration=expiration,
            ),
            routing_key=target,
        )  # confirmed: the caller acks the original


class _Acks:
    """The acks of one channel's deliveries, several in one frame.

    The consumer handles its deliveries one at a time, in the order they came; once one is
    done with, every earlier one is too, so acking its tag with ``multiple`` (all up to it on
    the channel, RabbitMQ's semantics) settles them all: one ack frame per ``every``
    deliveries (or per ``delay`` seconds while fewer come), not one per delivery. A rejected
    delivery (not a CloudEvent) is settled already and is not counted. A worker that dies
    before an ack leaves up to ``every`` handled deliveries unacked: they are redelivered and
    the inbox finds them handled (``duplicate``), as for the one in flight before. ``every``
    stays below the prefetch, so the broker keeps the next deliveries coming.
    """

    def __init__(self, every: int, delay: float) -> None:
        self.every, self.delay = max(every, 1), delay
        self._last: Delivered | None = None
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    async def done(self, message: Delivered) -> None:
        self._last, self._count = message, self._count + 1
        if self._count >= self.every:
            await self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._last is not None and self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await self._ack()
        except Exception as exc:  # the channel gone: the deliveries come back, deduplicated
            log.warning("ack failed", error=repr(exc))
        finally:
            self._flushing = None

    async def _ack(self) -> None:
        last, self._last, self._count = self._last, None, 0
        if last is not None:
            await last.ack(multiple=True)

    async def flush(self) -> None:
        """Ack every delivery done with (and cancel the timer): before a batch's end, or
        when the channel's consumption stops."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        try:
            await self._ack()
        except Exception as exc:
            log.warning("ack failed", error=repr(exc))
