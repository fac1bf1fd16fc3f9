"""Logical backups of the four service databases (``shop backup``).

A backup is a folder named by its UTC time (``20261126T101500Z``) holding one ``pg_dump
--format=custom`` file per database and ``manifest.json``: when it was taken, the server's
version, and per database the file, its SHA-256, its size and the row count of every table.

Consistency: each database is dumped from one exported snapshot (``pg_export_snapshot()``
passed to ``pg_dump --snapshot``), and the manifest's row counts are read in that same
snapshot, so dump and counts agree exactly. The four snapshots are taken back to back before
any dump starts, so they lie milliseconds apart (``snapshot_skew_ms`` in the manifest); no
snapshot can span databases, so a saga step committed inside that window may be in one dump
and not in another. The order saga's recovery and ``shop check-consistency`` settle that after
a restore (docs/disaster-recovery.md).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from shop.ops.databases import Server, database_names
from shop.ops.errors import BackupError
from shop.ops.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    NAME_FORMAT,
    PARTIAL_SUFFIX,
    DatabaseEntry,
    Manifest,
    VaultEntry,
    row_counts,
    sha256_of,
)
from shop.ops.pgtools import PgTools, find_pg_tools, libpq_args, run_tool, server_version


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    seconds: float


async def _backup(
    server: Server,
    folder: Path,
    names: Mapping[str, str],
    tools: PgTools | None,
    created: datetime,
) -> Manifest:
    version_num, version = await server_version(server.url)
    tools = tools or find_pg_tools(version_num // 10000)
    async with AsyncExitStack() as stack:
        # One open REPEATABLE READ transaction per database exports the snapshot pg_dump
        # reads and the counts are taken in; all four first, so they lie close together.
        conns = {}
        for svc, name in names.items():
            conns[svc] = conn = await asyncpg.connect(server.database_url(name))
            stack.push_async_callback(conn.close)
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            stack.push_async_callback(tx.rollback)
        # The snapshot is taken at the transaction's first query: these four run together.
        rows = await asyncio.gather(
            *(
                conn.fetchrow("SELECT pg_export_snapshot() AS id, clock_timestamp() AS at")
                for conn in conns.values()
            )
        )
        snapshots = {
            svc: (conn, row["id"], row["at"])
            for (svc, conn), row in zip(conns.items(), rows, strict=True)
        }
        dumps = []
        for svc, name in names.items():
            url, env = libpq_args(server.database_url(name))
            dumps.append(
                run_tool(
                    [
                        tools.pg_dump,
                        "--format=custom",
                        f"--snapshot={snapshots[svc][1]}",
                        f"--file={folder / (name + '.dump')}",
                        f"--dbname={url}",
                    ],
                    env=env,
                    what=f"pg_dump {name}",
                )
            )
        # All four finish (or fail) before the snapshots are released: no orphaned pg_dump.
        for outcome in await asyncio.gather(*dumps, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        counts = {svc: await row_counts(conn) for svc, (conn, _, _) in snapshots.items()}
    taken = [at for _, _, at in snapshots.values()]
    databases: dict[str, DatabaseEntry] = {}
    for svc, name in names.items():
        path = folder / f"{name}.dump"
        path.chmod(0o600)
        databases[svc] = {
            "database": name,
            "file": path.name,
            "sha256": sha256_of(path),
            "size": path.stat().st_size,
            "snapshot_at": snapshots[svc][2].isoformat(),
            "tables": counts[svc],
        }
    return {
        "format": FORMAT_VERSION,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "server_version": version,
        "server_version_num": version_num,
        "pg_dump_major": tools.major,
        "snapshot_skew_ms": round((max(taken) - min(taken)).total_seconds() * 1000, 3),
        "databases": databases,
    }


def backup(
    server: Server,
    dest: Path,
    *,
    prefix: str = "",
    tools: PgTools | None = None,
    now: datetime | None = None,
    vault: Callable[[Path], VaultEntry] | None = None,
) -> BackupResult:
    """Dump the four databases into a new folder under dest; returns it with its manifest.

    ``vault`` writes Vault's snapshot into the folder and returns its manifest entry
    (``shop.ops.vault_snapshot``). The folder is written as ``<name>.partial`` and renamed
    when complete, so a crash never leaves something that looks like a backup.
    """
    started = time.perf_counter()
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / created.strftime(NAME_FORMAT)
    if final.exists():
        raise BackupError(f"{final} already exists")
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    try:
        manifest = asyncio.run(_backup(server, partial, database_names(prefix), tools, created))
        if vault is not None:
            manifest["vault"] = vault(partial)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BackupResult(final, manifest, time.perf_counter() - started)
