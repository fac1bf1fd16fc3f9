"""Logical backups of the four service databases: ``shop backup``, ``shop restore``, retention.

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

A restore checks every checksum before it touches a database, recreates each database (or
drops only the dumped objects, ``--clean``), runs ``pg_restore``, ``ANALYZE``, and compares
the row counts with the manifest.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from shop.devtools.postgres import SERVICE_DATABASES, Server, find_server

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")
PARTIAL_SUFFIX = ".partial"
# A half-written backup older than this is a crashed run, never one still being written.
STALE_PARTIAL = timedelta(hours=24)
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


class BackupError(Exception):
    """A backup or restore could not be completed; the message says why."""


class BackupCorrupt(BackupError):
    """A backup's files do not match its manifest (missing, wrong size or checksum)."""


class RestoreMismatch(BackupError):
    """The restored databases do not hold the row counts the manifest recorded."""


# --- finding pg_dump / pg_restore ------------------------------------------------------------


@dataclass(frozen=True)
class PgTools:
    bin_dir: Path
    major: int

    @property
    def pg_dump(self) -> str:
        return str(self.bin_dir / "pg_dump")

    @property
    def pg_restore(self) -> str:
        return str(self.bin_dir / "pg_restore")


def _tool_major(bin_dir: Path) -> int | None:
    """The major version of bin_dir's pg_dump, None if it has no working pg_dump/pg_restore."""
    if not all(os.access(bin_dir / name, os.X_OK) for name in ("pg_dump", "pg_restore")):
        return None
    try:
        out = subprocess.run(
            [str(bin_dir / "pg_dump"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def candidate_bin_dirs() -> list[Path]:
    """Where pg_dump may live: $SHOP_PG_BIN, Debian's versioned folders, pgserver's, $PATH."""
    dirs: list[Path] = []
    if configured := os.environ.get("SHOP_PG_BIN"):
        dirs.append(Path(configured))
    if DEBIAN_PG_ROOT.is_dir():
        versions = [p for p in DEBIAN_PG_ROOT.iterdir() if p.name.isdigit()]
        dirs += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name))]
    # Located, not imported: importing pgserver has side effects (a runtime folder, a lock).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    if on_path := shutil.which("pg_dump"):
        dirs.append(Path(on_path).resolve().parent)
    return dirs


def find_pg_tools(server_major: int, candidates: Sequence[Path] | None = None) -> PgTools:
    """pg_dump and pg_restore for a server: the same major version if present, else the
    oldest newer one (pg_dump refuses servers newer than itself; a much newer pg_restore may
    emit settings an older server does not know)."""
    found: dict[int, Path] = {}
    for bin_dir in candidate_bin_dirs() if candidates is None else candidates:
        major = _tool_major(bin_dir)
        if major is not None and major >= server_major:
            found.setdefault(major, bin_dir)
    if not found:
        raise BackupError(
            f"no pg_dump/pg_restore of version >= {server_major} found (looked in"
            f" $SHOP_PG_BIN, {DEBIAN_PG_ROOT}/*/bin, the pgserver package and $PATH)"
        )
    major = min(found)
    return PgTools(found[major], major)


# --- connections -----------------------------------------------------------------------------


def libpq_args(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries it: a password on a
    command line is visible to every user of the machine (ps, /proc)."""
    parts = urlsplit(url)
    env: dict[str, str] = {}
    query = parts.query
    params = dict(parse_qsl(query))
    if "password" in params:
        env["PGPASSWORD"] = params.pop("password")
        query = urlencode(params)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if sep and password:
            env["PGPASSWORD"] = unquote(password)
        netloc = f"{user}@{hostport}" if user else hostport
    return urlunsplit(parts._replace(netloc=netloc, query=query)), env


async def _run(args: list[str], *, env: Mapping[str, str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        detail = (err or out).decode(errors="replace").strip()[-2000:]
        raise BackupError(f"{what} failed ({proc.returncode}): {detail}")


async def server_version(url: str) -> tuple[int, str]:
    """(server_version_num, server_version) of the server behind url."""
    conn = await asyncpg.connect(url)
    try:
        num = int(await conn.fetchval("SHOW server_version_num"))
        text: str = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return num, text


async def row_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows of every ordinary table outside the system schemas, by "schema.table"."""
    tables = await conn.fetch(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
    )
    counts: dict[str, int] = {}
    for row in tables:
        ident = f'"{row["nspname"]}"."{row["relname"]}"'
        counts[f"{row['nspname']}.{row['relname']}"] = await conn.fetchval(
            f"SELECT count(*) FROM {ident}"  # noqa: S608 - names from the catalogue, quoted
        )
    return counts


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- backup ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    seconds: float


def database_names(prefix: str = "") -> dict[str, str]:
    return {svc: prefix + db for svc, db in SERVICE_DATABASES.items()}


async def _backup(
    server: Server, folder: Path, names: Mapping[str, str], tools: PgTools | None
) -> dict[str, Any]:
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
                _run(
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
    databases = {}
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
    vault: Callable[[Path], dict[str, Any]] | None = None,
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
        manifest = asyncio.run(_backup(server, partial, database_names(prefix), tools))
        manifest = {"created_at": created.isoformat().replace("+00:00", "Z"), **manifest}
        if vault is not None:
            manifest["vault"] = vault(partial)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BackupResult(final, manifest, time.perf_counter() - started)


# --- restore ---------------------------------------------------------------------------------


def load_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupCorrupt(f"{folder} has no {MANIFEST}") from None
    except json.JSONDecodeError as exc:
        raise BackupCorrupt(f"{folder / MANIFEST} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupCorrupt(f"unknown backup format {manifest.get('format')!r} in {folder}")
    return manifest


def verify(folder: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check every file of the backup against the manifest; raises BackupCorrupt."""
    manifest = manifest or load_manifest(folder)
    from shop.ops.vault_snapshot import check_file

    files = dict(manifest["databases"])
    if manifest.get("vault"):
        files["vault"] = manifest["vault"]
    problems = [p for label, entry in files.items() if (p := check_file(folder, label, entry))]
    if problems:
        raise BackupCorrupt(f"backup {folder} is damaged: " + "; ".join(problems))
    return manifest


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
    manifest: dict[str, Any],
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
        await _run(
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


# --- retention -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredBackup:
    path: Path
    created_at: datetime


def list_backups(dest: Path) -> list[StoredBackup]:
    """Complete backups under dest (those with a manifest), newest first."""
    found = []
    if dest.is_dir():
        for path in dest.iterdir():
            if path.is_dir() and NAME_PATTERN.match(path.name) and (path / MANIFEST).is_file():
                created = datetime.strptime(path.name, NAME_FORMAT).replace(tzinfo=UTC)
                found.append(StoredBackup(path, created))
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def _stale_partials(dest: Path, now: datetime) -> Iterator[Path]:
    if not dest.is_dir():
        return
    for path in dest.iterdir():
        stem = path.name.removesuffix(PARTIAL_SUFFIX)
        if path.name.endswith(PARTIAL_SUFFIX) and NAME_PATTERN.match(stem):
            created = datetime.strptime(stem, NAME_FORMAT).replace(tzinfo=UTC)
            if now - created > STALE_PARTIAL:
                yield path


def prune(
    dest: Path,
    *,
    keep: int | None = None,
    max_age: timedelta | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> list[Path]:
    """Delete backups beyond the newest ``keep`` or older than ``max_age``; returns them.

    The newest complete backup is never deleted, whatever the policy says: a retention rule
    must not leave nothing to restore (say, after the backup job failed for a week).
    """
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1")
    now = now or datetime.now(UTC)
    doomed = []
    for rank, stored in enumerate(list_backups(dest)):
        too_many = keep is not None and rank >= keep
        too_old = max_age is not None and now - stored.created_at > max_age
        if rank > 0 and (too_many or too_old):
            doomed.append(stored.path)
    doomed += list(_stale_partials(dest, now))
    if not dry_run:
        for path in doomed:
            shutil.rmtree(path)
    return doomed


# --- the `shop backup`, `shop restore`, `shop prune-backups` commands ------------------------


def _server(args: argparse.Namespace, state_dir: Path) -> Server:
    url = args.server_url
    if args.server_url_file:
        url = Path(args.server_url_file).read_text().strip()
    return find_server(state_dir / "pgdata", configured=url)


def _max_age(args: argparse.Namespace) -> timedelta | None:
    return None if args.max_age_days is None else timedelta(days=args.max_age_days)


def _print_pruned(paths: list[Path], *, dry_run: bool = False) -> None:
    for path in paths:
        print(f"{'would delete' if dry_run else 'deleted'} {path}")


def cmd_backup(args: argparse.Namespace, state_dir: Path) -> int:
    from shop.ops.vault_snapshot import SnapshotError, snapshot_step

    step = snapshot_step(args)
    server = _server(args, state_dir)
    try:
        result = backup(server, Path(args.dest), prefix=args.prefix, vault=step)
    except SnapshotError as exc:
        print(f"backup failed: Vault snapshot: {exc}", file=sys.stderr)
        return 1
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    for svc, entry in result.manifest["databases"].items():
        rows = sum(entry["tables"].values())
        print(f"  {entry['database']:<20} {entry['size']:>12} bytes  {rows:>10} rows  ({svc})")
    if vault := result.manifest.get("vault"):
        print(f"  {'vault snapshot':<20} {vault['size']:>12} bytes  (encrypted, {vault['file']})")
    else:
        print("  no Vault snapshot (--without-vault): the secrets are not in this backup")
    print(
        f"backup {result.path} in {result.seconds:.1f} s"
        f" (snapshots {result.manifest['snapshot_skew_ms']} ms apart)"
    )
    if args.keep is not None or args.max_age_days is not None:
        _print_pruned(prune(Path(args.dest), keep=args.keep, max_age=_max_age(args)))
    return 0


def cmd_restore(args: argparse.Namespace, state_dir: Path) -> int:
    server = _server(args, state_dir)
    try:
        result = restore(
            server,
            Path(args.backup),
            prefix=args.prefix,
            services=args.service,
            clean=args.clean,
            force=args.force,
            no_owner=args.no_owner,
            jobs=args.jobs,
        )
    except BackupError as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(result.databases.values())
    print(f"restored {names}: {result.rows} rows, counts match the manifest")
    print(f"took {result.seconds:.1f} s. Next: shop recover, then shop check-consistency")
    return 0


def cmd_prune(args: argparse.Namespace, _state_dir: Path) -> int:
    if args.keep is None and args.max_age_days is None:
        raise SystemExit("give --keep N and/or --max-age-days D")
    try:
        pruned = prune(
            Path(args.dest), keep=args.keep, max_age=_max_age(args), dry_run=args.dry_run
        )
    except BackupError as exc:
        raise SystemExit(str(exc)) from None
    _print_pruned(pruned, dry_run=args.dry_run)
    print(f"{len(list_backups(Path(args.dest)))} backups kept in {args.dest}")
    return 0


def add_commands(sub: Any, state_dir: Path) -> None:
    """Register backup, restore and prune-backups on the `shop` command's subparsers."""
    default_dest = os.environ.get("SHOP_BACKUP_DIR", str(state_dir / "backups"))

    def server_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--server-url", help="PostgreSQL server (default: as `shop run`)")
        parser.add_argument("--server-url-file", help="read the server URL from this file")

    def retention_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--keep", type=int, help="keep the N newest backups")
        parser.add_argument("--max-age-days", type=float, help="delete older backups")

    bkp = sub.add_parser("backup", help="dump the four databases with a manifest")
    server_options(bkp)
    bkp.add_argument("--dest", default=default_dest, help=f"default {default_dest}")
    bkp.add_argument("--prefix", default="", help="database name prefix (tests, drills)")
    retention_options(bkp)
    from shop.ops.vault_snapshot import add_backup_options

    add_backup_options(bkp)
    bkp.set_defaults(func=lambda args: cmd_backup(args, state_dir))

    rst = sub.add_parser("restore", help="verify a backup and restore it")
    rst.add_argument("backup", help="the backup folder (has manifest.json)")
    server_options(rst)
    rst.add_argument("--prefix", help="restore into PREFIX+userdb etc. (default: same names)")
    rst.add_argument(
        "--service", action="append", choices=list(SERVICE_DATABASES), help="only these"
    )
    rst.add_argument("--force", action="store_true", help="replace databases that exist")
    rst.add_argument(
        "--clean", action="store_true", help="keep existing databases, drop dumped objects only"
    )
    rst.add_argument("--no-owner", action="store_true", help="objects owned by the restorer")
    rst.add_argument("--jobs", type=int, default=2, help="pg_restore parallel jobs")
    rst.set_defaults(func=lambda args: cmd_restore(args, state_dir))

    prn = sub.add_parser("prune-backups", help="apply the retention policy")
    prn.add_argument("--dest", default=default_dest, help=f"default {default_dest}")
    retention_options(prn)
    prn.add_argument("--dry-run", action="store_true")
    prn.set_defaults(func=lambda args: cmd_prune(args, state_dir))
