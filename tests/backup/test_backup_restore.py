"""`shop backup` and `shop restore` against real PostgreSQL: fill the four databases, back up,
destroy them, restore, and prove every table, sequence, index and constraint identical.

The databases are this module's own (a random prefix on the suite's server), never the
developer's userdb etc.; everything made here is dropped at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shop.cli import main
from shop.devtools.local import prepare
from shop.devtools.postgres import SERVICE_DATABASES, Server, drop_databases
from shop.ops import backup as ops_backup
from shop.ops import errors, pgtools, retention
from shop.ops import manifest as mf
from shop.ops import restore as ops_restore

ORDERS = 300

FILL = {
    "users": [
        "INSERT INTO users (username, email, password_hash, role)"
        " SELECT 'user' || i, 'user' || i || '@example.com', '$argon2id$v=19$' || md5(i::text),"
        " CASE WHEN i % 10 = 0 THEN 'admin' ELSE 'customer' END FROM generate_series(1, 60) i",
        "INSERT INTO users (username, email, password_hash) VALUES"
        " ('Zoë', 'zoë@exämple.com', 'quote '' and \\ backslash')",
        "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, used_at)"
        " SELECT 1 + i % 60, gen_random_uuid(), sha256(i::text::bytea), now() + interval '1 day',"
        " CASE WHEN i % 2 = 0 THEN now() END FROM generate_series(1, 40) i",
    ],
    "products": [
        "INSERT INTO products (name, description, price, stock, category, deleted_at)"
        " SELECT 'product ' || i, repeat('lorem ', i % 7), (i * 1.37)::numeric(12, 2) + 0.01,"
        " i % 50, CASE WHEN i % 3 = 0 THEN NULL ELSE 'cat' || i % 4 END,"
        " CASE WHEN i % 17 = 0 THEN now() END FROM generate_series(1, 80) i",
        f"INSERT INTO reservations (order_id, status)"
        f" SELECT i, CASE WHEN i % 5 = 0 THEN 'released' ELSE 'reserved' END"
        f" FROM generate_series(1, {ORDERS}) i",
        f"INSERT INTO reservation_lines (order_id, product_id, quantity, unit_price)"
        f" SELECT i, 1 + i % 80, 1 + i % 3, 9.99 FROM generate_series(1, {ORDERS}) i",
    ],
    "orders": [
        f"INSERT INTO orders (user_id, product_id, quantity, total_price, status, payment_id,"
        f" payment_method, saga_step, idempotency_key)"
        f" SELECT 1 + i % 60, 1 + i % 80, 1 + i % 3, 9.99 * (1 + i % 3),"
        f" (ARRAY['pending','paid','shipped','delivered','failed','cancelled'])[1 + i % 6],"
        f" 'pay_' || i, 'card', 'done', CASE WHEN i % 4 = 0 THEN 'key-' || i END"
        f" FROM generate_series(1, {ORDERS}) i",
        "INSERT INTO order_lines (order_id, position, product_id, quantity, unit_price)"
        " SELECT id, 0, product_id, quantity, 9.99 FROM orders",
    ],
    "payments": [
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response)"
        " SELECT 'refunds:' || i, 'key-' || i, md5(i::text), 201,"
        " jsonb_build_object('id', i, 'note', 'ünïcödé \"quoted\"')"
        " FROM generate_series(1, 50) i",
        f"INSERT INTO payments (payment_id, order_id, user_id, amount, status, payment_method,"
        f" transaction_id, failure_reason)"
        f" SELECT 'pay_' || i, i, 1 + i % 60, 9.99 * (1 + i % 3),"
        f" (ARRAY['pending','completed','failed','refunded'])[1 + i % 4], 'card',"
        f" 'txn_' || i, CASE WHEN i % 4 = 2 THEN 'declined' END"
        f" FROM generate_series(1, {ORDERS}) i",
    ],
}


async def _fill(urls: dict[str, str]) -> None:
    for svc, statements in FILL.items():
        conn = await asyncpg.connect(urls[svc])
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()


def _normalized(definition: str) -> str:
    """A constraint's text without casts and parentheses: PostgreSQL deparses a restored
    ``x IN ('a', 'b')`` check with its casts placed differently, meaning the same."""
    return re.sub(r"::[a-z ]+(\[\])?|[()\s]", "", definition)


async def _contents(url: str) -> dict[str, Any]:
    """Everything a restore must bring back: rows, sequence positions, indexes, constraints."""
    conn = await asyncpg.connect(url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        out: dict[str, Any] = {}
        for table in tables:
            rows = await conn.fetch(f'SELECT t.* FROM "{table}" t ORDER BY t::text')
            out[f"rows:{table}"] = [tuple(r.items()) for r in rows]
        out["sequences"] = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1"
            )
        ]
        out["indexes"] = [
            r["indexdef"]
            for r in await conn.fetch(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        out["constraints"] = [
            (table, name, _normalized(definition))
            for table, name, definition in await conn.fetch(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                " FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
            )
        ]
        return out
    finally:
        await conn.close()


def contents(server: Server, prefix: str) -> dict[str, dict[str, Any]]:
    async def all_() -> dict[str, dict[str, Any]]:
        return {
            svc: await _contents(server.database_url(prefix + db))
            for svc, db in SERVICE_DATABASES.items()
        }

    return asyncio.run(all_())


def names(prefix: str) -> list[str]:
    return [prefix + db for db in SERVICE_DATABASES.values()]


@pytest.fixture(scope="module")
def source(pg_server: Server) -> Iterator[str]:
    """Four migrated, filled databases under a prefix of this module's own; dropped after."""
    prefix = f"bk{secrets.token_hex(3)}_"
    urls = prepare(pg_server, prefix=prefix)
    asyncio.run(_fill(urls))
    yield prefix
    asyncio.run(drop_databases(pg_server, names(prefix)))


@pytest.fixture
def other_prefix(pg_server: Server) -> Iterator[str]:
    prefix = f"rs{secrets.token_hex(3)}_"
    yield prefix
    asyncio.run(drop_databases(pg_server, names(prefix)))


@pytest.fixture(scope="module")
def taken(pg_server: Server, source: str, tmp_path_factory) -> ops_backup.BackupResult:
    return ops_backup.backup(pg_server, tmp_path_factory.mktemp("backups"), prefix=source)


def test_manifest_records_files_checksums_sizes_and_row_counts(taken, source):
    manifest = json.loads((taken.path / mf.MANIFEST).read_text())
    assert manifest == taken.manifest
    assert mf.NAME_PATTERN.match(taken.path.name)
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    assert manifest["server_version_num"] >= 150000
    assert manifest["pg_dump_major"] >= manifest["server_version_num"] // 10000
    assert manifest["snapshot_skew_ms"] >= 0
    assert set(manifest["databases"]) == set(SERVICE_DATABASES)
    for svc, entry in manifest["databases"].items():
        dump = taken.path / entry["file"]
        assert entry["database"] == source + SERVICE_DATABASES[svc]
        assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
        assert entry["size"] == dump.stat().st_size
        assert entry["sha256"] == mf.sha256_of(dump)
        assert oct(dump.stat().st_mode & 0o777) == "0o600"  # dumps hold password hashes
    tables = {svc: entry["tables"] for svc, entry in manifest["databases"].items()}
    assert tables["orders"]["public.orders"] == ORDERS
    assert tables["payments"]["public.payments"] == ORDERS
    assert tables["products"]["public.reservations"] == ORDERS
    assert tables["orders"]["public.order_lines"] == ORDERS
    assert tables["users"]["public.users"] == 61
    assert tables["users"]["public.refresh_tokens"] == 40
    assert tables["payments"]["public.idempotency_keys"] == 50
    assert all(t["public.alembic_version"] == 1 for t in tables.values())


def test_destroyed_databases_come_back_identical(pg_server, source, taken):
    before = contents(pg_server, source)
    assert len(before["orders"]["rows:orders"]) == ORDERS
    asyncio.run(drop_databases(pg_server, names(source)))

    result = ops_restore.restore(pg_server, taken.path)

    assert result.databases == dict(zip(SERVICE_DATABASES, names(source), strict=True))
    assert contents(pg_server, source) == before
    # The identity sequences continue where they were: no id is handed out twice.
    after = dict(contents(pg_server, source)["orders"]["sequences"])
    assert after["orders_id_seq"] == ORDERS
    assert set(after) == {"orders_id_seq", "outbox_id_seq"}  # the events outbox has its own


def test_restore_refuses_to_overwrite_without_force_then_replaces(pg_server, source, taken):
    before = contents(pg_server, source)
    with pytest.raises(errors.BackupError, match="--force"):
        ops_restore.restore(pg_server, taken.path)

    async def damage() -> None:
        conn = await asyncpg.connect(pg_server.database_url(source + "orderdb"))
        try:
            await conn.execute("DELETE FROM orders WHERE id % 2 = 0")
            await conn.execute("CREATE TABLE added_after_backup (id int)")
        finally:
            await conn.close()

    asyncio.run(damage())
    ops_restore.restore(pg_server, taken.path, force=True, services=["orders"])
    assert contents(pg_server, source) == before  # recreated: the later table is gone too


def test_clean_restore_keeps_the_database(pg_server, source, taken):
    before = contents(pg_server, source)

    async def damage() -> None:
        conn = await asyncpg.connect(pg_server.database_url(source + "paymentdb"))
        try:
            await conn.execute("UPDATE payments SET amount = amount + 1")
        finally:
            await conn.close()

    asyncio.run(damage())
    ops_restore.restore(pg_server, taken.path, force=True, clean=True, services=["payments"])
    assert contents(pg_server, source) == before


def test_cli_restores_into_new_names_next_to_the_live_ones(
    pg_server, source, taken, other_prefix, capsys
):
    code = main(
        ["restore", str(taken.path), "--server-url", pg_server.url, "--prefix", other_prefix]
    )
    assert code == 0, capsys.readouterr().err
    assert "counts match the manifest" in capsys.readouterr().out
    assert contents(pg_server, other_prefix) == contents(pg_server, source)


def test_cli_backup_and_keep(pg_server, source, tmp_path, capsys):
    dest = tmp_path / "backups"
    for stale in ("20200101T000000Z", "20200102T000000Z"):
        (dest / stale).mkdir(parents=True)
        (dest / stale / mf.MANIFEST).write_text("{}")
    args = ["backup", "--server-url", pg_server.url, "--prefix", source, "--dest", str(dest)]
    with pytest.raises(SystemExit, match="includes Vault's snapshot"):
        main([*args, "--keep", "2"])  # a backup without the secrets only when asked for
    assert main([*args, "--keep", "2", "--without-vault"]) == 0
    out = capsys.readouterr().out
    assert f"deleted {dest / '20200101T000000Z'}" in out
    kept = [b.path.name for b in retention.list_backups(dest)]
    assert len(kept) == 2
    assert kept[1] == "20200102T000000Z"
    mf.verify(dest / kept[0])


def test_a_tampered_backup_is_refused_before_anything_is_touched(
    pg_server, source, taken, tmp_path
):
    copy = tmp_path / taken.path.name
    copy.mkdir()
    for f in taken.path.iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    dump = copy / f"{source}orderdb.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern changed
    dump.write_bytes(bytes(data))
    before = contents(pg_server, source)

    with pytest.raises(errors.BackupCorrupt, match=r"orderdb\.dump does not match its SHA-256"):
        ops_restore.restore(pg_server, copy, force=True)
    assert contents(pg_server, source) == before

    dump.write_bytes(bytes(data[:-10]))
    with pytest.raises(errors.BackupCorrupt, match="bytes, manifest says"):
        mf.verify(copy)
    (copy / f"{source}userdb.dump").unlink()
    with pytest.raises(errors.BackupCorrupt, match=r"userdb\.dump is missing"):
        mf.verify(copy)
    (copy / mf.MANIFEST).write_text("{not json")
    with pytest.raises(errors.BackupCorrupt, match="not valid JSON"):
        mf.verify(copy)


def test_restore_reports_rows_that_do_not_match_the_manifest(
    pg_server, source, taken, other_prefix, tmp_path
):
    # A manifest that claims one more order than the dump holds: the restore must say so.
    copy = tmp_path / taken.path.name
    copy.mkdir()
    for f in taken.path.iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    manifest = json.loads((copy / mf.MANIFEST).read_text())
    manifest["databases"]["orders"]["tables"]["public.orders"] += 1
    (copy / mf.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(errors.RestoreMismatch, match=r"public.orders': \(301, 300\)"):
        ops_restore.restore(pg_server, copy, prefix=other_prefix, services=["orders"])


def test_the_bundled_postgresql_16_tools_work_too(pg_server, source, other_prefix, tmp_path):
    # What the container image uses: pgserver's pg_dump/pg_restore 16, whatever the server.
    tools = pgtools.find_pg_tools(16)
    taken = ops_backup.backup(pg_server, tmp_path, prefix=source, tools=tools)
    assert taken.manifest["pg_dump_major"] == tools.major
    ops_restore.restore(pg_server, taken.path, prefix=other_prefix, tools=tools)
    assert contents(pg_server, other_prefix) == contents(pg_server, source)


# --- retention (no database) -----------------------------------------------------------------


def _fake_backups(dest: Path, created: list[datetime]) -> None:
    for at in created:
        folder = dest / at.strftime(mf.NAME_FORMAT)
        folder.mkdir(parents=True)
        (folder / mf.MANIFEST).write_text("{}")


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_prune_keeps_the_newest_n(tmp_path):
    _fake_backups(tmp_path, [NOW - timedelta(hours=h) for h in range(6)])
    (tmp_path / "notes.txt").write_text("not a backup")
    (tmp_path / "20261126T115900Z").mkdir()  # no manifest: not a backup, left alone
    deleted = retention.prune(tmp_path, keep=3, now=NOW)
    assert sorted(p.name for p in deleted) == [
        "20261126T070000Z",
        "20261126T080000Z",
        "20261126T090000Z",
    ]
    assert [b.created_at for b in retention.list_backups(tmp_path)] == [
        NOW - timedelta(hours=h) for h in range(3)
    ]
    assert (tmp_path / "notes.txt").exists()
    assert (tmp_path / "20261126T115900Z").exists()


def test_prune_by_age_never_deletes_the_last_backup(tmp_path):
    _fake_backups(tmp_path, [NOW - timedelta(days=d) for d in (10, 20, 40)])
    assert retention.prune(tmp_path, max_age=timedelta(days=15), now=NOW, dry_run=True)
    assert len(retention.list_backups(tmp_path)) == 3  # dry run deleted nothing
    retention.prune(tmp_path, max_age=timedelta(days=15), now=NOW)
    assert [b.created_at for b in retention.list_backups(tmp_path)] == [NOW - timedelta(days=10)]
    # Every backup too old (the job has been failing): the newest one still stays.
    retention.prune(tmp_path, max_age=timedelta(days=1), keep=1, now=NOW)
    assert len(retention.list_backups(tmp_path)) == 1


def test_prune_removes_half_written_backups_only_when_stale(tmp_path):
    fresh = tmp_path / ((NOW - timedelta(minutes=5)).strftime(mf.NAME_FORMAT) + ".partial")
    stale = tmp_path / ((NOW - timedelta(days=2)).strftime(mf.NAME_FORMAT) + ".partial")
    fresh.mkdir()
    stale.mkdir()
    assert retention.prune(tmp_path, keep=5, now=NOW) == [stale]
    assert fresh.exists()
    with pytest.raises(errors.BackupError):
        retention.prune(tmp_path, keep=0, now=NOW)


# --- finding the client tools ----------------------------------------------------------------


def test_pg_tools_match_or_exceed_the_server_version(tmp_path):
    tools = pgtools.find_pg_tools(15)
    assert tools.major >= 15
    # pgserver's bundle (PostgreSQL 16) is always installed with the dev extra.
    assert pgtools.find_pg_tools(16).major >= 16
    with pytest.raises(errors.BackupError, match="version >= 99"):
        pgtools.find_pg_tools(99)
    with pytest.raises(errors.BackupError):
        pgtools.find_pg_tools(15, candidates=[tmp_path])  # no pg_dump there


def test_passwords_never_reach_the_command_line():
    url, env = pgtools.libpq_args(
        "postgresql://backup:s%40cret@db.example:5432/orderdb?sslmode=require"
    )
    assert url == "postgresql://backup@db.example:5432/orderdb?sslmode=require"
    assert env == {"PGPASSWORD": "s@cret"}
    url, env = pgtools.libpq_args("postgresql://postgres:@/postgres?host=/tmp/pg")
    assert url == "postgresql://postgres@/postgres?host=/tmp/pg"
    assert env == {}
