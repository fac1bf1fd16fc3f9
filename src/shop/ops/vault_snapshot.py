"""Vault (OpenBao) raft snapshots in the platform's backups: take, encrypt, verify, restore.

Every ``shop backup`` takes one (``GET /v1/sys/storage/raft/snapshot``) into the backup's
folder, next to the database dumps, as ``vault.snap.age``: encrypted with age (X25519, the
``rage`` implementation through ``pyrage``) to one or more public recipients, so the backup
job holds no key that decrypts it; the identities are kept offline by the key custodians with
the unseal keys (docs/disaster-recovery.md, "Key custody"). The manifest records the file's
size and SHA-256, and the SHA-256 of the plaintext snapshot, checked after decryption. A
snapshot is held in memory while it is encrypted: the platform's Vault is kilobytes of
configuration and secrets, not a data store.

``shop vault-restore`` installs a snapshot into a fresh, initialised server
(``POST /v1/sys/storage/raft/snapshot-force``: the fresh server's own keys do not match the
snapshot's, which is why ``-force``). The server then holds the original barrier keyring and
seals itself: it is unsealed with the ORIGINAL cluster's unseal keys (or by the same KMS key,
with auto-unseal), and the original tokens, policies, KV secrets, leases and database-engine
configuration are back.

Targets are always explicit: a Vault address and a token file must be given; nothing falls
back to a local server or an ambient ``VAULT_ADDR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyrage
from pyrage import x25519

from shop.ops.errors import BackupError, SnapshotError
from shop.ops.manifest import Manifest, VaultEntry, check_file, load_manifest

SNAPSHOT_FILE = "vault.snap.age"
SNAPSHOT_TIMEOUT = 300.0  # seconds: a snapshot of a large Vault streams for a while


@dataclass(frozen=True)
class VaultTarget:
    """A Vault server and a token allowed ``sys/storage/raft/snapshot*``."""

    addr: str
    token: str
    ca_cert: Path | None = None

    @classmethod
    def from_files(cls, addr: str, token_file: str, ca_cert: str | None = None) -> VaultTarget:
        token = Path(token_file).read_text().strip()
        if not token:
            raise SnapshotError(f"{token_file} is empty")
        return cls(addr.rstrip("/"), token, Path(ca_cert) if ca_cert else None)

    def client(self, timeout: float = SNAPSHOT_TIMEOUT) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.addr}/v1/",
            headers={"X-Vault-Token": self.token},
            timeout=timeout,
            verify=str(self.ca_cert) if self.ca_cert else True,
        )


def _failed(what: str, response: httpx.Response) -> SnapshotError:
    return SnapshotError(f"{what}: HTTP {response.status_code} {response.text.strip()[:500]}")


# --- taking a snapshot ----------------------------------------------------------------------


def load_recipients(paths: Sequence[str]) -> list[x25519.Recipient]:
    """age public keys (``age1...``), one a line, from files (comments start with #)."""
    recipients = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                try:
                    recipients.append(x25519.Recipient.from_str(line))
                except pyrage.RecipientError as exc:
                    raise SnapshotError(f"{path}: not an age recipient: {exc}") from None
    if not recipients:
        raise SnapshotError("no age recipient given: the snapshot would not be encrypted")
    return recipients


def save_snapshot(
    target: VaultTarget, folder: Path, recipients: Sequence[x25519.Recipient]
) -> VaultEntry:
    """Take a raft snapshot, write it encrypted into folder; returns its manifest entry."""
    started = time.perf_counter()
    taken_at = datetime.now(UTC)
    with target.client() as client:
        try:
            response = client.get("sys/storage/raft/snapshot")
        except httpx.HTTPError as exc:
            raise SnapshotError(f"Vault at {target.addr} did not answer: {exc}") from None
    if response.status_code != 200:
        raise _failed(f"snapshot from {target.addr}", response)
    plain = response.content
    path = folder / SNAPSHOT_FILE
    path.write_bytes(pyrage.encrypt(plain, list(recipients)))
    path.chmod(0o600)
    return {
        "file": path.name,
        "size": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "plaintext_sha256": hashlib.sha256(plain).hexdigest(),
        "plaintext_size": len(plain),
        "encryption": "age-x25519",
        "taken_at": taken_at.isoformat(),
        "seconds": round(time.perf_counter() - started, 3),
    }


# --- checking and decrypting -----------------------------------------------------------------


def load_identities(paths: Sequence[str]) -> list[x25519.Identity]:
    identities = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            line = line.strip()
            if line.startswith("AGE-SECRET-KEY-"):
                try:
                    identities.append(x25519.Identity.from_str(line))
                except pyrage.IdentityError as exc:
                    raise SnapshotError(f"{path}: not an age identity: {exc}") from None
    if not identities:
        raise SnapshotError("no age identity (AGE-SECRET-KEY-...) in the identity files")
    return identities


def decrypt_snapshot(
    folder: Path, manifest: Manifest, identities: Sequence[x25519.Identity]
) -> bytes:
    """The plaintext snapshot of a backup, after checking both checksums."""
    entry = manifest.get("vault")
    if not entry:
        raise SnapshotError(f"the backup {folder} has no Vault snapshot")
    if problem := check_file(folder, "vault", entry):
        raise SnapshotError(f"backup {folder} is damaged: {problem}")
    try:
        plain = pyrage.decrypt((folder / entry["file"]).read_bytes(), list(identities))
    except pyrage.DecryptError as exc:
        raise SnapshotError(f"cannot decrypt {entry['file']}: {exc}") from None
    if hashlib.sha256(plain).hexdigest() != entry["plaintext_sha256"]:
        raise SnapshotError(f"{entry['file']} decrypts to something else than was snapshotted")
    return plain


# --- restoring -------------------------------------------------------------------------------


def seal_status(addr: str, *, ca_cert: Path | None = None) -> dict[str, object] | None:
    """``sys/seal-status``, None while the server does not answer (it is restarting its core)."""
    try:
        response = httpx.get(
            f"{addr}/v1/sys/seal-status",
            timeout=5,
            verify=str(ca_cert) if ca_cert else True,
        )
        body: dict[str, object] = response.json()
        return body
    except (httpx.HTTPError, ValueError):
        return None


def restore_snapshot(target: VaultTarget, snapshot: bytes, *, timeout: float = 300) -> None:
    """Install a snapshot into the server, replacing everything, and wait until it has sealed
    itself with the snapshot's keyring (then unseal it with the original cluster's keys)."""
    with target.client() as client:
        response = client.post(
            "sys/storage/raft/snapshot-force",
            content=snapshot,
            headers={"Content-Type": "application/octet-stream"},
        )
    if response.status_code not in (200, 204):
        raise _failed(f"snapshot restore into {target.addr}", response)
    deadline = time.monotonic() + timeout
    while True:
        status = seal_status(target.addr, ca_cert=target.ca_cert)
        if status is not None and status.get("sealed"):
            return
        if time.monotonic() > deadline:
            raise SnapshotError(f"{target.addr} did not seal itself after the restore")
        time.sleep(0.2)


def unseal(addr: str, keys: Sequence[str], *, ca_cert: Path | None = None) -> None:
    """Submit unseal keys until the server is unsealed."""
    verify = str(ca_cert) if ca_cert else True
    for key in keys:
        response = httpx.put(f"{addr}/v1/sys/unseal", json={"key": key}, timeout=60, verify=verify)
        if response.status_code != 200:
            raise _failed("unseal", response)
        if not response.json()["sealed"]:
            return
    raise SnapshotError("still sealed: not enough (or not the original) unseal keys")


def wait_active(addr: str, *, ca_cert: Path | None = None, timeout: float = 300) -> None:
    """Until ``sys/health`` says unsealed and active (raft has elected this node)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (
                httpx.get(
                    f"{addr}/v1/sys/health", timeout=5, verify=str(ca_cert) if ca_cert else True
                ).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SnapshotError(f"{addr} did not become active within {timeout:.0f} s")
        time.sleep(0.2)


# --- `shop backup` options and `shop vault-restore` -----------------------------------------


def snapshot_step(args: argparse.Namespace) -> Callable[[Path], VaultEntry] | None:
    """What ``shop backup`` runs in the backup's folder, from its options; None with
    --without-vault. Refuses a backup that names no Vault and does not say it wants none."""
    if args.without_vault:
        if args.vault_addr:
            raise SystemExit("--without-vault and --vault-addr contradict each other")
        return None
    if not (args.vault_addr and args.vault_token_file and args.vault_recipients_file):
        raise SystemExit(
            "a backup includes Vault's snapshot: give --vault-addr, --vault-token-file and"
            " --vault-recipients-file (or --without-vault, and the secrets are not backed up)"
        )
    try:
        target = VaultTarget.from_files(args.vault_addr, args.vault_token_file, args.vault_ca_cert)
        recipients = load_recipients(args.vault_recipients_file)
    except (OSError, SnapshotError) as exc:
        raise SystemExit(str(exc)) from None
    return lambda folder: save_snapshot(target, folder, recipients)


def cmd_vault_restore(args: argparse.Namespace) -> int:
    folder = Path(args.backup)
    try:
        manifest = load_manifest(folder)
        plain = decrypt_snapshot(folder, manifest, load_identities(args.identity_file))
        target = VaultTarget.from_files(args.vault_addr, args.vault_token_file, args.vault_ca_cert)
        started = time.perf_counter()
        restore_snapshot(target, plain)
        print(f"snapshot of {manifest['vault']['taken_at']} installed into {target.addr}")
        if args.unseal_keys_file:
            keys = json.loads(Path(args.unseal_keys_file).read_text())["keys_base64"]
            unseal(target.addr, keys, ca_cert=target.ca_cert)
            wait_active(target.addr, ca_cert=target.ca_cert)
            print(f"unsealed and active in {time.perf_counter() - started:.1f} s")
        else:
            print(
                "sealed with the original keyring: unseal it with the ORIGINAL cluster's keys"
                " (`bao operator unseal`, a threshold of key holders; auto-unseal: the same KMS"
                " key), then the original tokens work again"
            )
    except (OSError, BackupError) as exc:  # SnapshotError is a BackupError
        print(f"vault restore failed: {exc}", file=sys.stderr)
        return 1
    return 0
