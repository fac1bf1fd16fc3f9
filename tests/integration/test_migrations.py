"""Each service's migrations are reversible and match the tables its code declares."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from shop.common import migrations
from shop.devtools.postgres import Server, create_databases, drop_databases

SERVICES = ["users", "products", "orders", "payments"]


def metadata_of(service: str) -> sa.MetaData:
    module = __import__(f"shop.{service}.tables", fromlist=["metadata"])
    return module.metadata


@pytest.fixture(scope="module")
def scratch(pg_server: Server):
    import secrets

    names = {s: f"mig{secrets.token_hex(3)}_{s}" for s in SERVICES}
    asyncio.run(create_databases(pg_server, list(names.values())))
    yield {s: pg_server.database_url(n) for s, n in names.items()}
    asyncio.run(drop_databases(pg_server, list(names.values())))


async def _diff(url: str, metadata: sa.MetaData) -> list:
    engine = create_async_engine(migrations.sqlalchemy_url(url))
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    await engine.dispose()
    return diff


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(migrations.sqlalchemy_url(url))
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


@pytest.mark.parametrize("service", SERVICES)
def test_upgrade_downgrade_upgrade(scratch, service: str) -> None:
    url = scratch[service]
    migrations.upgrade(service, url)
    assert asyncio.run(_tables(url)) == set(metadata_of(service).tables)
    assert asyncio.run(_diff(url, metadata_of(service))) == []
    migrations.downgrade(service, url)
    assert asyncio.run(_tables(url)) == set()
    migrations.upgrade(service, url)
    assert asyncio.run(_tables(url)) == set(metadata_of(service).tables)


def _sql(url: str, *statements: str) -> list[list[tuple]]:
    async def go() -> list[list[tuple]]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return [[tuple(r) for r in await conn.fetch(s)] for s in statements]
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def fresh(pg_server: Server):
    import secrets

    names = {s: f"lines{secrets.token_hex(3)}_{s}" for s in ("orders", "products")}
    asyncio.run(create_databases(pg_server, list(names.values())))
    yield {s: pg_server.database_url(n) for s, n in names.items()}
    asyncio.run(drop_databases(pg_server, list(names.values())))


def test_orders_filled_before_lines_become_one_line_orders_and_back(fresh) -> None:
    """Issue 28: a database filled under the schema before order lines is upgraded (every
    order a one-line order, every reservation a one-line reservation, tombstones kept) and
    downgraded again while it holds no order of more lines; with one, the downgrade refuses."""
    orders, products = fresh["orders"], fresh["products"]
    migrations.upgrade("orders", orders, "orders_events")
    migrations.upgrade("products", products, "products_events")
    _sql(
        orders,
        "INSERT INTO orders (user_id, product_id, quantity, total_price, status, payment_method,"
        " saga_step) VALUES (1, 10, 3, 37.50, 'paid', 'card', 'done'),"
        " (2, 11, 1, NULL, 'failed', 'card', 'done')",
    )
    _sql(
        products,
        "INSERT INTO products (id, name, price, stock) OVERRIDING SYSTEM VALUE"
        " VALUES (10, 'Lamp', 12.50, 7)",
        "INSERT INTO stock_reservations (order_id, product_id, quantity, unit_price, status)"
        " VALUES (1, 10, 3, 12.50, 'reserved'), (2, 11, 0, NULL, 'released')",
    )
    migrations.upgrade("orders", orders)
    migrations.upgrade("products", products)
    assert _sql(
        orders,
        "SELECT order_id, position, product_id, quantity, unit_price::text, name"
        " FROM order_lines ORDER BY order_id",
    ) == [[(1, 0, 10, 3, "12.50", None), (2, 0, 11, 1, None, None)]]
    assert _sql(
        products,
        "SELECT order_id, status FROM reservations ORDER BY order_id",
        "SELECT order_id, product_id, quantity, unit_price::text FROM reservation_lines",
    ) == [[(1, "reserved"), (2, "released")], [(1, 10, 3, "12.50")]]
    # Back down: every order and reservation still has one line at most.
    migrations.downgrade("orders", orders, "orders_events")
    migrations.downgrade("products", products, "products_events")
    assert _sql(orders, "SELECT id, product_id, quantity FROM orders ORDER BY id") == [
        [(1, 10, 3), (2, 11, 1)]
    ]
    assert _sql(
        products,
        "SELECT order_id, product_id, quantity, status FROM stock_reservations ORDER BY order_id",
    ) == [[(1, 10, 3, "reserved"), (2, 0, 0, "released")]]
    # Up again, then an order of two lines: the downgrade refuses and changes nothing.
    migrations.upgrade("orders", orders)
    _sql(
        orders,
        "INSERT INTO orders (id, user_id, status, payment_method) OVERRIDING SYSTEM VALUE"
        " VALUES (3, 1, 'pending', 'card')",
        "INSERT INTO order_lines (order_id, position, product_id, quantity)"
        " VALUES (3, 0, 10, 1), (3, 1, 12, 1)",
    )
    with pytest.raises(RuntimeError, match="more than one line"):
        migrations.downgrade("orders", orders, "orders_events")
    assert _sql(orders, "SELECT count(*) FROM order_lines") == [[(4,)]]


def _columns(url: str, table: str) -> set[str]:
    rows = _sql(
        url,
        f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'",
    )
    return {name for (name,) in rows[0]}


def test_orders_get_their_customers_contact_and_lose_it_going_down(fresh) -> None:
    """Issue 31: orders placed before the contact was recorded keep it NULL (their mails are
    addressed by a look-up); the downgrade drops the two columns and keeps every order."""
    orders = fresh["orders"]
    migrations.upgrade("orders", orders, "orders_lines")
    _sql(
        orders,
        "INSERT INTO orders (id, user_id, total_price, status, payment_method, saga_step)"
        " OVERRIDING SYSTEM VALUE VALUES (1, 7, 5.00, 'paid', 'card', 'done')",
        "INSERT INTO order_lines (order_id, position, product_id, quantity, unit_price)"
        " VALUES (1, 0, 10, 2, 2.50)",
    )
    migrations.upgrade("orders", orders)
    assert _sql(orders, "SELECT id, customer_username, customer_email FROM orders") == [
        [(1, None, None)]
    ]
    _sql(
        orders,
        "INSERT INTO orders (id, user_id, status, payment_method, customer_username,"
        " customer_email) OVERRIDING SYSTEM VALUE"
        " VALUES (2, 8, 'pending', 'card', 'mia', 'mia@example.com')",
    )
    migrations.downgrade("orders", orders, "orders_lines")
    assert {"customer_username", "customer_email"}.isdisjoint(_columns(orders, "orders"))
    assert _sql(orders, "SELECT id, user_id FROM orders ORDER BY id") == [[(1, 7), (2, 8)]]
    assert _sql(orders, "SELECT count(*) FROM order_lines") == [[(1,)]]
    migrations.upgrade("orders", orders)
    assert _sql(orders, "SELECT customer_email FROM orders ORDER BY id") == [[(None,), (None,)]]


def test_search_ranks_come_and_go_with_their_migration(fresh) -> None:
    """products_search_ranks (the rank tiers, docs/search.md "Ranking") is the only thing its
    migration adds: the downgrade drops it and leaves the search itself working."""
    products = fresh["products"]
    migrations.upgrade("products", products)
    tiers = "SELECT products_search_ranks(ARRAY['kettle', 'the'])::text[]"
    assert _sql(products, tiers) == [
        [
            (
                [
                    "'kettl':A",
                    "'kettl':A | '~kettle':D | '~ettle':D | '~kttle':D | '~ketle':D | '~ketle':D"
                    " | '~kette':D | '~kettl':D",
                    "'kettl':AB | '~kettle':D | '~ettle':D | '~kttle':D | '~ketle':D | '~ketle':D"
                    " | '~kette':D | '~kettl':D",
                    "'kettl':A | '~kettle':D | '~ettle':D | '~kttle':D | '~ketle':D | '~ketle':D"
                    " | '~kette':D | '~kettl':D",
                ],
            )
        ]
    ]
    assert _sql(products, "SELECT products_search_ranks(ARRAY['the'])") == [[([None] * 4,)]]
    migrations.downgrade("products", products, "products_search")
    exists = "SELECT count(*) FROM pg_proc WHERE proname = 'products_search_ranks'"
    assert _sql(products, exists) == [[(0,)]]
    assert _sql(products, "SELECT products_search_query(ARRAY['kettle']) IS NOT NULL") == [
        [(True,)]
    ]
    migrations.upgrade("products", products)
    assert _sql(products, exists) == [[(1,)]]


def test_products_leave_room_on_each_page_for_stock_changes(fresh) -> None:
    """products_fillfactor: 15% of each page free, so a stock change is a HOT update that no
    index (the search's GIN among them) sees; the downgrade restores the default."""
    products = fresh["products"]
    migrations.upgrade("products", products)
    options = "SELECT reloptions FROM pg_class WHERE relname = 'products'"
    assert _sql(products, options) == [[(["fillfactor=85"],)]]
    migrations.downgrade("products", products, "products_search_ranks")
    assert _sql(products, options) == [[(None,)]]
    migrations.upgrade("products", products)
    assert _sql(products, options) == [[(["fillfactor=85"],)]]
