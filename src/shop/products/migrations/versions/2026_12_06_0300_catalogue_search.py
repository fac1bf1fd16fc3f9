"""Catalogue search: one weighted tsvector with the names' typo keys in it, its GIN index, and
the sort orders' indexes (docs/search.md).

Typo tolerance uses no extension: pg_trgm is not in the embedded server's build (pgserver
0.1.4 ships only plpgsql and vector), so a name's typo keys are its words and each word's
one-letter deletions, marked with a leading "~" and kept in the same tsvector at weight D. A
query word matches when its stem does, or when one of its own keys is one of the name's: any
one edit, and many two-edit typos (docs/search.md, "Typos"). A whole query is one tsquery, so
one GIN index scan answers it, on the local server, pgserver and RDS alike.

Revision ID: products_search
Revises: products_lines
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "products_search"
down_revision: str | None = "products_lines"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PL/pgSQL, not SQL: a generated column calls it once a row, and an SQL function (a query per
# call) made loading 100,000 products four times slower than this loop (docs/search.md).
NAME_KEYS = r"""
CREATE FUNCTION products_name_keys(name text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    word text;
    keys text[] := '{}';
BEGIN
    FOREACH word IN ARRAY regexp_split_to_array(lower(name), '[^[:alnum:]]+') LOOP
        CONTINUE WHEN word = '' OR ('~' || word) = ANY (keys);
        keys := keys || ('~' || word);
        IF length(word) >= 4 THEN
            FOR i IN 1..length(word) LOOP
                keys := keys || ('~' || substr(word, 1, i - 1) || substr(word, i + 1));
            END LOOP;
        END IF;
    END LOOP;
    RETURN keys;
END
$$
"""

# A query's words as one tsquery: every word must match, by its stem or by one of its typo
# keys. Stop words ("the", "with") are left out unless nothing else is left. The keys are
# letters and digits after a "~", so quote_literal makes each a plain tsquery lexeme.
SEARCH_QUERY = r"""
CREATE FUNCTION products_search_query(words text[]) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    word text;
    stems tsquery;
    keys tsquery;
    found tsquery;
BEGIN
    FOR pass IN 1..2 LOOP
        FOREACH word IN ARRAY words LOOP
            stems := plainto_tsquery('english', word);
            CONTINUE WHEN pass = 1 AND numnode(stems) = 0;
            SELECT string_agg(quote_literal(k), ' | ')::tsquery INTO keys
            FROM unnest(products_name_keys(word)) AS k;
            CONTINUE WHEN keys IS NULL;
            keys := CASE WHEN numnode(stems) = 0 THEN keys ELSE stems || keys END;
            found := CASE WHEN found IS NULL THEN keys ELSE found && keys END;
        END LOOP;
        EXIT WHEN found IS NOT NULL;
    END LOOP;
    RETURN found;
END
$$
"""

SEARCH_VECTOR = (
    "setweight(to_tsvector('english'::regconfig, name), 'A')"
    " || setweight(to_tsvector('english'::regconfig, coalesce(category, '')), 'B')"
    " || setweight(to_tsvector('english'::regconfig, description), 'C')"
    " || setweight(array_to_tsvector(products_name_keys(name)), 'D')"
)


def upgrade() -> None:
    op.execute(NAME_KEYS)
    op.execute(SEARCH_QUERY)
    op.execute(
        "ALTER TABLE products ADD COLUMN search_vector tsvector"
        f" GENERATED ALWAYS AS ({SEARCH_VECTOR}) STORED"
    )
    live = "WHERE deleted_at IS NULL"
    op.execute(f"CREATE INDEX products_search_idx ON products USING gin (search_vector) {live}")
    op.execute(f"CREATE INDEX products_price_idx ON products (price, id) {live}")
    op.execute(f"CREATE INDEX products_name_idx ON products (name, id) {live}")
    op.execute(f"CREATE INDEX products_created_idx ON products (created_at, id) {live}")


def downgrade() -> None:
    for index in ("created", "name", "price", "search"):
        op.execute(f"DROP INDEX products_{index}_idx")
    op.execute("ALTER TABLE products DROP COLUMN search_vector")
    op.execute("DROP FUNCTION products_search_query(text[])")
    op.execute("DROP FUNCTION products_name_keys(text)")
