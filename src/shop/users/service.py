"""Use cases of the user service."""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.concurrency import run_in_threadpool

from shop.common.auth import SigningKeys, issue_access_token
from shop.common.db import Database
from shop.common.errors import Conflict, NotFound, Unauthorized
from shop.common.metrics import LOGINS, REGISTRATIONS
from shop.users.db import UserExists, UserRepository
from shop.users.schemas import TokenResponse, UserCreate
from shop.users.settings import UsersSettings


class Passwords:
    """argon2id hashing off the event loop; unknown users cost the same as wrong passwords."""

    def __init__(self, settings: UsersSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._dummy_hash = self._hasher.hash("not-a-real-password")

    async def hash(self, password: str) -> str:
        return await run_in_threadpool(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._dummy_hash, password) and (
                    password_hash is not None
                )
            except (VerificationError, InvalidHashError):
                return False

        return await run_in_threadpool(check)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


async def register(*, db: Database, passwords: Passwords, user_in: UserCreate) -> Any:
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


async def login(
    *,
    db: Database,
    passwords: Passwords,
    keys: SigningKeys,
    settings: UsersSettings,
    username: str,
    password: str,
) -> TokenResponse:
    async with db.acquire() as conn:
        user = await UserRepository(conn).credentials(username)
    password_hash = user["password_hash"] if user else None
    if not await passwords.verify(password_hash, password):
        LOGINS.labels("failure").inc()
        raise Unauthorized("Wrong username or password.")
    assert user is not None
    assert password_hash is not None
    if passwords.needs_rehash(password_hash):
        new_hash = await passwords.hash(password)
        async with db.acquire() as conn:
            await UserRepository(conn).set_password_hash(user["id"], new_hash)
    LOGINS.labels("success").inc()
    token = issue_access_token(
        keys,
        user_id=user["id"],
        role=user["role"],
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.access_token_ttl_seconds,
    )
    return TokenResponse(access_token=token, expires_in=settings.access_token_ttl_seconds)


async def get_user(*, db: Database, user_id: int) -> Any:
    async with db.acquire() as conn:
        user = await UserRepository(conn).get(user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    return user


async def list_users(*, db: Database, limit: int, offset: int) -> tuple[list[Any], int]:
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
