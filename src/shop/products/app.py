"""The product service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shop.common.app import create_service_app
from shop.common.events.relay import relay_extension, render_as
from shop.common.events.sidecar import RelaySource
from shop.products.api import LEAN_ROUTES, categories_router, reservations, router
from shop.products.cache import CatalogueCache
from shop.products.events import follow_catalogue
from shop.products.schemas import ProductRead
from shop.products.settings import ProductsSettings

# The events' data in the REST shape of ProductRead: for the in-process relay and `shop relay`.
RENDER = render_as(ProductRead)


def relay_source(settings: ProductsSettings | None = None) -> RelaySource:
    """What `shop relay products` relays: this service's outbox, with its settings."""
    return RelaySource("products", settings or ProductsSettings(), RENDER)


def create_app(settings: ProductsSettings | None = None) -> FastAPI:
    settings = settings or ProductsSettings()

    @asynccontextmanager
    async def catalogue_cache(app: FastAPI) -> AsyncIterator[None]:
        """The cache when a Redis is configured (and the cache is on); else reads go to
        PostgreSQL every time (``app.state.catalogue_cache`` is None)."""
        app.state.catalogue_cache = None
        if not (settings.catalogue_cache and settings.redis_url):
            yield
            return
        cache = CatalogueCache.from_url(
            settings.redis_url,
            prefix=settings.catalogue_cache_prefix,
            ttl=settings.catalogue_cache_ttl_seconds,
            list_ttl=settings.catalogue_list_ttl_seconds,
            near_entries=settings.catalogue_near_entries,
            near_bytes=settings.catalogue_near_max_bytes,
        )
        async with cache.running():
            app.state.catalogue_cache = cache
            yield

    return create_service_app(
        settings,
        title="shop product service",
        description="The product catalogue and its stock.",
        routers=[router, categories_router, reservations],
        lean_routes=LEAN_ROUTES,
        # The cache must be on app.state before follow_catalogue runs.
        extensions=[
            catalogue_cache,
            relay_extension("products", RENDER),
            follow_catalogue,
        ],
    )
