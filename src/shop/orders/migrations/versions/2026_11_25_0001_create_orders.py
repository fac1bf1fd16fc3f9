"""Create orders and idempotency_keys.

Revision ID: orders_0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shop.common.idempotency import TABLE_DDL
from shop.common.migrations import timestamps

revision: str = "orders_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
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
        *timestamps(),
        sa.CheckConstraint("quantity > 0", name="orders_quantity_positive"),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'shipped', 'delivered', 'failed', 'cancelled')",
            name="orders_status_check",
        ),
    )
    op.create_index("orders_user_idx", "orders", ["user_id", "id"])
    op.create_index(
        "orders_user_idempotency_key", "orders", ["user_id", "idempotency_key"], unique=True
    )
    op.create_index(
        "orders_unfinished_idx",
        "orders",
        ["lease_until"],
        postgresql_where=sa.text("status = 'pending' OR saga_step = 'cancelling'"),
    )
    op.execute(TABLE_DDL)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("orders")
