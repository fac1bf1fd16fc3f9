"""The notification worker's process: the ``notifications`` consumer, metrics on its port."""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import start_http_server

from shop.common.auth import ServiceTokens
from shop.common.events.broker import Topology
from shop.common.events.consumer import Consumer
from shop.common.events.inbox import RedisInbox
from shop.common.http import ServiceClient
from shop.common.logging import configure_logging, get_logger
from shop.common.loop import run
from shop.common.metrics import EVENTS_INBOX_UP
from shop.common.tracing import traced_process
from shop.notifications.service import KEYS, Notifier
from shop.notifications.settings import NotificationsSettings

log = get_logger("shop.notifications")
CONSUMER = "notifications"


def build_inbox(settings: NotificationsSettings) -> RedisInbox | None:
    if not settings.redis_url:
        return None
    return RedisInbox.from_url(
        settings.redis_url,
        retention_seconds=settings.inbox_retention_hours * 3600,
        prefix=settings.inbox_key_prefix,
    )


def build_consumer(
    settings: NotificationsSettings, users: ServiceClient, inbox: RedisInbox | None = None
) -> Consumer | None:
    topology = Topology.from_settings(settings)
    if topology is None:
        return None
    return Consumer(
        name=CONSUMER,
        keys=KEYS,
        handler=Notifier(settings, users),
        topology=topology,
        inbox=inbox,
        prefetch=settings.amqp_prefetch,
        max_attempts=settings.event_max_attempts,
        retry_base=settings.event_retry_base_seconds,
        retry_cap=settings.event_retry_cap_seconds,
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
    inbox = build_inbox(settings)
    consumer = build_consumer(settings, users, inbox)
    if consumer is None:
        log.warning("no broker configured (SHOP_AMQP_URL): nothing to notify about")
        await users.aclose()
        return
    start_http_server(settings.port, addr=settings.host)
    if inbox is None:
        EVENTS_INBOX_UP.labels(CONSUMER).set(0)
        log.warning("no inbox (SHOP_REDIS_URL unset): emails are sent at least once")
    elif await inbox.available(CONSUMER):
        log.info("inbox in Redis: a redelivered event sends no second email")
    else:
        log.warning("inbox Redis unreachable: emails are sent at least once until it answers")
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
        if isinstance(consumer.handler, Notifier):
            await consumer.handler.sender.close()
        await users.aclose()
        if inbox is not None:
            await inbox.aclose()
        log.info("notifications stopped")


async def serve_traced(settings: NotificationsSettings) -> None:
    """``serve``, its consumer's spans exported when tracing is configured (OTEL_*)."""
    async with traced_process(settings):
        await serve(settings)


def main() -> None:
    run(serve_traced(NotificationsSettings()))
