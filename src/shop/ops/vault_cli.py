"""The `shop` command's Vault snapshot options (``shop backup``) and ``shop vault-restore``:
argparse only. The snapshot code (``shop.ops.vault_snapshot``: httpx, age) is imported when a
command runs, so building the parser, which every ``shop serve`` does, stays light (the
service processes' memory: docs/performance.md, "Memory").
"""

from __future__ import annotations

import argparse


def add_backup_options(parser: argparse.ArgumentParser) -> None:
    """The Vault options of ``shop backup``: a snapshot, or an explicit --without-vault."""
    group = parser.add_argument_group("Vault snapshot (every backup includes one)")
    group.add_argument("--vault-addr", help="the Vault/OpenBao server to snapshot")
    group.add_argument("--vault-token-file", help="a token allowed sys/storage/raft/snapshot")
    group.add_argument("--vault-ca-cert", help="CA certificate of Vault's TLS listener")
    group.add_argument(
        "--vault-recipients-file",
        action="append",
        help="age public keys (age1...) to encrypt the snapshot to (repeatable)",
    )
    group.add_argument(
        "--without-vault",
        action="store_true",
        help="no Vault snapshot: this backup cannot restore the secrets (development only)",
    )


def _vault_restore(args: argparse.Namespace) -> int:
    from shop.ops.vault_snapshot import cmd_vault_restore

    return cmd_vault_restore(args)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``shop vault-restore`` on the `shop` command's subparsers."""
    rst = sub.add_parser("vault-restore", help="restore a backup's Vault snapshot")
    rst.add_argument("backup", help="the backup folder (has manifest.json and vault.snap.age)")
    rst.add_argument("--vault-addr", required=True, help="the fresh, initialised server")
    rst.add_argument("--vault-token-file", required=True, help="the fresh server's root token")
    rst.add_argument("--vault-ca-cert")
    rst.add_argument(
        "--identity-file",
        action="append",
        required=True,
        help="age identity (AGE-SECRET-KEY-...) that decrypts the snapshot (repeatable)",
    )
    rst.add_argument(
        "--unseal-keys-file",
        help="JSON with keys_base64 (drills only; in production key holders unseal by hand)",
    )
    rst.set_defaults(func=_vault_restore)
