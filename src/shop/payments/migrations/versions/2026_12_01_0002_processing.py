"""Payments: `processing` and `refunding`, committed before the provider is called, with a
lease.

Revision ID: payments_0002
Revises: payments_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "payments_0002"
down_revision: str | None = "payments_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("payments_status_check", "payments", type_="check")
    op.create_check_constraint(
        "payments_status_check",
        "payments",
        "status IN ('pending', 'processing', 'completed', 'failed', 'refunding', 'refunded')",
    )
    op.add_column(
        "payments", sa.Column("processing_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("payments", "processing_until")
    op.execute("UPDATE payments SET status = 'pending' WHERE status = 'processing'")
    op.execute("UPDATE payments SET status = 'completed' WHERE status = 'refunding'")
    op.drop_constraint("payments_status_check", "payments", type_="check")
    op.create_check_constraint(
        "payments_status_check",
        "payments",
        "status IN ('pending', 'completed', 'failed', 'refunded')",
    )
