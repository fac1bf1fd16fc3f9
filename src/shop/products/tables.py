"""The products, reservations and reservation_lines tables, for Alembic: apart from db.py (see
``shop.common.tables``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from shop.common.tables import define_event_tables

metadata = sa.MetaData()
outbox, inbox = define_event_tables(metadata)

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
    sa.Column("stock", sa.Integer, nullable=False, server_default="0"),
    sa.Column("category", sa.String(100), nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    # Catalogue search (migration products_search, docs/search.md): the weighted words, and
    # at weight D the name's typo keys (the migration's function products_name_keys).
    sa.Column(
        "search_vector",
        postgresql.TSVECTOR,
        sa.Computed(
            "setweight(to_tsvector('english'::regconfig, name), 'A')"
            " || setweight(to_tsvector('english'::regconfig, coalesce(category, '')), 'B')"
            " || setweight(to_tsvector('english'::regconfig, description), 'C')"
            " || setweight(array_to_tsvector(products_name_keys(name)), 'D')",
            persisted=True,
        ),
    ),
    sa.CheckConstraint("price > 0", name="products_price_positive"),
    sa.CheckConstraint("stock >= 0", name="products_stock_non_negative"),
    # 15% of each page free, so a stock change is a HOT update that no index sees (migration
    # products_fillfactor; docs/search.md, "Stock changes stay out of the indexes").
    postgresql_with={"fillfactor": 85},
)
sa.Index("products_live_id_idx", products.c.id, postgresql_where=products.c.deleted_at.is_(None))
sa.Index(
    "products_category_idx",
    products.c.category,
    products.c.id,
    postgresql_where=products.c.deleted_at.is_(None),
)
_LIVE = products.c.deleted_at.is_(None)
sa.Index(
    "products_search_idx", products.c.search_vector, postgresql_using="gin", postgresql_where=_LIVE
)
for _name, _column in (("price", "price"), ("name", "name"), ("created", "created_at")):
    sa.Index(f"products_{_name}_idx", products.c[_column], products.c.id, postgresql_where=_LIVE)

# An order's reservation (one per order id, whatever it holds) and its lines (one per product).
# A reservation with no lines is a tombstone: the order was released before it reserved.
reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("order_id", sa.BigInteger, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("status IN ('reserved', 'released')", name="reservations_status_check"),
)

reservation_lines = sa.Table(
    "reservation_lines",
    metadata,
    sa.Column(
        "order_id",
        sa.BigInteger,
        sa.ForeignKey("reservations.order_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("product_id", sa.BigInteger, primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
    sa.CheckConstraint("quantity > 0", name="reservation_lines_quantity_check"),
)
sa.Index("reservation_lines_product_idx", reservation_lines.c.product_id)
