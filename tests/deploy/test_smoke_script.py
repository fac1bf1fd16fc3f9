"""scripts/smoke_test.py against an in-process fake of the platform's HTTP contract.

The real services are exercised by the lead's e2e tests; this checks the script's own logic
(order of checks, one line per check, non-zero exit on the first failure) in milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "smoke_test.py"


class FakeShop:
    """Just enough of the API (API.md) for one smoke run; `fail` names a path to break."""

    def __init__(self, *, stock: int = 3, fail: str | None = None) -> None:
        self.products = [
            {"id": 7, "name": "Mug", "price": "19.99", "stock": stock, "category": "kitchen"}
        ]
        self.orders: dict[int, dict[str, Any]] = {}
        self.fail = fail
        self.seen: list[str] = []

    def handle(self, method: str, path: str, body: Any, auth: str | None) -> tuple[int, Any]:
        self.seen.append(f"{method} {path}")
        if self.fail and path.startswith(self.fail):
            return 500, {"title": "Internal Server Error", "status": 500}
        bare = path.split("?")[0]
        if bare == "/health/ready":
            return 200, {"status": "ok"}
        if bare == "/api/v1/users/register":
            return 201, {"id": 1, "username": body["username"], "email": body["email"]}
        if bare == "/api/v1/users/login":
            return 200, {"access_token": "t0k", "token_type": "bearer", "expires_in": 900}
        if bare == "/api/v1/products":
            items = self.products
            return 200, {"items": items, "total": len(items), "limit": 100, "offset": 0}
        if bare == "/api/v1/products/7":
            return 200, self.products[0]
        if auth != "Bearer t0k":
            return 401, {"title": "Unauthorized", "status": 401}
        if bare == "/api/v1/orders" and method == "POST":
            order = {"id": 11, "product_id": body["product_id"], "quantity": body["quantity"]}
            order |= {"status": "paid", "total_price": "19.99", "payment_id": "pay_1"}
            self.orders[11] = order
            return 201, order
        if bare == "/api/v1/orders/11":
            return 200, self.orders[11]
        if bare == "/api/v1/orders/11/cancel":
            self.orders[11]["status"] = "cancelled"
            return 200, self.orders[11]
        if bare == "/api/v1/payments/order/11":
            return 200, {"payment_id": "pay_1", "status": "refunded", "amount": "19.99"}
        return 404, {"title": "Not Found", "status": 404}


@pytest.fixture
def serve():
    servers = []

    def start(shop: FakeShop) -> str:
        class Handler(BaseHTTPRequestHandler):
            def _do(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, payload = shop.handle(
                    self.command, self.path, body, self.headers.get("Authorization")
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _do

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--timeout", "5", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_full_round_trip_prints_one_line_per_check(serve):
    shop = FakeShop()
    url = serve(shop)
    proc = smoke("--base-url", url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    checks = [line.split(" (")[0] for line in lines if line.startswith("PASS")]
    assert checks == [
        "PASS health users /health/ready",
        "PASS health products /health/ready",
        "PASS health orders /health/ready",
        "PASS health payments /health/ready",
        "PASS register a user",
        "PASS log in",
        "PASS list products",
        "PASS read a product",
        "PASS place an order",
        "PASS read the order",
        "PASS cancel the order",
        "PASS the order's payment is refunded",
    ]
    assert lines[-1].startswith("smoke tests passed: 12 checks")
    assert "POST /api/v1/orders/11/cancel" in shop.seen


def test_per_service_urls_and_skip_health(serve):
    urls = {name: serve(FakeShop()) for name in ("users", "products", "orders", "payments")}
    args = [arg for name, url in urls.items() for arg in (f"--{name}-url", url)]
    proc = smoke(*args, "--skip-health")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SKIP health" in proc.stdout
    assert "PASS health" not in proc.stdout


def test_no_stock_skips_the_order(serve):
    proc = smoke("--base-url", serve(FakeShop(stock=0)), "--skip-health")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SKIP order: no product in stock" in proc.stdout


def test_first_failure_exits_non_zero_with_a_clear_message(serve):
    shop = FakeShop(fail="/api/v1/orders")
    proc = smoke("--base-url", serve(shop), "--skip-health")
    assert proc.returncode == 1
    assert "PASS read a product" in proc.stdout
    assert proc.stderr.startswith("FAIL place an order: expected HTTP 201, got 500")
    assert not [s for s in shop.seen if s.startswith("POST /api/v1/orders/")]


def test_unreachable_service_fails():
    proc = smoke("--base-url", "http://127.0.0.1:9", "--skip-health")
    assert proc.returncode == 1
    assert "cannot reach the service" in proc.stderr


def test_urls_are_required():
    proc = smoke("--users-url", "http://127.0.0.1:5000")
    assert proc.returncode == 2
    assert "--products-url" in proc.stderr
