"""Use cases of the product service.

Catalogue reads go through the catalogue cache when there is one (``cache`` is None when it
is off); every write invalidates what it changed after it committed (see shop.products.cache
for the bound). Reservations read and change stock in PostgreSQL only, never from the cache.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shop.common.db import Database
from shop.common.errors import Conflict, NotFound
from shop.common.metrics import STOCK_OUTS
from shop.products.cache import CachedBody, CatalogueCache
from shop.products.db import ProductRepository, ReservationRepository, SearchQuery
from shop.products.schemas import (
    ProductCreate,
    ProductUpdate,
    StockUpdate,
    categories_json,
    page_json,
    product_json,
)


def _missing(product_id: int) -> NotFound:
    return NotFound(f"Product {product_id} does not exist.")


async def get_product(*, db: Database, product_id: int) -> Any:
    async with db.acquire() as conn:
        product = await ProductRepository(conn).get(product_id)
    if product is None:
        raise _missing(product_id)
    return product


async def product_body(
    *, db: Database, cache: CatalogueCache | None, product_id: int
) -> CachedBody:
    """A product's page as sent (JSON bytes and ETag); NotFound if there is no such product."""

    async def load() -> bytes:
        return product_json(await get_product(db=db, product_id=product_id))

    if cache is None:
        return CachedBody.of(await load())
    return await cache.product(product_id, load)


async def page_body(
    *, db: Database, cache: CatalogueCache | None, limit: int, offset: int, category: str | None
) -> CachedBody:
    """A list page as sent (JSON bytes and ETag)."""

    async def load() -> bytes:
        rows, total = await list_products(db=db, limit=limit, offset=offset, category=category)
        return page_json(rows, total=total, limit=limit, offset=offset)

    if cache is None:
        return CachedBody.of(await load())
    return await cache.page(f"{limit}:{offset}:{category or ''}", load)


async def search_body(
    *, db: Database, cache: CatalogueCache | None, query: SearchQuery
) -> CachedBody:
    """A page of search results or filtered products as sent. Cached as a list page: every
    catalogue edit drops it at once, a reservation's stock change within the list TTL."""

    async def load() -> bytes:
        async with db.acquire() as conn:
            rows, total = await ProductRepository(conn).search(query)
        return page_json(rows, total=total, limit=query.limit, offset=query.offset)

    if cache is None:
        return CachedBody.of(await load())
    return await cache.page(query.key(), load)


async def categories_body(*, db: Database, cache: CatalogueCache | None) -> CachedBody:
    """Every category with its number of products, as sent; cached as a list page."""

    async def load() -> bytes:
        async with db.acquire() as conn:
            return categories_json(await ProductRepository(conn).categories())

    if cache is None:
        return CachedBody.of(await load())
    return await cache.page("categories", load)


async def _changed(cache: CatalogueCache | None, product_id: int, *, lists: bool) -> None:
    if cache is not None:
        await cache.invalidate(product_id)
        if lists:
            await cache.invalidate(None)


async def list_products(
    *, db: Database, limit: int, offset: int, category: str | None
) -> tuple[list[Any], int]:
    async with db.acquire() as conn:
        return await ProductRepository(conn).page(limit=limit, offset=offset, category=category)


async def create_product(
    *, db: Database, cache: CatalogueCache | None, product_in: ProductCreate
) -> Any:
    async with db.acquire() as conn:
        product = await ProductRepository(conn).add(**product_in.model_dump())
    await _changed(cache, product["id"], lists=True)
    return product


async def update_product(
    *, db: Database, cache: CatalogueCache | None, product_id: int, product_in: ProductUpdate
) -> Any:
    async with db.acquire() as conn:
        product = await ProductRepository(conn).update(product_id, **product_in.model_dump())
    if product is None:
        raise _missing(product_id)
    await _changed(cache, product_id, lists=True)
    return product


async def delete_product(*, db: Database, cache: CatalogueCache | None, product_id: int) -> None:
    async with db.acquire() as conn:
        if not await ProductRepository(conn).delete(product_id):
            raise _missing(product_id)
    await _changed(cache, product_id, lists=True)


async def update_stock(
    *, db: Database, cache: CatalogueCache | None, product_id: int, change: StockUpdate
) -> Any:
    async with db.acquire() as conn:
        products = ProductRepository(conn)
        if change.stock is not None:
            product = await products.set_stock(product_id, change.stock)
        else:
            assert change.delta is not None
            product = await products.add_stock(product_id, change.delta)
            if product is None and await products.exists(product_id):
                raise Conflict(
                    "Stock must stay between 0 and 1000000000; nothing was changed.",
                    extra={"code": "insufficient_stock"},
                )
    if product is None:
        raise _missing(product_id)
    await _changed(cache, product_id, lists=True)
    return product


async def reserve_stock(
    *, db: Database, cache: CatalogueCache | None, product_id: int, order_id: int, quantity: int
) -> tuple[Any, bool]:
    """Take stock for an order, once. Returns the reservation and whether it is new."""
    reservation, created = await _reserve(
        db=db, product_id=product_id, order_id=order_id, quantity=quantity
    )
    if created:  # after the connection is back in the pool: Redis calls do not hold it
        await _changed(cache, product_id, lists=False)
    return reservation, created


async def _reserve(
    *, db: Database, product_id: int, order_id: int, quantity: int
) -> tuple[Any, bool]:
    async with db.acquire() as conn:
        products, reservations = ProductRepository(conn), ReservationRepository(conn)
        try:
            reservation = await reservations.reserve(
                order_id=order_id, product_id=product_id, quantity=quantity
            )
        except asyncpg.UniqueViolationError:
            reservation = None  # a concurrent call for this order won: answer with its result
        if reservation is not None:
            return reservation, True
        existing = await reservations.get(order_id)
        if existing is None:
            if not await products.exists(product_id):
                raise _missing(product_id)
            STOCK_OUTS.inc()
            raise Conflict(
                f"Product {product_id} has fewer than {quantity} in stock.",
                extra={"code": "insufficient_stock"},
            )
    if existing["status"] != "reserved":
        raise Conflict(
            f"The reservation of order {order_id} was released.",
            extra={"code": "reservation_released"},
        )
    if existing["product_id"] != product_id or existing["quantity"] != quantity:
        raise Conflict(f"Order {order_id} already reserved another product or quantity.")
    return existing, False


async def release_stock(
    *, db: Database, cache: CatalogueCache | None, product_id: int, order_id: int
) -> Any:
    """Give an order's stock back, once; leave a tombstone if nothing was reserved yet."""
    reservation, restocked = await _release(db=db, product_id=product_id, order_id=order_id)
    if restocked:
        await _changed(cache, product_id, lists=False)
    return reservation


async def _release(*, db: Database, product_id: int, order_id: int) -> tuple[Any, bool]:
    async with db.acquire() as conn, conn.transaction():
        products, reservations = ProductRepository(conn), ReservationRepository(conn)
        reservation = await reservations.get(order_id, lock=True)
        if reservation is None:
            if await reservations.tombstone(order_id=order_id, product_id=product_id):
                return await reservations.get(order_id), False
            reservation = await reservations.get(order_id, lock=True)  # lost a race: re-read
        if reservation["product_id"] != product_id:
            raise NotFound(f"Order {order_id} has no reservation of product {product_id}.")
        if reservation["status"] == "reserved":
            await products.return_stock(product_id, reservation["quantity"])
            return await reservations.mark_released(order_id), True
        return reservation, False
