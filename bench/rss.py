"""``python -m bench.rss``: each service's RSS right after start-up, as the bench starts them.

Starts the platform as ``python -m bench`` does (its own databases, 10,000 products, the
catalogue cache on Redis when one is found, the relay in its own process), waits until every
service is ready, lets them settle, and prints each service process's RSS (psutil), then the
same after ``--warm`` requests of each kind (a product read, a list page, a login, an order):
what the first requests import or allocate is part of a service's resting weight.

With ``--imports`` the services run with ``PYTHONPROFILEIMPORTTIME=1`` (every import logged
when it happens, at start-up or later) and the packages of ``tests/unit/test_runtime_imports``
that a service loaded are printed: the guard test imports the apps; this also sees what
start-up and the first requests import. (The RSS figures of such a run include the logging.)
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
import uuid
from typing import Any

import psutil

from bench.platform import PASSWORD, SERVICES, Platform, running_platform

# Kept in step with tests/unit/test_runtime_imports.py's UNWANTED (bench imports no tests).
UNWANTED = (
    "sqlalchemy",
    "alembic",
    "httpx",
    "httpcore",
    "hvac",
    "requests",
    "aio_pika",
    "aiormq",
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
    "google.protobuf",
)


def rss_mb(platform: Platform) -> dict[str, float]:
    """Each service's RSS in MB (the largest process, with several workers)."""
    out: dict[str, float] = {}
    for name in SERVICES:
        proc = platform.procs[name].process
        assert proc is not None
        root = psutil.Process(proc.pid)
        out[name] = max(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    return out


def _call(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    request = urllib.request.Request(  # noqa: S310 (loopback, the platform's own ports)
        url, data=None if body is None else json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def warm(platform: Platform, rounds: int) -> None:
    """``rounds`` of a product read, a list page, a login and an order, one at a time."""
    base = {name: platform.procs[name].url for name in SERVICES}
    for i in range(rounds):
        _call(f"{base['products']}/api/v1/products/{1 + i % platform.products}")
        _call(f"{base['products']}/api/v1/products?limit=20")
        login = _call(
            f"{base['users']}/api/v1/users/login",
            {"username": f"bench_user_{1 + i % platform.users:05d}", "password": PASSWORD},
        )
        _call(
            f"{base['orders']}/api/v1/orders",
            {"product_id": 1 + i % platform.products, "quantity": 1, "payment_method": "card"},
            token=login["access_token"],
        )


def imported(log: str) -> list[str]:
    """The unwanted packages a service's import-time log shows it imported."""
    names = {
        line.rsplit("|", 1)[-1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return sorted(u for u in UNWANTED if any(n == u or n.startswith(u + ".") for n in names))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rss", description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after ready")
    parser.add_argument("--warm", type=int, default=20, help="rounds of each request kind")
    parser.add_argument("--imports", action="store_true", help="log and check imports")
    args = parser.parse_args(argv)
    if args.imports:
        os.environ["PYTHONPROFILEIMPORTTIME"] = "1"
    with running_platform(products=args.products, users=args.users) as platform:
        time.sleep(args.settle)
        started = rss_mb(platform)
        warm(platform, args.warm)
        time.sleep(args.settle)
        warmed = rss_mb(platform)
        print("service   RSS after start-up MB   after warm-up MB")
        for name in SERVICES:
            print(f"{name:9s} {started[name]:22.1f} {warmed[name]:18.1f}")
        if args.imports:
            for name in SERVICES:
                path = platform.procs[name].log_path
                log = path.read_text(errors="replace") if path else ""
                print(f"{name}: imported {imported(log) or 'none of the unwanted packages'}")


if __name__ == "__main__":
    main()
