"""Find a PostgreSQL server: a configured URL, else the local one, else an embedded one.

The embedded server is PyPI's ``pgserver`` (PostgreSQL binaries in a wheel), kept under a data
folder that git ignores, so ``make run`` and ``make test`` work on a machine with no database.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import asyncpg

from shop.ops.databases import SERVICE_DATABASES, Server

__all__ = ["LOCAL_URL", "SERVICE_DATABASES", "Server", "create_databases", "find_server"]

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_embedded: list[object] = []


async def _reachable(url: str, connect_timeout: float = 2.0) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=connect_timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def find_server(data_dir: Path, *, configured: str | None = None) -> Server:
    configured = configured or os.environ.get("DATABASE_URL")
    if configured:
        return Server(configured, "configured")
    if os.environ.get("SHOP_EMBEDDED_PG") != "1" and asyncio.run(_reachable(LOCAL_URL)):
        return Server(LOCAL_URL, "local")
    return Server(start_embedded(data_dir), "embedded")


def start_embedded(data_dir: Path) -> str:
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - installed by `make`
        raise SystemExit(
            "No PostgreSQL found and pgserver is not installed: run `make run`."
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    # pgserver logs every pg_ctl call at INFO, also from its atexit hook, when the process's
    # streams may already be closed; its failures raise, so its chatter is not needed.
    pg_log = logging.getLogger("pgserver")
    pg_log.addHandler(logging.NullHandler())
    pg_log.propagate = False
    # Stopped when this process exits; kept referenced until then.
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")  # type: ignore[attr-defined]
    _embedded.append(server)
    uri: str = server.get_uri()
    return uri


async def create_databases(server: Server, names: list[str]) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_databases(server: Server, names: list[str]) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
