"""Orders with lines (issue 28): every order has its lines in ``order_lines``.

Each existing order becomes a one-line order: its product and quantity, the unit price its
total was computed from (total / quantity), and no name (the orders database never had it;
the REST answer shows null and GraphQL the product's current name). ``product_id`` and
``quantity`` stay on the order, NULL for an order of more lines. The downgrade goes back only
while no order has more than one line: the old table has no place for them.

Revision ID: orders_lines
Revises: orders_events
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orders_lines"
down_revision: str | None = "orders_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_lines",
        sa.Column(
            "order_id",
            sa.BigInteger,
            sa.ForeignKey("orders.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.SmallInteger, primary_key=True),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=True),
        sa.Column("available", sa.Integer, nullable=True),
        sa.CheckConstraint("quantity > 0", name="order_lines_quantity_positive"),
        sa.UniqueConstraint("order_id", "product_id", name="order_lines_one_per_product"),
    )
    op.execute(
        "INSERT INTO order_lines (order_id, position, product_id, quantity, unit_price)"
        " SELECT id, 0, product_id, quantity, round(total_price / quantity, 2) FROM orders"
    )
    op.alter_column("orders", "product_id", nullable=True)
    op.alter_column("orders", "quantity", nullable=True)


def downgrade() -> None:
    multi = (
        op.get_bind()
        .execute(sa.text("SELECT id FROM orders WHERE product_id IS NULL ORDER BY id LIMIT 5"))
        .scalars()
        .all()
    )
    if multi:
        raise RuntimeError(
            "cannot downgrade: orders with more than one line exist (orders"
            f" {', '.join(map(str, multi))}, ...); the old table holds one product per order"
        )
    op.alter_column("orders", "quantity", nullable=False)
    op.alter_column("orders", "product_id", nullable=False)
    op.drop_table("order_lines")
