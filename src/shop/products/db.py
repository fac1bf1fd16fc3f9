"""The products and reservations repository (the tables for Alembic: tables.py).

Every stock change an order makes is its reservation (a row in ``reservations`` keyed by the
order id) and one ``reservation_lines`` row per product: reserving twice for one order
reserves once, releasing twice restores once, and a release that arrives before its
reservation leaves a tombstone (a reservation with no lines) that refuses the late one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, NamedTuple

import asyncpg
import orjson

from shop.common.events.outbox import traceparent, with_event
from shop.products.schemas import STOCK_MAX

LIVE = "deleted_at IS NULL"
STOCK_CHANGED = "'shop.product.stock_changed'"


class Product(NamedTuple):
    """A live product as the repository reads it. A named tuple rather than a frozen
    dataclass: as immutable, and built from a row's columns at about a quarter of the cost, which a
    page of products pays per item (docs/performance.md, "One mapper")."""

    id: int
    name: str
    description: str
    price: Decimal
    stock: int
    category: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> Product:
        """The product of a row whose first columns are ``COLUMNS``."""
        return cls(*row[:_WIDTH])


# The columns a product is read with are its fields, in their order.
COLUMNS = ", ".join(Product._fields)
_WIDTH = len(Product._fields)


def _product(row: asyncpg.Record | None) -> Product | None:
    return None if row is None else Product.of(row)


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class LockedLine:
    """A line of a reservation as ``reserve`` found it: the product's stock as locked, and
    whether every line of the order was taken (``reserved``)."""

    product_id: int
    name: str
    price: Decimal
    stock: int
    quantity: int
    reserved: bool


@dataclass(frozen=True, slots=True)
class ReservationLine:
    product_id: int
    name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class Reservation:
    order_id: int
    status: Literal["reserved", "released"]
    lines: tuple[ReservationLine, ...]


Sort = Literal["relevance", "price", "-price", "newest", "name"]
# Each sort's ORDER BY, always ending in the id so that pages never overlap. "relevance"
# without words is the catalogue's own order (by id), as a plain page has it.
_ORDER = {
    "relevance": "rank DESC, id",
    "price": "price, id",
    "-price": "price DESC, id",
    "newest": "created_at DESC, id DESC",
    "name": "name, id",
}


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A catalogue query beyond a plain page: the words of ``q`` (normalised, see
    schemas.search_words; None without ``q``), filters, a sort and the page. ``key()`` is its
    catalogue-cache key."""

    words: tuple[str, ...] | None
    category: str | None
    min_price: Decimal | None
    max_price: Decimal | None
    in_stock: bool
    sort: Sort
    limit: int
    offset: int

    def key(self) -> str:
        return "s:" + orjson.dumps(asdict(self), default=str).decode()


def search_statement(query: SearchQuery) -> tuple[str, list[object]]:
    """The one statement of a search (or of filters only, without words) and its arguments:
    one row per product of the page, each with the total, or one row of NULLs with the total
    when the page is empty. Values are only ever bind parameters."""
    params = _Params(query.limit, query.offset)
    where = [LIVE]
    category = None if query.category is None else params(query.category)
    if category is not None:
        where.append(f"category = {category}")
    if query.min_price is not None:
        where.append(f"price >= {params(query.min_price)}")
    if query.max_price is not None:
        where.append(f"price <= {params(query.max_price)}")
    if query.in_stock:
        where.append("stock > 0")
    order = _ORDER[query.sort]
    if query.words is None:
        # The total is an index-only count, as a plain page's (ProductRepository.page).
        condition = " AND ".join(where)
        order = "id" if query.sort == "relevance" else order
        return (
            f"SELECT page.*, counted.total FROM"
            f" (SELECT count(*) AS total FROM products WHERE {condition}) AS counted"
            f" LEFT JOIN LATERAL (SELECT {COLUMNS} FROM products WHERE {condition}"
            f" ORDER BY {order} LIMIT $1 OFFSET $2) AS page ON true",
            params.values,
        )
    # The words as one tsquery (the migration's products_search_query), built once (an
    # InitPlan), so one GIN index scan answers the whole query.
    words = params(list(query.words))
    tsquery = f"products_search_query({words}::text[])"
    if category is not None:
        # The category's own words too (they are in the vector at B), so that GIN intersects
        # them with the query's and the heap is read for the category's matches only: 132
        # blocks instead of 2,176 for a noun in one of 20 categories. Only ever a superset of
        # `category = $n` (the same parser and configuration), which still decides.
        tsquery += f" && plainto_tsquery('english', {category})"
    where.append(f"search_vector @@ (SELECT {tsquery})")
    # The rank is the first of the tiers (products_search_ranks, built once) a match meets:
    # every word spelled right in the name (A), every word in the name with typos (A or
    # its typo keys at D), every word in the name or category (B), some word in the name:
    # 4 to 1, and 0 for the rest (words in the description only). Each tier is one weighted
    # match test, about a tenth of ts_rank's cost over every match (docs/search.md,
    # "Ranking").
    if query.sort == "relevance":
        tiers = " ".join(
            f"WHEN search_vector @@ (SELECT t[{i}] FROM tiers) THEN {5 - i}" for i in range(1, 5)
        )
        rank = f"CASE {tiers} ELSE 0 END"
        tiers_cte = f"tiers AS MATERIALIZED (SELECT products_search_ranks({words}::text[]) AS t),"
    else:
        rank, tiers_cte = "", ""
    columns = ", ".join(f"p.{c}" for c in COLUMNS.split(", "))
    outer = ", ".join(f"m.{c}" for c in order.split(", "))
    # The matches keep only the order's columns (the rest is read for the page's rows only).
    keys = ", ".join(
        f"{rank} AS rank" if key == "rank" else key
        for key in dict.fromkeys(c.split()[0] for c in order.split(", "))
    )
    return (
        f"""
        WITH {tiers_cte} matches AS MATERIALIZED (
            SELECT {keys}
            FROM products WHERE {" AND ".join(where)}
        )
        SELECT page.*, counted.total
        FROM (SELECT count(*) AS total FROM matches) AS counted
        LEFT JOIN LATERAL (
            SELECT {columns}
            FROM (SELECT * FROM matches ORDER BY {order} LIMIT $1 OFFSET $2) AS m
            JOIN products AS p USING (id)
            ORDER BY {outer}
        ) AS page ON true
        """,
        params.values,
    )


class _Params:
    """Numbered bind parameters for a statement built from parts: values are never SQL."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)

    def __call__(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


class ProductRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, product_id: int) -> Product | None:
        return _product(
            await self.conn.fetchrow(
                f"SELECT {COLUMNS} FROM products WHERE id = $1 AND {LIVE}",
                product_id,
            )
        )

    async def many(self, product_ids: list[int]) -> list[Product]:
        """The live products among ``product_ids``, in id order (one query for a batch)."""
        rows = await self.conn.fetch(
            f"SELECT {COLUMNS} FROM products WHERE id = ANY($1::bigint[]) AND {LIVE} ORDER BY id",
            product_ids,
        )
        return [Product.of(r) for r in rows]

    async def exists(self, product_id: int) -> bool:
        return bool(
            await self.conn.fetchval(
                f"SELECT true FROM products WHERE id = $1 AND {LIVE}",
                product_id,
            )
        )

    async def page(
        self, *, limit: int, offset: int, category: str | None
    ) -> tuple[list[Product], int]:
        # The total is a sub-select counted once from the index (an index-only scan), not
        # `count(*) OVER ()`, which reads every matching row in full before the LIMIT: 23 ms
        # against 1.2 ms for 10k products (EXPLAIN ANALYZE, docs/performance.md). One query
        # text per filter, so each prepared statement keeps a plan that fits it.
        where, args = (LIVE, ()) if category is None else (f"{LIVE} AND category = $3", (category,))
        rows = await self.conn.fetch(
            f"SELECT {COLUMNS}, (SELECT count(*) FROM products WHERE {where}) AS total"
            f" FROM products WHERE {where} ORDER BY id LIMIT $1 OFFSET $2",
            limit,
            offset,
            *args,
        )
        if rows:
            return [Product.of(r) for r in rows], rows[0]["total"]
        total: int = await self.conn.fetchval(
            f"SELECT count(*) FROM products WHERE {where.replace('$3', '$1')}", *args
        )
        return [], total

    async def search(self, query: SearchQuery) -> tuple[list[Product], int]:
        """A page of the products that match every word and filter, in the query's order,
        and how many match in all."""
        if query.words is not None and not query.words:  # a q of punctuation only
            return [], 0
        sql, args = search_statement(query)
        rows = await self.conn.fetch(sql, *args)
        return [Product.of(r) for r in rows if r["id"] is not None], rows[0]["total"]

    async def categories(self) -> list[Category]:
        """Every category of a live product, by name, with its number of products."""
        rows = await self.conn.fetch(
            f"SELECT category AS name, count(*) AS count FROM products"
            f" WHERE {LIVE} AND category IS NOT NULL GROUP BY category ORDER BY category"
        )
        return [Category(name=r["name"], count=r["count"]) for r in rows]

    async def add(
        self, *, name: str, description: str, price: Decimal, stock: int, category: str | None
    ) -> Product:
        row = await self.conn.fetchrow(
            with_event(
                "INSERT INTO products (name, description, price, stock, category)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}",
                type_sql="'shop.product.created'",
                stream="product",
                traceparent_param=6,
            ),
            name,
            description,
            price,
            stock,
            category,
            traceparent(),
        )
        return Product.of(row)

    async def update(
        self, product_id: int, *, name: str, description: str, price: Decimal, category: str | None
    ) -> Product | None:
        return _product(
            await self.conn.fetchrow(
                with_event(
                    "UPDATE products SET name = $2, description = $3, price = $4, category = $5,"
                    f" updated_at = now() WHERE id = $1 AND {LIVE} RETURNING {COLUMNS}",
                    type_sql="'shop.product.updated'",
                    stream="product",
                    traceparent_param=6,
                ),
                product_id,
                name,
                description,
                price,
                category,
                traceparent(),
            )
        )

    async def delete(self, product_id: int) -> bool:
        return bool(
            await self.conn.fetchval(
                with_event(
                    "UPDATE products SET deleted_at = now(), updated_at = now()"
                    f" WHERE id = $1 AND {LIVE} RETURNING {COLUMNS}",
                    type_sql="'shop.product.deleted'",
                    stream="product",
                    traceparent_param=2,
                ),
                product_id,
                traceparent(),
            )
        )

    async def add_stock(self, product_id: int, delta: int) -> Product | None:
        """Atomically add ``delta`` (may be negative); None if the stock would leave
        0..STOCK_MAX (the bound a product's stock is created and set with)."""
        row = await self.conn.fetchrow(
            with_event(
                "UPDATE products SET stock = stock + $2, updated_at = now()"
                f" WHERE id = $1 AND {LIVE} AND stock::bigint + $2 BETWEEN 0 AND {STOCK_MAX}"
                f" RETURNING {COLUMNS}",
                type_sql=STOCK_CHANGED,
                stream="product",
                traceparent_param=3,
            ),
            product_id,
            delta,
            traceparent(),
        )
        return _product(row)

    async def set_stock(self, product_id: int, stock: int) -> Product | None:
        row = await self.conn.fetchrow(
            with_event(
                "UPDATE products SET stock = $2, updated_at = now()"
                f" WHERE id = $1 AND {LIVE} RETURNING {COLUMNS}",
                type_sql=STOCK_CHANGED,
                stream="product",
                traceparent_param=3,
            ),
            product_id,
            stock,
            traceparent(),
        )
        return _product(row)

    async def return_stock(self, product_id: int, quantity: int) -> None:
        # Restocks a deleted product too: the row is kept (soft delete) for this.
        await self.conn.execute(
            with_event(
                "UPDATE products SET stock = stock + $2, updated_at = now() WHERE id = $1"
                f" RETURNING {COLUMNS}",
                type_sql=STOCK_CHANGED,
                stream="product",
                traceparent_param=3,
            ),
            product_id,
            quantity,
            traceparent(),
        )


class ReservationRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def reserve(self, *, order_id: int, lines: list[tuple[int, int]]) -> list[LockedLine]:
        """Take the stock of every line ``(product_id, quantity)`` and record the order's
        reservation, all or nothing, in one statement: the products' row locks are held for
        one round trip only (a hot product serialises its buyers here).

        The products are locked in id order before anything changes (the ``verdict`` count
        reads all of ``locked`` first), so orders over overlapping products never deadlock.
        Returns one row per live product asked for, with its stock as locked and
        ``reserved``: True if every line was taken. Nothing is locked or taken when the order
        already has a reservation (``reserved`` is then False for every row, or no rows).
        Raises UniqueViolationError if a concurrent call for the same order won.
        """
        product_ids = [p for p, _ in lines]
        quantities = [q for _, q in lines]
        rows = await self.conn.fetch(
            """
                WITH wanted AS (
                    SELECT * FROM unnest($2::bigint[], $3::int[]) AS w(product_id, quantity)
                ), locked AS MATERIALIZED (
                    SELECT p.id, p.name, p.price, p.stock, w.quantity
                    FROM products p JOIN wanted w ON w.product_id = p.id
                    WHERE p.deleted_at IS NULL
                      AND NOT EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)
                    ORDER BY p.id
                    FOR UPDATE OF p
                ), verdict AS (
                    SELECT count(*) = (SELECT count(*) FROM wanted)
                           AND coalesce(bool_and(stock >= quantity), false) AS ok
                    FROM locked
                ), take AS (
                    UPDATE products p SET stock = p.stock - l.quantity, updated_at = now()
                    FROM locked l
                    WHERE p.id = l.id AND (SELECT ok FROM verdict)
                    RETURNING p.id, p.name, p.description, p.price, p.stock, p.category,
                              p.created_at, p.updated_at, l.quantity
                ), header AS (
                    INSERT INTO reservations (order_id, status)
                    SELECT $1, 'reserved' WHERE (SELECT ok FROM verdict)
                ), lines AS (
                    INSERT INTO reservation_lines (order_id, product_id, quantity, unit_price)
                    SELECT $1, id, quantity, price FROM take
                ), event AS (
                    INSERT INTO outbox (type, subject, stream, data, traceparent)
                    SELECT 'shop.product.stock_changed', id::text, 'product:' || id,
                           to_jsonb(take) - 'quantity', $4
                    FROM take
                )
                SELECT id AS product_id, name, price, stock, quantity,
                       (SELECT ok FROM verdict) AS reserved
                FROM locked ORDER BY id
                """,
            order_id,
            product_ids,
            quantities,
            traceparent(),
        )
        return [LockedLine(**r) for r in rows]

    async def get(self, order_id: int) -> Reservation | None:
        """The order's reservation with its lines, or None."""
        row = await self.conn.fetchrow(
            "SELECT r.order_id, r.status, coalesce(("
            "  SELECT jsonb_agg(jsonb_build_object('product_id', l.product_id, 'name', p.name,"
            "  'quantity', l.quantity, 'unit_price', l.unit_price::text) ORDER BY l.product_id)"
            "  FROM reservation_lines l JOIN products p ON p.id = l.product_id"
            "  WHERE l.order_id = r.order_id), '[]'::jsonb) AS lines"
            " FROM reservations r WHERE r.order_id = $1",
            order_id,
        )
        if row is None:
            return None
        lines = tuple(
            ReservationLine(
                product_id=line["product_id"],
                name=line["name"],
                quantity=line["quantity"],
                unit_price=Decimal(line["unit_price"]),
            )
            for line in orjson.loads(row["lines"])
        )
        return Reservation(order_id=row["order_id"], status=row["status"], lines=lines)

    async def tombstone(self, order_id: int) -> bool:
        """Record the order as released before it reserved; False if it has a reservation."""
        return bool(
            await self.conn.fetchval(
                "INSERT INTO reservations (order_id, status) VALUES ($1, 'released')"
                " ON CONFLICT (order_id) DO NOTHING RETURNING true",
                order_id,
            )
        )

    async def release(self, order_id: int) -> list[int]:
        """Give back the stock of every line of a reserved order, once, in one statement
        (the products locked in id order first, as ``reserve`` does). Returns the ids of the
        products restocked (none if it was released already). A deleted product is restocked
        too: its row is kept (soft delete) for this."""
        rows = await self.conn.fetch(
            """
            WITH locked AS MATERIALIZED (
                SELECT p.id, l.quantity
                FROM reservation_lines l JOIN products p ON p.id = l.product_id
                JOIN reservations r ON r.order_id = l.order_id
                WHERE l.order_id = $1 AND r.status = 'reserved'
                ORDER BY p.id
                FOR UPDATE OF p, r
            ), gate AS (
                SELECT count(*) AS n FROM locked
            ), header AS (
                UPDATE reservations SET status = 'released', updated_at = now()
                WHERE order_id = $1 AND status = 'reserved' AND (SELECT n FROM gate) >= 0
                RETURNING order_id
            ), back AS (
                UPDATE products p SET stock = p.stock + l.quantity, updated_at = now()
                FROM locked l, header h
                WHERE p.id = l.id
                RETURNING p.id, p.name, p.description, p.price, p.stock, p.category,
                          p.created_at, p.updated_at
            ), event AS (
                INSERT INTO outbox (type, subject, stream, data, traceparent)
                SELECT 'shop.product.stock_changed', id::text, 'product:' || id, to_jsonb(back),
                       $2
                FROM back
            )
            SELECT id FROM back ORDER BY id
            """,
            order_id,
            traceparent(),
        )
        return [r["id"] for r in rows]
