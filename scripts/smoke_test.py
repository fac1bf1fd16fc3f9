#!/usr/bin/env python3
"""Smoke tests of a running shop platform: one line per check, exit 1 on the first failure.

Standard library only (urllib), so it runs anywhere python3 does: in the deploy workflow
against the public ingress, or locally against the four services.

  # one ingress in front of every service (health endpoints are not public there)
  python3 scripts/smoke_test.py --base-url https://shop.example.com --skip-health
  # the services directly
  python3 scripts/smoke_test.py --users-url http://127.0.0.1:5000 \\
      --products-url http://127.0.0.1:5001 --orders-url http://127.0.0.1:5002 \\
      --payments-url http://127.0.0.1:5003

Checks: /health/ready of each service, register a fresh user, log in, list products, read
one, and when a product is in stock: place an order (1 item, card), read it back, cancel it
and see its payment refunded. With admin credentials (--admin-username/--admin-password or
SHOP_SMOKE_ADMIN_USERNAME/SHOP_SMOKE_ADMIN_PASSWORD) the admin login is checked too, and when
no product is in stock a temporary one is created for the order and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

SERVICES = ("users", "products", "orders", "payments")


class SmokeFailure(Exception):
    """A check failed; the message says which and why."""


@dataclass
class Response:
    status: int
    body: Any
    text: str


class Client:
    def __init__(self, timeout: float, run_id: str) -> None:
        self.timeout = timeout
        self.run_id = run_id
        self.calls = 0

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        self.calls += 1
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", "shop-smoke-test/1")
        req.add_header("X-Request-ID", f"smoke-{self.run_id}-{self.calls}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return _response(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            return _response(exc.code, exc.read())
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SmokeFailure(f"{method} {url}: cannot reach the service ({reason})") from exc


def _response(status: int, raw: bytes) -> Response:
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = None
    return Response(status, body, text)


def expect(resp: Response, status: int | tuple[int, ...], what: str) -> Any:
    wanted = (status,) if isinstance(status, int) else status
    if resp.status not in wanted:
        detail = resp.text[:300].replace("\n", " ")
        raise SmokeFailure(
            f"{what}: expected HTTP {'/'.join(map(str, wanted))}, got {resp.status}: {detail}"
        )
    return resp.body


def field(obj: Any, name: str, what: str) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise SmokeFailure(f"{what}: response has no {name!r}: {str(obj)[:300]}")
    return obj[name]


class Smoke:
    def __init__(self, urls: dict[str, str], args: argparse.Namespace) -> None:
        self.urls = urls
        self.args = args
        self.run_id = secrets.token_hex(4)
        self.http = Client(args.timeout, self.run_id)
        self.passed = 0
        self.skipped = 0
        self.cleanup: list[tuple[str, str, str | None]] = []

    def url(self, service: str, path: str) -> str:
        return self.urls[service].rstrip("/") + path

    def ok(self, name: str, detail: str = "") -> None:
        self.passed += 1
        print(f"PASS {name}" + (f" ({detail})" if detail else ""), flush=True)

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)

    def run(self) -> None:
        try:
            self._run()
        finally:
            for method, url, token in reversed(self.cleanup):
                try:
                    resp = self.http.request(method, url, token=token)
                    print(f"INFO cleanup {method} {url} -> {resp.status}", flush=True)
                except SmokeFailure as exc:
                    print(f"WARN cleanup failed: {exc}", file=sys.stderr, flush=True)

    def _run(self) -> None:
        if self.args.skip_health:
            self.skip("health", "--skip-health (only the ingress is reachable)")
        else:
            for service in SERVICES:
                started = time.monotonic()
                expect(
                    self.http.request("GET", self.url(service, "/health/ready")),
                    200,
                    f"{service} /health/ready",
                )
                self.ok(
                    f"health {service} /health/ready",
                    f"{(time.monotonic() - started) * 1000:.0f} ms",
                )

        username = f"smoke_{int(time.time())}_{self.run_id}"
        password = secrets.token_urlsafe(18)
        user = expect(
            self.http.request(
                "POST",
                self.url("users", "/api/v1/users/register"),
                body={
                    "username": username,
                    "email": f"{username}@example.com",
                    "password": password,
                },
            ),
            201,
            "register a user",
        )
        if "password" in user or "password_hash" in user:
            raise SmokeFailure("register a user: the response exposes the password")
        self.ok("register a user", f"id {field(user, 'id', 'register a user')}, {username}")

        token = self.login(username, password, "log in")
        admin_token = None
        if self.args.admin_username and self.args.admin_password:
            admin_token = self.login(
                self.args.admin_username, self.args.admin_password, "admin log in"
            )

        page = expect(
            self.http.request("GET", self.url("products", "/api/v1/products?limit=100")),
            200,
            "list products",
        )
        items = field(page, "items", "list products")
        total = field(page, "total", "list products")
        if not isinstance(items, list) or not isinstance(total, int):
            raise SmokeFailure(f"list products: not a page of items: {str(page)[:300]}")
        self.ok("list products", f"{total} in total")

        product = next(
            (p for p in items if isinstance(p, dict) and int(p.get("stock") or 0) > 0), None
        )
        if product is None and admin_token:
            product = self.create_product(admin_token)
        elif items:
            product = product or items[0]

        if product is None:
            self.skip("read a product", "the catalogue is empty")
        else:
            pid = field(product, "id", "read a product")
            read = expect(
                self.http.request("GET", self.url("products", f"/api/v1/products/{pid}")),
                200,
                "read a product",
            )
            if field(read, "id", "read a product") != pid:
                raise SmokeFailure(f"read a product: asked for {pid}, got {read.get('id')}")
            self.ok(
                "read a product", f"id {pid}, price {read.get('price')}, stock {read.get('stock')}"
            )
            product = read

        if product is None or int(product.get("stock") or 0) <= 0:
            self.skip("order", "no product in stock (pass admin credentials to create one)")
            return
        self.order_round_trip(token, product)

    def login(self, username: str, password: str, what: str) -> str:
        body = expect(
            self.http.request(
                "POST",
                self.url("users", "/api/v1/users/login"),
                body={"username": username, "password": password},
            ),
            200,
            what,
        )
        token = field(body, "access_token", what)
        if not isinstance(token, str) or not token:
            raise SmokeFailure(f"{what}: empty access_token")
        self.ok(
            what, f"{body.get('token_type', 'bearer')} token, expires in {body.get('expires_in')} s"
        )
        return token

    def create_product(self, admin_token: str) -> dict[str, Any]:
        created = expect(
            self.http.request(
                "POST",
                self.url("products", "/api/v1/products"),
                token=admin_token,
                body={
                    "name": f"smoke-test {self.run_id}",
                    "description": "Temporary product of a smoke test; deleted at its end.",
                    "price": "1.00",
                    "stock": 5,
                    "category": "smoke-test",
                },
            ),
            201,
            "create a temporary product (admin)",
        )
        pid = field(created, "id", "create a temporary product (admin)")
        self.cleanup.append(
            ("DELETE", self.url("products", f"/api/v1/products/{pid}"), admin_token)
        )
        self.ok("create a temporary product (admin)", f"id {pid}")
        return created

    def order_round_trip(self, token: str, product: dict[str, Any]) -> None:
        pid = product["id"]
        order = expect(
            self.http.request(
                "POST",
                self.url("orders", "/api/v1/orders"),
                token=token,
                headers={"Idempotency-Key": f"smoke-{self.run_id}"},
                body={"product_id": pid, "quantity": 1, "payment_method": "card"},
            ),
            201,
            "place an order",
        )
        oid = field(order, "id", "place an order")
        status = field(order, "status", "place an order")
        if status != "paid":
            raise SmokeFailure(f"place an order: status {status!r}, expected 'paid'")
        if not isinstance(order.get("total_price"), str):
            raise SmokeFailure(
                f"place an order: total_price is not a decimal string: {order.get('total_price')!r}"
            )
        self.ok("place an order", f"id {oid}, {order['total_price']}, {status}")

        read = expect(
            self.http.request("GET", self.url("orders", f"/api/v1/orders/{oid}"), token=token),
            200,
            "read the order",
        )
        if read.get("id") != oid or read.get("status") != "paid":
            raise SmokeFailure(f"read the order: got {str(read)[:300]}")
        self.ok("read the order", f"id {oid}, {read['status']}")

        cancelled = expect(
            self.http.request(
                "POST", self.url("orders", f"/api/v1/orders/{oid}/cancel"), token=token
            ),
            200,
            "cancel the order",
        )
        if field(cancelled, "status", "cancel the order") != "cancelled":
            raise SmokeFailure(
                f"cancel the order: status {cancelled.get('status')!r}, expected 'cancelled'"
            )
        self.ok("cancel the order", f"id {oid}, cancelled")

        payment = expect(
            self.http.request(
                "GET", self.url("payments", f"/api/v1/payments/order/{oid}"), token=token
            ),
            200,
            "the order's payment",
        )
        if field(payment, "status", "the order's payment") != "refunded":
            raise SmokeFailure(
                f"the order's payment: status {payment.get('status')!r}, expected 'refunded'"
            )
        self.ok("the order's payment is refunded", str(payment.get("payment_id", "")))


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="one URL in front of every service (the ingress)")
    for service in SERVICES:
        parser.add_argument(
            f"--{service}-url", help=f"the {service} service (overrides --base-url)"
        )
    parser.add_argument(
        "--skip-health", action="store_true", help="skip /health/ready (not routed by the ingress)"
    )
    parser.add_argument(
        "--admin-username",
        default=os.environ.get("SHOP_SMOKE_ADMIN_USERNAME"),
        help="env SHOP_SMOKE_ADMIN_USERNAME",
    )
    parser.add_argument(
        "--admin-password",
        default=os.environ.get("SHOP_SMOKE_ADMIN_PASSWORD"),
        help="env SHOP_SMOKE_ADMIN_PASSWORD",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default 10)"
    )
    args = parser.parse_args(argv)

    urls: dict[str, str] = {}
    missing = []
    for service in SERVICES:
        url = getattr(args, f"{service}_url") or args.base_url
        if not url:
            missing.append(f"--{service}-url")
            continue
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            parser.error(f"not an http(s) URL: {url}")
        urls[service] = url
    if missing:
        parser.error("give --base-url, or " + ", ".join(missing))
    return args, urls


def main(argv: list[str] | None = None) -> int:
    args, urls = parse_args(argv)
    smoke = Smoke(urls, args)
    started = time.monotonic()
    try:
        smoke.run()
    except SmokeFailure as exc:
        print(f"FAIL {exc}", file=sys.stderr, flush=True)
        return 1
    print(
        f"smoke tests passed: {smoke.passed} checks, {smoke.skipped} skipped, "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
