"""Point-in-time recovery for real, with the files under deploy/postgres/: a throwaway cluster
archives its WAL through archive-wal.sh, base-backup.sh takes a verified base backup, the
cluster is lost, and restore-pitr.sh brings it back to a moment between two commits.

The cluster is made with the PostgreSQL 16 binaries of the pgserver wheel. PostgreSQL refuses
to run as root, so as root (CI) every command runs as pgserver's OS user, as pgserver itself
does; the data lives under a tempfile.mkdtemp folder in /tmp that this user owns.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "postgres"
SCRIPTS = ("archive-wal.sh", "base-backup.sh", "restore-pitr.sh")
DEADLINE = 120  # seconds to wait for archiving or recovery; generous for a slow CI machine


@dataclass
class Sandbox:
    root: Path
    bin: Path
    user: str | None

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            user=self.user,
            cwd=self.root,
            env={**os.environ, "PG_BIN": str(self.bin), **(env or {})},
            check=False,
        )
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def url(self, port: int) -> str:
        return f"postgresql://postgres@/postgres?host={self.root}&port={port}"

    def start(self, data: Path, port: int) -> None:
        options = f"-c port={port} -c unix_socket_directories={self.root} -c listen_addresses=''"
        self.run(self.bin / "pg_ctl", "-D", data, "-l", data.with_suffix(".log"), "-w",
                 "-t", str(DEADLINE), "-o", options, "start")  # fmt: skip

    def stop(self, data: Path) -> None:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=DEADLINE,
                user=self.user,
                check=False,
            )


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    from pgserver._commands import POSTGRES_BIN_PATH

    user = None
    root = Path(tempfile.mkdtemp(prefix="shop-pitr-", dir="/tmp"))
    if os.geteuid() == 0:
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        # What pgserver.get_server does as root: its own user, able to reach the binaries.
        user = "pgserver"
        entry = ensure_user_exists(user)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    box = Sandbox(root, Path(POSTGRES_BIN_PATH), user)
    for script in SCRIPTS:
        box.run("cp", DEPLOY / script, root / script)
    box.run("mkdir", "-m", "700", root / "archive")
    try:
        yield box
    finally:
        for data in ("data", "restored"):
            box.stop(root / data)
        shutil.rmtree(root, ignore_errors=True)


def archiving_settings(box: Sandbox) -> str:
    """deploy/postgres/archiving.conf with this sandbox's script and archive paths."""
    text = (DEPLOY / "archiving.conf").read_text()
    text = text.replace("/etc/postgresql/shop/archive-wal.sh", str(box.root / "archive-wal.sh"))
    return text.replace("/var/lib/postgresql/wal-archive", str(box.root / "archive"))


async def _execute(url: str, *sql: str) -> list[object]:
    conn = await asyncpg.connect(url)
    try:
        return [await conn.fetchval(statement) for statement in sql]
    finally:
        await conn.close()


def execute(url: str, *sql: str) -> list[object]:
    return asyncio.run(_execute(url, *sql))


def wait_until(check, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


def test_archiving_conf_sets_what_pitr_needs():
    settings = dict(
        re.findall(r"^(\w+)\s*=\s*(.+?)\s*(?:#.*)?$", (DEPLOY / "archiving.conf").read_text(), re.M)
    )
    assert settings["wal_level"] == "replica"
    assert settings["archive_mode"] == "on"
    assert settings["archive_command"].startswith("'/etc/postgresql/shop/archive-wal.sh %p %f ")
    assert int(settings["archive_timeout"]) <= 15 * 60  # within the RPO
    for script in SCRIPTS:
        assert os.access(DEPLOY / script, os.X_OK), script


def test_point_in_time_recovery_from_the_wal_archive(sandbox: Sandbox):
    data, restored = sandbox.root / "data", sandbox.root / "restored"
    sandbox.run(sandbox.bin / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--no-sync")  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n" + archiving_settings(sandbox) + "\nfsync = off\n")
    sandbox.start(data, 5432)
    url = sandbox.url(5432)
    execute(url, "CREATE TABLE events (id int PRIMARY KEY, phase text NOT NULL)",
            "INSERT INTO events VALUES (1, 'before the base backup')")  # fmt: skip

    out = sandbox.run(
        sandbox.root / "base-backup.sh", sandbox.root / "base", "2",
        env={"PGHOST": str(sandbox.root), "PGPORT": "5432", "PGUSER": "postgres",
             "WAL_ARCHIVE_DIR": str(sandbox.root / "archive")},
    )  # fmt: skip
    (base,) = [p for p in (sandbox.root / "base").iterdir() if p.is_dir()]
    assert f"base backup {base}" in out

    # Committed after the base backup: only the WAL archive knows these rows.
    # The target is read after that commit returned, so the commit lies before it.
    (_, target) = execute(
        url,
        "INSERT INTO events VALUES (2, 'after the base backup, before the target')",
        "SELECT clock_timestamp()::text",
    )
    execute(url, "SELECT pg_sleep(0.1)::text")
    (segment,) = execute(
        url,
        "INSERT INTO events VALUES (3, 'after the target: the mistake')",
        "SELECT pg_walfile_name(pg_switch_wal())",
    )[1:]

    def archived() -> bool:
        last, failed = asyncio.run(
            _execute(
                url,
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
                "SELECT failed_count FROM pg_stat_archiver",
            )
        )
        assert failed == 0, (data.with_suffix(".log")).read_text()[-3000:]
        return str(last) >= str(segment)

    wait_until(archived, f"WAL segment {segment} archived")
    assert (sandbox.root / "archive" / str(segment)).exists()

    # Disaster: the server dies and its data folder is gone.
    sandbox.stop(data)
    shutil.rmtree(data)

    sandbox.run(sandbox.root / "restore-pitr.sh", base, sandbox.root / "archive", restored,
                target, env={"DRILL": "1"})  # fmt: skip
    assert (restored / "recovery.signal").exists()
    sandbox.start(restored, 5433)
    restored_url = sandbox.url(5433)
    wait_until(
        lambda: execute(restored_url, "SELECT pg_is_in_recovery()") == [False],
        "recovery to reach the target and promote",
    )
    (phases,) = execute(restored_url, "SELECT string_agg(phase, ' | ' ORDER BY id) FROM events")
    assert phases == "before the base backup | after the base backup, before the target"
    assert (restored / "pg_wal" / "00000002.history").exists()  # a new timeline began
    (archive_mode,) = execute(restored_url, "SHOW archive_mode")
    assert archive_mode == "off"  # a drill never writes into the production archive
