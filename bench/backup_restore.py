"""Backup and restore time against data size, to compare with the 1-hour RTO.

    .venv/bin/python -m bench.backup_restore                  # 10k, 100k, 1M orders
    .venv/bin/python -m bench.backup_restore --sizes 10000 50000

(As a module from the repository root: run as a file, bench/ would come first on sys.path
and bench/platform.py would hide the standard library's platform module.)

For each size it creates four migrated databases of its own (a random prefix on the server
`shop run` would use, or --server-url), fills them like a shop with that many orders (as many
payments and stock reservations, a user per 10 orders, 1000 products, an idempotency key per
4 orders), then times `shop backup` (pg_dump -Fc of the four, checksums, manifest) and
`shop restore` into fresh databases (verify checksums, pg_restore --jobs 2, ANALYZE, row-count
check). Prints a table and writes bench/results/backup_restore-<UTC time>.json. Everything it
creates is dropped again, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from shop.common.services import STATE_DIR
from shop.devtools.local import prepare
from shop.devtools.postgres import SERVICE_DATABASES, Server, drop_databases, find_server
from shop.ops import backup as ops_backup
from shop.ops import pgtools
from shop.ops import restore as ops_restore

RESULTS = Path(__file__).resolve().parent / "results"
RTO_SECONDS = 3600


def fill_sql() -> dict[str, list[str]]:
    """Per service, the statements that fill it; $1 is the number of orders, $2 of users.

    asyncpg wants every parameter used, hence the no-op ``WHERE $n > 0`` here and there.
    """
    return {
        "users": [
            "INSERT INTO users (username, email, password_hash)"
            " SELECT 'user' || i, 'user' || i || '@example.com',"
            " '$argon2id$v=19$m=19456,t=2,p=1$' || md5(i::text) || md5((-i)::text)"
            " FROM generate_series(1, $2::int) i WHERE $1::int > 0",
        ],
        "products": [
            "INSERT INTO products (name, description, price, stock, category)"
            " SELECT 'product ' || i, repeat('A fine product. ', 1 + i % 8),"
            " (1 + i % 500) + 0.99, 1000, 'cat' || i % 12 FROM generate_series(1, 1000) i"
            " WHERE $1::int > 0 AND $2::int > 0",
            "INSERT INTO reservations (order_id, status)"
            " SELECT i, CASE WHEN i % 9 = 0 THEN 'released' ELSE 'reserved' END"
            " FROM generate_series(1, $1::int) i WHERE $2::int > 0",
            "INSERT INTO reservation_lines (order_id, product_id, quantity, unit_price)"
            " SELECT i, 1 + i % 1000, 1 + i % 3, (1 + i % 500) + 0.99"
            " FROM generate_series(1, $1::int) i WHERE $2::int > 0",
        ],
        "orders": [
            "INSERT INTO orders (user_id, product_id, quantity, total_price, status, payment_id,"
            " payment_method, saga_step, idempotency_key)"
            " SELECT 1 + i % $2::int, 1 + i % 1000, 1 + i % 3,"
            " ((1 + i % 500) + 0.99) * (1 + i % 3),"
            " CASE WHEN i % 9 = 0 THEN 'cancelled' ELSE 'paid' END, 'pay_' || md5(i::text),"
            " 'card', 'done', CASE WHEN i % 4 = 0 THEN 'key-' || i END"
            " FROM generate_series(1, $1::int) i",
            "INSERT INTO order_lines (order_id, position, product_id, quantity, unit_price)"
            " SELECT id, 0, product_id, quantity, total_price / quantity FROM orders"
            " WHERE $1::int > 0 AND $2::int > 0",
            "INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response)"
            " SELECT 'orders:' || (1 + i % $2::int), 'key-' || i, md5(i::text), 201,"
            " jsonb_build_object('id', i, 'status', 'paid', 'total', '19.98')"
            " FROM generate_series(4, $1::int, 4) i",
        ],
        "payments": [
            "INSERT INTO payments (payment_id, order_id, user_id, amount, status, payment_method,"
            " transaction_id)"
            " SELECT 'pay_' || md5(i::text), i, 1 + i % $2::int,"
            " ((1 + i % 500) + 0.99) * (1 + i % 3),"
            " CASE WHEN i % 9 = 0 THEN 'refunded' ELSE 'completed' END, 'card',"
            " 'txn_' || md5((-i)::text) FROM generate_series(1, $1::int) i",
        ],
    }


async def fill(urls: dict[str, str], orders: int) -> None:
    users = max(orders // 10, 1)

    async def one(svc: str, statements: list[str]) -> None:
        conn = await asyncpg.connect(urls[svc])
        try:
            for sql in statements:
                await conn.execute(sql, orders, users)
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()

    await asyncio.gather(*(one(svc, sql) for svc, sql in fill_sql().items()))


async def database_bytes(server: Server, names: list[str]) -> int:
    conn = await asyncpg.connect(server.url)
    try:
        return int(
            await conn.fetchval(
                "SELECT sum(pg_database_size(datname)) FROM pg_database"
                " WHERE datname = ANY($1::text[])",
                names,
            )
        )
    finally:
        await conn.close()


def measure(server: Server, orders: int, work: Path) -> dict[str, Any]:
    source = f"bb{secrets.token_hex(3)}_"
    target = f"br{secrets.token_hex(3)}_"
    made = [source + db for db in SERVICE_DATABASES.values()]
    made += [target + db for db in SERVICE_DATABASES.values()]
    try:
        started = time.perf_counter()
        urls = prepare(server, prefix=source)
        asyncio.run(fill(urls, orders))
        fill_seconds = time.perf_counter() - started
        db_bytes = asyncio.run(database_bytes(server, made[:4]))
        taken = ops_backup.backup(server, work / source, prefix=source)
        restored = ops_restore.restore(server, taken.path, prefix=target, jobs=2)
        dump_bytes = sum(int(e["size"]) for e in taken.manifest["databases"].values())
        return {
            "orders": orders,
            "rows": restored.rows,
            "database_mb": round(db_bytes / 2**20, 1),
            "dump_mb": round(dump_bytes / 2**20, 1),
            "fill_s": round(fill_seconds, 2),
            "backup_s": round(taken.seconds, 2),
            "restore_s": round(restored.seconds, 2),
            "snapshot_skew_ms": taken.manifest["snapshot_skew_ms"],
        }
    finally:
        asyncio.run(drop_databases(server, made))
        shutil.rmtree(work / source, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--server-url", help="PostgreSQL server (default: as `shop run`)")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/...)")
    args = parser.parse_args(argv)

    server = find_server(STATE_DIR / "pgdata", configured=args.server_url)
    version_num, version = asyncio.run(pgtools.server_version(server.url))
    tools = pgtools.find_pg_tools(version_num // 10000)
    print(f"PostgreSQL {version} ({server.source}); pg_dump {tools.major} from {tools.bin_dir}")
    header = (
        f"{'orders':>10} {'rows':>10} {'db MB':>8} {'dump MB':>8}"
        f" {'backup s':>9} {'restore s':>10} {'restore rows/s':>15}"
    )
    print(header)
    results = []
    with tempfile.TemporaryDirectory(prefix="shop-bench-backup-") as tmp:
        for orders in args.sizes:
            row = measure(server, orders, Path(tmp))
            results.append(row)
            rate = row["rows"] / row["restore_s"]
            print(
                f"{orders:>10} {row['rows']:>10} {row['database_mb']:>8} {row['dump_mb']:>8}"
                f" {row['backup_s']:>9} {row['restore_s']:>10} {rate:>15,.0f}",
                flush=True,
            )
    largest = results[-1]
    per_order = largest["restore_s"] / largest["orders"]
    print(
        f"At the largest size's pace a restore fits the {RTO_SECONDS // 60}-minute RTO up to"
        f" about {int(RTO_SECONDS / per_order):,} orders (restore time only; see"
        " docs/disaster-recovery.md for the rest of the RTO budget)."
    )
    report = {
        "benchmark": "backup_restore",
        "created_at": datetime.now(UTC).isoformat(),
        "server": {"version": version, "source": server.source},
        "pg_dump_major": tools.major,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "rto_seconds": RTO_SECONDS,
        "results": results,
    }
    out = args.out or RESULTS / f"backup_restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
