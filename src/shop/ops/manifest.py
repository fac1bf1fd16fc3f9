"""The backup format: a folder named by its UTC time holding one ``pg_dump --format=custom``
file per database and ``manifest.json`` (when, the server's version, and per database the
file, its SHA-256, its size and every table's row count); reading and verifying it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import NotRequired, TypedDict

import asyncpg

from shop.ops.errors import BackupCorrupt

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")
PARTIAL_SUFFIX = ".partial"


class FileEntry(TypedDict):
    """A file of a backup, as the manifest records it."""

    file: str
    sha256: str
    size: int


class DatabaseEntry(FileEntry):
    database: str
    snapshot_at: str  # when its snapshot was taken (ISO 8601)
    tables: dict[str, int]  # rows by "schema.table", counted in the dump's snapshot


class VaultEntry(FileEntry):
    """Vault's raft snapshot, encrypted with age (``shop.ops.vault_snapshot``)."""

    plaintext_sha256: str
    plaintext_size: int
    encryption: str
    taken_at: str
    seconds: float


class Manifest(TypedDict):
    """``manifest.json``: what a backup holds."""

    format: int
    created_at: str
    server_version: str
    server_version_num: int
    pg_dump_major: int
    snapshot_skew_ms: float  # how far apart the four databases' snapshots were taken
    databases: dict[str, DatabaseEntry]
    vault: NotRequired[VaultEntry]


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


def check_file(folder: Path, label: str, entry: FileEntry) -> str | None:
    """What is wrong with one file of a backup (missing, size, SHA-256), None if nothing."""
    path = folder / entry["file"]
    if not path.is_file():
        return f"{label}: {entry['file']} is missing"
    size = path.stat().st_size
    if size != entry["size"]:
        return f"{label}: {entry['file']} has {size} bytes, manifest says {entry['size']}"
    if sha256_of(path) != entry["sha256"]:
        return f"{label}: {entry['file']} does not match its SHA-256 checksum"
    return None


def load_manifest(folder: Path) -> Manifest:
    try:
        manifest: Manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupCorrupt(f"{folder} has no {MANIFEST}") from None
    except json.JSONDecodeError as exc:
        raise BackupCorrupt(f"{folder / MANIFEST} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupCorrupt(f"unknown backup format {manifest.get('format')!r} in {folder}")
    return manifest


def verify(folder: Path, manifest: Manifest | None = None) -> Manifest:
    """Check every file of the backup against the manifest; raises BackupCorrupt."""
    manifest = manifest or load_manifest(folder)
    files: dict[str, FileEntry] = {**manifest["databases"]}
    if "vault" in manifest:
        files["vault"] = manifest["vault"]
    problems = [p for label, entry in files.items() if (p := check_file(folder, label, entry))]
    if problems:
        raise BackupCorrupt(f"backup {folder} is damaged: " + "; ".join(problems))
    return manifest
