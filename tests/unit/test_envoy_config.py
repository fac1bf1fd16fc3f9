"""The gateway's Envoy configuration is rendered without Envoy, a process or a file: a snapshot
of one rendering (``make run``'s shape: EDS endpoints, TLS, rate limits on) shows every change
to it in review. After a deliberate change: ``SHOP_UPDATE_SNAPSHOTS=1 pytest <this file>``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shop.devtools.envoy_config import EnvoyConfig
from shop.devtools.gateway import Gateway
from shop.edge import ROUTES, Limits

SNAPSHOT = Path(__file__).parent / "snapshots" / "envoy-config.json"


def _config() -> EnvoyConfig:
    return EnvoyConfig(
        state_dir=Path("/srv/shop-gateway"),
        port=8080,
        tls_port=8443,
        admin_port=9901,
        upstreams={"users": [5000], "products": [5001, 5011], "orders": [5002], "payments": [5003]},
        internal_ports={"users": 6000, "products": 6001, "orders": 6002, "payments": 6003},
        limits=Limits(enabled=True),
    )


def test_the_rendering_matches_its_snapshot() -> None:
    rendered = json.dumps(_config().render(), indent=1, sort_keys=True) + "\n"
    if os.environ.get("SHOP_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(rendered)
    assert rendered == SNAPSHOT.read_text(), "the Envoy config changed: review, then update"


def test_rendering_is_pure_and_repeatable() -> None:
    config = _config()
    assert config.render() == config.render()
    assert not Path("/srv/shop-gateway").exists()  # nothing was written for it


def test_a_drained_replica_leaves_the_endpoints_and_nothing_else() -> None:
    config = _config()
    config.drained.add(5011)
    (assignment,) = config.eds("products")["resources"]
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in assignment["endpoints"][0]["lb_endpoints"]
    ]
    assert ports == [5001]
    assert config.render() == _config().render()  # the bootstrap does not list endpoints


def test_the_gateway_runs_the_same_rendering() -> None:
    fields = {
        name: getattr(_config(), name)
        for name in ("state_dir", "port", "tls_port", "admin_port", "upstreams", "internal_ports")
    }
    gateway = Gateway(**fields, limits=Limits(enabled=True))
    assert gateway.render() == _config().render()
    assert {r.service for r in gateway.routes()} == {"users", "products", "orders", "payments"}
    assert [r for r in ROUTES if r.service == "storefront"]  # left out: not among the upstreams


def _public_hcms(rendered: dict[str, object]) -> dict[str, dict[str, object]]:
    listeners = rendered["static_resources"]["listeners"]  # type: ignore[index]
    return {
        listener["name"]: listener["filter_chains"][0]["filters"][0]["typed_config"]
        for listener in listeners
    }


def test_without_a_collector_the_gateway_traces_nothing() -> None:
    rendered = _config().render()
    assert all("tracing" not in hcm for hcm in _public_hcms(rendered).values())
    assert "otel_collector" not in {c["name"] for c in rendered["static_resources"]["clusters"]}


def test_with_a_collector_the_public_listeners_trace_into_it_at_the_sampling_given() -> None:
    config = _config()
    config.otlp_endpoint = "http://otel-collector:4318/"
    config.trace_sampling = 10.0
    rendered = config.render()
    hcms = _public_hcms(rendered)
    traced = {name for name, hcm in hcms.items() if "tracing" in hcm}
    # The edge only: the internal listeners stand in for direct calls between services.
    assert traced == {"public_http", "public_https"}
    tracing = hcms["public_http"]["tracing"]
    assert tracing["random_sampling"] == {"value": 10.0}
    provider = tracing["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    uri = provider["typed_config"]["http_service"]["http_uri"]
    assert uri["uri"] == "http://otel-collector:4318/v1/traces"
    clusters = {c["name"]: c for c in rendered["static_resources"]["clusters"]}
    address = clusters[uri["cluster"]]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert address["endpoint"]["address"]["socket_address"] == {
        "address": "otel-collector",
        "port_value": 4318,
    }
    routes = hcms["public_http"]["route_config"]["virtual_hosts"][0]["routes"]
    routed = [r for r in routes if "route" in r]
    assert routed
    assert all(r["decorator"]["operation"].startswith("gateway /") for r in routed)
    tags = {t["tag"]: t["request_header"]["name"] for t in tracing["custom_tags"]}
    assert tags == {"http.request.header.x_request_id": "x-request-id"}
