"""The orders table, for Alembic: apart from db.py (see
``shop.common.tables``)."""

from __future__ import annotations

import sqlalchemy as sa

from shop.common.tables import define_event_tables
from shop.common.types import IDEMPOTENCY_KEY_MAX
from shop.orders.db import UNFINISHED

metadata = sa.MetaData()
outbox, inbox = define_event_tables(metadata)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    # The seed's columns: a one-line order's product and quantity (NULL for more lines).
    sa.Column("product_id", sa.BigInteger, nullable=True),
    sa.Column("quantity", sa.Integer, nullable=True),
    sa.Column("total_price", sa.Numeric(12, 2), nullable=True),
    sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("payment_id", sa.String(40), nullable=True),
    sa.Column("payment_method", sa.String(16), nullable=False),
    sa.Column("saga_step", sa.String(24), nullable=False, server_default="reserving"),
    sa.Column("failure_reason", sa.String(64), nullable=True),
    sa.Column("idempotency_key", sa.String(IDEMPOTENCY_KEY_MAX), nullable=True),
    sa.Column("request_fingerprint", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    # The customer's contact as at placement (the token's claims), for its events' mails.
    sa.Column("customer_username", sa.String(32), nullable=True),
    sa.Column("customer_email", sa.String(254), nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("quantity > 0", name="orders_quantity_positive"),
    sa.CheckConstraint(
        "status IN ('pending', 'paid', 'shipped', 'delivered', 'failed', 'cancelled')",
        name="orders_status_check",
    ),
    sa.CheckConstraint(
        "saga_step IN ('reserving', 'paying', 'compensating', 'cancelling', 'done')",
        name="orders_saga_step_check",
    ),
)
# Every order's lines (a one-line order has one): ``position`` is the line's index as placed.
order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column(
        "order_id", sa.BigInteger, sa.ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
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
sa.Index("orders_user_idx", orders.c.user_id, orders.c.id)
sa.Index("orders_user_idempotency_key", orders.c.user_id, orders.c.idempotency_key, unique=True)
sa.Index(
    "orders_unfinished_idx",
    orders.c.lease_until,
    postgresql_where=sa.text(UNFINISHED),
)
