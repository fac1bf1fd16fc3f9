"""The order service's app factory: the saga, its clients and the recovery worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from shop.common.app import create_service_app
from shop.orders.api import router
from shop.orders.recovery import recovery_loop
from shop.orders.service import build_saga
from shop.orders.settings import OrdersSettings


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
        try:
            yield
        finally:
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
        extensions=[orders_runtime],
    )
