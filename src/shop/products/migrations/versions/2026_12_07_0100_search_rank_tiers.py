"""Catalogue search ranks by tiers of weighted match tests instead of ts_rank: the function
products_search_ranks builds a query's tiers once (docs/search.md, "Ranking").

ts_rank read and scored every match's whole vector, about half of a broad search's cost; a
tier is one weighted ``@@`` test, and most matches stop at the first (docs/performance.md,
"Search without ts_rank"). No table or index changes: the vector and its weights are as before.

Revision ID: products_search_ranks
Revises: products_search
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "products_search_ranks"
down_revision: str | None = "products_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A query's words as four tsqueries, highest tier first: [1] every word's stem in the name
# (weight A); [2] every word in the name, by its stem or a typo key (D); [3] every word in
# the name or the category (B), typos allowed in the name; [4] some word in the name. Words
# as products_search_query takes them (stop words left out); all NULL when only stop words
# are left (every match then ranks 0). The stems are letters and digits (schemas.search_words
# splits at anything else), so a quote followed by a space only ever ends a lexeme. "\\:" is
# a plain colon (op.execute's text() would read ":A" as a bind parameter).
SEARCH_RANKS = r"""
CREATE FUNCTION products_search_ranks(words text[]) RETURNS tsquery[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    word text;
    stems text;
    keys text;
    one tsquery;
    exact tsquery;
    named tsquery;
    listed tsquery;
    partly tsquery;
BEGIN
    FOREACH word IN ARRAY words LOOP
        stems := plainto_tsquery('english', word)::text;
        CONTINUE WHEN stems = '';
        SELECT string_agg(quote_literal(k) || '\:D', ' | ') INTO keys
        FROM unnest(products_name_keys(word)) AS k;
        one := replace(stems || ' ', ''' ', '''\:A ')::tsquery;
        exact := CASE WHEN exact IS NULL THEN one ELSE exact && one END;
        one := CASE WHEN keys IS NULL THEN one ELSE one || keys::tsquery END;
        named := CASE WHEN named IS NULL THEN one ELSE named && one END;
        partly := CASE WHEN partly IS NULL THEN one ELSE partly || one END;
        one := replace(stems || ' ', ''' ', '''\:AB ')::tsquery;
        one := CASE WHEN keys IS NULL THEN one ELSE one || keys::tsquery END;
        listed := CASE WHEN listed IS NULL THEN one ELSE listed && one END;
    END LOOP;
    RETURN ARRAY[exact, named, listed, partly];
END
$$
"""


def upgrade() -> None:
    op.execute(SEARCH_RANKS)


def downgrade() -> None:
    op.execute("DROP FUNCTION products_search_ranks(text[])")
