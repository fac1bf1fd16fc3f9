"""The connection to RabbitMQ and the topology of the contract (EVENTS.md).

``Topology`` names everything from the settings: the durable topic exchange (``shop.events``)
and, per consumer, its queue ``shop.<consumer>``, a retry queue ``shop.<consumer>.retry``
(messages wait there for their per-message TTL, then dead-letter back into the queue) and the
dead-letter queue ``shop.<consumer>.dlq``.

aio-pika is imported at the first connection, not with this module: a service process that
neither relays nor consumes (no broker configured, or the relay in its own process, the
default) never loads it (about 3 MB of RSS; docs/performance.md, "Memory").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shop.common.settings import ServiceSettings

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange


@functools.cache
def broker_down() -> tuple[type[BaseException], ...]:
    """What a lost or refused broker connection raises (aio-pika wraps most in AMQPError); an
    ``except broker_down():`` clause is evaluated only when something was raised."""
    import aio_pika

    return (OSError, TimeoutError, ConnectionError, aio_pika.exceptions.AMQPError)


@dataclass(frozen=True)
class Topology:
    url: str
    exchange: str = "shop.events"
    queue_prefix: str = "shop."

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Topology | None:
        """None when no broker is configured."""
        if settings.amqp_url is None:
            return None
        return cls(
            settings.amqp_url.get_secret_value(), settings.amqp_exchange, settings.amqp_queue_prefix
        )

    def queue(self, consumer: str) -> str:
        return f"{self.queue_prefix}{consumer}"

    async def connect(self) -> AbstractConnection:
        import aio_pika

        return await aio_pika.connect(self.url, timeout=5)

    async def declare_exchange(self, channel: AbstractChannel) -> AbstractExchange:
        import aio_pika

        return await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )


async def delete_topology(topology: Topology, consumers: list[str]) -> None:
    """Remove the exchange and the consumers' queues (tests' own names; never production)."""
    connection = await topology.connect()
    async with connection:
        channel = await connection.channel()
        for consumer in consumers:
            for suffix in ("", ".retry", ".dlq"):
                await channel.queue_delete(f"{topology.queue(consumer)}{suffix}")
        await channel.exchange_delete(topology.exchange)
