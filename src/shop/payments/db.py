"""The payments repository (the tables for Alembic: tables.py).

A payment is unique per order id: that is the key of create-and-confirm. ``processing`` and
``refunding`` (with ``processing_until``, a lease) are committed before the provider is called
and settled after, so no row lock or pooled connection is held while the provider answers.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shop.common.events.outbox import traceparent, with_event

COLUMNS = (
    "id, payment_id, order_id, user_id, amount, currency, status, payment_method,"
    " transaction_id, failure_reason, created_at, updated_at"
)


def _evented(
    statement: str,
    traceparent_param: int,
    where: str = "status IN ('completed', 'failed', 'refunded')",
) -> str:
    """``statement`` plus the event of the status it leaves (completed, failed, refunded)."""
    return with_event(
        statement,
        type_sql="'shop.payment.' || status",
        stream="payment",
        subject="payment_id",
        where=where,
        traceparent_param=traceparent_param,
    )


class PaymentRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(
        self,
        *,
        status: str = "pending",
        lease: float | None = None,
        reason: str | None = None,
        **v: Any,
    ) -> Any:
        """Insert a payment (``processing`` with a lease, to charge it now); None if the
        order already has one."""
        return await self.conn.fetchrow(
            _evented(
                "INSERT INTO payments (payment_id, order_id, user_id, amount, currency,"
                " payment_method, status, failure_reason, processing_until)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))"
                f" ON CONFLICT (order_id) DO NOTHING RETURNING {COLUMNS}",
                10,
            ),
            v["payment_id"],
            v["order_id"],
            v["user_id"],
            v["amount"],
            v["currency"],
            v["payment_method"],
            status,
            reason,
            lease,
            traceparent(),
        )

    async def claim(self, payment_id: str, lease: float) -> Any:
        """Take a pending payment (or one whose processing lease expired) for charging."""
        return await self.conn.fetchrow(
            "UPDATE payments SET status = 'processing', updated_at = now(),"
            " processing_until = now() + make_interval(secs => $2)"
            " WHERE payment_id = $1 AND (status = 'pending'"
            "   OR (status = 'processing' AND processing_until < now()))"
            f" RETURNING {COLUMNS}",
            payment_id,
            lease,
        )

    async def settle(
        self, payment_id: str, status: str, *, transaction_id: str | None, reason: str | None
    ) -> Any:
        """Record the provider's answer on a processing payment; None if it was settled."""
        return await self.conn.fetchrow(
            _evented(
                "UPDATE payments SET status = $2, transaction_id = $3, failure_reason = $4,"
                " processing_until = NULL, updated_at = now()"
                f" WHERE payment_id = $1 AND status = 'processing' RETURNING {COLUMNS}",
                5,
            ),
            payment_id,
            status,
            transaction_id,
            reason,
            traceparent(),
        )

    async def unclaim(self, payment_id: str) -> None:
        """The provider did not answer: let the next attempt settle it at once."""
        await self.conn.execute(
            "UPDATE payments SET processing_until = now()"
            " WHERE payment_id = $1 AND status IN ('processing', 'refunding')",
            payment_id,
        )

    async def claim_refund(self, payment_id: str, lease: float) -> Any:
        """Take a completed payment (or one whose refunding lease expired) for refunding."""
        return await self.conn.fetchrow(
            "UPDATE payments SET status = 'refunding', updated_at = now(),"
            " processing_until = now() + make_interval(secs => $2)"
            " WHERE payment_id = $1 AND (status = 'completed'"
            "   OR (status = 'refunding' AND processing_until < now()))"
            f" RETURNING {COLUMNS}",
            payment_id,
            lease,
        )

    async def settle_refund(self, payment_id: str, refund_id: str | None) -> Any:
        """Record an approved refund (None: already settled); without an id, the provider
        refused it and the payment is completed again."""
        status = "refunded" if refund_id else "completed"
        return await self.conn.fetchrow(
            _evented(
                "UPDATE payments SET status = $2, refund_id = $3, processing_until = NULL,"
                " updated_at = now()"
                f" WHERE payment_id = $1 AND status = 'refunding' RETURNING {COLUMNS}",
                4,
                where="status = 'refunded'",  # a refused refund is completed again: no event
            ),
            payment_id,
            status,
            refund_id,
            traceparent(),
        )

    async def void(self, payment_id: str, reason: str) -> Any:
        return await self.conn.fetchrow(
            _evented(
                "UPDATE payments SET status = 'failed', failure_reason = $2, updated_at = now()"
                f" WHERE payment_id = $1 AND status = 'pending' RETURNING {COLUMNS}",
                3,
            ),
            payment_id,
            reason,
            traceparent(),
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
            _evented(
                "UPDATE payments SET status = $2, transaction_id = COALESCE($3, transaction_id),"
                " refund_id = COALESCE($4, refund_id), failure_reason = $5, updated_at = now()"
                f" WHERE payment_id = $1 RETURNING {COLUMNS}",
                6,
            ),
            payment_id,
            status,
            transaction_id,
            refund_id,
            reason,
            traceparent(),
        )
