"""The payments repository (the tables for Alembic: tables.py).

A payment is unique per order id: that is the key of create-and-confirm. ``processing`` and
``refunding`` (with ``processing_until``, a lease) are committed before the provider is called
and settled after, so no row lock or pooled connection is held while the provider answers.
Every status change is one conditional UPDATE along an edge of ``lifecycle.EDGES``, its status
literals taken from ``PaymentStatus``; every read returns a ``Payment``.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from shop.common.events.outbox import traceparent, with_event
from shop.payments.lifecycle import (
    CLAIMS,
    EVENTED,
    Payment,
    PaymentStatus,
    refund_settles_to,
    sql_in,
)

S = PaymentStatus
COLUMNS = (
    "id, payment_id, order_id, user_id, amount, currency, status, payment_method,"
    " transaction_id, failure_reason, created_at, updated_at"
)


def _evented(
    statement: str, traceparent_param: int, where: str = f"status IN {sql_in(EVENTED)}"
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


def _payment(row: asyncpg.Record | None) -> Payment | None:
    return None if row is None else Payment.from_record(row)


class PaymentRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(
        self,
        *,
        payment_id: str,
        order_id: int,
        user_id: int,
        amount: Decimal,
        currency: str,
        payment_method: str,
        status: PaymentStatus = S.PENDING,
        lease: float | None = None,
        reason: str | None = None,
    ) -> Payment | None:
        """Insert a payment (``processing`` with a lease, to charge it now); None if the
        order already has one."""
        row = await self.conn.fetchrow(
            _evented(
                "INSERT INTO payments (payment_id, order_id, user_id, amount, currency,"
                " payment_method, status, failure_reason, processing_until)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))"
                f" ON CONFLICT (order_id) DO NOTHING RETURNING {COLUMNS}",
                10,
            ),
            payment_id,
            order_id,
            user_id,
            amount,
            currency,
            payment_method,
            status.value,
            reason,
            lease,
            traceparent(),
        )
        return _payment(row)

    async def claim(self, payment_id: str, lease: float) -> Payment | None:
        """Take a pending payment (or one whose processing lease expired) for charging."""
        row = await self.conn.fetchrow(
            f"UPDATE payments SET status = '{S.PROCESSING}', updated_at = now(),"
            " processing_until = now() + make_interval(secs => $2)"
            f" WHERE payment_id = $1 AND (status = '{S.PENDING}'"
            f"   OR (status = '{S.PROCESSING}' AND processing_until < now()))"
            f" RETURNING {COLUMNS}",
            payment_id,
            lease,
        )
        return _payment(row)

    async def settle(
        self,
        payment_id: str,
        status: PaymentStatus,
        *,
        transaction_id: str | None,
        reason: str | None,
    ) -> Payment | None:
        """Record the provider's answer on a processing payment; None if it was settled."""
        row = await self.conn.fetchrow(
            _evented(
                "UPDATE payments SET status = $2, transaction_id = $3, failure_reason = $4,"
                " processing_until = NULL, updated_at = now()"
                f" WHERE payment_id = $1 AND status = '{S.PROCESSING}' RETURNING {COLUMNS}",
                5,
            ),
            payment_id,
            status.value,
            transaction_id,
            reason,
            traceparent(),
        )
        return _payment(row)

    async def unclaim(self, payment_id: str) -> None:
        """The provider did not answer: let the next attempt settle it at once."""
        await self.conn.execute(
            "UPDATE payments SET processing_until = now()"
            f" WHERE payment_id = $1 AND status IN {sql_in(CLAIMS)}",
            payment_id,
        )

    async def claim_refund(self, payment_id: str, lease: float) -> Payment | None:
        """Take a completed payment (or one whose refunding lease expired) for refunding."""
        row = await self.conn.fetchrow(
            f"UPDATE payments SET status = '{S.REFUNDING}', updated_at = now(),"
            " processing_until = now() + make_interval(secs => $2)"
            f" WHERE payment_id = $1 AND (status = '{S.COMPLETED}'"
            f"   OR (status = '{S.REFUNDING}' AND processing_until < now()))"
            f" RETURNING {COLUMNS}",
            payment_id,
            lease,
        )
        return _payment(row)

    async def settle_refund(self, payment_id: str, refund_id: str | None) -> Payment | None:
        """Record an approved refund (None: already settled); without an id, the provider
        refused it and the payment is completed again."""
        status = refund_settles_to(approved=refund_id is not None)
        row = await self.conn.fetchrow(
            _evented(
                "UPDATE payments SET status = $2, refund_id = $3, processing_until = NULL,"
                " updated_at = now()"
                f" WHERE payment_id = $1 AND status = '{S.REFUNDING}' RETURNING {COLUMNS}",
                4,
                where=f"status = '{S.REFUNDED}'",  # a refused refund is completed again: no event
            ),
            payment_id,
            status.value,
            refund_id,
            traceparent(),
        )
        return _payment(row)

    async def void(self, payment_id: str, reason: str) -> Payment | None:
        """Fail a pending payment without charging it; None if it is not pending."""
        row = await self.conn.fetchrow(
            _evented(
                f"UPDATE payments SET status = '{S.FAILED}', failure_reason = $2,"
                f" updated_at = now() WHERE payment_id = $1 AND status = '{S.PENDING}'"
                f" RETURNING {COLUMNS}",
                3,
            ),
            payment_id,
            reason,
            traceparent(),
        )
        return _payment(row)

    async def get(self, payment_id: str) -> Payment | None:
        row = await self.conn.fetchrow(
            f"SELECT {COLUMNS} FROM payments WHERE payment_id = $1", payment_id
        )
        return _payment(row)

    async def by_order(self, order_id: int) -> Payment | None:
        row = await self.conn.fetchrow(
            f"SELECT {COLUMNS} FROM payments WHERE order_id = $1", order_id
        )
        return _payment(row)

    async def by_orders(self, order_ids: list[int], *, user_id: int | None) -> list[Payment]:
        """The payments of ``order_ids`` (one query for a batch); only ``user_id``'s if given."""
        mine, args = (
            ("", (order_ids,)) if user_id is None else (" AND user_id = $2", (order_ids, user_id))
        )
        rows = await self.conn.fetch(
            f"SELECT {COLUMNS} FROM payments WHERE order_id = ANY($1::bigint[]){mine}"
            " ORDER BY order_id",
            *args,
        )
        return [Payment.from_record(r) for r in rows]

    async def page_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[Payment], int]:
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
        return [Payment.from_record(r) for r in rows], total
