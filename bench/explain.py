"""``EXPLAIN (ANALYZE, BUFFERS)`` of the catalogue search's typical statements, on a catalogue
of the bench's own (docs/search.md prints this command's output).

    .venv/bin/python -m bench.explain                   # a scratch database, 100,000 products
    .venv/bin/python -m bench.explain --database URL    # an already loaded products database

Each statement is the one the product service sends (``shop.products.db.search_statement``),
with its values bound as parameters. It is shown twice: as planned for its values (PostgreSQL's
custom plan, what the first executions of a prepared statement get) and as the generic plan
a prepared statement may switch to after five executions (``plan_cache_mode =
force_generic_plan``), so a reader sees which indexes serve both. Then each is timed: the
median of 20 executions through asyncpg, as the service runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from decimal import Decimal
from typing import Any

import asyncpg

from bench.platform import scratch_catalogue
from shop.products.db import ProductRepository, SearchQuery, search_statement
from shop.products.schemas import search_words

TYPICAL: dict[str, dict[str, Any]] = {
    "one word": {"q": "kettle"},
    "two words": {"q": "compact lamp"},
    "a typo in each word": {"q": "wireles headphnes"},
    "a word and a filter": {"q": "walnut", "in_stock": True, "max_price": Decimal("100")},
    "a word, sorted by price": {"q": "chair", "sort": "price"},
    "a word in a category, by price": {"q": "chair", "category": "category-03", "sort": "price"},
    "filters only, by price":
        {"min_price": Decimal("20"), "max_price": Decimal("30"), "sort": "price"},
}  # fmt: skip


_SQL_TYPES = {int: "bigint", str: "text", Decimal: "numeric", list: "text[]"}


def _literal(value: Any) -> str:
    """A value as an SQL literal, for EXECUTE's arguments (this script's own values only)."""
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::text[]"
    return "'" + str(value).replace("'", "''") + "'"


def _plan(label: str, rows: list[Any]) -> str:
    return f"### {label}\n\n```\n" + "\n".join(r[0] for r in rows) + "\n```"


def query_of(spec: dict[str, Any]) -> SearchQuery:
    q = spec.get("q")
    return SearchQuery(
        words=None if q is None else search_words(q),
        category=spec.get("category"),
        min_price=spec.get("min_price"),
        max_price=spec.get("max_price"),
        in_stock=spec.get("in_stock", False),
        sort=spec.get("sort", "relevance"),
        limit=20,
        offset=0,
    )


async def explain(url: str) -> str:
    conn = await asyncpg.connect(url)
    out = [f"-- {await conn.fetchval('SELECT version()')}"]
    count = await conn.fetchval("SELECT count(*) FROM products")
    out.append(f"-- {count} products")
    try:
        for title, spec in TYPICAL.items():
            query = query_of(spec)
            repo = ProductRepository(conn)
            sql, args = search_statement(query)
            out.append(f"\n## {title}: {spec}\n")
            custom = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            out.append(_plan("custom plan (its values)", custom))
            # The generic plan, as a prepared statement may keep it: PREPARE, then EXECUTE.
            types = ", ".join(_SQL_TYPES[type(a)] for a in args)
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE typical ({types}) AS {sql}")
            values = ", ".join(_literal(a) for a in args)
            generic = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE typical ({values})")
            out.append(_plan("generic plan", generic))
            await conn.execute("DEALLOCATE typical")
            await conn.execute("RESET plan_cache_mode")
            timings = []
            for _ in range(20):
                started = time.perf_counter()
                rows, total = await repo.search(query)
                timings.append((time.perf_counter() - started) * 1000)
            out.append(
                f"through asyncpg: median {statistics.median(timings):.2f} ms,"
                f" max {max(timings):.2f} ms of 20 ({total} matches, {len(rows)} on the page)"
            )
    finally:
        await conn.close()
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="a migrated, loaded products database")
    parser.add_argument("--products", type=int, default=100_000)
    args = parser.parse_args()
    if args.database:
        print(asyncio.run(explain(args.database)))
        return
    with scratch_catalogue("explain", products=args.products) as url:
        print(asyncio.run(explain(url)))


if __name__ == "__main__":
    main()
