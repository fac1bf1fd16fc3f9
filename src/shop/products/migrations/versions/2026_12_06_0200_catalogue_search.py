"""Catalogue search: a weighted tsvector and the names' typo keys, each with a GIN index, and
the sort orders' indexes (docs/search.md).

Typo tolerance uses no extension: pg_trgm is not in the embedded server's build (pgserver
0.1.4 ships only plpgsql and vector), so the names' keys are their words and each word's
one-letter deletions, built by an SQL function into a generated ``text[]`` column with a
built-in GIN index. A query word matches when its own keys share one with a name's: any one
edit, and many two-edit typos (docs/search.md, "Typos"). The same path runs on the local
server, pgserver and RDS.

Revision ID: products_search
Revises: products_lines
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "products_search"
# TODO rechain: "products_lines" (main, the orders-with-lines work) is not on this branch yet;
# until it is, this revision follows products_events. On merge: down_revision = "products_lines".
down_revision: str | None = "products_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The one definition of a name's keys (shop.products.db builds a query word's keys with it too).
NAME_KEYS_FUNCTION = r"""
CREATE FUNCTION products_name_keys(name text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    WITH words AS (
        SELECT DISTINCT word FROM regexp_split_to_table(lower(name), '[^[:alnum:]]+') AS word
        WHERE word <> ''
    )
    SELECT coalesce(array_agg(DISTINCT key), '{}') FROM (
        SELECT word AS key FROM words
        UNION ALL
        SELECT substr(word, 1, i - 1) || substr(word, i + 1)
        FROM words, generate_series(1, length(word)) AS i
        WHERE length(word) >= 4
    ) AS keys
$$
"""

SEARCH_VECTOR = (
    "setweight(to_tsvector('english'::regconfig, name), 'A')"
    " || setweight(to_tsvector('english'::regconfig, coalesce(category, '')), 'B')"
    " || setweight(to_tsvector('english'::regconfig, description), 'C')"
)


def upgrade() -> None:
    op.execute(NAME_KEYS_FUNCTION)
    op.execute(
        f"ALTER TABLE products ADD COLUMN search_vector tsvector"
        f" GENERATED ALWAYS AS ({SEARCH_VECTOR}) STORED,"
        " ADD COLUMN name_keys text[] GENERATED ALWAYS AS (products_name_keys(name)) STORED"
    )
    live = "WHERE deleted_at IS NULL"
    op.execute(f"CREATE INDEX products_search_idx ON products USING gin (search_vector) {live}")
    op.execute(f"CREATE INDEX products_name_keys_idx ON products USING gin (name_keys) {live}")
    op.execute(f"CREATE INDEX products_price_idx ON products (price, id) {live}")
    op.execute(f"CREATE INDEX products_name_idx ON products (name, id) {live}")
    op.execute(f"CREATE INDEX products_created_idx ON products (created_at, id) {live}")


def downgrade() -> None:
    for index in ("created", "name", "price", "name_keys", "search"):
        op.execute(f"DROP INDEX products_{index}_idx")
    op.execute("ALTER TABLE products DROP COLUMN name_keys, DROP COLUMN search_vector")
    op.execute("DROP FUNCTION products_name_keys(text)")
