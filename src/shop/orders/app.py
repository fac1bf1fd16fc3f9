"""The order service's app factory: the saga, its clients and the recovery worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from shop.common.app import create_service_app
from shop.common.auth import ServiceTokens
from shop.common.db import Database
from shop.common.http import Bulkhead, ServiceClient
from shop.common.logging import get_logger
from shop.orders.api import router
from shop.orders.clients import PaymentsClient, ProductsClient
from shop.orders.service import Saga
from shop.orders.settings import OrdersSettings

log = get_logger("shop.orders")


def build_saga(
    settings: OrdersSettings,
    db: Database,
    *,
    products_transport: httpx.AsyncBaseTransport | None = None,
    payments_transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Saga, list[ServiceClient]]:
    tokens = ServiceTokens(
        settings.service_name,
        settings.service_token_secret.get_secret_value(),
        settings.service_token_ttl_seconds,
    )

    def client(
        target: str, base_url: str, transport: httpx.AsyncBaseTransport | None
    ) -> ServiceClient:
        return ServiceClient(
            target=target,
            base_url=base_url,
            tokens=tokens,
            timeout=settings.http_timeout_seconds,
            retry_deadline=settings.retry_deadline_seconds,
            transport=transport,
        )

    products = client("product-service", settings.products_url, products_transport)
    payments = client("payment-service", settings.payments_url, payments_transport)
    saga = Saga(
        db=db,
        products=ProductsClient(products),
        payments=PaymentsClient(payments),
        lease_seconds=settings.saga_lease_seconds,
        bulkhead=Bulkhead(
            settings.saga_max_in_flight, settings.saga_queue_timeout_seconds, name="orders"
        ),
    )
    return saga, [products, payments]


async def recovery_loop(saga: Saga, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            outcomes = await saga.recover()
            if any(outcomes.values()):
                log.info("recovery pass", **outcomes)
        except Exception:
            log.exception("recovery pass failed")


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
