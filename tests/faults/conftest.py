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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from shop.common import migrations
from shop.common.auth import ServiceTokens
from shop.devtools.postgres import Server, create_databases, drop_databases
from shop.devtools.processes import (
    SERVICES,
    ServiceProcess,
    stable_ports,
    wait_ready,
)
from tests.conftest import _databases, process_envs
from tests.waiting import until

ADMIN_PASSWORD = "faults-admin-password"
SERVICE_SECRET = secrets.token_urlsafe(32)
READY_TIMEOUT = 300.0  # seconds; CI machines can be far slower than a laptop


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
class FaultPlatform:
    procs: dict[str, ServiceProcess]
    envs: dict[str, dict[str, str]]
    urls: dict[str, str]  # database URLs
    products_pg: OwnPostgres
    logs: Path
    # Set when a dependency of the order service went away: its circuit breakers may be open.
    breakers_tripped: bool = False
    _conns: dict[str, asyncpg.Connection] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return self.procs[service].url

    async def wait_for(
        self, probe: Callable[[], Awaitable[Any]], what: str, interval: float = 0.05
    ) -> Any:
        """Poll until ``probe`` returns something truthy; after a minute fail with ``what``
        and every service's last log lines (``tests.waiting.until``)."""
        return await until(probe, what, interval=interval, logs=self.procs.values())

    def client(self, service: str, timeout: float = 120.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url(service), timeout=timeout)

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

    async def sql(self, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = self._conns.get(service)
        if conn is None or conn.is_closed():
            conn = self._conns[service] = await asyncpg.connect(self.urls[service])
        return await conn.fetch(query, *args)

    def kill(self, service: str) -> None:
        """kill -9: no shutdown hook runs, in-flight requests are cut."""
        proc = self.procs[service].process
        assert proc is not None
        assert proc.poll() is None
        proc.kill()
        proc.wait(30)
        self.breakers_tripped = True

    def restart(self, service: str, **env: str) -> None:
        old = self.procs[service]
        old.stop()
        self.procs[service] = ServiceProcess(
            service, old.port, {**self.envs[service], **env}, old.log_path
        )
        self.procs[service].start()
        wait_ready([self.procs[service]], timeout=READY_TIMEOUT)

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
    logs = tmp_path_factory.mktemp("logs")
    base = stable_ports([0, 1, 2, 3])  # services restart on their ports here
    ports = {name: base + i for i, name in enumerate(SERVICES)}
    envs = process_envs(
        tmp_path_factory,
        database_urls=fault_database_urls,
        ports=ports,
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
    )
    procs = {
        name: ServiceProcess(name, ports[name], envs[name], logs / f"{name}.log")
        for name in SERVICES
    }
    for proc in procs.values():
        proc.start()
    platform = FaultPlatform(procs, envs, fault_database_urls, products_pg, logs)
    try:
        wait_ready(list(procs.values()), timeout=READY_TIMEOUT)
        yield platform
    finally:
        for proc in platform.procs.values():
            proc.stop(timeout=5)  # a response still held by a fault need not be waited for


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
        for conn in faulty._conns.values():
            if not conn.is_closed():
                await conn.close()
        faulty._conns.clear()
