"""The notification worker's process: the ``notifications`` consumer, metrics on its port."""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import start_http_server

from shop.common.auth import ServiceTokens
from shop.common.events.broker import Topology
from shop.common.events.consumer import Consumer
from shop.common.http import ServiceClient
from shop.common.logging import configure_logging, get_logger
from shop.notifications.service import KEYS, Notifier
from shop.notifications.settings import NotificationsSettings

log = get_logger("shop.notifications")
CONSUMER = "notifications"


def build_consumer(settings: NotificationsSettings, users: ServiceClient) -> Consumer | None:
    topology = Topology.from_settings(settings)
    if topology is None:
        return None
    return Consumer(
        name=CONSUMER,
        keys=KEYS,
        handler=Notifier(settings, users),
        topology=topology,
        prefetch=settings.amqp_prefetch,
        max_attempts=settings.event_max_attempts,
        retry_base=settings.event_retry_base_seconds,
    )


def users_client(settings: NotificationsSettings) -> ServiceClient:
    tokens = ServiceTokens(
        settings.service_name,
        settings.service_token_secret.get_secret_value(),
        settings.service_token_ttl_seconds,
    )
    return ServiceClient(
        target="user-service",
        base_url=settings.users_url,
        tokens=tokens,
        timeout=settings.http_timeout_seconds,
    )


async def serve(settings: NotificationsSettings) -> None:
    """Consume until SIGTERM/SIGINT; an in-flight message is left unacked (redelivered)."""
    configure_logging(
        service=settings.service_name,
        pod=settings.pod_name,
        level=settings.log_level,
        json=settings.log_json,
    )
    users = users_client(settings)
    consumer = build_consumer(settings, users)
    if consumer is None:
        log.warning("no broker configured (SHOP_AMQP_URL): nothing to notify about")
        await users.aclose()
        return
    start_http_server(settings.port, addr=settings.host)
    log.info("notifications started", smtp=f"{settings.smtp_host}:{settings.smtp_port}")
    task = asyncio.create_task(consumer.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await users.aclose()
        log.info("notifications stopped")


def main() -> None:
    asyncio.run(serve(NotificationsSettings()))
