"""The users table (shared with Alembic) and its repository."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import sqlalchemy as sa

from shop.common.events.outbox import define_tables, traceparent, with_event

metadata = sa.MetaData()
outbox, inbox = define_tables(metadata)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("username", sa.String(32), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False, server_default="customer"),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("role IN ('customer', 'admin')", name="users_role_check"),
)
sa.Index("users_username_key", sa.func.lower(users.c.username), unique=True)
sa.Index("users_email_key", sa.func.lower(users.c.email), unique=True)

# Refresh tokens are opaque random strings; only their SHA-256 is stored. Each login starts a
# family; every refresh marks the token used and adds the next one to the family. A used token
# presented again means it was stolen (or replayed): the whole family is revoked.
refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("family", sa.Uuid, nullable=False),
    sa.Column("token_hash", sa.LargeBinary, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)
sa.Index("refresh_tokens_token_hash_key", refresh_tokens.c.token_hash, unique=True)
sa.Index("refresh_tokens_family_idx", refresh_tokens.c.family)
sa.Index("refresh_tokens_user_id_idx", refresh_tokens.c.user_id)

_COLUMNS = "id, username, email, role, created_at"


class UserExists(Exception):
    def __init__(self, field: str) -> None:
        self.field = field


class UserRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, *, username: str, email: str, password_hash: str, role: str) -> Any:
        try:
            # The event's data is the RETURNING columns: never the password hash.
            return await self.conn.fetchrow(
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

    async def get(self, user_id: int) -> Any:
        return await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE id = $1",
            user_id,
        )

    async def credentials(self, login: str) -> Any:
        """The user whose username or email is ``login`` (case-insensitive), with the hash."""
        return await self.conn.fetchrow(
            "SELECT id, role, password_hash FROM users"
            " WHERE lower(username) = lower($1) OR lower(email) = lower($1)"
            " ORDER BY lower(username) = lower($1) DESC LIMIT 1",
            login,
        )

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self.conn.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash
        )

    async def page(self, *, limit: int, offset: int) -> tuple[list[Any], int]:
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM users"
            " ORDER BY id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        total = rows[0]["total"] if rows else await self.conn.fetchval("SELECT count(*) FROM users")
        return rows, total

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

    async def lock(self, token_hash: bytes) -> Any:
        """The token's row, locked for this transaction, with whether it has expired."""
        return await self.conn.fetchrow(
            "SELECT id, user_id, family, used_at, revoked_at, expires_at <= now() AS expired"
            " FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
            token_hash,
        )

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
