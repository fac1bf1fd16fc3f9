"""The payment service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shop.common.app import create_service_app
from shop.common.events.relay import relay_extension, render_as
from shop.common.events.sidecar import RelaySource
from shop.payments.api import LEAN_ROUTES, router
from shop.payments.provider import PaymentProvider, SimulatedProvider
from shop.payments.schemas import PaymentRead
from shop.payments.settings import PaymentsSettings

# The events' data in the REST shape of PaymentRead: for the in-process relay and `shop relay`.
RENDER = render_as(PaymentRead)


def relay_source(settings: PaymentsSettings | None = None) -> RelaySource:
    """What `shop relay payments` relays: this service's outbox, with its settings."""
    return RelaySource("payments", settings or PaymentsSettings(), RENDER)


def create_app(
    settings: PaymentsSettings | None = None, *, provider: PaymentProvider | None = None
) -> FastAPI:
    settings = settings or PaymentsSettings()

    @asynccontextmanager
    async def payments_runtime(app: FastAPI) -> AsyncIterator[None]:
        app.state.provider = provider or SimulatedProvider(settings.decline_above)
        yield

    return create_service_app(
        settings,
        title="shop payment service",
        description="Payments through a provider interface; refunds.",
        routers=[router],
        lean_routes=LEAN_ROUTES,  # the order path's POST, before FastAPI's routes
        extensions=[payments_runtime, relay_extension("payments", RENDER)],
    )
