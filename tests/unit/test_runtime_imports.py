"""A service process does not import what only migrations, tests, Vault, tracing, Redis or an
in-process relay need (docs/performance.md, "Memory"): together about 30 MB of RSS a process.

In a fresh interpreter, as ``shop serve SERVICE`` does: the ``shop`` command's parser is built
(every subcommand's options) and the service's app made with its default settings (no Vault,
no OTLP endpoint, no Redis, the relay in its own process). ``python -m bench.rss --imports``
also checks what start-up and the first requests import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVICES = ["users", "products", "orders", "payments"]

# Top-level packages (or dotted modules) a service's runtime must not load by default.
UNWANTED = [
    "sqlalchemy",  # the tables for Alembic: shop.<service>.tables
    "alembic",
    "httpx",  # only for a test's transport or with tracing (shop.common.httpx_client)
    "httpcore",
    "hvac",  # only with SHOP_VAULT_ADDR (shop.common.vault)
    "requests",
    "aio_pika",  # only to relay in process or to consume (shop.common.events.broker)
    "aiormq",
    "opentelemetry.exporter",  # only with an OTLP endpoint (shop.common.tracing_sdk)
    "opentelemetry.instrumentation",
    "google.protobuf",
]
# Redis only where configured (SHOP_REDIS_URL); the product service's catalogue cache is built
# on it (shop.products.cache), so that one imports it.
UNWANTED_BUT_BY = {"redis": {"products"}}

PROBE = """
import contextlib, io, json, sys
from importlib import import_module
from shop.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["serve", "--help"])  # the whole parser, as `shop serve` builds it
app = import_module("shop.{service}.app").create_app()
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(service: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(service=service)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SHOP_ENV": "development"},
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_app_loads_none_of_the_optional_heavy_packages(service: str) -> None:
    modules = loaded_modules(service)
    unwanted = [*UNWANTED, *(m for m, users in UNWANTED_BUT_BY.items() if service not in users)]
    found = {
        package
        for package in unwanted
        if any(name == package or name.startswith(package + ".") for name in modules)
    }
    assert found == set(), f"shop.{service}.app loads {sorted(found)}"


def test_the_probe_sees_what_the_apps_do_load() -> None:
    modules = loaded_modules("products")
    assert {"fastapi", "shop.cli", "redis"} <= modules  # the probe itself works
