"""The users and refresh_tokens tables, for Alembic: apart from db.py (see
``shop.common.tables``)."""

from __future__ import annotations

import sqlalchemy as sa

from shop.common.tables import define_event_tables

metadata = sa.MetaData()
outbox, inbox = define_event_tables(metadata)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("username", sa.String(32), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False, server_default="customer"),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("role IN ('customer', 'admin')", name="users_role_check"),
)
sa.Index("users_username_key", sa.func.lower(users.c.username), unique=True)
sa.Index("users_email_key", sa.func.lower(users.c.email), unique=True)

# Refresh tokens are opaque random strings; only their SHA-256 is stored. Each login starts a
# family; every refresh marks the token used and adds the next one to the family. A used token
# presented again means it was stolen (or replayed): the whole family is revoked.
refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("family", sa.Uuid, nullable=False),
    sa.Column("token_hash", sa.LargeBinary, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)
sa.Index("refresh_tokens_token_hash_key", refresh_tokens.c.token_hash, unique=True)
sa.Index("refresh_tokens_family_idx", refresh_tokens.c.family)
sa.Index("refresh_tokens_user_id_idx", refresh_tokens.c.user_id)
