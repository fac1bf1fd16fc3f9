"""The four services as real processes, each with its relay process (``shop relay SERVICE``,
as the Deployments' relay sidecars), publishing through RabbitMQ via a proxy the test cuts.

The services reach the broker only through ``tests.eventfaults.proxy.Proxy``, so "the broker is
stopped" is the proxy going down: the machine's broker, which others share, is never touched.
A spy queue, connected straight to the broker, records everything published on the run's own
exchange (``amqp_names``), so runs never meet.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import orjson
import pytest

from shop.common.auth import SigningKeys, issue_access_token
from shop.common.events.broker import Topology, delete_topology
from shop.devtools.postgres import Server
from tests.conftest import _databases
from tests.eventfaults.proxy import Proxy
from tests.harness import Platform, started

ADMIN_PASSWORD = "eventfaults-admin-password"
SERVICE_SECRET = secrets.token_urlsafe(32)


@dataclass
class EventPlatform(Platform):
    """The harness's platform with every relay, reaching the broker through ``proxy``."""

    proxy: Proxy | None = None
    topology: Topology | None = None  # straight to the broker (the spy's)

    async def drained(self, service: str) -> None:
        """Wait until the service's outbox has nothing unsent (its relay has caught up)."""

        async def empty() -> bool:
            rows = await self.sql(service, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
            return rows[0]["n"] == 0

        await self.until(empty, f"the {service} outbox to be drained")


class Spy:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.bodies: list[dict[str, Any]] = []

    async def start(self) -> None:
        self.connection = await self.topology.connect()
        channel = await self.connection.channel()
        exchange = await self.topology.declare_exchange(channel)
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on)

    async def _on(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.bodies.append(orjson.loads(message.body))
        await message.ack()

    async def stop(self) -> None:
        await self.connection.close()

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b["type"] == type_]


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture(scope="package")
def broker_names() -> dict[str, str]:
    run = secrets.token_hex(4)
    return {"amqp_exchange": f"shop.events.f{run}", "amqp_queue_prefix": f"shop.f{run}."}


@pytest.fixture(scope="package")
def event_database_urls(pg_server: Server) -> Iterator[dict[str, str]]:
    """Four databases of this package's own. Sharing the e2e suite's, the fault tests met
    what it left: its API fuzzing releases reservations of order ids no order has yet, each a
    tombstone that refuses the stock of the real order of that id when it comes (the SMTP
    outage test's ~1,000 orders reached them, and their sagas could never release)."""
    yield from _databases(pg_server)


@pytest.fixture(scope="package")
def event_platform(
    event_database_urls: dict[str, str],
    amqp_url: str,
    broker_names: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EventPlatform]:
    target = urlsplit(amqp_url)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5672)
    proxy.up()
    topology = Topology(amqp_url, broker_names["amqp_exchange"], broker_names["amqp_queue_prefix"])
    try:
        with started(
            tmp_path_factory,
            database_urls=event_database_urls,
            admin_password=ADMIN_PASSWORD,
            service_token_secret=SERVICE_SECRET,
            extra={
                "SHOP_AMQP_URL": _via(amqp_url, proxy.port),
                "SHOP_AMQP_EXCHANGE": broker_names["amqp_exchange"],
                "SHOP_AMQP_QUEUE_PREFIX": broker_names["amqp_queue_prefix"],
                "SHOP_RELAY_POLL_SECONDS": "0.05",
                "SHOP_FAULT_INJECTION": "true",
                "SHOP_SAGA_LEASE_SECONDS": "3",
                "SHOP_DB_POOL_MIN": "1",
                "SHOP_DB_POOL_MAX": "5",
            },
            restartable=True,
            relays=True,
            kind=EventPlatform,
            stop_timeout=5,
            proxy=proxy,
            topology=topology,
        ) as platform:
            yield platform
    finally:
        proxy.close()
        asyncio.run(delete_topology(topology, ["orders"]))  # leave nothing behind


@pytest.fixture
async def spy(event_platform: EventPlatform) -> AsyncIterator[Spy]:
    if event_platform.proxy.server is None:
        event_platform.proxy.up()
    watcher = Spy(event_platform.topology)
    await watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()
        await event_platform.close_sql()


def user_token(event_platform: EventPlatform, user_id: int, role: str = "customer") -> str:
    pem = (Path(event_platform.envs["users"]["SHOP_JWT_PRIVATE_KEY_FILE"])).read_text()
    return issue_access_token(
        SigningKeys(pem), user_id=user_id, role=role, issuer="shop-users", audience="shop", ttl=300
    )
