"""The tables every service (or several) has, as SQLAlchemy metadata for Alembic's drift checks:
``outbox`` and ``inbox`` (``shop.common.events.outbox``) and ``idempotency_keys``
(``shop.common.idempotency``).

Each service's ``tables.py`` builds its metadata from these, for its Alembic ``env.py`` and the
migration drift test (tests/integration/test_migrations.py). They live apart from the services'
``db.py`` (the repositories, plain SQL on asyncpg) so that no service imports SQLAlchemy at
runtime: about 11 MB of RSS a process (tests/unit/test_runtime_imports.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def define_event_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Add ``outbox`` and ``inbox`` to a service's metadata (the migration creates them)."""
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "event_id",
            sa.Uuid,
            nullable=False,
            unique=True,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("data", postgresql.JSONB, nullable=False),
        sa.Column("traceparent", sa.Text, nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    sa.Index("outbox_unsent_idx", outbox.c.id, postgresql_where=outbox.c.sent_at.is_(None))
    sa.Index(
        "outbox_stream_unsent_idx",
        outbox.c.stream,
        outbox.c.id,
        postgresql_where=outbox.c.sent_at.is_(None),
    )
    sa.Index("outbox_sent_idx", outbox.c.sent_at, postgresql_where=outbox.c.sent_at.isnot(None))
    inbox = sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column(
            "handled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    return outbox, inbox


def define_idempotency_table(metadata: sa.MetaData) -> sa.Table:
    """``idempotency_keys`` (``shop.common.idempotency.TABLE_DDL``, which the migrations run)."""
    return sa.Table(
        "idempotency_keys",
        metadata,
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("response", postgresql.JSONB, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "locked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
