"""The in-process cost of the product service's near-cache hit, with no sockets at all.

    .venv/bin/python -m bench.inprocess [--requests 10000] [--rounds 5]

Builds the product app, fills its near cache with 1,000 product pages, and drives the ASGI app
directly (no uvicorn, no wrk, no Redis or PostgreSQL round trip): every layer a cached read
passes in the process (FastAPI's, the request middleware with its request id, metrics and
access-log line to stdout, the lean route). Prints CPU microseconds per request, the best of
the rounds. Redirect stdout (the access log) to /dev/null; the figure goes to stderr. What it
isolates is Python work, which a loaded machine's syscall costs do not blur (docs/performance.md).

``--sample-ratio 0.1`` builds the app with tracing on (the standard ``OTEL_*`` variables, as
bench/traced.py sets them), exporting to a receiver in another process that discards every
export: what a traced read costs, unsampled and sampled together, the exporter's thread
included; ``--sample-ratio 1`` or ``0`` prices the two kinds apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from shop.common.logging import configure_logging
from shop.products.app import create_app
from shop.products.cache import CachedBody, CatalogueCache
from shop.products.settings import ProductsSettings

_PRODUCTS = 1000


def _scope(app: Any, product_id: int) -> dict[str, Any]:
    path = f"/api/v1/products/{product_id}"
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"user-agent", b"bench.inprocess")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
        "app": app,
    }


async def measure(requests: int, rounds: int) -> float:
    """CPU microseconds per cached product read, the best of ``rounds``."""
    unreachable = "redis://127.0.0.1:1/0"  # never called: every read is a near hit
    app = create_app(ProductsSettings(redis_url=unreachable))
    cache = CatalogueCache.from_url(unreachable)
    cache._subscribed.set()  # as a subscribed replica is
    body = orjson.dumps({"id": 1, "name": "Product", "description": "A floor item. " * 12})
    for product_id in range(1, _PRODUCTS + 1):
        page = CachedBody.of(body)
        cache._near[f"p:{product_id}"] = (time.monotonic() + 3600, page.body, page.etag)
    app.state.catalogue_cache = cache

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    for i in range(2000):  # warm up: the middleware stack is built on the first call
        await app(_scope(app, i % _PRODUCTS + 1), receive, send)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for i in range(requests):
            await app(_scope(app, i % _PRODUCTS + 1), receive, send)
        best = min(best, (time.process_time() - started) / requests * 1e6)
    return best


# A receiver in a process of its own, so that its CPU is not counted as the app's.
_RECEIVER = (
    "import sys, time\n"
    "from bench.traced import discarding_receiver\n"
    "with discarding_receiver() as receiver:\n"
    "    print(receiver.endpoint, flush=True)\n"
    "    sys.stdin.read()\n"
)


@contextmanager
def traced(ratio: float) -> Iterator[None]:
    """Tracing on for the app built inside, at ``ratio``, exporting to a discarding receiver."""
    from bench.traced import traced_env

    receiver = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        os.environ.update(traced_env(receiver.stdout.readline().strip(), ratio))
        yield
    finally:
        receiver.communicate("", timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sample-ratio", type=float, help="tracing on, keeping this share")
    args = parser.parse_args()
    configure_logging(service="product-service", pod="bench-inprocess")
    if args.sample_ratio is None:
        us = asyncio.run(measure(args.requests, args.rounds))
    else:
        with traced(args.sample_ratio):
            us = asyncio.run(measure(args.requests, args.rounds))
    what = "" if args.sample_ratio is None else f", traced at {args.sample_ratio:g}"
    print(
        f"near-cache hit, in process{what}: {us:.1f} us of CPU per request"
        f" (best of {args.rounds} x {args.requests})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
