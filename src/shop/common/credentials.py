"""Dynamic PostgreSQL credentials from Vault's database engine, kept alive while a service runs.

At start the service asks Vault for credentials (``database/creds/<role>``) and opens its pool
with them. A background task renews the lease at two thirds of its time; when Vault grants
less than asked (the role's ``max_ttl`` is near) or the lease is gone, it asks for new
credentials, opens a new pool on them and lets the old pool drain before closing it and
revoking the old lease. Requests never see a closed pool (``Database.reconnect``). If Vault is
down the old credentials stay in use and the task retries; only their expiry would stop new
connections (existing ones live on).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote, urlsplit, urlunsplit

from shop.common.db import Database
from shop.common.logging import get_logger
from shop.common.settings import ServiceSettings
from shop.common.vault import Lease, Vault, VaultConfig, VaultError

log = get_logger("shop.credentials")

RENEW_AT = 2 / 3  # of the lease's time
RETRY_SECONDS = 1.0


def with_credentials(url: str, username: str, password: str) -> str:
    """``url`` with its user and password replaced (host, database and options kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


class DatabaseCredentials:
    """One service's leased database login: issue, renew, rotate, revoke."""

    def __init__(self, vault: Vault, *, role: str, url: str) -> None:
        self._vault, self._role, self._url = vault, role, url
        self.lease: Lease | None = None
        self._asked = 0.0  # the role's default TTL: what every renewal asks for
        self.renewals = 0
        self.rotations = 0
        self.revoked: list[str] = []  # usernames whose leases this process revoked

    @property
    def url(self) -> str:
        if self.lease is None:
            raise RuntimeError("no credentials yet: call issue() first")
        return with_credentials(self._url, self.lease.username, self.lease.password)

    async def issue(self) -> str:
        """Fresh credentials (the first, or a rotation's); returns the database URL."""
        self.lease = await asyncio.to_thread(self._vault.database_credentials, self._role)
        self._asked = self._asked or self.lease.duration
        log.info("database credentials issued", username=self.lease.username)
        return self.url

    async def rotate(self, db: Database) -> None:
        """Move ``db`` onto new credentials, then revoke the old lease."""
        old = self.lease
        await self.issue()
        try:
            await db.reconnect(self.url)
        except BaseException:
            new, self.lease = self.lease, old
            if new is not None:
                await self._revoke(new)
            raise
        self.rotations += 1
        if old is not None:
            await self._revoke(old)

    async def renew(self) -> float:
        """Extend the lease; returns how long it now lasts (0 if it cannot be renewed)."""
        if self.lease is None or not self.lease.renewable:
            return 0.0
        granted = await asyncio.to_thread(
            self._vault.renew_lease, self.lease.lease_id, int(self._asked)
        )
        self.renewals += 1
        return granted

    async def keep_fresh(self, db: Database) -> None:
        """Renew, and rotate when the lease cannot be extended by a full TTL. Runs until
        cancelled."""
        assert self.lease is not None
        wait = self.lease.duration * RENEW_AT
        while True:
            await asyncio.sleep(max(wait, 0.1))
            try:
                try:
                    granted = await self.renew()
                except VaultError:
                    granted = 0.0  # revoked or expired: new credentials now
                if granted >= self._asked:
                    wait = granted * RENEW_AT
                    continue
                await self.rotate(db)
                assert self.lease is not None
                wait = self.lease.duration * RENEW_AT
            except Exception as exc:  # Vault or the database down: keep what works, retry
                log.warning("database credentials not refreshed", error=type(exc).__name__)
                wait = RETRY_SECONDS

    async def _revoke(self, lease: Lease) -> None:
        try:
            await asyncio.to_thread(self._vault.revoke_lease, lease.lease_id)
            self.revoked.append(lease.username)
        except VaultError as exc:
            log.warning("lease not revoked (it will expire)", error=str(exc)[:200])

    async def close(self) -> None:
        if self.lease is not None:
            await self._revoke(self.lease)
            self.lease = None


@asynccontextmanager
async def leased_database(credentials: DatabaseCredentials, db: Database) -> AsyncIterator[None]:
    """Keep ``db`` (opened on ``credentials.url``) on live credentials for the block's time;
    revoke the lease at the end, after the pool is closed by its owner."""
    task = asyncio.create_task(credentials.keep_fresh(db), name="database-credentials")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class VaultRuntime:
    """A service's Vault connection for its lifetime: the client (None without Vault) and,
    when a database role is configured, the leased database credentials."""

    def __init__(self, vault: Vault | None, credentials: DatabaseCredentials | None) -> None:
        self.vault, self.credentials = vault, credentials

    @classmethod
    async def open(cls, settings: ServiceSettings) -> VaultRuntime:
        config = VaultConfig.from_fields(settings.vault_fields())
        if config is None:
            return cls(None, None)
        vault = await asyncio.to_thread(Vault.connect, config, default_role=settings.service_name)
        credentials = None
        if settings.vault_database_role:
            credentials = DatabaseCredentials(
                vault,
                role=settings.vault_database_role,
                url=settings.database_url.get_secret_value(),
            )
            await credentials.issue()
        return cls(vault, credentials)

    def database_url(self, configured: str) -> str:
        return self.credentials.url if self.credentials is not None else configured

    def keep_database_fresh(self, db: Database) -> contextlib.AbstractAsyncContextManager[None]:
        if self.credentials is None:
            return contextlib.nullcontext()
        return leased_database(self.credentials, db)

    async def close(self) -> None:
        """After the pool is closed: revoke the lease, drop the client."""
        if self.credentials is not None:
            await self.credentials.close()
        if self.vault is not None:
            self.vault.close()
