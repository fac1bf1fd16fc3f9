"""Room on every page of products for its own stock changes: fillfactor 85.

Every reservation and release changes the stock of its products' rows. On pages filled to the
brim (fillfactor 100, and the bench's COPY), nearly every such update wrote the new row on
another page, so it was not HOT and every index of the table took an entry for it: the search
vector's GIN index among them, whose pending list every search then reads in full. After 8,000
stock changes a search cost 4.82 ms of PostgreSQL CPU against 2.65 ms before them (2.72 once
``gin_clean_pending_list`` had emptied the list; docs/performance.md, "Stock changes and the
search index"). With 15% of each page free, a stock change stays on its page (no indexed column
changes: HOT) and no index sees it.

The setting applies to pages written from now on: an existing catalogue's full pages take it
when rewritten (``VACUUM FULL products`` or pg_repack, in a quiet hour; docs/search.md).

Revision ID: products_fillfactor
Revises: products_search_ranks
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "products_fillfactor"
down_revision: str | None = "products_search_ranks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 85


def upgrade() -> None:
    op.execute(f"ALTER TABLE products SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    op.execute("ALTER TABLE products RESET (fillfactor)")
