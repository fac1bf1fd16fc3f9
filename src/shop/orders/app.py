"""The order service's app factory: the saga, its clients and the recovery worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from shop.common.app import create_service_app
from shop.common.events.relay import relay_extension, render_as
from shop.common.events.sidecar import RelaySource
from shop.orders.api import LEAN_ROUTES, router
from shop.orders.events import build_consumer
from shop.orders.recovery import recovery_loop
from shop.orders.schemas import OrderEvent
from shop.orders.service import build_saga
from shop.orders.settings import OrdersSettings

if TYPE_CHECKING:
    import httpx  # transports from tests only: the service itself calls on aiohttp

# The events' data: the REST shape of OrderRead and the customer's contact (OrderEvent), for
# the in-process relay and `shop relay`.
RENDER = render_as(OrderEvent)


def relay_source(settings: OrdersSettings | None = None) -> RelaySource:
    """What `shop relay orders` relays: this service's outbox, with its settings."""
    return RelaySource("orders", settings or OrdersSettings(), RENDER)


def create_app(
    settings: OrdersSettings | None = None,
    *,
    products_transport: httpx.AsyncBaseTransport | None = None,
    payments_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or OrdersSettings()

    @asynccontextmanager
    async def orders_runtime(app: FastAPI) -> AsyncIterator[None]:
        saga, clients = build_saga(
            settings,
            app.state.db,
            products_transport=products_transport,
            payments_transport=payments_transport,
        )
        app.state.saga = saga
        worker = None
        if settings.recovery_enabled:
            worker = asyncio.create_task(recovery_loop(saga, settings.recovery_interval_seconds))
        refunds = build_consumer(settings, saga)  # the order follows its payment (events.py)
        consumer = None if refunds is None else asyncio.create_task(refunds.run())
        try:
            yield
        finally:
            if consumer is not None:
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            for client in clients:
                await client.aclose()

    return create_service_app(
        settings,
        title="shop order service",
        description="Orders, placed by a saga across the product and payment services.",
        routers=[router],
        lean_routes=LEAN_ROUTES,  # the order path's POST, before FastAPI's routes
        extensions=[orders_runtime, relay_extension("orders", RENDER)],
    )
