"""Add the events outbox and inbox (shop.common.events.outbox, docs/events.md).

Revision ID: orders_events
Revises: orders_0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from shop.common.events.migration import create_event_tables, drop_event_tables

revision: str = "orders_events"
down_revision: str | None = "orders_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_event_tables()


def downgrade() -> None:
    drop_event_tables()
