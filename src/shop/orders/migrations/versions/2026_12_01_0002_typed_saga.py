"""The typed saga: a checked saga_step, the request fingerprint of an Idempotency-Key on the
order row (its one record), and no separate key table.

Revision ID: orders_0002
Revises: orders_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shop.common.idempotency import TABLE_DDL

revision: str = "orders_0002"
down_revision: str | None = "orders_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # 'reserved' (stock reserved, payment not yet asked for) is read as 'paying' now: recovery
    # voids by order id, which is right whether or not the payment was created.
    op.execute("UPDATE orders SET saga_step = 'paying' WHERE saga_step = 'reserved'")
    op.create_check_constraint(
        "orders_saga_step_check",
        "orders",
        "saga_step IN ('reserving', 'paying', 'compensating', 'cancelling', 'done')",
    )
    op.add_column("orders", sa.Column("request_fingerprint", sa.String(64), nullable=True))
    op.drop_table("idempotency_keys")


def downgrade() -> None:
    op.execute(TABLE_DDL)
    op.drop_column("orders", "request_fingerprint")
    op.drop_constraint("orders_saga_step_check", "orders", type_="check")
