"""Catalogue caches follow the catalogue's edits on every replica.

Each replica of the product service consumes on an exclusive, auto-delete queue of its own
(EVENTS.md: a consumer that must see every event on every replica), so a write on one replica
invalidates the cache of all of them. The cache is anything with ``invalidate`` (the capacity
work's ``shop.products.cache``); the app passes its cache in as ``app.state.catalogue_cache``.
A cache needs no inbox: invalidating twice is harmless. While the broker is away, entries live
until their own expiry (if the cache has one), which then bounds staleness without events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI

from shop.common.db import Connection
from shop.common.events.broker import Topology
from shop.common.events.consumer import AfterCommit, Consumer, Event, Handler
from shop.common.events.relay import running
from shop.common.settings import ServiceSettings

# The edits only. A stock change (one per line of every order) is not followed here: its
# writer drops the product's page in Redis and on every replica through pub/sub, and the
# cache's bound (a page at most its TTL stale, also when that message is lost) holds without
# events; following it cost every replica one delivery per line (docs/performance.md).
KEYS = ("shop.product.created", "shop.product.updated", "shop.product.deleted")


class CatalogueCache(Protocol):
    async def invalidate(self, product_id: int | None) -> None:
        """Forget one product (``None``: every list page)."""


def invalidating(cache: CatalogueCache) -> Handler:
    """A catalogue edit drops the product's page and every list page (the cache's contract,
    shop.products.cache). The writer has done the same already, through Redis: this is the
    durable second path, for a replica that missed it. A stock change (every reservation and
    release) is not bound to the queue at all (``KEYS``); if one arrives, it drops only the
    product's page, as the writer does."""

    async def on_product(event: Event, _conn: Connection | None) -> AfterCommit | None:
        await cache.invalidate(int(event.subject))
        if event.type in KEYS:
            await cache.invalidate(None)  # a product's name or price shows on list pages
        return None

    return on_product


def cache_consumer(settings: ServiceSettings, cache: CatalogueCache) -> Consumer | None:
    topology = Topology.from_settings(settings)
    if topology is None:
        return None
    return Consumer(
        name="products.cache",
        keys=KEYS,
        handler=invalidating(cache),
        topology=topology,
        exclusive=True,
        prefetch=settings.amqp_prefetch,
    )


@asynccontextmanager
async def follow_catalogue(app: FastAPI) -> AsyncIterator[None]:
    """App extension: consume for ``app.state.catalogue_cache`` if the app has a cache."""
    cache: Any = getattr(app.state, "catalogue_cache", None)
    consumer = None if cache is None else cache_consumer(app.state.settings, cache)
    if consumer is None:
        yield
        return
    async with running(consumer.run(), "catalogue-cache"):
        yield
