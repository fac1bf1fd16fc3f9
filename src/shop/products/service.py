"""Use cases of the product service.

Catalogue reads go through the catalogue cache when there is one (``cache`` is None when it
is off); every write invalidates what it changed after it committed (see shop.products.cache
for the bound). Reservations read and change stock in PostgreSQL only, never from the cache.
"""

from __future__ import annotations

import asyncpg

from shop.common.db import Database
from shop.common.errors import Conflict, NotFound
from shop.common.metrics import STOCK_OUTS
from shop.common.types import JsonObject
from shop.products.cache import CachedBody, CatalogueCache
from shop.products.db import (
    LockedLine,
    Product,
    ProductRepository,
    Reservation,
    ReservationLine,
    ReservationRepository,
    SearchQuery,
)
from shop.products.schemas import (
    RESERVATION,
    STOCK_MAX,
    ProductCreate,
    ProductUpdate,
    StockUpdate,
    categories_json,
    page_json,
    product_json,
)


def _missing(product_id: int) -> NotFound:
    return NotFound(f"Product {product_id} does not exist.")


async def get_product(*, db: Database, product_id: int) -> Product:
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


def page_key(limit: int, offset: int, category: str | None) -> str:
    """A plain list page's cache key (``CatalogueCache.page``, ``near_page``)."""
    return f"{limit}:{offset}:{category or ''}"


async def page_body(
    *, db: Database, cache: CatalogueCache | None, limit: int, offset: int, category: str | None
) -> CachedBody:
    """A list page as sent (JSON bytes and ETag)."""

    async def load() -> bytes:
        rows, total = await list_products(db=db, limit=limit, offset=offset, category=category)
        return page_json(rows, total=total, limit=limit, offset=offset)

    if cache is None:
        return CachedBody.of(await load())
    return await cache.page(page_key(limit, offset, category), load)


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


async def _changed(cache: CatalogueCache | None, product_id: int) -> None:
    """A product itself changed: its page and every list page go."""
    if cache is not None:
        await cache.invalidate(product_id)
        await cache.invalidate(None)


async def list_products(
    *, db: Database, limit: int, offset: int, category: str | None
) -> tuple[list[Product], int]:
    async with db.acquire() as conn:
        return await ProductRepository(conn).page(limit=limit, offset=offset, category=category)


async def create_product(
    *, db: Database, cache: CatalogueCache | None, product_in: ProductCreate
) -> Product:
    async with db.acquire() as conn:
        product = await ProductRepository(conn).add(**product_in.model_dump())
    await _changed(cache, product.id)
    return product


async def update_product(
    *, db: Database, cache: CatalogueCache | None, product_id: int, product_in: ProductUpdate
) -> Product:
    async with db.acquire() as conn:
        product = await ProductRepository(conn).update(product_id, **product_in.model_dump())
    if product is None:
        raise _missing(product_id)
    await _changed(cache, product_id)
    return product


async def delete_product(*, db: Database, cache: CatalogueCache | None, product_id: int) -> None:
    async with db.acquire() as conn:
        if not await ProductRepository(conn).delete(product_id):
            raise _missing(product_id)
    await _changed(cache, product_id)


async def update_stock(
    *, db: Database, cache: CatalogueCache | None, product_id: int, change: StockUpdate
) -> Product:
    async with db.acquire() as conn:
        products = ProductRepository(conn)
        if change.stock is not None:
            product = await products.set_stock(product_id, change.stock)
        else:
            assert change.delta is not None
            product = await products.add_stock(product_id, change.delta)
            if product is None and await products.exists(product_id):
                raise Conflict(
                    f"Stock must stay between 0 and {STOCK_MAX}; nothing was changed.",
                    extra={"code": "insufficient_stock"},
                )
    if product is None:
        raise _missing(product_id)
    await _changed(cache, product_id)
    return product


async def reserve(
    *, db: Database, cache: CatalogueCache | None, order_id: int, lines: list[tuple[int, int]]
) -> tuple[JsonObject, bool]:
    """Take the stock of every line ``(product_id, quantity)`` for an order, all or nothing,
    once. Returns the reservation (``ReservationRepository.get``) and whether it is new.

    Refusals name what refused: an unknown product is a NotFound with ``product_ids``; short
    stock a Conflict with one ``errors`` entry per short line (its index in ``lines`` and the
    stock left); a reservation of this order already released, or made with other lines, a
    Conflict too, with its own ``code``.
    """
    async with db.acquire() as conn:
        reservations = ReservationRepository(conn)
        try:
            rows = await reservations.reserve(order_id=order_id, lines=lines)
        except asyncpg.UniqueViolationError:
            rows = []  # a concurrent call for this order won: answer with its result
        if rows and rows[0].reserved:
            reservation = Reservation(
                order_id=order_id,
                status="reserved",
                lines=tuple(
                    ReservationLine(
                        product_id=r.product_id,
                        name=r.name,
                        quantity=r.quantity,
                        unit_price=r.price,
                    )
                    for r in rows
                ),
            )
        else:
            existing = await reservations.get(order_id)
            if existing is None:
                raise _refusal(lines, rows)
            return RESERVATION(_same_terms(existing, order_id, lines)), False
    # After the connection is back in the pool: Redis calls do not hold it. Every line's
    # page in one round trip.
    if cache is not None:
        await cache.invalidate_products([product_id for product_id, _ in lines])
    return RESERVATION(reservation), True


def _refusal(lines: list[tuple[int, int]], rows: list[LockedLine]) -> NotFound | Conflict:
    found = {r.product_id: r for r in rows}
    missing = [p for p, _ in lines if p not in found]
    if missing:
        return NotFound(
            f"No product {', '.join(map(str, missing))}.",
            extra={"code": "product_not_found", "product_ids": missing},
        )
    short: list[JsonObject] = [
        {
            "loc": ["body", "lines", i, "quantity"],
            "msg": f"only {found[p].stock} of product {p} in stock",
            "available": found[p].stock,
        }
        for i, (p, quantity) in enumerate(lines)
        if found[p].stock < quantity
    ]
    STOCK_OUTS.inc()
    return Conflict(
        f"Not enough stock for {len(short)} of the lines; nothing was reserved.",
        errors=short,
        extra={"code": "insufficient_stock"},
    )


def _same_terms(existing: Reservation, order_id: int, lines: list[tuple[int, int]]) -> Reservation:
    if existing.status != "reserved":
        raise Conflict(
            f"The reservation of order {order_id} was released.",
            extra={"code": "reservation_released"},
        )
    held = sorted((line.product_id, line.quantity) for line in existing.lines)
    if held != sorted(lines):
        raise Conflict(
            f"Order {order_id} already reserved other lines.",
            extra={"code": "reservation_conflict"},
        )
    return existing


async def release(
    *, db: Database, cache: CatalogueCache | None, order_id: int
) -> JsonObject | None:
    """Give back the stock of every line of an order, once; if it reserved nothing yet, leave
    a tombstone that refuses its late reservation. Returns the (released) reservation."""
    async with db.acquire() as conn:
        reservations = ReservationRepository(conn)
        restocked: list[int] = []
        if not await reservations.tombstone(order_id):
            restocked = await reservations.release(order_id)
        reservation = await reservations.get(order_id)
    if cache is not None:
        await cache.invalidate_products(restocked)
    return None if reservation is None else RESERVATION(reservation)
