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
