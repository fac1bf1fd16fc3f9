"""The users repository (the tables, as Alembic sees them: tables.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from shop.common.events.outbox import traceparent, with_event

_COLUMNS = "id, username, email, role, created_at"


Role = Literal["customer", "admin"]


@dataclass(frozen=True, slots=True)
class User:
    """A user as the repository reads it (``_COLUMNS``: never the password hash)."""

    id: int
    username: str
    email: str
    role: Role
    created_at: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> User:
        return cls(
            id=row["id"],
            username=row["username"],
            email=row["email"],
            role=row["role"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user to log in: the hash, and what the tokens carry."""

    id: int
    username: str
    email: str
    role: Role
    password_hash: str


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A refresh token's row, locked, with whether it has expired."""

    id: int
    user_id: int
    family: uuid.UUID
    used_at: datetime | None
    revoked_at: datetime | None
    expired: bool


class UserExists(Exception):
    def __init__(self, field: str) -> None:
        self.field = field


class UserRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, *, username: str, email: str, password_hash: str, role: Role) -> User:
        try:
            # The event's data is the RETURNING columns: never the password hash.
            row = await self.conn.fetchrow(
                with_event(
                    "INSERT INTO users (username, email, password_hash, role)"
                    f" VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                    type_sql="'shop.user.registered'",
                    stream="user",
                    traceparent_param=5,
                ),
                username,
                email,
                password_hash,
                role,
                traceparent(),
            )
        except asyncpg.UniqueViolationError as exc:
            raise UserExists(
                "email" if "email" in (exc.constraint_name or "") else "username"
            ) from None
        return User.of(row)

    async def get(self, user_id: int) -> User | None:
        row = await self.conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
        return None if row is None else User.of(row)

    async def credentials(self, login: str) -> Credentials | None:
        """The user whose username or email is ``login`` (case-insensitive), with the hash."""
        row = await self.conn.fetchrow(
            "SELECT id, username, email, role, password_hash FROM users"
            " WHERE lower(username) = lower($1) OR lower(email) = lower($1)"
            " ORDER BY lower(username) = lower($1) DESC LIMIT 1",
            login,
        )
        return None if row is None else Credentials(**row)

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self.conn.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash
        )

    async def page(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM users"
            " ORDER BY id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        total: int = (
            rows[0]["total"] if rows else await self.conn.fetchval("SELECT count(*) FROM users")
        )
        return [User.of(r) for r in rows], total

    async def ensure_admin(self, *, username: str, email: str, password_hash: str) -> bool:
        """Create the bootstrap admin unless a user of that name exists. True if created."""
        created = await self.conn.fetchval(
            "INSERT INTO users (username, email, password_hash, role)"
            " VALUES ($1, $2, $3, 'admin') ON CONFLICT DO NOTHING RETURNING true",
            username,
            email,
            password_hash,
        )
        return bool(created)


class RefreshTokenRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(
        self, *, user_id: int, family: uuid.UUID, token_hash: bytes, ttl_seconds: int
    ) -> None:
        await self.conn.execute(
            "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            user_id,
            family,
            token_hash,
            float(ttl_seconds),
        )

    async def lock(self, token_hash: bytes) -> RefreshToken | None:
        """The token's row, locked for this transaction, with whether it has expired."""
        row = await self.conn.fetchrow(
            "SELECT id, user_id, family, used_at, revoked_at, expires_at <= now() AS expired"
            " FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
            token_hash,
        )
        return None if row is None else RefreshToken(**row)

    async def mark_used(self, token_id: int) -> None:
        await self.conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", token_id)

    async def revoke_family(self, family: uuid.UUID) -> int:
        status = await self.conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL",
            family,
        )
        return int(status.split()[-1])

    async def family_of(self, token_hash: bytes) -> uuid.UUID | None:
        family: uuid.UUID | None = await self.conn.fetchval(
            "SELECT family FROM refresh_tokens WHERE token_hash = $1", token_hash
        )
        return family

    async def purge_expired(self) -> int:
        status = await self.conn.execute(
            "DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'"
        )
        return int(status.split()[-1])
