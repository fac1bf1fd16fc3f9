"""The orders table (shared with Alembic) and its repository.

``saga_step`` records how far an order's saga got, written before and after every remote
call; ``lease_until`` says who may drive it: the request that placed it, a cancel, or recovery
once the lease has expired.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import sqlalchemy as sa

from shop.common.idempotency import define_table

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("product_id", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("total_price", sa.Numeric(12, 2), nullable=True),
    sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("payment_id", sa.String(40), nullable=True),
    sa.Column("payment_method", sa.String(16), nullable=False),
    sa.Column("saga_step", sa.String(24), nullable=False, server_default="reserving"),
    sa.Column("failure_reason", sa.String(64), nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("quantity > 0", name="orders_quantity_positive"),
    sa.CheckConstraint(
        "status IN ('pending', 'paid', 'shipped', 'delivered', 'failed', 'cancelled')",
        name="orders_status_check",
    ),
)
sa.Index("orders_user_idx", orders.c.user_id, orders.c.id)
sa.Index("orders_user_idempotency_key", orders.c.user_id, orders.c.idempotency_key, unique=True)
sa.Index(
    "orders_unfinished_idx",
    orders.c.lease_until,
    postgresql_where=sa.text("status = 'pending' OR saga_step = 'cancelling'"),
)
idempotency_keys = define_table(metadata)

COLUMNS = (
    "id, user_id, product_id, quantity, total_price, currency, status, payment_id,"
    " payment_method, saga_step, failure_reason, created_at, updated_at"
)
LEASE = "make_interval(secs => $2)"


class OrderRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(
        self,
        *,
        user_id: int,
        product_id: int,
        quantity: int,
        currency: str,
        payment_method: str,
        idempotency_key: str | None,
        lease: float,
    ) -> Any:
        """A new pending order leased to its creator; None if the key already made one."""
        return await self.conn.fetchrow(
            f"INSERT INTO orders (user_id, product_id, quantity, currency, payment_method,"
            f" idempotency_key, lease_until) VALUES ($1, $3, $4, $5, $6, $7, now() + {LEASE})"
            f" ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING {COLUMNS}",
            user_id,
            lease,
            product_id,
            quantity,
            currency,
            payment_method,
            idempotency_key,
        )

    async def by_key(self, user_id: int, idempotency_key: str) -> Any:
        return await self.conn.fetchrow(
            f"SELECT {COLUMNS} FROM orders WHERE user_id = $1 AND idempotency_key = $2",
            user_id,
            idempotency_key,
        )

    async def get(self, order_id: int) -> Any:
        return await self.conn.fetchrow(
            f"SELECT {COLUMNS} FROM orders WHERE id = $1",
            order_id,
        )

    async def page_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[Any], int]:
        rows = await self.conn.fetch(
            f"SELECT {COLUMNS}, count(*) OVER () AS total FROM orders WHERE user_id = $1"
            " ORDER BY id LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
        )
        total = (
            rows[0]["total"]
            if rows
            else await self.conn.fetchval("SELECT count(*) FROM orders WHERE user_id = $1", user_id)
        )
        return rows, total

    async def take_lease(self, order_id: int, lease: float, *, step: str | None = None) -> Any:
        """Take the order for driving if it is unfinished and nobody holds it."""
        return await self.conn.fetchrow(
            f"UPDATE orders SET lease_until = now() + {LEASE},"
            " saga_step = COALESCE($3, saga_step), updated_at = now()"
            " WHERE id = $1 AND (status = 'pending' OR saga_step = 'cancelling'"
            "   OR ($3 = 'cancelling' AND status = 'paid'))"
            f" AND (lease_until IS NULL OR lease_until < now()) RETURNING {COLUMNS}",
            order_id,
            lease,
            step,
        )

    async def advance(self, order_id: int, step: str, **fields: Any) -> Any:
        """Record saga progress (and the fields it learned) on an unfinished order."""
        return await self.conn.fetchrow(
            f"UPDATE orders SET saga_step = $2, total_price = COALESCE($3, total_price),"
            " payment_id = COALESCE($4, payment_id),"
            " failure_reason = COALESCE($5, failure_reason), updated_at = now()"
            f" WHERE id = $1 RETURNING {COLUMNS}",
            order_id,
            step,
            fields.get("total_price"),
            fields.get("payment_id"),
            fields.get("failure_reason"),
        )

    async def finish(
        self,
        order_id: int,
        *,
        status: str,
        from_statuses: tuple[str, ...],
        reason: str | None = None,
    ) -> Any:
        """Set a final saga outcome, only from the expected statuses; release the lease."""
        return await self.conn.fetchrow(
            f"UPDATE orders SET status = $2, saga_step = 'done', failure_reason = $3,"
            " lease_until = NULL, updated_at = now()"
            f" WHERE id = $1 AND status = ANY($4::text[]) RETURNING {COLUMNS}",
            order_id,
            status,
            reason,
            list(from_statuses),
        )

    async def release_lease(self, order_id: int) -> None:
        await self.conn.execute(
            "UPDATE orders SET lease_until = now() WHERE id = $1 AND lease_until IS NOT NULL",
            order_id,
        )

    async def set_status(self, order_id: int, status: str, from_status: str) -> Any:
        return await self.conn.fetchrow(
            f"UPDATE orders SET status = $2, updated_at = now()"
            f" WHERE id = $1 AND status = $3 RETURNING {COLUMNS}",
            order_id,
            status,
            from_status,
        )

    async def stuck(self, limit: int = 50) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT id FROM orders WHERE (status = 'pending' OR saga_step = 'cancelling')"
            " AND (lease_until IS NULL OR lease_until < now()) ORDER BY id LIMIT $1",
            limit,
        )
        return [r["id"] for r in rows]

    async def count_stuck(self) -> int:
        return int(
            await self.conn.fetchval(
                "SELECT count(*) FROM orders WHERE (status = 'pending' OR saga_step = 'cancelling')"
                " AND (lease_until IS NULL OR lease_until < now())"
            )
        )
