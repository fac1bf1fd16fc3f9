"""The platform's production commands: what a container, an initContainer or a Job runs.

``shop serve``, ``migrate``, ``seed``, ``notifications``, ``relay``, ``recover``,
``rotate-keys`` and ``export-schema``; ``shop.cli`` parses and dispatches to them. Each imports
what it needs when it runs, so one command never loads another's dependencies. The local
platform (``shop run``) is ``shop.devtools.local``; backups and restores are ``shop.ops``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from shop.common.services import DEFAULT_PORTS, PROCESSES

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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    port = args.port or int(os.environ.get("SHOP_PORT", DEFAULT_PORTS[args.service]))
    os.environ["SHOP_PORT"] = str(port)
    host = args.host or os.environ.get("SHOP_HOST", "0.0.0.0")
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": args.workers,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 20,
        "server_header": False,
    }
    config = uvicorn.Config(FACTORIES[args.service], **options)
    if args.workers > 1:
        uvicorn.Server(config)  # validates the config; the supervisor forks the workers
        uvicorn.run(FACTORIES[args.service], **options)
        return 0
    from shop.common.server import DrainingServer  # it freezes start-up's objects (startup)

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
