"""Dynamic PostgreSQL credentials from OpenBao's database engine, against the real server.

The product service runs on leased logins (4 s TTL, 10 s max TTL here): its lease is renewed,
then rotated when the max TTL nears, and its pool is rebuilt each time, while clients keep
calling it. Not one request may fail; every replaced login is revoked (dropped in PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shop import cli
from shop.common.auth import SigningKeys, generate_private_key_pem
from shop.common.credentials import DatabaseCredentials, with_credentials
from shop.common.settings import Environment
from shop.common.vault import Vault, VaultConfig
from shop.products.app import create_app as products_app
from shop.products.settings import ProductsSettings
from tests.vault.conftest import Configured

DEADLINE = 180.0  # generous; normally about 9 s (one lease reaching its max TTL)


async def superuser(configured: Configured) -> asyncpg.Connection:
    return await asyncpg.connect(configured.products_db)


async def roles_named(conn: asyncpg.Connection, names: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname = ANY($1)", names)
    return {r["rolname"] for r in rows}


def test_credentials_replace_only_the_user_and_password() -> None:
    url = "postgresql://someone:old@db.internal:5432/productdb?sslmode=require"
    assert with_credentials(url, "v-token-products-x", "p@ss/word") == (
        "postgresql://v-token-products-x:p%40ss%2Fword@db.internal:5432/productdb?sslmode=require"
    )
    assert with_credentials("postgresql://h/db", "u", "p") == "postgresql://u:p@h/db"


@pytest.fixture
async def migrated(configured: Configured) -> str:
    """Migrate the scratch product database the way the init container does: `shop migrate`
    with a leased login. Tables end up owned by the NOLOGIN owner role, not by the login."""
    bao = configured.bao
    vault = Vault.connect(
        VaultConfig(addr=bao.addr, token=bao.token_for("shop-products")),
        default_role="product-service",
    )
    credentials = DatabaseCredentials(vault, role="products", url=configured.products_db)
    try:
        url = await credentials.issue()
        code = await asyncio.to_thread(cli.main, ["migrate", "products", "--database-url", url])
        assert code == 0
    finally:
        await credentials.close()
        vault.close()
    conn = await superuser(configured)
    try:
        owners = {
            r["tableowner"]
            for r in await conn.fetch("SELECT tableowner FROM pg_tables WHERE schemaname='public'")
        }
        assert owners == {f"{configured.products_db_name}_owner"}
        assert await roles_named(conn, credentials.revoked) == set()  # the login is gone
        await conn.execute("DELETE FROM products")
        await conn.execute(
            "INSERT INTO products (name, price, stock, category) VALUES ($1, $2, 5, 'x')",
            "Leased widget",
            Decimal("9.99"),
        )
    finally:
        await conn.close()
    return configured.products_db


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The public keys tokens are verified with: without them the service is never ready."""
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    path.write_text(json.dumps(SigningKeys(generate_private_key_pem()).jwks()))
    return path


def _settings(bao: Any, migrated: str, keys_file: Path, **extra: Any) -> ProductsSettings:
    """The product service with a Vault token of its own policy; the database URL's host, port
    and database matter, the login comes from Vault when a database role is set."""
    return ProductsSettings(
        env=Environment.TEST,
        database_url=migrated,
        jwt_public_keys_file=keys_file,
        vault_addr=bao.addr,
        vault_token=bao.token_for("shop-products"),
        db_pool_min=1,
        **extra,
    )


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://products", timeout=60
        ) as client,
    ):
        yield client


async def test_pool_survives_renewals_and_rotations_without_failed_requests(
    configured: Configured, migrated: str, keys_file: Path
) -> None:
    bao = configured.bao
    app = products_app(
        _settings(
            bao,
            migrated,
            keys_file,
            vault_database_role="products",
            db_pool_max=2,
            db_command_timeout=30,
        )
    )
    failures: list[str] = []
    requests = 0
    stop = asyncio.Event()

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal requests
        while not stop.is_set():
            for path in ("/api/v1/products", "/health/ready"):
                response = await client.get(path)
                requests += 1
                if response.status_code != 200:
                    failures.append(f"{path}: {response.status_code} {response.text}")
                    stop.set()

    async with running(app) as client:
        credentials: DatabaseCredentials = app.state.database_credentials
        first_user = credentials.lease.username
        session_user = await _session_user(client, app)
        assert session_user == first_user
        loops = [asyncio.create_task(client_loop(client)) for _ in range(4)]
        try:
            await credentials.rotate(app.state.db)  # a rotation on demand, under load
            async with asyncio.timeout(DEADLINE):
                # then the background task's own: renewals, and a rotation at the max TTL
                # A rotation counts once the new pool serves; its old lease is revoked after
                # that, in a thread, so wait for the revocations too.
                while not stop.is_set() and not (  # noqa: ASYNC110 - another task's counters
                    credentials.renewals >= 1
                    and credentials.rotations >= 2
                    and len(credentials.revoked) >= 2
                ):
                    await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*loops)
        assert failures == []
        assert await _session_user(client, app) == credentials.lease.username != first_user
        replaced = list(credentials.revoked)
        current = credentials.lease.username
    assert len(replaced) >= 2
    conn = await superuser(configured)
    try:
        # every replaced login, and at shutdown the last one, was revoked: dropped in PostgreSQL
        assert await roles_named(conn, [*replaced, current]) == set()
    finally:
        await conn.close()
    print(
        f"{requests} requests, {credentials.renewals} renewals,"
        f" {credentials.rotations} rotations, 0 failures"
    )


async def _session_user(client: httpx.AsyncClient, app: FastAPI) -> str:
    async with app.state.db.acquire() as conn:
        return str(await conn.fetchval("SELECT session_user"))


async def test_without_a_database_role_the_configured_url_is_used(
    configured: Configured, migrated: str, keys_file: Path
) -> None:
    bao = configured.bao
    app = products_app(_settings(bao, migrated, keys_file, db_pool_max=1))
    async with running(app) as client:
        assert (await client.get("/api/v1/products")).status_code == 200
        assert app.state.database_credentials is None
        assert await _session_user(client, app) == (urlsplit(migrated).username or "postgres")
