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

A thin dispatcher: it parses, then imports the one module whose command runs (production
commands: shop.commands; the local platform: shop.devtools.local; backups: shop.ops), so
`shop serve` in an image never loads the development tools.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from shop.common.services import PROCESSES, SERVICES, STATE_DIR

Command = Callable[[argparse.Namespace], int]


def _resolve(func: str | Command) -> Command:
    """A command given as ``"module:function"`` is imported only when it runs."""
    if callable(func):
        return func
    module, _, name = func.partition(":")
    command: Command = getattr(importlib.import_module(module), name)
    return command


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
    run.set_defaults(func="shop.devtools.local:cmd_run")
    serve = sub.add_parser("serve", help="serve one service")
    serve.add_argument("service", choices=PROCESSES)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=int(os.environ.get("SHOP_WORKERS", "1")))
    serve.set_defaults(func="shop.commands:cmd_serve")
    export = sub.add_parser("export-schema", help="write the GraphQL schema to schema.graphql")
    export.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).parent / "storefront" / "schema.graphql",
    )
    export.set_defaults(func="shop.commands:cmd_export_schema")
    migrate = sub.add_parser("migrate", help="apply migrations")
    migrate.add_argument("service", choices=SERVICES)
    migrate.add_argument("--database-url")
    migrate.set_defaults(func="shop.commands:cmd_migrate")
    seed = sub.add_parser("seed", help="add the demo catalogue (idempotent)")
    seed.add_argument("--database-url")
    seed.set_defaults(func="shop.commands:cmd_seed")
    notify = sub.add_parser("notifications", help="run the notification worker (emails)")
    notify.set_defaults(func="shop.commands:cmd_notifications")
    relay = sub.add_parser(
        "relay",
        help="relay the services' outboxes to RabbitMQ until SIGTERM (the relay sidecar)",
        description="Publish each SERVICE's outbox (docs/events.md); /metrics on SHOP_RELAY_PORT."
        " With several services, SHOP_<SERVICE>_DATABASE_URL gives each its database.",
    )
    relay.add_argument("service", nargs="+", choices=SERVICES)
    relay.set_defaults(func="shop.commands:cmd_relay")
    recover = sub.add_parser("recover", help="finish unfinished orders once")
    recover.set_defaults(func="shop.commands:cmd_recover")
    rotate = sub.add_parser("rotate-keys", help="rotate the JWT signing keys in Vault")
    rotate.set_defaults(func="shop.commands:cmd_rotate_keys")
    from shop.ops.commands import add_commands as add_ops_commands

    add_ops_commands(sub, STATE_DIR)
    from shop.ops.vault_cli import add_commands as add_vault_commands

    add_vault_commands(sub)
    args = parser.parse_args(argv)
    return int(_resolve(args.func)(args))


if __name__ == "__main__":
    sys.exit(main())
