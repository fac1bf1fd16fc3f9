"""The one exception tree of ``shop.ops``: every failure an operator can meet, each with a
message that says why. The ``shop`` commands catch ``OpsError`` and print it; nothing else
escapes them as a traceback.

    OpsError
    └── BackupError          a backup or restore could not be completed
        ├── BackupCorrupt    a backup's files do not match its manifest
        ├── RestoreMismatch  the restored databases do not hold the manifest's row counts
        └── SnapshotError    the Vault snapshot could not be taken, checked, decrypted or restored

    NoServerConfigured (a SystemExit: the command ends with its message, in production only)
"""

from __future__ import annotations


class OpsError(Exception):
    """An operation of ``shop.ops`` failed; the message says why."""


class BackupError(OpsError):
    """A backup or restore could not be completed; the message says why."""


class BackupCorrupt(BackupError):
    """A backup's files do not match its manifest (missing, wrong size or checksum)."""


class RestoreMismatch(BackupError):
    """The restored databases do not hold the row counts the manifest recorded."""


class SnapshotError(BackupError):
    """A Vault snapshot could not be taken, verified, decrypted or restored."""


class NoServerConfigured(SystemExit):
    """In production, a command was given no database URL."""
