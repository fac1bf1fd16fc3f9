"""The Istio mesh component: the mesh overlay renders, validates against Istio's own CRD
schemas, and says what docs/gateway.md says (strict mTLS, only the platform's calls allowed,
pools and ejection, retries by one layer only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from shop.edge import ROUTES

from .conftest import (
    CRD_KINDS,
    K8S,
    MESH_KINDS,
    SERVICES,
    STOREFRONT,
    WORKLOADS,
    by_kind,
    render,
    tools_python,
)

HERE = Path(__file__).parent
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
NOTHING_SENT = {"connect-failure", "refused-stream"}


@pytest.fixture(scope="module")
def mesh() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(K8S / "overlays" / "mesh")) if d]


def test_mesh_resources_validate_against_istios_schemas(mesh):
    crds = [d for d in mesh if d["kind"] in CRD_KINDS | MESH_KINDS]
    assert {d["kind"] for d in crds} >= MESH_KINDS
    assert tools_python(HERE / "validate_crds.py", input=json.dumps(crds)) == []


def test_the_component_is_off_unless_an_overlay_switches_it_on(rendered):
    for docs in rendered.values():
        assert not {d["kind"] for d in docs} & MESH_KINDS


def test_strict_mtls_and_sidecars_for_the_namespace(mesh):
    (peer,) = by_kind(mesh, "PeerAuthentication").values()
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}
    assert by_kind(mesh, "Namespace")["shop"]["metadata"]["labels"]["istio-injection"] == "enabled"


def _allowed(policy: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(source, method, path) triples an ALLOW policy admits."""
    out = set()
    for rule in policy["spec"]["rules"]:
        for src in rule["from"]:
            who = src["source"].get("namespaces", []) + src["source"].get("principals", [])
            for op in rule["to"]:
                for w in who:
                    for m in op["operation"]["methods"]:
                        for p in op["operation"]["paths"]:
                            out.add((w.rsplit("/", 1)[-1], m, p))
    return out


def test_each_service_allows_only_the_calls_the_platform_makes(mesh):
    policies = by_kind(mesh, "AuthorizationPolicy")
    assert set(policies) == set(WORKLOADS)
    for name, policy in policies.items():
        assert policy["spec"]["action"] == "ALLOW"
        assert policy["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        allowed = _allowed(policy)
        assert ("monitoring", "GET", "/metrics") in allowed
        callers = {who for who, _m, _p in allowed} - {"envoy-gateway-system", "monitoring"}
        assert (
            callers
            == {
                "user-service": {"product-service", "order-service", "payment-service", STOREFRONT},
                "product-service": {"order-service", STOREFRONT},
                "order-service": {STOREFRONT},
                "payment-service": {"order-service", STOREFRONT},
                STOREFRONT: set(),
            }[name]
        )
        if name == STOREFRONT:  # its gateway routes end in the catch-all "/"
            assert {p for w, _m, p in allowed if w == "envoy-gateway-system"} == {"/*"}
            continue
        # The gateway reaches only the service's own public prefix and the gateway's other
        # routes to it (the JWKS, the product service's categories); so does the storefront
        # (the caller's token, the service's public API).
        prefix = "/api/v1/" + SERVICES[name][0]
        routed = {r.path for r in ROUTES if r.service == SERVICES[name][0] and r.exact}
        storefront_paths = {p for w, _m, p in allowed if w == STOREFRONT}
        assert all(p.startswith(prefix) or p in routed for p in storefront_paths)
        gateway_paths = {p for who, _m, p in allowed if who == "envoy-gateway-system"}
        assert all(p.startswith(prefix) or p in routed for p in gateway_paths)
    jwks_only = {p for w, _m, p in _allowed(policies["user-service"]) if w == "order-service"}
    assert jwks_only == {"/.well-known/jwks.json"}


def test_destination_rules_bound_pools_and_eject_failing_pods(mesh):
    rules = by_kind(mesh, "DestinationRule")
    assert set(rules) == set(WORKLOADS)
    assert set(by_kind(mesh, "VirtualService")) == set(WORKLOADS)
    for name, rule in rules.items():
        policy = rule["spec"]["trafficPolicy"]
        assert rule["spec"]["host"] == f"{name}.shop.svc.cluster.local"
        assert policy["tls"]["mode"] == "ISTIO_MUTUAL"
        assert policy["connectionPool"]["http"]["http1MaxPendingRequests"] > 0
        assert policy["outlierDetection"]["maxEjectionPercent"] <= 50


def test_retries_happen_in_one_layer_and_only_where_safe(mesh):
    for name, vs in by_kind(mesh, "VirtualService").items():
        for route in vs["spec"]["http"]:
            assert route["timeout"]
            retries = route["retries"]
            from_order_service = any(
                m.get("sourceLabels") == {"app.kubernetes.io/name": "order-service"}
                for m in route.get("match", [])
            )
            if from_order_service:  # its own client retries these
                assert retries == {"attempts": 0}, name
                continue
            methods = set()
            for m in route.get("match", []):
                methods |= set(m.get("method", {}).get("regex", "").split("|")) - {""}
            triggers = set(retries["retryOn"].split(","))
            if not methods or not methods <= IDEMPOTENT:
                assert triggers <= NOTHING_SENT, (name, route["name"])
    # With the mesh on, the gateway leaves retries to it.
    for policy in by_kind(mesh, "BackendTrafficPolicy").values():
        assert policy["spec"]["retry"]["numRetries"] == 0
