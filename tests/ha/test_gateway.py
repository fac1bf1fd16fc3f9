"""The NGINX gateway: routing like the ingress, request ids, rate limits, problems for errors."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shop.devtools.cluster import Cluster
from shop.devtools.gateway import Gateway
from shop.devtools.processes import free_port
from tests.ha.conftest import needs_nginx

pytestmark = [pytest.mark.ha, needs_nginx]


def test_routes_each_prefix_to_its_service(cluster: Cluster) -> None:
    gw = cluster.gateway.url
    assert httpx.get(f"{gw}/api/v1/products").json()["items"] is not None
    assert "keys" in httpx.get(f"{gw}/.well-known/jwks.json").json()
    for path in ("/api/v1/users/1", "/api/v1/orders/1", "/api/v1/payments/pay_x"):
        response = httpx.get(f"{gw}{path}")
        assert response.status_code == 401  # reached the service, which wants a token
        assert response.headers["content-type"] == "application/problem+json"
    unknown = httpx.get(f"{gw}/admin")
    assert unknown.status_code == 404
    assert unknown.json()["status"] == 404


def test_request_ids_are_kept_or_made_and_reach_the_service(cluster: Cluster) -> None:
    gw = cluster.gateway.url
    given = httpx.get(f"{gw}/api/v1/products", headers={"X-Request-ID": "trace-me-123"})
    assert given.headers["X-Request-ID"] == "trace-me-123"
    made = httpx.get(f"{gw}/api/v1/products")
    assert len(made.headers["X-Request-ID"]) == 32  # NGINX's $request_id

    def logged(request_id: str) -> bool:
        return any(
            f'"request_id":"{request_id}"' in p.log_path.read_text()
            for p in cluster.replicas["products"]
            if p.log_path
        )

    deadline = time.monotonic() + 60  # the access log line is written after the response
    while not (logged("trace-me-123") and logged(made.headers["X-Request-ID"])):
        assert time.monotonic() < deadline, "the request ids never reached the service logs"
        time.sleep(0.05)


@pytest.fixture
def strict_gateway(cluster: Cluster, state_dir: Path) -> Iterator[Gateway]:
    """A second gateway over the same replicas, allowing a burst of 4 requests per client."""
    folder = state_dir / "strict-gateway"
    folder.mkdir()
    os.chmod(folder, 0o755)  # noqa: S103 - NGINX's worker user must reach its spool
    port = free_port()
    gateway = Gateway(
        state_dir=folder,
        port=port,
        upstreams={"products": [p.port for p in cluster.replicas["products"]]},
        internal_ports={},
        # One a minute after a burst of 3: however slowly this machine answers, the 20
        # requests below outrun it.
        rate="1r/m",
        burst=3,
    )
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def test_a_client_over_its_rate_gets_429_problems(strict_gateway: Gateway) -> None:
    with httpx.Client(base_url=strict_gateway.url) as client:
        statuses = [client.get("/api/v1/products").status_code for _ in range(20)]
        limited = client.get("/api/v1/products")
    assert statuses[:4] == [200] * 4  # the rate's one plus the burst of 3
    assert statuses.count(429) >= 15  # the rest, but for one more should a minute pass
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["status"] == 429


def test_no_live_replica_is_a_503_problem(state_dir: Path) -> None:
    folder = state_dir / "empty-gateway"
    folder.mkdir()
    os.chmod(folder, 0o755)  # noqa: S103
    dead = free_port()  # nothing listens there
    gateway = Gateway(
        state_dir=folder, port=free_port(), upstreams={"orders": [dead]}, internal_ports={}
    )
    gateway.start()
    try:
        response = httpx.get(f"{gateway.url}/api/v1/orders/1")
    finally:
        gateway.stop()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "2"
