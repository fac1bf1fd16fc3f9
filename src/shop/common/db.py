"""PostgreSQL access over an asyncpg pool, built in the app's lifespan (never at import).

Single statements run on a pooled connection in autocommit (one round trip, no BEGIN/COMMIT);
a use case that needs several statements to agree opens ``conn.transaction()``, its one
transaction boundary, which rolls back on any error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg

from shop.common.metrics import DB_POOL_ACQUIRE, DB_POOL_IN_USE, DB_POOL_MAX, DB_POOL_SIZE

if TYPE_CHECKING:
    from shop.common.settings import PlanCacheMode, ServiceSettings

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
        plan_cache_mode: PlanCacheMode = "auto",
    ) -> None:
        self._url = to_asyncpg_dsn(url)
        self._min, self._max, self._timeout = min_size, max_size, command_timeout
        self._plan_cache_mode = plan_cache_mode
        self._pool: asyncpg.Pool | None = None
        # Acquisitions in progress per pool, so a replaced pool closes only once unused.
        self._users: dict[int, int] = {}
        self._released = asyncio.Event()

    @classmethod
    def for_service(
        cls,
        settings: ServiceSettings,
        url: str,
        *,
        min_size: int | None = None,
        max_size: int | None = None,
    ) -> Database:
        """A pool on ``url`` as the service's settings bound and tune it (pool size, query
        timeout, ``plan_cache_mode``); ``min_size`` and ``max_size`` replace the settings'
        bounds where a process needs its own (a relay, a one-off recovery pass)."""
        return cls(
            url,
            min_size=settings.db_pool_min if min_size is None else min_size,
            max_size=settings.db_pool_max if max_size is None else max_size,
            command_timeout=settings.db_command_timeout,
            plan_cache_mode=settings.db_plan_cache_mode,
        )

    async def connect(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._url,
            min_size=self._min,
            max_size=self._max,
            command_timeout=self._timeout,
            reset=_reset_connection,
            server_settings={
                # Server-side statement timeout too, so a stuck query frees its connection.
                "statement_timeout": str(int(self._timeout * 1000)),
                # How a prepared statement (asyncpg prepares each one) is planned: PostgreSQL's
                # own choice ("auto") unless the service says otherwise (ServiceSettings).
                "plan_cache_mode": self._plan_cache_mode,
            },
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

    async def reconnect(self, url: str) -> None:
        """Swap in a pool on new credentials (rotation). Requests already holding or waiting
        for the old pool finish on it; it closes once the last of them is done."""
        old, old_url = self._pool, self._url
        self._url = to_asyncpg_dsn(url)
        try:
            await self.connect()
        except BaseException:
            self._url = old_url
            raise
        if old is not None:
            while self._users.get(id(old)):
                self._released.clear()
                await self._released.wait()
            await old.close()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        started = time.perf_counter()
        pool = self.pool
        key = id(pool)
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with pool.acquire() as conn:
                DB_POOL_ACQUIRE.observe(time.perf_counter() - started)
                yield conn
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                self._released.set()

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
