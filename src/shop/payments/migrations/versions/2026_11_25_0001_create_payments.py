"""Create payments and idempotency_keys.

Revision ID: payments_0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shop.common.idempotency import TABLE_DDL
from shop.common.migrations import timestamps

revision: str = "payments_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payments",
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
        *timestamps(),
        sa.CheckConstraint("amount > 0", name="payments_amount_positive"),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'failed', 'refunded')", name="payments_status_check"
        ),
        sa.CheckConstraint(
            "payment_method IN ('card', 'paypal', 'bank_transfer')", name="payments_method_check"
        ),
    )
    op.create_index("payments_user_idx", "payments", ["user_id", "id"])
    op.execute(TABLE_DDL)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("payments")
