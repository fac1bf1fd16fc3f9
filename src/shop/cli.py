"""The ``shop`` command: run the platform locally, serve one service, migrate, seed, recover.

shop run                 set up and start all four services (what `make run` calls);
                         --prometheus also starts a local Prometheus scraping them
shop serve SERVICE       serve one service (what a container runs), or the storefront
shop export-schema       write the storefront's GraphQL schema to its schema.graphql
shop migrate SERVICE     apply a service's migrations to its database
shop seed                the bootstrap admin and a demo catalogue (idempotent)
shop recover             drive unfinished orders to a final status, once
shop rotate-keys         rotate the JWT signing keys kept in Vault (the user service follows)
shop backup              dump the four databases with a manifest (--keep N prunes)
shop restore DIR         verify a backup and restore it; shop prune-backups: retention
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from shop.devtools.postgres import SERVICE_DATABASES, Server, create_databases, find_server
from shop.devtools.processes import (
    DEFAULT_PORTS,
    SERVICES,
    STOREFRONT,
    ServiceProcess,
    platform_env,
    storefront_env,
    wait_ready,
)
from shop.devtools.prometheus import PrometheusProcess, find_prometheus, local_prometheus

STATE_DIR = Path(os.environ.get("SHOP_STATE_DIR", ".shop"))
FACTORIES = {name: f"shop.{name}.app:create_app" for name in (*SERVICES, STOREFRONT)}

DEMO_CATALOGUE = [
    ("Mechanical keyboard", "Tactile switches, aluminium case.", "89.90", 120, "electronics"),
    ("Wireless mouse", "Ergonomic, 2.4 GHz and Bluetooth.", "34.50", 200, "electronics"),
    ("27-inch monitor", "QHD IPS panel, 144 Hz.", "279.00", 40, "electronics"),
    ("Espresso beans 1 kg", "Medium roast, single origin.", "24.00", 300, "grocery"),
    ("Pour-over kettle", "Gooseneck, 1 litre.", "45.00", 60, "kitchen"),
    ("Chef's knife", "20 cm, stainless steel.", "69.00", 80, "kitchen"),
    ("Running shoes", "Neutral cushioning.", "119.99", 75, "sports"),
    ("Yoga mat", "6 mm, non-slip.", "29.99", 150, "sports"),
    ("Hardcover notebook", "A5, dotted, 240 pages.", "14.50", 500, "office"),
    ("Desk lamp", "LED, dimmable, USB-C.", "39.00", 90, "office"),
    (
        "Diamond necklace",
        "For the declined-payment demo: above the 10000.00 limit.",
        "12500.00",
        5,
        "jewellery",
    ),
]


def _secret(name: str, make: Callable[[], str]) -> str:
    path = STATE_DIR / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text()


def local_secrets() -> tuple[str, str]:
    """The dev secrets (made once, kept under .shop/secrets/): admin password, service key."""
    from shop.common.auth import generate_private_key_pem

    _secret("jwt-signing.pem", generate_private_key_pem)
    admin = os.environ.get("SHOP_ADMIN_PASSWORD") or _secret(
        "admin-password", lambda: secrets.token_urlsafe(12)
    )
    service = _secret("service-token-secret", lambda: secrets.token_urlsafe(32))
    return admin, service


def prepare(server: Server, *, prefix: str = "") -> dict[str, str]:
    """Create the four databases and migrate them. Returns each service's database URL."""
    from shop.common import migrations

    names = {svc: prefix + db for svc, db in SERVICE_DATABASES.items()}
    asyncio.run(create_databases(server, list(names.values())))
    urls = {svc: server.database_url(name) for svc, name in names.items()}
    for svc, url in urls.items():
        migrations.upgrade(svc, url)
    return urls


async def seed_catalogue(products_url: str) -> int:
    """Insert the demo products that are missing (by name). Returns how many were added."""
    from shop.common.db import Database
    from shop.products.db import ProductRepository

    db = Database(products_url, min_size=1, max_size=1)
    await db.connect()
    added = 0
    try:
        async with db.acquire() as conn:
            repo = ProductRepository(conn)
            existing = {r["name"] for r in await conn.fetch("SELECT name FROM products")}
            for name, description, price, stock, category in DEMO_CATALOGUE:
                if name not in existing:
                    await repo.add(
                        name=name,
                        description=description,
                        price=Decimal(price),
                        stock=stock,
                        category=category,
                    )
                    added += 1
    finally:
        await db.close()
    return added


class StopFlag:
    """Set by SIGTERM or SIGINT (Ctrl-C); a run loop checks it and stops its processes."""

    def __init__(self) -> None:
        self.is_set = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_: object) -> None:
        self.is_set = True


def cmd_run(args: argparse.Namespace) -> int:
    server = find_server(STATE_DIR / "pgdata")
    print(f"PostgreSQL: {server.source} ({_redact(server.url)})")
    urls = prepare(server)
    admin_password, service_secret = local_secrets()
    added = asyncio.run(seed_catalogue(urls["products"]))
    print(f"Demo catalogue: {added} products added")
    if args.replicas > 1:
        return run_cluster(args, urls, admin_password, service_secret)
    ports = {name: args.base_port + i for i, name in enumerate(SERVICES)}
    envs = platform_env(
        database_urls=urls,
        ports=ports,
        secrets_dir=STATE_DIR / "secrets",
        admin_password=admin_password,
        service_token_secret=service_secret,
    )
    logs = STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = [
        ServiceProcess(name, ports[name], envs[name], logs / f"{name}.log") for name in SERVICES
    ]
    storefront_port = args.base_port + 4
    procs.append(
        ServiceProcess(
            STOREFRONT,
            storefront_port,
            storefront_env(
                services={n: f"http://127.0.0.1:{p}" for n, p in ports.items()},
                port=storefront_port,
                shared={"SHOP_ENV": "development", "SHOP_SERVICE_TOKEN_SECRET": service_secret},
            ),
            logs / f"{STOREFRONT}.log",
        )
    )
    for proc in procs:
        proc.start()
    stop = StopFlag()
    prometheus = None
    try:
        wait_ready(procs, timeout=60)
        print("\nshop is running:")
        for proc in procs:
            where = f"{proc.url}/docs"
            if proc.name == STOREFRONT:  # the shop's pages, the admin and GraphQL
                where = f"{proc.url}/  (admin: /admin, GraphQL: /graphql)"
            print(f"  {proc.name:<10} {where}   (logs: {proc.log_path})")
        if args.prometheus:
            prometheus = start_prometheus(ports, args.prometheus_port)
        print(
            f"\nAdmin login: username 'admin', password '{admin_password}'"
            f" (kept in {STATE_DIR}/secrets/admin-password)"
        )
        print("Try it: see README.md, 'Call the API'. Stop with Ctrl-C.\n")
        while not stop.is_set:
            for proc in procs:
                if proc.process and proc.process.poll() is not None:
                    print(f"{proc.name} exited ({proc.process.returncode}); stopping the rest")
                    stop.is_set = True
            time.sleep(0.5)
    finally:
        if prometheus is not None:
            prometheus.stop()
        print("stopping services...")
        for proc in procs:
            proc.signal(signal.SIGTERM)
        for proc in procs:
            proc.stop()
        print("stopped.")
    return 0


def run_cluster(
    args: argparse.Namespace, urls: dict[str, str], admin_password: str, service_secret: str
) -> int:
    """N replicas per service behind NGINX; a replica that dies is started again, as a
    Kubernetes ReplicaSet would."""
    from shop.devtools.cluster import Cluster
    from shop.devtools.gateway import find_nginx

    if find_nginx() is None:
        raise SystemExit("--replicas needs NGINX: `make tools` installs Debian's package")
    cluster = Cluster.build(
        database_urls=urls,
        replicas=args.replicas,
        base_port=args.base_port,
        gateway_port=args.gateway_port,
        state_dir=STATE_DIR,
        secrets_dir=STATE_DIR / "secrets",
        admin_password=admin_password,
        service_token_secret=service_secret,
    )
    stop = StopFlag()
    prometheus = None
    try:
        cluster.start()
        cluster.wait_ready()
        print(f"\nshop is running behind the gateway: {cluster.gateway.url}")
        for name, replicas in cluster.replicas.items():
            print(f"  {name:<9} " + " ".join(p.url for p in replicas))
        print(f"  gateway   logs: {cluster.gateway.state_dir}/access.log (JSON lines)")
        if args.prometheus:  # scrapes the first replica of each service
            prometheus = start_prometheus(
                {name: procs[0].port for name, procs in cluster.replicas.items()},
                args.prometheus_port,
            )
        print(f"\nAdmin login: username 'admin', password '{admin_password}'. Stop with Ctrl-C.\n")
        while not stop.is_set:
            for name, replicas in cluster.replicas.items():
                for index, proc in enumerate(replicas):
                    if not stop.is_set and proc.process and proc.process.poll() is not None:
                        print(
                            f"{name}-{index} exited ({proc.process.returncode}); starting it again"
                        )
                        cluster.start_replica(name, index)
            time.sleep(0.5)
    finally:
        if prometheus is not None:
            prometheus.stop()
        print("stopping replicas and the gateway...")
        cluster.stop()
        print("stopped.")
    return 0


def start_prometheus(ports: dict[str, int], port: int) -> PrometheusProcess | None:
    """Prometheus scraping the local services with the repository's config template and
    alert rules; its config, data and log under .shop/prometheus. None if not installed."""
    binary = find_prometheus()
    if binary is None:
        print("  prometheus not installed (scripts/install-apt-tools.sh installs it): skipped")
        return None
    prometheus = local_prometheus(binary, STATE_DIR / "prometheus", ports, port=port)
    prometheus.start()
    try:
        prometheus.wait_ready(timeout=60)
    except (RuntimeError, TimeoutError) as exc:
        print(f"  prometheus did not start: {exc}")
        prometheus.stop()
        return None
    print(
        f"  {'prometheus':<9} {prometheus.url}/graph   (targets: {prometheus.url}/targets,"
        f" alerts: {prometheus.url}/alerts; log: {prometheus.log_path})"
    )
    return prometheus


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    port = args.port or int(os.environ.get("SHOP_PORT", DEFAULT_PORTS[args.service]))
    os.environ["SHOP_PORT"] = str(port)
    host = args.host or os.environ.get("SHOP_HOST", "0.0.0.0")
    config = uvicorn.Config(
        FACTORIES[args.service],
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        server_header=False,
    )
    if args.workers > 1:
        uvicorn.Server(config)  # validates the config; the supervisor forks the workers
        uvicorn.run(
            FACTORIES[args.service],
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=20,
            server_header=False,
        )
        return 0
    # Objects made at start-up live for the whole process: keep them out of the collector's
    # full passes, which otherwise cause the slowest requests (see docs/performance.md).
    gc.collect()
    gc.freeze()
    from shop.common.server import DrainingServer

    delay = float(os.environ.get("SHOP_SHUTDOWN_DELAY_SECONDS", "0"))
    DrainingServer(config, drain_delay=delay).run()
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from shop.storefront.graphql import schema

    args.output.write_text(schema.as_str() + "\n")
    print(f"GraphQL schema written to {args.output}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from shop.common import migrations

    url = args.database_url or os.environ.get("SHOP_DATABASE_URL")
    if not url:
        raise SystemExit("set SHOP_DATABASE_URL to the service's database (or --database-url)")
    migrations.upgrade(args.service, url)
    print(f"{args.service}: migrated")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    url = args.database_url or os.environ.get("SHOP_DATABASE_URL")
    if not url:
        raise SystemExit("set SHOP_DATABASE_URL to the product database (or --database-url)")
    print(f"{asyncio.run(seed_catalogue(url))} products added")
    return 0


def cmd_recover(_: argparse.Namespace) -> int:
    from shop.orders.recovery import recover_once

    outcomes = asyncio.run(recover_once())
    print(" ".join(f"{k}={v}" for k, v in outcomes.items()))
    return 0


def cmd_check_consistency(args: argparse.Namespace) -> int:
    from shop.devtools.consistency import check

    given = {
        "orders": args.orders_url,
        "products": args.products_url,
        "payments": args.payments_url,
    }
    if all(given.values()):
        urls = given
    else:
        server = find_server(STATE_DIR / "pgdata", configured=args.server_url)
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


def cmd_rotate_keys(_: argparse.Namespace) -> int:
    from shop.users.keys import KeyRingMissing, RotatorSettings, rotate_vault_keys

    try:
        before, ring = asyncio.run(rotate_vault_keys(RotatorSettings()))
    except KeyRingMissing as exc:
        raise SystemExit(str(exc)) from None
    if before is None:
        print(f"signing keys created: kid {ring.kid}")
    else:
        print(f"signing key rotated: kid {before} -> {ring.kid} (the old one stays published)")
    return 0


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="shop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="set up and start all four services")
    run.add_argument("--base-port", type=int, default=5000)
    run.add_argument(
        "--prometheus", action="store_true", help="also start Prometheus, if it is installed"
    )
    run.add_argument("--prometheus-port", type=int, default=9090)
    run.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="replicas per service behind the NGINX gateway (needs nginx; default 1, no gateway)",
    )
    run.add_argument("--gateway-port", type=int, default=8080)
    run.set_defaults(func=cmd_run)
    serve = sub.add_parser("serve", help="serve one service")
    serve.add_argument("service", choices=(*SERVICES, STOREFRONT))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=int(os.environ.get("SHOP_WORKERS", "1")))
    serve.set_defaults(func=cmd_serve)
    export = sub.add_parser("export-schema", help="write the GraphQL schema to schema.graphql")
    export.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).parent / "storefront" / "schema.graphql",
    )
    export.set_defaults(func=cmd_export_schema)
    migrate = sub.add_parser("migrate", help="apply migrations")
    migrate.add_argument("service", choices=SERVICES)
    migrate.add_argument("--database-url")
    migrate.set_defaults(func=cmd_migrate)
    seed = sub.add_parser("seed", help="add the demo catalogue (idempotent)")
    seed.add_argument("--database-url")
    seed.set_defaults(func=cmd_seed)
    recover = sub.add_parser("recover", help="finish unfinished orders once")
    recover.set_defaults(func=cmd_recover)
    rotate = sub.add_parser("rotate-keys", help="rotate the JWT signing keys in Vault")
    rotate.set_defaults(func=cmd_rotate_keys)
    consistency = sub.add_parser(
        "check-consistency", help="report orders whose stock, payment and status disagree"
    )
    consistency.add_argument("--server-url", help="PostgreSQL server (default: as `shop run`)")
    consistency.add_argument("--prefix", default="", help="database name prefix (tests)")
    for svc in ("orders", "products", "payments"):
        consistency.add_argument(f"--{svc}-url", help=f"the {svc} database, wherever it is")
    consistency.set_defaults(func=cmd_check_consistency)
    from shop.devtools.backup import add_commands as add_backup_commands

    add_backup_commands(sub, STATE_DIR)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
