"""The payments and idempotency_keys tables, for Alembic: apart from db.py (see
``shop.common.tables``)."""

from __future__ import annotations

import sqlalchemy as sa

from shop.common.tables import define_event_tables, define_idempotency_table
from shop.payments.lifecycle import PaymentStatus, sql_in

metadata = sa.MetaData()
outbox, inbox = define_event_tables(metadata)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("payment_id", sa.String(40), nullable=False, unique=True),
    sa.Column("order_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
    sa.Column("status", sa.String(16), nullable=False, server_default=PaymentStatus.PENDING.value),
    sa.Column("payment_method", sa.String(16), nullable=False),
    sa.Column("transaction_id", sa.String(64), nullable=True),
    sa.Column("refund_id", sa.String(64), nullable=True),
    sa.Column("failure_reason", sa.Text, nullable=True),
    sa.Column("processing_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("amount > 0", name="payments_amount_positive"),
    sa.CheckConstraint(f"status IN {sql_in(tuple(PaymentStatus))}", name="payments_status_check"),
    sa.CheckConstraint(
        "payment_method IN ('card', 'paypal', 'bank_transfer')", name="payments_method_check"
    ),
)
sa.Index("payments_user_idx", payments.c.user_id, payments.c.id)

idempotency_keys = define_idempotency_table(metadata)
