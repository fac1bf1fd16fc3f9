"""The operations commands: ``shop backup``, ``shop restore``, ``shop prune-backups`` and
``shop check-consistency``.

Which server: ``--server-url``, ``--server-url-file`` (what the CronJob's Vault agent renders)
or ``$DATABASE_URL``. In production (``SHOP_ENV=production``, the image's default) one of them
is required: an empty rendered file or a missing variable is an error, never a silent fallback
to a local or embedded server that would back up, or restore into, the wrong database. Only in
development does a command fall back to the server ``shop run`` uses (``shop.devtools``,
imported only then).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import TypeAlias

from shop.ops.backup import backup
from shop.ops.consistency import check
from shop.ops.databases import SERVICE_DATABASES, Server
from shop.ops.errors import BackupError, NoServerConfigured, SnapshotError
from shop.ops.restore import restore
from shop.ops.retention import list_backups, prune


def server_for(
    url: str | None, url_file: str | None, state_dir: Path, *, env: str | None = None
) -> Server:
    """The server a command works on: the URL given, else (development only) `shop run`'s."""
    if url_file:
        url = Path(url_file).read_text().strip()
        if not url:
            raise NoServerConfigured(f"{url_file} is empty: no database URL to work on")
    url = url or os.environ.get("DATABASE_URL")
    if url:
        return Server(url, "configured")
    if (env or os.environ.get("SHOP_ENV", "development")) == "production":
        raise NoServerConfigured(
            "no database URL: give --server-url, --server-url-file or DATABASE_URL"
            " (in production there is no fallback to a local or embedded server)"
        )
    from shop.devtools.postgres import find_server

    return find_server(state_dir / "pgdata")


def _server(args: argparse.Namespace, state_dir: Path) -> Server:
    return server_for(args.server_url, args.server_url_file, state_dir)


def _max_age(args: argparse.Namespace) -> timedelta | None:
    return None if args.max_age_days is None else timedelta(days=args.max_age_days)


def _print_pruned(paths: list[Path], *, dry_run: bool = False) -> None:
    for path in paths:
        print(f"{'would delete' if dry_run else 'deleted'} {path}")


def cmd_backup(args: argparse.Namespace, state_dir: Path) -> int:
    from shop.ops.vault_snapshot import snapshot_step

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


def cmd_check_consistency(args: argparse.Namespace, state_dir: Path) -> int:
    given = {
        "orders": args.orders_url,
        "products": args.products_url,
        "payments": args.payments_url,
    }
    if all(given.values()):
        urls = given
    else:
        server = server_for(args.server_url, None, state_dir)
        urls = {
            svc: given.get(svc) or server.database_url(args.prefix + db)
            for svc, db in SERVICE_DATABASES.items()
        }
    report = asyncio.run(check(urls["orders"], urls["products"], urls["payments"]))
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print(
        f"{report.orders} orders checked, {report.pending} still pending,"
        f" {len(report.problems)} problems"
    )
    return 0 if report.ok else 1


# `shop`'s subcommands (argparse's own type for them).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_commands(sub: Subcommands, state_dir: Path) -> None:
    """Register backup, restore, prune-backups and check-consistency on `shop`'s subparsers."""
    default_dest = os.environ.get("SHOP_BACKUP_DIR", str(state_dir / "backups"))

    def server_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--server-url",
            help="PostgreSQL server (default $DATABASE_URL; in development `shop run`'s)",
        )
        parser.add_argument("--server-url-file", help="read the server URL from this file")

    def retention_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--keep", type=int, help="keep the N newest backups")
        parser.add_argument("--max-age-days", type=float, help="delete older backups")

    bkp = sub.add_parser("backup", help="dump the four databases with a manifest")
    server_options(bkp)
    bkp.add_argument("--dest", default=default_dest, help=f"default {default_dest}")
    bkp.add_argument("--prefix", default="", help="database name prefix (tests, drills)")
    retention_options(bkp)
    from shop.ops.vault_cli import add_backup_options

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

    consistency = sub.add_parser(
        "check-consistency", help="report orders whose stock, payment and status disagree"
    )
    consistency.add_argument("--server-url", help="PostgreSQL server (as for `shop backup`)")
    consistency.add_argument("--prefix", default="", help="database name prefix (tests)")
    for svc in ("orders", "products", "payments"):
        consistency.add_argument(f"--{svc}-url", help=f"the {svc} database, wherever it is")
    consistency.set_defaults(func=lambda args: cmd_check_consistency(args, state_dir))
