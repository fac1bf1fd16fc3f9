"""A real Prometheus scrapes the four services (processes) and the Envoy gateway in front of
them, and evaluates every dashboard query and every rule expression through its HTTP API,
after traffic that exercises the metrics.

Prometheus is Debian's package, run with the config rendered from
``prometheus.local.yml.tmpl`` (1 s scrape and evaluation intervals) and ``alerts.yml``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shop.devtools.gateway import Gateway
from shop.devtools.processes import free_port
from shop.devtools.prometheus import PrometheusProcess, find_prometheus, local_prometheus
from tests.monitoring.live import PASSWORD, TracedPlatform, add_product, bearer, register
from tests.monitoring.queries import (
    iter_alert_exprs,
    iter_dashboard_queries,
    iter_rules,
    substitute,
)

PROMETHEUS = find_prometheus()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="/usr/bin/prometheus is not installed (scripts/install-apt-tools.sh installs it)",
    ),
]

# Generous for CI machines many times slower than this one; polls end as soon as data is in.
DEADLINE = 180.0

# Dashboard panels (by title) and recording rules (by name) over service metrics that stay
# empty on a healthy platform, and why. Every other one must return data after the traffic.
MAY_BE_EMPTY = {
    "5xx/s by route": "only a 5xx answer creates these series; the traffic causes none",
    "job:http_requests_5xx:rate5m": "the same: no 5xx (the ratio rules fill in 0 instead)",
    "Unhandled exceptions by route": "no handler fails in this run "
    "(tests/unit/test_exceptions_metric.py proves the counter)",
    "Saga recoveries by outcome (range)": "only an order interrupted mid-saga creates them",
}

# What the traffic must have been counted as (minimums: other tests share the platform).
COUNTED = {
    'sum(shop_user_registrations_total{job="user-service"})': 2,
    'sum(shop_user_logins_total{job="user-service", outcome="success"})': 3,
    'sum(shop_user_logins_total{job="user-service", outcome="failure"})': 1,
    'sum(shop_orders_total{job="order-service", status="paid"})': 2,
    'sum(shop_orders_total{job="order-service", status="failed"})': 1,
    'sum(shop_orders_total{job="order-service", status="cancelled"})': 1,
    'sum(shop_payments_total{job="payment-service", status="refunded"})': 1,
    'sum(shop_refunds_total{job="payment-service"})': 1,
    'sum(shop_stock_outs_total{job="product-service"})': 1,
    'sum(outbound_requests_total{job="order-service", outcome="success"})': 6,
    'sum(http_requests_total{job="order-service", route="/api/v1/orders"})': 4,
    "sum(db_pool_max)": 4,
}


@pytest.fixture(scope="module")
def gateway(
    traced_platform: TracedPlatform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """The Envoy gateway over the platform, with its default (generous) rate limits."""
    gw = Gateway(
        state_dir=tmp_path_factory.mktemp("gateway"),
        port=free_port(),
        upstreams={name: [port] for name, port in traced_platform.ports.items()},
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def prometheus(
    traced_platform: TracedPlatform, gateway: Gateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusProcess]:
    assert PROMETHEUS is not None
    server = local_prometheus(
        PROMETHEUS,
        tmp_path_factory.mktemp("prometheus"),
        traced_platform.ports,
        port=free_port(),
        interval="1s",
        gateway_admin_port=gateway.admin_port,
    )
    server.start()
    try:
        server.wait_ready(timeout=DEADLINE)
        # Traffic at the edge: a catalogue read, and a protected route refused there (401).
        with httpx.Client(base_url=gateway.url, timeout=30) as edge:
            assert edge.get("/api/v1/products?limit=5").status_code == 200
            assert edge.get("/api/v1/orders/1").status_code == 401
        yield server
    finally:
        server.stop()


class PromQL:
    """Instant queries through Prometheus' HTTP API."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def query(self, expr: str) -> list[Any]:
        """The result of ``expr`` now; fails the test when Prometheus refuses the query."""
        response = self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        if body.get("status") != "success":
            pytest.fail(f"Prometheus refused {expr!r}: {body.get('error')}", pytrace=False)
        result: list[Any] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def rules(self) -> list[dict[str, Any]]:
        groups = self.http.get("/api/v1/rules").json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]


def wait_until(check: Any, *, what: str) -> None:
    """Poll ``check()`` (returning the unmet items) until it returns none, within DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while unmet := check():
        if time.monotonic() > deadline:
            pytest.fail(f"after {DEADLINE}s, {what}: {unmet}", pytrace=False)
        time.sleep(0.5)


def drive_traffic(platform: TracedPlatform) -> None:
    """Registrations, logins (one failed), catalogue reads, orders: paid, cancelled (a
    refund), out of stock (a stock-out) and declined (a failed payment)."""
    lamp = add_product(platform, name="Metered lamp", price="20.00", stock=3)
    ring = add_product(platform, name="Metered ring", price="12500.00", stock=2)
    alice = register(platform, "metered_alice")
    bob = register(platform, "metered_bob")
    with platform.sync_client("users") as users:
        refused = users.post(
            "/api/v1/users/login", json={"username": "metered_bob", "password": PASSWORD + "x"}
        )
        assert refused.status_code == 401
    bob = bearer(platform, "metered_bob", PASSWORD)
    with platform.sync_client("products") as products:
        assert products.get("/api/v1/products?limit=5").status_code == 200
        assert products.get(f"/api/v1/products/{lamp}").status_code == 200
        assert products.get("/api/v1/products/999999").status_code == 404
    with platform.sync_client("orders") as orders:

        def order(who: dict[str, str], product: int, quantity: int) -> httpx.Response:
            return orders.post(
                "/api/v1/orders",
                headers=who,
                json={"product_id": product, "quantity": quantity, "payment_method": "card"},
            )

        paid = order(alice, lamp, 1)
        assert paid.status_code == 201, paid.text
        cancelled = orders.post(f"/api/v1/orders/{paid.json()['id']}/cancel", headers=alice)
        assert cancelled.status_code == 200, cancelled.text
        assert order(bob, lamp, 1).status_code == 201
        assert order(bob, lamp, 50).status_code == 409  # out of stock
        assert order(alice, ring, 1).status_code == 402  # above the provider's limit


def test_dashboards_and_rules_on_real_prometheus(
    traced_platform: TracedPlatform, prometheus: PrometheusProcess
) -> None:
    promql = PromQL(prometheus.url)
    jobs = "user-service|product-service|order-service|payment-service"
    wait_until(
        lambda: [] if promql.value(f'count(up{{job=~"{jobs}"}} == 1)') == 4 else ["not all up"],
        what="the four services are not all scraped",
    )

    drive_traffic(traced_platform)

    panels = list(iter_dashboard_queries())
    rules = list(iter_alert_exprs())
    for panel in panels:  # every panel query parses (external ones included)
        promql.query(substitute(panel.expr))
    for rule in rules:  # every rule expression parses
        promql.query(rule.expr)

    must_have_data = {
        f"{q.dashboard} / {q.panel}": substitute(q.expr)
        for q in iter_dashboard_queries(include_external=False)
        if q.panel not in MAY_BE_EMPTY
    }
    # Recording rules (all over the services' metrics): their expressions and their series.
    recorded = {rule["record"] for _, rule in iter_rules() if "record" in rule}
    recorded -= MAY_BE_EMPTY.keys()
    must_have_data |= {f"rule {r.name}": r.expr for r in rules if r.name in recorded}
    must_have_data |= {f"series {name}": name for name in recorded}

    def unmet() -> list[str]:
        empty = [name for name, expr in must_have_data.items() if not promql.query(expr)]
        low = [
            f"{expr} = {promql.value(expr)} < {minimum}"
            for expr, minimum in COUNTED.items()
            if (promql.value(expr) or 0) < minimum
        ]
        return empty + low

    wait_until(unmet, what="queries still without data (or counts too low)")

    # The rules load and evaluate without error (each one evaluated at least once).
    names = {rule.get("alert") or rule["record"] for _, rule in iter_rules()}

    def unevaluated() -> list[str]:
        loaded = promql.rules()
        missing = names - {rule["name"] for rule in loaded}
        pending = [r["name"] for r in loaded if r.get("health") == "unknown"]
        return sorted(missing) + pending

    wait_until(unevaluated, what="rules not loaded or not yet evaluated")
    broken = {r["name"]: r.get("lastError") for r in promql.rules() if r["health"] != "ok"}
    assert not broken, broken

    # A healthy platform with every target up has no target missing.
    missing = next(r for r in rules if r.name == "ServiceTargetsMissing")
    assert promql.query(missing.expr) == []


def test_latency_buckets_link_to_the_traces_of_their_requests(
    traced_platform: TracedPlatform, prometheus: PrometheusProcess
) -> None:
    """Prometheus scrapes /metrics as OpenMetrics and keeps the exemplars: each order's latency
    bucket carries the trace id of a trace the services exported (every trace is sampled here)."""
    with traced_platform.sync_client("products") as products:
        assert products.get("/api/v1/products?limit=3").status_code == 200
    http = httpx.Client(base_url=prometheus.url, timeout=30)
    query = 'http_request_duration_seconds_bucket{job="product-service", route="/api/v1/products"}'
    start = time.time() - 600

    def exemplars() -> list[dict[str, Any]]:
        response = http.get(
            "/api/v1/query_exemplars",
            params={"query": query, "start": start, "end": time.time() + 60},
        )
        body = response.json()
        assert body["status"] == "success", body
        return [e for series in body["data"] for e in series["exemplars"]]

    wait_until(lambda: [] if exemplars() else ["no exemplar"], what="no exemplar stored")
    trace_ids = {e["labels"]["trace_id"] for e in exemplars()}
    assert all(len(t) == 32 for t in trace_ids), trace_ids
    exported = {s.trace_id for s in traced_platform.receiver.snapshot()}
    assert trace_ids & exported, (trace_ids, len(exported))
