"""Shared fixtures: a real PostgreSQL (configured, local or embedded) and per-run databases.

Each test run creates its own four databases (random prefix) and drops them at the end, so
runs never see each other's data and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings

from shop.common.auth import generate_private_key_pem
from shop.devtools.postgres import SERVICE_DATABASES, Server, drop_databases, find_server
from shop.devtools.processes import platform_env

# No per-example deadline: timing depends on the machine's load, not on the code under test.
settings.register_profile("shop", deadline=None, max_examples=50)
settings.load_profile("shop")

ROOT = Path(__file__).resolve().parents[1]

# For the services started as processes: cheap password hashing (argon2 at its minimum costs;
# the production defaults are tested in-process) and a recovery worker that looks every second.
FAST_SERVICES = {
    "SHOP_ARGON2_TIME_COST": "1",
    "SHOP_ARGON2_MEMORY_KIB": "1024",
    "SHOP_ARGON2_PARALLELISM": "1",
    "SHOP_RECOVERY_INTERVAL_SECONDS": "1",
}


def process_envs(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    database_urls: Mapping[str, str],
    ports: Mapping[str, int],
    admin_password: str,
    service_token_secret: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """Each service's environment for a platform of test processes: a fresh signing key in its
    own folder, the test environment, FAST_SERVICES, then ``extra``."""
    secrets_dir = tmp_path_factory.mktemp("secrets")
    (secrets_dir / "jwt-signing.pem").write_text(generate_private_key_pem())
    return platform_env(
        database_urls=database_urls,
        ports=ports,
        secrets_dir=secrets_dir,
        admin_password=admin_password,
        service_token_secret=service_token_secret or secrets.token_urlsafe(32),
        env="test",
        extra={**FAST_SERVICES, **(extra or {})},
    )


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    configured = os.environ.get("SHOP_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    return find_server(ROOT / ".shop" / "pgdata-test", configured=configured)


async def _no_fsync_wait(server: Server, names: list[str]) -> None:
    """Test databases skip waiting for the WAL flush at commit: on a slow CI disk the fsyncs
    dominate the suite's time, and no test here survives a PostgreSQL crash anyway."""
    conn = await asyncpg.connect(server.url)
    try:
        for name in names:
            await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await conn.close()


def _databases(server: Server) -> Iterator[dict[str, str]]:
    from shop.devtools.local import prepare

    prefix = f"t{secrets.token_hex(4)}_"
    urls = prepare(server, prefix=prefix)
    asyncio.run(_no_fsync_wait(server, [prefix + name for name in SERVICE_DATABASES.values()]))
    yield urls
    asyncio.run(drop_databases(server, [prefix + name for name in SERVICE_DATABASES.values()]))


@pytest.fixture(scope="session")
def database_urls(pg_server: Server) -> Iterator[dict[str, str]]:
    """The four service databases of the in-process tests, created and migrated."""
    yield from _databases(pg_server)


@pytest.fixture(scope="session")
def e2e_database_urls(pg_server: Server) -> Iterator[dict[str, str]]:
    """Another four, for the services run as processes."""
    yield from _databases(pg_server)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """A real RabbitMQ: SHOP_AMQP_URL, the local one, or a private node started for the run."""
    from shop.devtools.broker import find_broker

    broker = find_broker(ROOT / ".shop" / "rabbitmq-test")
    if broker is None:
        pytest.fail("no RabbitMQ: set SHOP_AMQP_URL or install rabbitmq-server (make tools)")
    return broker.url


@pytest.fixture
def amqp_names() -> dict[str, str]:
    """Exchange and queue names of this test alone, so runs on one broker never meet."""
    run = secrets.token_hex(4)
    return {"amqp_exchange": f"shop.events.t{run}", "amqp_queue_prefix": f"shop.t{run}."}
