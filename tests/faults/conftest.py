"""The four services as real processes, with fault injection on, and a database a test can stop.

The product service's database lives in a PostgreSQL instance of its own (pgserver's binaries,
in a temporary folder), so a test can stop "the product service's PostgreSQL" while the other
services' databases stay up. The users, orders and payments databases are on the suite's
server. The order service runs without its background recovery worker unless a test restarts
it with one, so every recovery here happens when the test says (`shop recover`, the
standalone command) and the outcomes are deterministic.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shop.common import migrations
from shop.common.auth import ServiceTokens
from shop.devtools.postgres import Server, create_databases, drop_databases
from tests.conftest import _databases
from tests.harness import READY_TIMEOUT, Platform, started

ADMIN_PASSWORD = "faults-admin-password"
SERVICE_SECRET = secrets.token_urlsafe(32)


class OwnPostgres:
    """A PostgreSQL instance of one service's own, which tests stop and start."""

    def __init__(self, data_dir: Path) -> None:
        import logging

        import pgserver

        logging.getLogger("pgserver").propagate = False
        self._pgserver = pgserver
        self.server = pgserver.get_server(str(data_dir), cleanup_mode="delete")
        self.uri: str = self.server.get_uri()

    def url(self, database: str) -> str:
        return Server(self.uri, "embedded").database_url(database)

    def stop(self) -> None:
        self._pgserver.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()
        assert self.server.get_uri() == self.uri, "the restarted server moved its socket"

    def cleanup(self) -> None:
        self.server.cleanup()


@dataclass
class FaultPlatform(Platform):
    """The harness's platform, and what fault tests do to it: fault rules, the standalone
    commands, the product service's own PostgreSQL."""

    products_pg: OwnPostgres | None = None
    # Set when a dependency of the order service went away: its circuit breakers may be open.
    breakers_tripped: bool = False

    async def wait_for(
        self, probe: Callable[[], Awaitable[Any]], what: str, interval: float = 0.05
    ) -> Any:
        """Poll until ``probe`` returns something truthy; after a minute fail with ``what``
        and every service's last log lines (``Platform.until``)."""
        return await self.until(probe, what, interval=interval)

    def client(self, service: str, timeout: float = 120.0) -> httpx.AsyncClient:
        return super().client(service, timeout)

    @property
    def service_token(self) -> dict[str, str]:
        token = ServiceTokens("order-service", SERVICE_SECRET).token()
        return {"Authorization": f"Bearer {token}"}

    async def inject(self, service: str, *rules: dict[str, Any]) -> None:
        async with self.client(service) as c:
            response = await c.put("/internal/faults", json=list(rules), headers=self.service_token)
            response.raise_for_status()

    async def faults(self, service: str) -> list[dict[str, Any]]:
        async with self.client(service) as c:
            response = await c.get("/internal/faults", headers=self.service_token)
            result: list[dict[str, Any]] = response.json()
            return result

    def kill(self, service: str) -> None:
        super().kill(service)
        self.breakers_tripped = True

    def shop(self, *args: str, service: str = "orders") -> subprocess.CompletedProcess[str]:
        """Run the `shop` command line with a service's environment."""
        return subprocess.run(
            [sys.executable, "-m", "shop.cli", *args],
            env={**os.environ, **self.envs[service]},
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT,
            check=False,
        )

    def check_consistency(self) -> str:
        result = self.shop(
            "check-consistency",
            f"--orders-url={self.urls['orders']}",
            f"--products-url={self.urls['products']}",
            f"--payments-url={self.urls['payments']}",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture(scope="package")
def products_pg() -> Iterator[OwnPostgres]:
    # Not under pytest's temporary folder: each pytest start makes that private to root again,
    # and PostgreSQL runs as pgserver's own unprivileged user.
    parent = Path(tempfile.mkdtemp(prefix="shop-products-pg-"))
    own = OwnPostgres(parent / "data")
    try:
        yield own
    finally:
        own.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="package")
def fault_database_urls(pg_server: Server, products_pg: OwnPostgres) -> Iterator[dict[str, str]]:
    for urls in _databases(pg_server):
        own = Server(products_pg.uri, "embedded")
        asyncio.run(create_databases(own, ["productdb"]))
        urls = {**urls, "products": products_pg.url("productdb")}
        migrations.upgrade("products", urls["products"])
        yield urls
        asyncio.run(drop_databases(own, ["productdb"]))


@pytest.fixture(scope="package")
def faulty(
    fault_database_urls: dict[str, str],
    products_pg: OwnPostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FaultPlatform]:
    with started(
        tmp_path_factory,
        database_urls=fault_database_urls,
        admin_password=ADMIN_PASSWORD,
        service_token_secret=SERVICE_SECRET,
        extra={
            "SHOP_FAULT_INJECTION": "true",
            # The order service gives up on a call after 3 s and retries for up to 6 s.
            "SHOP_HTTP_TIMEOUT_SECONDS": "3",
            "SHOP_RETRY_DEADLINE_SECONDS": "6",
            "SHOP_SAGA_LEASE_SECONDS": "4",
            "SHOP_RECOVERY_ENABLED": "false",
            "SHOP_DB_POOL_MIN": "1",
            "SHOP_DB_POOL_MAX": "5",
        },
        restartable=True,  # services restart on their ports here
        kind=FaultPlatform,
        stop_timeout=5,  # a response still held by a fault need not be waited for
        products_pg=products_pg,
    ) as platform:
        yield platform


@pytest.fixture
async def fresh(faulty: FaultPlatform) -> AsyncIterator[FaultPlatform]:
    """Every service up, no faults installed, empty order tables; closes the test's SQL links."""
    for name, proc in faulty.procs.items():
        if proc.process is None or proc.process.poll() is not None or not proc.ready():
            faulty.restart(name)
        elif name == "orders" and faulty.breakers_tripped:
            faulty.restart(name)  # closed circuit breakers: each scenario starts from calm
        else:
            await faulty.inject(name)  # no rules
    faulty.breakers_tripped = False
    try:
        yield faulty
    finally:
        await faulty.close_sql()
