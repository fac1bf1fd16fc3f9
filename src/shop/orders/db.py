"""The orders repository, which returns typed ``Order``s (the table for Alembic: tables.py).

``saga_step`` records how far an order's saga got (``shop.orders.saga.SagaStep``; written only
where recovery needs it, see docs/orders-saga.md); ``lease_until`` says who may drive it: the
request that placed it, a cancel, or recovery once the lease has expired. The order row is also
the record of its ``Idempotency-Key`` (``idempotency_key`` + ``request_fingerprint``).
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from shop.common.events.outbox import traceparent, with_event
from shop.orders.saga import CANCELLABLE, Contact, Order, OrderLine, OrderStatus, SagaStep

# The one definition of an unfinished order (in SQL, where the partial index needs it): what
# recovery looks for, and what a driver may take a lease on.
UNFINISHED = "status = 'pending' OR saga_step = 'cancelling'"
EXPIRED = "(lease_until IS NULL OR lease_until < now())"


_ROW = (
    "id, user_id, product_id, quantity, total_price, currency, status, payment_id,"
    " payment_method, saga_step, failure_reason, request_fingerprint, created_at, updated_at"
)
# An order's lines as JSON in the REST shape (``OrderLineRead``, plus ``available``), so that
# a row read here and the data of its events (``to_jsonb`` of the row) both carry them.
_LINE = (
    "jsonb_build_object('product_id', l.product_id, 'name', l.name, 'quantity', l.quantity,"
    " 'unit_price', l.unit_price::text, 'line_total', (l.unit_price * l.quantity)::text,"
    " 'available', l.available)"
)
LINES = (
    f"coalesce((SELECT jsonb_agg({_LINE} ORDER BY l.position) FROM order_lines l"
    " WHERE l.order_id = orders.id), '[]'::jsonb) AS lines"
)


def _learned(first: int) -> str:
    """What a statement learned of an order's lines (each line's name, unit price and the
    stock a short line found), as a relation ``w`` of parameters ``$first`` to ``$first+3``."""
    a, b, c, d = (f"${first + i}" for i in range(4))
    return (
        f"unnest({a}::bigint[], {b}::text[], {c}::numeric[], {d}::int[])"
        " AS w(product_id, name, unit_price, available)"
    )


def _record_learned(first: int, *, where: str = "true") -> str:
    """The UPDATE of ``order_lines`` (of order ``$1``) that records what was learned."""
    return (
        "UPDATE order_lines l SET name = coalesce(w.name, l.name),"
        " unit_price = coalesce(w.unit_price, l.unit_price),"
        f" available = coalesce(w.available, l.available) FROM {_learned(first)}"
        f" WHERE l.order_id = $1 AND l.product_id = w.product_id AND {where}"
    )


def _lines_learned(first: int) -> str:
    """``LINES`` as a statement that also records what it learned leaves them: a statement
    reads the lines as they were before it, so what it learned is laid over them here."""
    return (
        f"coalesce((SELECT jsonb_agg({_LINE} ORDER BY l.position) FROM ("
        "SELECT o.position, o.product_id, o.quantity, coalesce(w.name, o.name) AS name,"
        " coalesce(w.unit_price, o.unit_price) AS unit_price,"
        " coalesce(w.available, o.available) AS available"
        f" FROM order_lines o LEFT JOIN {_learned(first)} ON w.product_id = o.product_id"
        " WHERE o.order_id = orders.id) l), '[]'::jsonb) AS lines"
    )


def _learned_args(
    lines: tuple[OrderLine, ...],
) -> tuple[list[int], list[str | None], list[Decimal | None], list[int | None]]:
    return (
        [line.product_id for line in lines],
        [line.name for line in lines],
        [line.unit_price for line in lines],
        [line.available for line in lines],
    )


COLUMNS = f"{_ROW}, {LINES}"
# The customer's contact as at placement, for the data of the order's events only (the REST
# answer does not show it; docs/events.md, "The customer's contact"): null when not recorded.
CUSTOMER = (
    "CASE WHEN customer_email IS NULL THEN NULL ELSE jsonb_build_object("
    "'username', customer_username, 'email', customer_email) END AS customer"
)
LEASE = "make_interval(secs => $2)"
# Each status transition is the event of its name (shop.order.paid, ...).
STATUS_EVENT = "'shop.order.' || status"


class OrderRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @staticmethod
    def _order(row: asyncpg.Record | None) -> Order | None:
        return None if row is None else Order.from_record(row)

    async def add(
        self,
        *,
        user_id: int,
        customer: Contact | None,
        lines: list[tuple[int, int]],
        currency: str,
        payment_method: str,
        idempotency_key: str | None,
        request_fingerprint: str | None,
        lease: float,
    ) -> Order | None:
        """A new pending order of ``lines`` (product_id, quantity) leased to its creator, with
        its lines and its ``shop.order.placed``, in one statement; None if the key already
        made one. ``customer`` is recorded for the order's events (``CUSTOMER``)."""
        single = lines[0] if len(lines) == 1 else (None, None)
        row = await self.conn.fetchrow(
            with_event(
                "INSERT INTO orders (user_id, product_id, quantity, currency, payment_method,"
                " idempotency_key, request_fingerprint, lease_until, customer_username,"
                " customer_email)"
                f" VALUES ($1, $3, $4, $5, $6, $7, $8, now() + {LEASE}, $12, $13)"
                " ON CONFLICT (user_id, idempotency_key) DO NOTHING"
                f" RETURNING {_ROW}, {CUSTOMER}",
                type_sql="'shop.order.placed'",
                stream="order",
                traceparent_param=9,
                also=(
                    "placed AS (INSERT INTO order_lines (order_id, position, product_id, quantity)"
                    " SELECT changed.id, w.n - 1, w.product_id, w.quantity FROM changed,"
                    " unnest($10::bigint[], $11::int[])"
                    " WITH ORDINALITY AS w(product_id, quantity, n)"
                    " RETURNING position, product_id, quantity)"
                ),
                data=(
                    "to_jsonb(changed) || jsonb_build_object('lines', (SELECT jsonb_agg("
                    "jsonb_build_object('product_id', product_id, 'name', NULL, 'quantity',"
                    " quantity, 'unit_price', NULL, 'line_total', NULL) ORDER BY position)"
                    " FROM placed))"
                ),
            ),
            user_id,
            lease,
            single[0],
            single[1],
            currency,
            payment_method,
            idempotency_key,
            request_fingerprint,
            traceparent(),
            [p for p, _ in lines],
            [q for _, q in lines],
            None if customer is None else customer.username,
            None if customer is None else customer.email,
        )
        if row is None:
            return None
        return Order.from_record(row, tuple(OrderLine(p, q) for p, q in lines))

    async def by_key(self, user_id: int, idempotency_key: str) -> Order | None:
        return self._order(
            await self.conn.fetchrow(
                f"SELECT {COLUMNS} FROM orders WHERE user_id = $1 AND idempotency_key = $2",
                user_id,
                idempotency_key,
            )
        )

    async def get(self, order_id: int) -> Order | None:
        return self._order(
            await self.conn.fetchrow(f"SELECT {COLUMNS} FROM orders WHERE id = $1", order_id)
        )

    async def page_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[Order], int]:
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
        return [Order.from_record(r) for r in rows], total

    async def page_all(
        self, status: OrderStatus | None, *, limit: int, offset: int
    ) -> tuple[list[Order], int]:
        """Every order (or those in ``status``), newest first."""
        wanted = None if status is None else status.value
        rows = await self.conn.fetch(
            f"SELECT {COLUMNS}, count(*) OVER () AS total FROM orders"
            " WHERE $1::text IS NULL OR status = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
            wanted,
            limit,
            offset,
        )
        total = (
            rows[0]["total"]
            if rows
            else await self.conn.fetchval(
                "SELECT count(*) FROM orders WHERE $1::text IS NULL OR status = $1", wanted
            )
        )
        return [Order.from_record(r) for r in rows], total

    async def take_lease(
        self, order_id: int, lease: float, *, cancel: bool = False
    ) -> Order | None:
        """Take the order for driving if it is unfinished (or, to cancel it, paid) and nobody
        holds it; a cancel records CANCELLING with the lease."""
        return self._order(
            await self.conn.fetchrow(
                f"UPDATE orders SET lease_until = now() + {LEASE},"
                " saga_step = CASE WHEN $3 THEN 'cancelling' ELSE saga_step END,"
                " updated_at = now()"
                f" WHERE id = $1 AND ({UNFINISHED} OR ($3 AND status = 'paid'))"
                f" AND {EXPIRED} RETURNING {COLUMNS}",
                order_id,
                lease,
                cancel,
            )
        )

    async def advance(
        self,
        order_id: int,
        step: SagaStep,
        *,
        total_price: Decimal | None,
        failure_reason: str | None,
        lines: tuple[OrderLine, ...] = (),
    ) -> None:
        """Record saga progress (and what it learned: the price, the lines' names and unit
        prices, or the stock a short line found) on an unfinished order, in one statement."""
        await self.conn.execute(
            f"WITH learned AS ({_record_learned(5)})"
            " UPDATE orders SET saga_step = $2, total_price = COALESCE($3, total_price),"
            " failure_reason = COALESCE($4, failure_reason), updated_at = now() WHERE id = $1",
            order_id,
            step.value,
            total_price,
            failure_reason,
            *_learned_args(lines),
        )

    async def finish(
        self,
        order_id: int,
        *,
        status: OrderStatus,
        reason: str | None,
        payment_id: str | None,
        total_price: Decimal | None,
        lines: tuple[OrderLine, ...] = (),
    ) -> Order | None:
        """Set a final saga outcome (only from a cancellable status) with what the saga
        learned (the price, the lines' names and unit prices) and release the lease, in one
        statement with its event; None if someone else finished it first."""
        return self._order(
            await self.conn.fetchrow(
                with_event(
                    "UPDATE orders SET status = $2, saga_step = 'done', failure_reason = $3,"
                    " payment_id = COALESCE($4, payment_id),"
                    " total_price = COALESCE($5, total_price), lease_until = NULL,"
                    f" updated_at = now() WHERE id = $1 AND status = ANY($6::text[])"
                    f" RETURNING {_ROW}, {_lines_learned(8)}, {CUSTOMER}",
                    type_sql=STATUS_EVENT,
                    stream="order",
                    traceparent_param=7,
                    # Only an order this statement finished: someone else's stands as it is.
                    also=f"learned AS ({_record_learned(8, where='EXISTS (SELECT FROM changed)')})",
                ),
                order_id,
                status.value,
                reason,
                payment_id,
                total_price,
                [s.value for s in CANCELLABLE],
                traceparent(),
                *_learned_args(lines),
            )
        )

    async def release_lease(self, order_id: int) -> None:
        await self.conn.execute(
            "UPDATE orders SET lease_until = now() WHERE id = $1 AND lease_until IS NOT NULL",
            order_id,
        )

    async def set_status(
        self, order_id: int, status: OrderStatus, from_status: OrderStatus
    ) -> Order | None:
        return self._order(
            await self.conn.fetchrow(
                with_event(
                    "UPDATE orders SET status = $2, updated_at = now()"
                    f" WHERE id = $1 AND status = $3 RETURNING {COLUMNS}, {CUSTOMER}",
                    type_sql=STATUS_EVENT,
                    stream="order",
                    traceparent_param=4,
                ),
                order_id,
                status.value,
                from_status.value,
                traceparent(),
            )
        )

    async def stuck(self, limit: int = 50) -> list[int]:
        rows = await self.conn.fetch(
            f"SELECT id FROM orders WHERE ({UNFINISHED}) AND {EXPIRED} ORDER BY id LIMIT $1",
            limit,
        )
        return [r["id"] for r in rows]

    async def count_stuck(self) -> int:
        return int(
            await self.conn.fetchval(
                f"SELECT count(*) FROM orders WHERE ({UNFINISHED}) AND {EXPIRED}"
            )
        )
