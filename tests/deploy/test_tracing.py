"""The tracing component (deploy/k8s/components/tracing) as both overlays render it: every process
exports to the Collector with the standard OTEL_* variables, the Collector's pipeline takes OTLP
and hands it to Jaeger, Jaeger stores in Elasticsearch and serves the query API, the gateway
traces through the Collector, and the network policies open exactly those flows.

The Collector's and Jaeger's own configuration files are checked here for their shape only: no
otelcol or jaeger binary installs from the registries this project uses (docs/observability.md,
"Validated here, and not")."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from .conftest import ENVIRONMENTS, SERVICES, STOREFRONT, by_kind
from .test_kubernetes import allowed, namespace, pod, pod_spec

NOTIFICATIONS = "notifications"
# Every process that serves a request or handles an event, so joins a trace.
TRACED = (*SERVICES, STOREFRONT, NOTIFICATIONS)
SAMPLING = {"prod": ("0.1", 10), "dev": ("1", 100)}  # (OTEL_TRACES_SAMPLER_ARG, samplingRate)


def config_file(docs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    """The parsed configuration file a tracing Deployment runs with (its --config argument)."""
    spec = pod_spec(by_kind(docs, "Deployment")[deployment])
    (container,) = spec["containers"]
    (arg,) = container["args"]
    path = arg.removeprefix("--config=")
    directory, _, filename = path.rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    configmap = by_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
    return yaml.safe_load(configmap["data"][filename])


def container_ports(docs: list[dict[str, Any]], deployment: str) -> dict[str, int]:
    (container,) = pod_spec(by_kind(docs, "Deployment")[deployment])["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def service_port(docs: list[dict[str, Any]], service: str, port: int) -> int:
    """The container port a Service's port leads to (through its named targetPort)."""
    svc = by_kind(docs, "Service")[service]
    (entry,) = [p for p in svc["spec"]["ports"] if p["port"] == port]
    return container_ports(docs, svc["spec"]["selector"]["app.kubernetes.io/name"])[
        entry["targetPort"]
    ]


def listens(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("name", TRACED)
def test_every_traced_process_exports_to_the_collector_with_the_standard_variables(
    rendered, env, name
):
    docs = rendered[env]
    spec = pod_spec(by_kind(docs, "Deployment")[name])
    for container in spec["containers"]:  # the app and, in the services, the outbox relay
        (source,) = container["envFrom"]
        data = by_kind(docs, "ConfigMap")[source["configMapRef"]["name"]]["data"]
        url = urlsplit(data["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (url.scheme, url.hostname) == ("http", "otel-collector")
        # The services export OTLP/HTTP (tracing_sdk.otlp_exporter): the Collector's receiver.
        receiver = config_file(docs, "otel-collector")["receivers"]["otlp"]["protocols"]
        assert service_port(docs, "otel-collector", url.port) == listens(
            receiver["http"]["endpoint"]
        )
        assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert data["OTEL_TRACES_SAMPLER_ARG"] == SAMPLING[env][0]
        assert "SHOP_OTLP_ENDPOINT" not in data  # it would win over the standard variable


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_prod_keeps_a_tenth_of_the_traces_and_dev_all(rendered, env):
    ratio, percent = SAMPLING[env]
    proxy = by_kind(rendered[env], "EnvoyProxy")["shop-proxy"]
    assert proxy["spec"]["telemetry"]["tracing"]["samplingRate"] == percent
    assert float(ratio) * 100 == percent  # the edge and the services agree


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_gateway_traces_through_the_collector(rendered, env):
    docs = rendered[env]
    gateway = by_kind(docs, "Gateway")["shop"]
    assert gateway["spec"]["infrastructure"]["parametersRef"] == {
        "group": "gateway.envoyproxy.io",
        "kind": "EnvoyProxy",
        "name": "shop-proxy",
    }
    tracing = by_kind(docs, "EnvoyProxy")["shop-proxy"]["spec"]["telemetry"]["tracing"]
    assert tracing["provider"]["type"] == "OpenTelemetry"
    (ref,) = tracing["provider"]["backendRefs"]
    assert "namespace" not in ref  # the EnvoyProxy's own: no ReferenceGrant needed
    # Envoy Gateway's OpenTelemetry tracer speaks OTLP/gRPC: the Collector's gRPC receiver.
    receiver = config_file(docs, "otel-collector")["receivers"]["otlp"]["protocols"]
    assert service_port(docs, ref["name"], ref["port"]) == listens(receiver["grpc"]["endpoint"])
    tag = tracing["customTags"]["http.request.header.x_request_id"]
    assert tag["requestHeader"]["name"] == "x-request-id"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_collector_receives_otlp_and_exports_to_jaeger(rendered, env):
    docs = rendered[env]
    config = config_file(docs, "otel-collector")
    (pipeline,) = config["service"]["pipelines"].values()
    assert pipeline["receivers"] == ["otlp"]
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    assert pipeline["processors"][0] == "memory_limiter"  # refuse before running out
    assert "batch" in pipeline["processors"]
    assert set(pipeline["processors"]) <= set(config["processors"])
    (exporter,) = pipeline["exporters"]
    assert exporter.split("/")[0] == "otlp"  # OTLP/gRPC
    host, port = config["exporters"][exporter]["endpoint"].rsplit(":", 1)
    assert host == "jaeger"
    jaeger = config_file(docs, "jaeger")
    assert service_port(docs, host, int(port)) == listens(
        jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    )
    health = config["extensions"]["health_check"]["endpoint"]
    assert container_ports(docs, "otel-collector")["health"] == listens(health)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_jaeger_stores_in_elasticsearch_and_serves_the_query_api(rendered, env):
    docs = rendered[env]
    config = config_file(docs, "jaeger")
    (pipeline,) = config["service"]["pipelines"].values()
    assert pipeline["receivers"] == ["otlp"]
    assert pipeline["exporters"] == ["jaeger_storage_exporter"]
    store = config["exporters"]["jaeger_storage_exporter"]["trace_storage"]
    assert config["extensions"]["jaeger_query"]["storage"]["traces"] == store
    assert set(config["service"]["extensions"]) >= {"jaeger_storage", "jaeger_query"}
    elastic = config["extensions"]["jaeger_storage"]["backends"][store]["elasticsearch"]
    (server,) = elastic["server_urls"]
    assert urlsplit(server).hostname == "elasticsearch-es-http.logging.svc"
    assert urlsplit(server).scheme == "https"
    # The password and the CA are files of the Secret, never in the ConfigMap.
    spec = pod_spec(by_kind(docs, "Deployment")["jaeger"])
    (container,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret_dir = mounts["elasticsearch"]
    assert volumes["elasticsearch"]["secret"]["secretName"] == "jaeger-elasticsearch"
    assert elastic["auth"]["basic"]["password_file"] == f"{secret_dir}/password"
    assert elastic["tls"]["ca_file"] == f"{secret_dir}/ca.crt"
    assert "password" not in elastic["auth"]["basic"]
    assert container_ports(docs, "jaeger")["query"] == 16686
    assert by_kind(docs, "Service")["jaeger"]["spec"]["ports"][1]["port"] == 16686


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("name", ["otel-collector", "jaeger"])
def test_the_tracing_pods_are_locked_down_and_bounded(rendered, env, name):
    dep = by_kind(rendered[env], "Deployment")[name]
    spec = pod_spec(dep)
    assert dep["spec"]["replicas"] == 2
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == name
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["image"].rpartition(":")[2] not in ("", "latest")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][key])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "health"
    pdb = by_kind(rendered[env], "PodDisruptionBudget")[name]
    assert pdb["spec"]["minAvailable"] == 1


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_grafana_finds_jaeger_at_its_query_service(rendered, env):
    docs = rendered[env]
    (datasources,) = [
        cm
        for cm in by_kind(docs, "ConfigMap").values()
        if cm["metadata"].get("labels", {}).get("grafana_datasource") == "1"
    ]
    (jaeger,) = yaml.safe_load(datasources["data"]["jaeger.yml"])["datasources"]
    assert jaeger["uid"] == "jaeger"
    url = urlsplit(jaeger["url"])
    assert url.hostname == "jaeger.shop.svc"
    assert service_port(docs, "jaeger", url.port) == container_ports(docs, "jaeger")["query"]


# --- network policy: exactly the tracing flows ----------------------------------------------


def traced_pods() -> dict[str, Any]:
    return {
        "podSelector": {
            "matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": list(TRACED)}
            ]
        }
    }


def test_only_the_traced_processes_and_the_gateway_reach_the_collector(prod):
    policies = by_kind(prod, "NetworkPolicy")
    peers = allowed(policies, "otel-collector", "ingress")
    assert sorted(map(str, peers)) == sorted(
        map(str, [(traced_pods(), {4318}), (namespace("envoy-gateway-system"), {4317})])
    )
    # Besides what every pod has (DNS, Vault: the base's policies), only Jaeger's OTLP.
    egress = allowed(policies, "otel-collector", "egress")
    assert [p for p in egress if p[1] not in ({53}, {8200})] == [(pod("jaeger"), {4317})]


def test_only_the_collector_and_grafana_reach_jaeger_and_jaeger_only_elasticsearch(prod):
    policies = by_kind(prod, "NetworkPolicy")
    grafana = {**namespace("monitoring"), **pod("grafana")}
    assert allowed(policies, "jaeger", "ingress") == [
        (pod("otel-collector"), {4317}),
        (grafana, {16686}),
    ]
    elasticsearch = {
        **namespace("logging"),
        "podSelector": {
            "matchLabels": {"elasticsearch.k8s.elastic.co/cluster-name": "elasticsearch"}
        },
    }
    egress = [p for p in allowed(policies, "jaeger", "egress") if p[1] not in ({53}, {8200})]
    assert egress == [(elasticsearch, {9200})]


@pytest.mark.parametrize("name", TRACED)
def test_each_traced_process_may_send_to_the_collector(prod, name):
    peers = allowed(by_kind(prod, "NetworkPolicy"), name, "egress")
    assert (pod("otel-collector"), {4318}) in peers


@pytest.fixture(scope="module")
def prod(rendered) -> list[dict[str, Any]]:
    return rendered["prod"]
