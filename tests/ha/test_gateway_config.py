"""The gateway's generated configuration: Envoy's own validation, and the route table's rules.

No services run here: ``envoy --mode validate`` checks every filter, route and cluster of the
bootstrap the way a starting Envoy would, without listening.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shop.devtools.gateway import Gateway
from shop.devtools.processes import SERVICES
from shop.edge import IDEMPOTENT, ROUTES, Limits
from tests.ha.conftest import needs_envoy

pytestmark = [needs_envoy]


def _gateway(tmp_path: Path, services: tuple[str, ...], **kwargs: Any) -> Gateway:
    return Gateway(
        state_dir=tmp_path / "gw",
        port=18080,  # never listened on: validation only
        tls_port=18443,
        admin_port=19901,
        upstreams={s: [5000 + i] for i, s in enumerate(services)},
        internal_ports={s: 18081 + i for i, s in enumerate(services)},
        **kwargs,
    )


@pytest.mark.parametrize(
    ("services", "limits"),
    [
        (SERVICES, Limits()),
        (SERVICES, Limits(enabled=False)),
        ((*SERVICES, "storefront"), Limits()),
    ],
    ids=["platform", "rate-limiting-off", "with-storefront"],
)
def test_generated_config_passes_envoy_validate(
    tmp_path: Path, services: tuple[str, ...], limits: Limits
) -> None:
    gateway = _gateway(tmp_path, services, limits=limits)
    gateway.validate()  # raises with Envoy's message if it rejects anything
    text = gateway.config_path.read_text()
    assert ("envoy.filters.http.local_ratelimit" in text) is limits.enabled


def test_the_tracer_passes_envoy_validate(tmp_path: Path) -> None:
    """Envoy's OpenTelemetry tracer and its collector cluster, as ``shop run`` renders them
    when an OTLP endpoint is configured (the compose files are validated in tests/images)."""
    gateway = _gateway(
        tmp_path, SERVICES, otlp_endpoint="http://127.0.0.1:4318", trace_sampling=10.0
    )
    gateway.validate()
    assert "envoy.tracers.opentelemetry" in gateway.config_path.read_text()


def _routes(gateway: Gateway) -> list[dict[str, Any]]:
    config = gateway.render()
    (listener, *_rest) = config["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes: list[dict[str, Any]] = hcm["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def test_storefront_routes_only_when_a_storefront_is_upstream(tmp_path: Path) -> None:
    without = {r["match"].get("prefix") for r in _routes(_gateway(tmp_path, SERVICES))}
    assert "/graphql" not in without
    assert "/" not in without
    with_it = _routes(_gateway(tmp_path, (*SERVICES, "storefront")))
    prefixes = [r["match"].get("prefix") for r in with_it]
    for prefix in ("/graphql", "/static/", "/admin", "/"):
        assert prefix in prefixes
    assert with_it[-1]["match"]["prefix"] == "/"  # the catch-all comes last
    assert {r["route"]["cluster"] for r in with_it if r["match"].get("prefix") == "/"} == {
        "storefront"
    }


def test_only_idempotent_methods_are_retried_after_sending(tmp_path: Path) -> None:
    for route in _routes(_gateway(tmp_path, SERVICES)):
        if "route" not in route:
            continue  # the gateway's own /health
        triggers = set(route["route"]["retry_policy"]["retry_on"].split(","))
        headers = route["match"].get("headers", [])
        methods = (
            set(headers[0]["string_match"]["safe_regex"]["regex"].strip("^$()").split("|"))
            if headers
            else None
        )
        if methods is not None and methods <= set(IDEMPOTENT):
            assert "reset" in triggers, route["name"]
        else:
            assert triggers == {"connect-failure", "refused-stream", "reset-before-request"}


def test_public_routes_are_the_contracts(tmp_path: Path) -> None:
    public = {(r.path, m) for r in ROUTES if r.service != "storefront" for m in r.public}
    assert ("/api/v1/products", "GET") in public
    assert ("/api/v1/users/login", "POST") in public
    assert ("/api/v1/users/register", "POST") in public
    assert ("/.well-known/jwks.json", "GET") in public
    assert not any(path.startswith(("/api/v1/orders", "/api/v1/payments")) for path, _ in public)
    assert ("/api/v1/products", "POST") not in public
    config = json.dumps(_gateway(tmp_path, SERVICES).render())
    assert '"requirement_name": "required"' in config


@pytest.mark.parametrize(("value", "enabled"), [("false", False), ("0", False), ("true", True)])
def test_shop_rate_limiting_false_turns_the_limits_off(
    monkeypatch: pytest.MonkeyPatch, value: str, enabled: bool
) -> None:
    monkeypatch.setenv("SHOP_RATE_LIMITING", value)
    assert Limits.from_env().enabled is enabled


def test_the_platform_openapi_is_served_by_the_gateway_itself(tmp_path: Path) -> None:
    from shop.devtools.contract import platform_openapi, routed_service

    document = platform_openapi()
    gateway = _gateway(tmp_path, SERVICES, openapi=document)
    gateway.validate()  # Envoy accepts the direct response at its size
    (route, *_rest) = [r for r in _routes(gateway) if r["name"] == "gateway:openapi"]
    assert json.loads(route["direct_response"]["body"]["inline_string"]) == document
    # Every operation the gateway routes, each under the service it routes it to.
    assert "/api/v1/orders/{order_id}/cancel" in document["paths"]
    assert "/.well-known/jwks.json" in document["paths"]
    assert "/health/live" not in document["paths"]  # each service's own, not routed
    assert {routed_service(p) for p in document["paths"]} == set(SERVICES)
    # ... with the gateway's own answers.
    orders = document["paths"]["/api/v1/orders"]["post"]["responses"]
    assert {"401", "429"} <= set(orders)
    assert "401" not in document["paths"]["/api/v1/products"]["get"]["responses"]
    # Every $ref resolves in the one document.
    text = json.dumps(document)
    for name in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert name in document["components"]["schemas"], name
    assert "HealthRead" not in document["components"]["schemas"]  # not routed, not kept
    assert _gateway(tmp_path, SERVICES).openapi is None  # nothing served unless given
    # A client can be generated from the one document too.
    (tmp_path / "platform.json").write_text(json.dumps(document))
    generator = Path(sys.executable).with_name("openapi-python-client")
    args = ["generate", "--path", str(tmp_path / "platform.json")]
    args += ["--output-path", str(tmp_path / "client"), "--meta", "none", "--fail-on-warning"]
    generated = subprocess.run(
        [str(generator), *args],
        capture_output=True,
        text=True,
        # It formats its output with ruff when it finds one: the venv's.
        env={**os.environ, "PATH": f"{generator.parent}{os.pathsep}{os.environ['PATH']}"},
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert (tmp_path / "client/api/orders/place_order.py").exists()
