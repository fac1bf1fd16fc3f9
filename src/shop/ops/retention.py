"""Retention (``shop prune-backups``, ``shop backup --keep``): which backups to delete."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shop.ops.errors import BackupError
from shop.ops.manifest import MANIFEST, NAME_FORMAT, NAME_PATTERN, PARTIAL_SUFFIX

# A half-written backup older than this is a crashed run, never one still being written.
STALE_PARTIAL = timedelta(hours=24)


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
