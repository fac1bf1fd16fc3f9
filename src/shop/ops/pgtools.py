"""Finding and running PostgreSQL's client tools (pg_dump, pg_restore) for a server.

In the image they are Debian's ``postgresql-client-<major>`` matching the RDS engine (the
Dockerfile); on a developer's machine Debian's versioned folders, pgserver's bundled binaries
or $PATH.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from shop.ops.errors import BackupError

DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


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


async def run_tool(args: list[str], *, env: Mapping[str, str], what: str) -> None:
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
