"""What stock changes do to uncached search: PostgreSQL's CPU per search over the bench's mix
(``bench.search_cpu``) on a fresh scratch catalogue of this checkout, again after ``updates``
stock changes of random products (as reservations make them, one statement each), and again
once the search index's pending list is emptied (``gin_clean_pending_list``). The updates
that were HOT (no index entry) are counted from the table's statistics.

    .venv/bin/python -m bench.search_churn [--updates 8000] [--products 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys

import asyncpg

from bench.platform import ROOT, scratch_catalogue

CHANGE = "UPDATE products SET stock = stock - 1, updated_at = now() WHERE id = $1"


def search_cpu(url: str, label: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.search_cpu", "--database", url, "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in run.stdout.splitlines() if "PostgreSQL CPU" in line]
    print(f"{label}: {lines[-1].strip() if lines else run.stdout[-300:]}")


async def change_stock(url: str, products: int, updates: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        for product_id in random.sample(range(1, products + 1), updates):
            await conn.execute(CHANGE, product_id)
        await asyncio.sleep(1.5)  # the statistics are flushed at most once a second
        await conn.execute("SELECT pg_stat_force_next_flush()")
        row = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'products'"
        )
        print(f"{updates} stock changes: {row['n_tup_hot_upd']} of {row['n_tup_upd']} HOT")
    finally:
        await conn.close()


async def clean(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        pages = await conn.fetchval("SELECT gin_clean_pending_list('products_search_idx')")
        print(f"the search index's pending list: {pages} pages moved into the index")
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_churn", description=__doc__)
    parser.add_argument("--updates", type=int, default=8000)
    parser.add_argument("--products", type=int, default=100_000)
    args = parser.parse_args(argv)
    with scratch_catalogue("churn", products=args.products) as url:
        search_cpu(url, "fresh catalogue")
        asyncio.run(change_stock(url, args.products, args.updates))
        search_cpu(url, f"after {args.updates} stock changes")
        asyncio.run(clean(url))
        search_cpu(url, "after gin_clean_pending_list")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
