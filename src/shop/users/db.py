"""The users table (shared with Alembic) and its repository."""

from __future__ import annotations

from typing import Any

import asyncpg
import sqlalchemy as sa

metadata = sa.MetaData()

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

_COLUMNS = "id, username, email, role, created_at"


class UserExists(Exception):
    def __init__(self, field: str) -> None:
        self.field = field


class UserRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, *, username: str, email: str, password_hash: str, role: str) -> Any:
        try:
            return await self.conn.fetchrow(
                f"INSERT INTO users (username, email, password_hash, role)"
                f" VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                username,
                email,
                password_hash,
                role,
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
