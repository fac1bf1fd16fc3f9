"""Reservations with lines: one reservation per order, one line per product (issue 28).

``stock_reservations`` kept one product per order id. Each of its rows becomes a reservation
with that one line; a tombstone (a release that came first, quantity 0) becomes a reservation
with no lines. The downgrade goes back only while every reservation has at most one line: a
multi-line reservation has no place in the old table, and dropping it would lose stock.

Revision ID: products_lines
Revises: products_events
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shop.common.migrations import timestamps

revision: str = "products_lines"
down_revision: str | None = "products_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("order_id", sa.BigInteger, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        *timestamps(),
        sa.CheckConstraint("status IN ('reserved', 'released')", name="reservations_status_check"),
    )
    op.create_table(
        "reservation_lines",
        sa.Column(
            "order_id",
            sa.BigInteger,
            sa.ForeignKey("reservations.order_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("product_id", sa.BigInteger, primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
        sa.CheckConstraint("quantity > 0", name="reservation_lines_quantity_check"),
    )
    op.create_index("reservation_lines_product_idx", "reservation_lines", ["product_id"])
    op.execute(
        "INSERT INTO reservations (order_id, status, created_at, updated_at)"
        " SELECT order_id, status, created_at, updated_at FROM stock_reservations"
    )
    op.execute(
        "INSERT INTO reservation_lines (order_id, product_id, quantity, unit_price)"
        " SELECT order_id, product_id, quantity, unit_price FROM stock_reservations"
        " WHERE quantity > 0 AND unit_price IS NOT NULL"
    )
    op.drop_table("stock_reservations")


def downgrade() -> None:
    multi = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT order_id FROM reservation_lines GROUP BY order_id HAVING count(*) > 1"
                " LIMIT 5"
            )
        )
        .scalars()
        .all()
    )
    if multi:
        raise RuntimeError(
            "cannot downgrade: reservations with more than one line exist (orders"
            f" {', '.join(map(str, multi))}, ...); the old table holds one product per order"
        )
    op.create_table(
        "stock_reservations",
        sa.Column("order_id", sa.BigInteger, primary_key=True),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        *timestamps(),
        sa.CheckConstraint("status IN ('reserved', 'released')", name="reservations_status_check"),
        sa.CheckConstraint("quantity >= 0", name="reservations_quantity_check"),
    )
    # A tombstone had the product it was released for; that is not kept, so 0 stands for it.
    op.execute(
        "INSERT INTO stock_reservations"
        " (order_id, product_id, quantity, unit_price, status, created_at, updated_at)"
        " SELECT r.order_id, coalesce(l.product_id, 0), coalesce(l.quantity, 0), l.unit_price,"
        " r.status, r.created_at, r.updated_at"
        " FROM reservations r LEFT JOIN reservation_lines l USING (order_id)"
    )
    op.drop_table("reservation_lines")
    op.drop_table("reservations")
