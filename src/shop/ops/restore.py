"""Restoring a backup (``shop restore``): every checksum is checked before a database is
touched; each database is recreated (or only the dumped objects dropped, ``--clean``), then
``pg_restore``, ``ANALYZE``, and the row counts compared with the manifest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shop.ops.databases import SERVICE_DATABASES, Server
from shop.ops.errors import BackupError, RestoreMismatch
from shop.ops.manifest import Manifest, row_counts, verify
from shop.ops.pgtools import PgTools, find_pg_tools, libpq_args, run_tool, server_version


@dataclass(frozen=True)
class RestoreResult:
    databases: dict[str, str]  # service -> restored database name
    rows: int
    seconds: float


async def _database_exists(server: Server, name: str) -> bool:
    conn = await asyncpg.connect(server.url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def _recreate(server: Server, name: str) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _analyze_and_count(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        # pg_restore brings no planner statistics; without them the first queries plan blind.
        await conn.execute("ANALYZE")
        return await row_counts(conn)
    finally:
        await conn.close()


async def _restore(
    server: Server,
    folder: Path,
    manifest: Manifest,
    targets: Mapping[str, str],
    *,
    clean: bool,
    no_owner: bool,
    jobs: int,
    tools: PgTools | None,
) -> int:
    version_num, _ = await server_version(server.url)
    tools = tools or find_pg_tools(max(version_num // 10000, int(manifest["pg_dump_major"])))
    for svc, name in targets.items():
        exists = await _database_exists(server, name)
        if not clean or not exists:
            await _recreate(server, name)
        url, env = libpq_args(server.database_url(name))
        args = [tools.pg_restore, "--exit-on-error", f"--jobs={jobs}", f"--dbname={url}"]
        if clean and exists:
            args += ["--clean", "--if-exists"]
        if no_owner:
            args += ["--no-owner", "--no-privileges"]
        await run_tool(
            [*args, str(folder / manifest["databases"][svc]["file"])],
            env=env,
            what=f"pg_restore {name}",
        )
    problems, rows = [], 0
    for svc, name in targets.items():
        expected = manifest["databases"][svc]["tables"]
        actual = await _analyze_and_count(server.database_url(name))
        rows += sum(actual.values())
        if actual != expected:
            diff = {
                table: (expected.get(table), actual.get(table))
                for table in sorted(set(expected) | set(actual))
                if expected.get(table) != actual.get(table)
            }
            problems.append(f"{name}: (manifest, restored) rows differ: {diff}")
    if problems:
        raise RestoreMismatch("; ".join(problems))
    return rows


def restore(
    server: Server,
    folder: Path,
    *,
    prefix: str | None = None,
    services: Sequence[str] | None = None,
    clean: bool = False,
    force: bool = False,
    no_owner: bool = False,
    jobs: int = 1,
    tools: PgTools | None = None,
) -> RestoreResult:
    """Restore a backup: verify checksums, recreate each database, pg_restore, check rows.

    prefix None restores into the databases the backup came from; a prefix restores into
    ``prefix + userdb`` etc. (a drill next to the live data). Existing databases are only
    replaced with force. clean keeps an existing database (its grants, its settings) and
    drops just the objects the dump recreates.
    """
    started = time.perf_counter()
    manifest = verify(folder)
    chosen = list(services or manifest["databases"])
    unknown = [svc for svc in chosen if svc not in manifest["databases"]]
    if unknown:
        raise BackupError(f"the backup has no database for {', '.join(unknown)}")
    targets = {
        svc: manifest["databases"][svc]["database"]
        if prefix is None
        else prefix + SERVICE_DATABASES[svc]
        for svc in chosen
    }
    if not force:
        existing = [n for n in targets.values() if asyncio.run(_database_exists(server, n))]
        if existing:
            raise BackupError(
                f"{', '.join(existing)} exist: pass --force to replace them"
                " (or restore next to them with --prefix)"
            )
    rows = asyncio.run(
        _restore(
            server,
            folder,
            manifest,
            targets,
            clean=clean,
            no_owner=no_owner,
            jobs=jobs,
            tools=tools,
        )
    )
    return RestoreResult(targets, rows, time.perf_counter() - started)
