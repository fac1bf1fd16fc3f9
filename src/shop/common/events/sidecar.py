"""The relay as its own process (``shop relay SERVICE [SERVICE ...]``): what the Deployments'
``relay`` sidecar, ``shop run`` and the bench run, so the request-serving processes pay only
the outbox INSERT (docs/events.md, "The relay process").

For each service it builds that service's settings (environment, Vault, secret files, as the
service does), its own small database pool (Vault's dynamic credentials leased and renewed as
the service leases them) and a ``Relay``; they run until SIGTERM or SIGINT. A round in flight
then finishes (published and marked sent) before the process exits, within ``STOP_GRACE``
seconds; a round cut (SIGKILL, a broker that hangs past the grace) rolls back and the next
relay takes the rows again (at least once).

``/metrics`` (any path answers, as the notification worker's port) on ``relay_port``
(``SHOP_RELAY_PORT``, 9464): ``shop_outbox_backlog{service}``,
``shop_outbox_oldest_unsent_age_seconds{service}``, ``shop_events_published_total{type}``,
and the process's CPU and memory. Without a broker the process stays up and says so: the
events wait in the outbox, as they do with the service's in-process relay.

Several services in one process (``shop run``, the bench) each need their own database URL:
``SHOP_<SERVICE>_DATABASE_URL`` (``SHOP_ORDERS_DATABASE_URL``) overrides ``SHOP_DATABASE_URL``
for that service; one service (a sidecar) reads ``SHOP_DATABASE_URL`` like its service.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from prometheus_client import start_http_server
from pydantic import SecretStr

from shop.common.credentials import VaultRuntime
from shop.common.db import Database
from shop.common.events.relay import Relay, Render, build_relay, crash_after_publish
from shop.common.logging import configure_logging, get_logger
from shop.common.loop import run
from shop.common.settings import ServiceSettings

log = get_logger("shop.events.relay")
# A relay holds one connection per round (its claim transaction) and one for the backlog
# gauges: two are enough, and keep the sidecar's share of PostgreSQL's connections small.
POOL_MAX = 2
# How long a stopping relay waits for its round in flight (one claim, its publishes' confirms
# and the commit: milliseconds) before cutting it; well inside Kubernetes' 30 s grace period.
STOP_GRACE = 10.0


@dataclass(frozen=True)
class RelaySource:
    """What relaying one service's outbox needs: its name (the CloudEvents ``source``), its
    settings (database, broker, relay tuning) and the renderer of its events' data."""

    service: str
    settings: ServiceSettings
    render: Render

    def with_own_database(self) -> RelaySource:
        """The source with ``SHOP_<SERVICE>_DATABASE_URL`` as its database, when that is set."""
        url = os.environ.get(f"SHOP_{self.service.upper()}_DATABASE_URL")
        if not url:
            return self
        settings = self.settings.model_copy(update={"database_url": SecretStr(url)})
        return RelaySource(self.service, settings, self.render)


async def _open(stack: AsyncExitStack, source: RelaySource) -> Relay | None:
    """The source's pool (closed by ``stack``) and relay; None without a broker."""
    settings = source.settings
    vault = await VaultRuntime.open(settings)
    stack.push_async_callback(vault.close)  # after the pool is closed: revoke the lease
    db = Database.for_service(
        settings,
        vault.database_url(settings.database_url.get_secret_value()),
        min_size=0,  # connects on first use: a database away at start-up is retried by run()
        max_size=POOL_MAX,
    )
    await db.connect()
    stack.push_async_callback(db.close)
    await stack.enter_async_context(vault.keep_database_fresh(db))
    relay = build_relay(settings, db, source.render, service=source.service)
    if relay is None:
        log.warning(
            "no broker configured (SHOP_AMQP_URL): events are kept in the outbox",
            relayed=source.service,
        )
        return None
    relay.crash_after_publish = crash_after_publish(settings, source.service)
    return relay


async def serve(sources: Sequence[RelaySource]) -> None:
    """Relay every source's outbox until SIGTERM/SIGINT; ``/metrics`` on the first source's
    ``relay_port`` and ``host``."""
    if not sources:
        raise ValueError("no service to relay")
    first = sources[0].settings
    configure_logging(
        service=first.service_name if len(sources) == 1 else "relay",
        pod=first.pod_name,
        level=first.log_level,
        json=first.log_json,
    )
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    async with AsyncExitStack() as stack:
        relays = [r for s in sources if (r := await _open(stack, s.with_own_database()))]
        start_http_server(first.relay_port, addr=first.host)
        tasks = [
            asyncio.create_task(relay.run(), name=f"{relay.service}-relay") for relay in relays
        ]
        log.info(
            "relay started",
            relayed=[s.service for s in sources],
            port=first.relay_port,
        )
        try:
            await stopped.wait()
            for relay in relays:
                relay.stop()
            if tasks:
                await asyncio.wait(tasks, timeout=STOP_GRACE)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    log.info("relay stopped")


def main(sources: Sequence[RelaySource]) -> None:
    run(serve(sources))
