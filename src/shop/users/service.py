"""Use cases of the user service."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shop.common.auth import SigningKeys, issue_access_token
from shop.common.db import Connection, Database
from shop.common.errors import Conflict, NotFound, Unauthorized
from shop.common.metrics import LOGINS, REGISTRATIONS
from shop.users.db import Credentials, RefreshTokenRepository, User, UserExists, UserRepository
from shop.users.limits import AuthLimits
from shop.users.schemas import TokenResponse, UserCreate
from shop.users.settings import UsersSettings


class Passwords:
    """argon2id hashing off the event loop; unknown users cost the same as wrong passwords.

    Hashes run a few at a time (one per ``parallelism`` cores), on threads of their own: each
    one already keeps that many cores busy, so more at once adds no throughput, only
    ``argon2_memory_kib`` each; with no bound, 8 concurrent logins took the process to 615 MB
    (bench/, docs/performance.md).

    glibc's malloc is left as it is: after the first hash it keeps each thread's 19 MiB buffer
    in that thread's arena and reuses it. Fixing its mmap threshold at 1 MiB (mallopt, until
    issue 12's memory round) handed every buffer back when its hash ended, so every login
    page-faulted 19 MiB in afresh: alternating the two, ``python -m bench --duration 8
    --no-baselines --scenarios login`` measured 46.0, 48.0, 46.6 ms of CPU per login with the
    mallopt and 35.5, 30.5, 34.2 ms without, the user service peaking at 115-116 MB either
    way (the two buffers are in use at the peak both ways; without the mallopt they stay
    between logins: 94.8 MB at rest after start-up instead of 76.3, ``python -m bench.rss``).
    Both peaks are under 150 MB; only without it is a login under 40 ms.
    """

    def __init__(self, settings: UsersSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._dummy_hash = self._hasher.hash("not-a-real-password")
        slots = max(1, (os.cpu_count() or 1) // settings.argon2_parallelism)
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="argon2")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._hasher.hash, password
        )

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._dummy_hash, password) and (
                    password_hash is not None
                )
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.get_running_loop().run_in_executor(self._executor, check)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


async def register(
    *,
    db: Database,
    passwords: Passwords,
    limits: AuthLimits,
    client: str,
    user_in: UserCreate,
) -> User:
    await limits.before_register(client=client, username=user_in.username, email=user_in.email)
    password_hash = await passwords.hash(user_in.password)
    async with db.acquire() as conn:
        try:
            user = await UserRepository(conn).add(
                username=user_in.username,
                email=str(user_in.email).lower(),
                password_hash=password_hash,
                role="customer",
            )
        except UserExists as exc:
            raise Conflict(f"A user with this {exc.field} already exists.") from None
    REGISTRATIONS.inc()
    return user


def _refresh_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _issue_tokens(
    conn: Connection,
    *,
    keys: SigningKeys,
    settings: UsersSettings,
    user: User | Credentials,
    family: uuid.UUID,
) -> TokenResponse:
    """A refresh token (recorded) and an access token for ``user``, which carries the
    user's contact (``issue_access_token``)."""
    refresh_token = secrets.token_urlsafe(32)
    await RefreshTokenRepository(conn).add(
        user_id=user.id,
        family=family,
        token_hash=_refresh_hash(refresh_token),
        ttl_seconds=settings.refresh_token_ttl_seconds,
    )
    access_token = issue_access_token(
        keys,
        user_id=user.id,
        role=user.role,
        username=user.username,
        email=user.email,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.access_token_ttl_seconds,
    )
    return TokenResponse(
        access_token=access_token,
        expires_in=settings.access_token_ttl_seconds,
        refresh_token=refresh_token,
        refresh_expires_in=settings.refresh_token_ttl_seconds,
    )


async def login(
    *,
    db: Database,
    passwords: Passwords,
    keys: SigningKeys,
    settings: UsersSettings,
    limits: AuthLimits,
    client: str,
    username: str,
    password: str,
) -> TokenResponse:
    # Limits, lookup and hashing are the same whether the account exists or not.
    await limits.before_login(client=client, login=username)
    async with db.acquire() as conn:
        user = await UserRepository(conn).credentials(username)
    password_hash = user.password_hash if user else None
    if not await passwords.verify(password_hash, password):
        LOGINS.labels("failure").inc()
        await limits.login_failed(login=username)
        raise Unauthorized("Wrong username or password.")
    assert user is not None
    assert password_hash is not None
    await limits.login_succeeded(login=username)
    if passwords.needs_rehash(password_hash):
        new_hash = await passwords.hash(password)
        async with db.acquire() as conn:
            await UserRepository(conn).set_password_hash(user.id, new_hash)
    LOGINS.labels("success").inc()
    async with db.acquire() as conn:
        return await _issue_tokens(
            conn,
            keys=keys,
            settings=settings,
            user=user,
            family=uuid.uuid4(),
        )


async def refresh(
    *, db: Database, keys: SigningKeys, settings: UsersSettings, refresh_token: str
) -> TokenResponse:
    """Exchange a refresh token for new tokens. A token used twice revokes its family."""
    invalid = Unauthorized("The refresh token is invalid, expired or revoked.")
    async with db.acquire() as conn, conn.transaction():
        repo = RefreshTokenRepository(conn)
        row = await repo.lock(_refresh_hash(refresh_token))
        if row is None or row.revoked_at is not None or row.expired:
            raise invalid
        if row.used_at is not None:
            reused = True
            await repo.revoke_family(row.family)
        else:
            reused = False
            await repo.mark_used(row.id)
            user = await UserRepository(conn).get(row.user_id)
            if user is not None:
                return await _issue_tokens(
                    conn,
                    keys=keys,
                    settings=settings,
                    user=user,
                    family=row.family,
                )
    if reused:
        LOGINS.labels("refresh_reuse").inc()
    raise invalid


async def logout(*, db: Database, refresh_token: str) -> None:
    """Revoke the refresh token's family (this login's session). Unknown tokens are ignored."""
    async with db.acquire() as conn, conn.transaction():
        repo = RefreshTokenRepository(conn)
        family = await repo.family_of(_refresh_hash(refresh_token))
        if family is not None:
            await repo.revoke_family(family)


async def purge_refresh_tokens(*, db: Database) -> int:
    async with db.acquire() as conn:
        return await RefreshTokenRepository(conn).purge_expired()


async def get_user(*, db: Database, user_id: int) -> User:
    async with db.acquire() as conn:
        user = await UserRepository(conn).get(user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    return user


async def list_users(*, db: Database, limit: int, offset: int) -> tuple[list[User], int]:
    async with db.acquire() as conn:
        return await UserRepository(conn).page(limit=limit, offset=offset)


async def ensure_admin(*, db: Database, passwords: Passwords, settings: UsersSettings) -> bool:
    if settings.admin_password is None:
        return False
    password_hash = await passwords.hash(settings.admin_password.get_secret_value())
    async with db.acquire() as conn:
        return await UserRepository(conn).ensure_admin(
            username=settings.admin_username,
            email=settings.admin_email.lower(),
            password_hash=password_hash,
        )
