"""The customer's contact on the order (issue 31): ``customer_username`` and
``customer_email`` as they were when it was placed (from the access token's claims), so its
events carry them and the notification worker writes the mail without asking the user
service. NULL for orders placed before, and for a token issued without them: their mails are
addressed by the look-up, as before. The downgrade drops the two columns (and the copies).

Revision ID: orders_customer
Revises: orders_lines
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orders_customer"
down_revision: str | None = "orders_lines"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, with no default: adding them rewrites nothing, even on a large table.
    op.add_column("orders", sa.Column("customer_username", sa.String(32), nullable=True))
    op.add_column("orders", sa.Column("customer_email", sa.String(254), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "customer_email")
    op.drop_column("orders", "customer_username")
