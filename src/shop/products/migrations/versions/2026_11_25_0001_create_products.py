"""Create products and stock_reservations.

Revision ID: products_0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shop.common.migrations import timestamps

revision: str = "products_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("stock", sa.Integer, nullable=False, server_default="0"),
        sa.Column("category", sa.String(100), nullable=True),
        *timestamps(),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("price > 0", name="products_price_positive"),
        sa.CheckConstraint("stock >= 0", name="products_stock_non_negative"),
    )
    op.create_index(
        "products_live_id_idx", "products", ["id"], postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.create_index(
        "products_category_idx",
        "products",
        ["category", "id"],
        postgresql_where=sa.text("deleted_at IS NULL"),
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


def downgrade() -> None:
    op.drop_table("stock_reservations")
    op.drop_table("products")
