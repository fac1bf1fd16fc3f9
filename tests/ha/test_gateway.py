"""The Envoy gateway in front of two replicas of each service: what the edge does.

Tokens are checked at the edge (a rejected request never reaches a service), every route of
the table answers, request ids are kept or made, limits answer 429 problems, CORS, gzip, TLS,
a JSON access-log line per request, and Prometheus metrics on the admin port.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shop.common.auth import SigningKeys
from shop.devtools.cluster import Cluster
from shop.devtools.gateway import Gateway
from shop.devtools.processes import free_port
from shop.edge import Bucket, Limits
from tests.ha.conftest import ADMIN_PASSWORD, needs_envoy

pytestmark = [pytest.mark.ha, needs_envoy]

PROBLEM_JSON = "application/problem+json"


def _admin(gateway: str) -> dict[str, str]:
    response = httpx.post(
        f"{gateway}/api/v1/users/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _requests_seen(cluster: Cluster, service: str, route_part: str) -> float:
    """How many requests the service's replicas counted on routes containing ``route_part``
    (their own ``http_requests_total``, read from each replica directly)."""
    total = 0.0
    for replica in cluster.replicas[service]:
        text = httpx.get(f"{replica.url}/metrics", timeout=30).text
        for line in text.splitlines():
            if line.startswith("http_requests_total{") and route_part in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def _signed(cluster: Cluster, **claims: object) -> str:
    pem = Path(cluster.envs["users"]["SHOP_JWT_PRIVATE_KEY_FILE"]).read_text()
    now = int(time.time())
    base = {"iss": "shop-users", "aud": "shop", "sub": "1", "role": "admin", "typ": "access"}
    return SigningKeys(pem).sign({**base, "iat": now, "exp": now + 300, **claims})


def test_every_route_of_the_table_answers(cluster: Cluster) -> None:
    gw = cluster.gateway.url
    admin = _admin(gw)
    assert httpx.get(f"{gw}/health").json() == {"status": "ok"}
    assert "keys" in httpx.get(f"{gw}/.well-known/jwks.json").json()
    assert "items" in httpx.get(f"{gw}/api/v1/products").json()
    register = httpx.post(f"{gw}/api/v1/users/register", json={"username": "x"})
    assert register.status_code == 422  # the user service's validation, reached without token
    refresh = httpx.post(f"{gw}/api/v1/users/refresh", json={"refresh_token": "x" * 43})
    assert refresh.status_code in (401, 422)  # the service answered, not the edge
    assert "refresh token" in refresh.json()["detail"]
    assert httpx.get(f"{gw}/api/v1/users/1", headers=admin).json()["username"] == "admin"
    assert httpx.get(f"{gw}/api/v1/orders/999999", headers=admin).status_code == 404
    payment = httpx.get(f"{gw}/api/v1/payments/order/999999", headers=admin)
    assert payment.status_code == 404
    assert payment.headers["content-type"] == PROBLEM_JSON
    unknown = httpx.get(f"{gw}/nowhere")  # no storefront among the upstreams: no catch-all
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM_JSON
    assert unknown.json()["status"] == 404


def test_the_gateway_serves_the_platform_openapi(cluster: Cluster) -> None:
    served = httpx.get(f"{cluster.gateway.url}/openapi.json")
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    document = served.json()
    assert document["info"]["title"] == "shop platform"
    assert "/api/v1/users/login" in document["paths"]
    assert "/api/v1/payments/{payment_id}/refund" in document["paths"]


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "expired", "wrong-audience", "tampered"],
)
def test_a_bad_token_is_a_401_at_the_edge_and_never_reaches_the_service(
    cluster: Cluster, token: str
) -> None:
    tokens = {
        "expired": lambda: _signed(cluster, exp=int(time.time()) - 120, iat=0),
        "wrong-audience": lambda: _signed(cluster, aud="someone-else"),
        "tampered": lambda: _signed(cluster)[:-4] + "AAAA",
        "not-a-jwt": lambda: "not-a-jwt",
        "": lambda: "",
    }
    headers = {"Authorization": f"Bearer {tokens[token]()}"} if token else {}
    before = _requests_seen(cluster, "orders", "/api/v1/orders")
    response = httpx.get(f"{cluster.gateway.url}/api/v1/orders/1", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401
    assert _requests_seen(cluster, "orders", "/api/v1/orders") == before
    # A valid token goes through, and the service counts it.
    ok = httpx.get(
        f"{cluster.gateway.url}/api/v1/orders/999999",
        headers={"Authorization": f"Bearer {_signed(cluster)}"},
    )
    assert ok.status_code == 404
    assert _requests_seen(cluster, "orders", "/api/v1/orders") == before + 1


def test_product_writes_need_a_token_but_reads_do_not(cluster: Cluster) -> None:
    gw = cluster.gateway.url
    assert httpx.get(f"{gw}/api/v1/products/1").status_code in (200, 404)
    # Public routes ignore a stale token: an expired one in a browser must not break browsing.
    stale = {"Authorization": f"Bearer {_signed(cluster, exp=1, iat=0)}"}
    assert httpx.get(f"{gw}/api/v1/products", headers=stale).status_code == 200
    write = httpx.post(f"{gw}/api/v1/products", json={"name": "x", "price": "1.00"})
    assert write.status_code == 401
    assert write.headers["content-type"] == PROBLEM_JSON


def test_request_ids_are_kept_or_made_and_logged_at_both_ends(cluster: Cluster) -> None:
    gw = cluster.gateway.url
    given = httpx.get(f"{gw}/api/v1/products", headers={"X-Request-ID": "trace-me-123"})
    assert given.headers["X-Request-ID"] == "trace-me-123"
    made = httpx.get(f"{gw}/api/v1/products").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f-]{36}", made)  # Envoy's UUID

    def service_logged(request_id: str) -> bool:
        return any(
            f'"request_id":"{request_id}"' in p.log_path.read_text()
            for p in cluster.replicas["products"]
            if p.log_path
        )

    def gateway_line(request_id: str) -> dict[str, object] | None:
        if not cluster.gateway.access_log.exists():
            return None
        for line in cluster.gateway.access_log.read_text().splitlines():
            record: dict[str, object] = json.loads(line)
            if record["request_id"] == request_id:
                return record
        return None

    deadline = time.monotonic() + 60  # log lines are written after the response, and buffered
    while not (
        service_logged("trace-me-123") and service_logged(made) and gateway_line(made) is not None
    ):
        assert time.monotonic() < deadline, "the request ids never reached the logs"
        time.sleep(0.1)
    line = gateway_line(made)
    assert line is not None
    assert {"timestamp", "level", "service", "message", "request_id", "user_id"} <= set(line)
    assert line["service"] == "gateway"
    assert line["status"] == 200
    assert line["message"] == "GET /api/v1/products"


def test_answers_are_compressed_for_clients_that_accept_gzip(cluster: Cluster) -> None:
    gw = cluster.gateway.url
    admin = _admin(gw)
    for n in range(8):  # a list long enough to be worth compressing
        httpx.post(
            f"{gw}/api/v1/products",
            json={"name": f"gzip widget {n}", "description": "x" * 100, "price": "1.00"},
            headers=admin,
        ).raise_for_status()
    with httpx.Client() as client:
        raw = client.get(
            f"{gw}/api/v1/products", params={"limit": 100}, headers={"Accept-Encoding": "gzip"}
        )
    assert raw.headers["content-encoding"] == "gzip"
    assert len(raw.json()["items"]) >= 8  # httpx decoded it


def test_cors_allows_the_storefront_origin_only(cluster: Cluster) -> None:
    gw = cluster.gateway.url
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = httpx.options(f"{gw}/api/v1/orders", headers={"Origin": gw, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == gw
    assert "POST" in allowed.headers["access-control-allow-methods"]
    other = httpx.options(
        f"{gw}/api/v1/orders", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers


def test_tls_with_the_development_certificate(cluster: Cluster) -> None:
    gateway = cluster.gateway
    with httpx.Client(verify=ssl.create_default_context(cafile=gateway.ca_path)) as client:
        response = client.get(f"{gateway.tls_url}/api/v1/products")
    assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):  # not trusted without the development CA
        httpx.get(f"{gateway.tls_url}/api/v1/products")


def test_prometheus_metrics_on_the_admin_port(cluster: Cluster) -> None:
    httpx.get(f"{cluster.gateway.url}/api/v1/products")
    text = httpx.get(f"{cluster.gateway.admin_url}/stats/prometheus", timeout=30).text
    edge = r'^envoy_http_downstream_rq_xx\{.*envoy_http_conn_manager_prefix="public_http"'
    assert re.search(edge, text, re.M)
    upstream = r'^envoy_cluster_upstream_rq_total\{envoy_cluster_name="products"\}'
    assert re.search(upstream, text, re.M)


@pytest.fixture
def strict_gateway(cluster: Cluster, state_dir: Path) -> Iterator[Gateway]:
    """A second gateway over the same replicas with tiny buckets: 3 requests then one a
    minute per client; login 2 then one a minute. However slowly this machine answers, the
    requests below outrun the refill."""
    gateway = Gateway(
        state_dir=state_dir / "strict-gateway",
        port=free_port(),
        upstreams={s: [p.port for p in cluster.replicas[s]] for s in ("users", "products")},
        limits=Limits(
            default=Bucket(rate=1, burst=3, period=60), auth=Bucket(rate=1, burst=2, period=60)
        ),
    )
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def test_a_client_over_its_rate_gets_429_problems(strict_gateway: Gateway) -> None:
    with httpx.Client(base_url=strict_gateway.url) as client:
        statuses = [client.get("/api/v1/products").status_code for _ in range(10)]
        limited = client.get("/api/v1/products")
        logins = [
            client.post("/api/v1/users/login", json={"username": "a", "password": "b"})
            for _ in range(4)
        ]
    assert statuses[:3] == [200] * 3
    assert statuses[3:].count(429) >= 6  # all the rest, but for one should a minute pass
    assert limited.status_code == 429
    assert limited.headers["content-type"] == PROBLEM_JSON
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["status"] == 429
    # Login has its own, tighter bucket: two attempts reach the service (401), then 429.
    assert [r.status_code for r in logins[:2]] == [401, 401]
    assert logins[3].status_code == 429
    assert logins[3].headers["Retry-After"] == "1"


def test_no_live_replica_is_a_503_problem(state_dir: Path) -> None:
    gateway = Gateway(
        state_dir=state_dir / "empty-gateway",
        port=free_port(),
        upstreams={"users": [free_port()], "orders": [free_port()]},  # nothing listens there
        limits=Limits(enabled=False),
    )
    gateway.start()
    try:
        response = httpx.post(f"{gateway.url}/api/v1/users/login", json={})
    finally:
        gateway.stop()
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["Retry-After"] == "2"
