"""The payments table (shared with Alembic) and its repository."""

from __future__ import annotations

from typing import Any

import asyncpg
import sqlalchemy as sa

from shop.common.idempotency import define_table

metadata = sa.MetaData()

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("payment_id", sa.String(40), nullable=False, unique=True),
    sa.Column("order_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("payment_method", sa.String(16), nullable=False),
    sa.Column("transaction_id", sa.String(64), nullable=True),
    sa.Column("refund_id", sa.String(64), nullable=True),
    sa.Column("failure_reason", sa.Text, nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("amount > 0", name="payments_amount_positive"),
    sa.CheckConstraint(
        "status IN ('pending', 'completed', 'failed', 'refunded')", name="payments_status_check"
    ),
    sa.CheckConstraint(
        "payment_method IN ('card', 'paypal', 'bank_transfer')", name="payments_method_check"
    ),
)
sa.Index("payments_user_idx", payments.c.user_id, payments.c.id)

idempotency_keys = define_table(metadata)

COLUMNS = (
    "id, payment_id, order_id, user_id, amount, currency, status, payment_method,"
    " transaction_id, failure_reason, created_at, updated_at"
)


class PaymentRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, **v: Any) -> Any:
        """Insert a pending payment; None if the order already has one."""
        return await self.conn.fetchrow(
            f"INSERT INTO payments (payment_id, order_id, user_id, amount, currency,"
            f" payment_method) VALUES ($1, $2, $3, $4, $5, $6)"
            f" ON CONFLICT (order_id) DO NOTHING RETURNING {COLUMNS}",
            v["payment_id"],
            v["order_id"],
            v["user_id"],
            v["amount"],
            v["currency"],
            v["payment_method"],
        )

    async def get(self, payment_id: str, *, lock: bool = False) -> Any:
        return await self.conn.fetchrow(
            f"SELECT {COLUMNS} FROM payments WHERE payment_id = $1"
            + (" FOR UPDATE" if lock else ""),
            payment_id,
        )

    async def by_order(self, order_id: int) -> Any:
        return await self.conn.fetchrow(
            f"SELECT {COLUMNS} FROM payments WHERE order_id = $1",
            order_id,
        )

    async def by_orders(self, order_ids: list[int], *, user_id: int | None) -> list[Any]:
        """The payments of ``order_ids`` (one query for a batch); only ``user_id``'s if given."""
        mine, args = (
            ("", (order_ids,)) if user_id is None else (" AND user_id = $2", (order_ids, user_id))
        )
        rows: list[Any] = await self.conn.fetch(
            f"SELECT {COLUMNS} FROM payments WHERE order_id = ANY($1::bigint[]){mine}"
            " ORDER BY order_id",
            *args,
        )
        return rows

    async def page_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[Any], int]:
        rows = await self.conn.fetch(
            f"SELECT {COLUMNS}, count(*) OVER () AS total FROM payments"
            " WHERE user_id = $1 ORDER BY id LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
        )
        total = (
            rows[0]["total"]
            if rows
            else await self.conn.fetchval(
                "SELECT count(*) FROM payments WHERE user_id = $1", user_id
            )
        )
        return rows, total

    async def set_status(
        self,
        payment_id: str,
        status: str,
        *,
        transaction_id: str | None = None,
        refund_id: str | None = None,
        reason: str | None = None,
    ) -> Any:
        return await self.conn.fetchrow(
            f"UPDATE payments SET status = $2,"
            " transaction_id = COALESCE($3, transaction_id), refund_id = COALESCE($4, refund_id),"
            f" failure_reason = $5, updated_at = now() WHERE payment_id = $1 RETURNING {COLUMNS}",
            payment_id,
            status,
            transaction_id,
            refund_id,
            reason,
        )
