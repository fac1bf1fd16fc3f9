"""PostgreSQL access over an asyncpg pool, built in the app's lifespan (never at import).

Reads run on a pooled connection in autocommit (one round trip); writes run inside a
``UnitOfWork``, the one transaction boundary of a use case, which rolls back unless committed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import asyncpg

from shop.common.metrics import DB_POOL_ACQUIRE, DB_POOL_IN_USE, DB_POOL_MAX, DB_POOL_SIZE

Connection = asyncpg.Connection
Record = asyncpg.Record

# asyncpg's default release runs "RESET ALL; UNLISTEN *; ..." on every release: one more
# round trip per request. The services keep no session state (no SET, LISTEN or session
# advisory locks), so releasing only has to end a transaction left open by an error.


async def _reset_connection(conn: asyncpg.Connection) -> None:
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def to_asyncpg_dsn(url: str) -> str:
    """Accept SQLAlchemy-style URLs (postgresql+asyncpg://) as well as plain libpq ones."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class Database:
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        command_timeout: float = 5.0,
    ) -> None:
        self._url = to_asyncpg_dsn(url)
        self._min, self._max, self._timeout = min_size, max_size, command_timeout
        self._pool: asyncpg.Pool | None = None

    async def connect(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._url,
            min_size=self._min,
            max_size=self._max,
            command_timeout=self._timeout,
            reset=_reset_connection,
            # Server-side statement timeout too, so a stuck query frees its connection.
            server_settings={"statement_timeout": str(int(self._timeout * 1000))},
        )
        DB_POOL_MAX.set(self._max)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not connected; build it in the app's lifespan")
        return self._pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            DB_POOL_ACQUIRE.observe(time.perf_counter() - started)
            yield conn

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def ping(self) -> bool:
        try:
            async with self.acquire() as conn:
                return bool(await conn.fetchval("SELECT 1", timeout=2))
        except (OSError, asyncpg.PostgresError, TimeoutError, RuntimeError):
            return False

    def observe_pool(self) -> None:
        if self._pool is not None:
            size = self._pool.get_size()
            DB_POOL_SIZE.set(size)
            DB_POOL_IN_USE.set(size - self._pool.get_idle_size())


class UnitOfWork:
    """One transaction: ``async with uow: ...; await uow.commit()``. Rolls back unless committed."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cm: Any = None
        self._tx: Any = None
        self.conn: asyncpg.Connection

    async def __aenter__(self) -> Self:
        self._cm = self._db.acquire()
        self.conn = await self._cm.__aenter__()
        self._tx = self.conn.transaction()
        await self._tx.start()
        self._committed = False
        self.on_enter()
        return self

    def on_enter(self) -> None:
        """Subclasses bind their repositories to ``self.conn`` here."""

    async def commit(self) -> None:
        await self._tx.commit()
        self._committed = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self._tx.rollback()
        finally:
            await self._cm.__aexit__(exc_type, exc, tb)
