"""The Kubernetes manifests: both overlays render, validate, pass checkov, and say what the
architecture says (replicas, rolling updates, probes, HPA, PDB, security, network policy)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import (
    CRD_KINDS,
    ENVIRONMENTS,
    GATEWAY_KINDS,
    ROOT,
    SERVICES,
    STOREFRONT,
    STOREFRONT_PORT,
    TRACING,
    WORKLOADS,
    by_kind,
    checkov_failures,
    describe_failures,
    run,
    tool,
    tools_python,
)

HERE = Path(__file__).parent
NOTIFICATIONS = "notifications"  # the email worker's Deployment (docs/events.md)


# --- schema validation -------------------------------------------------------------------


def test_core_kinds_validate_strictly_against_kubernetes_1_28(rendered):
    # One run over both overlays (the validator's start-up dominates its time).
    core = [d for env in ENVIRONMENTS for d in rendered[env] if d["kind"] not in CRD_KINDS]
    assert len(core) > 60
    proc = run(
        [tool("kubernetes-validate"), "-k", "1.28.0", "--strict", "--quiet", "-"],
        input=yaml.safe_dump_all(core),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_custom_resources_validate_against_vendored_schemas(rendered, env):
    crds = [d for d in rendered[env] if d["kind"] in CRD_KINDS]
    assert {d["kind"] for d in crds} == CRD_KINDS
    errors = tools_python(HERE / "validate_crds.py", input=json.dumps(crds))
    assert errors == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_kind_is_known(rendered, env):
    kinds = {d["kind"] for d in rendered[env]}
    assert kinds == {
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service",
        "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
        "ServiceMonitor", "PrometheusRule", "CronJob", "StatefulSet", *GATEWAY_KINDS,
    }  # fmt: skip
    for doc in rendered[env]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "shop", doc["metadata"]["name"]


# --- checkov ---------------------------------------------------------------------------------


def test_checkov_passes_on_rendered_manifests(checkov_reports):
    failed, skipped, passed = checkov_failures(checkov_reports["kubernetes"])
    assert passed > 100
    assert not failed, "checkov failures:\n" + describe_failures(failed)
    for check in skipped:
        assert (check.get("suppress_comment") or "").strip(), f"skip without a reason: {check}"


# --- workloads ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod(rendered) -> list[dict[str, Any]]:
    return rendered["prod"]


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_one_deployment_per_service_from_one_image(rendered, env):
    deployments = by_kind(rendered[env], "Deployment")
    assert set(deployments) == {*WORKLOADS, NOTIFICATIONS, *TRACING}
    images = set()
    for name, (cli, port, _db) in SERVICES.items():
        spec = pod_spec(deployments[name])
        app = spec["containers"][0]
        assert app["args"] == ["serve", cli]
        assert app["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        (migrate,) = spec["initContainers"]
        assert migrate["args"] == ["migrate", cli]
        assert migrate["image"] == app["image"]
        images.add(app["image"])
    storefront = pod_spec(deployments[STOREFRONT])
    (app,) = storefront["containers"]
    assert app["args"] == ["serve", "storefront"]
    assert app["ports"] == [{"name": "http", "containerPort": STOREFRONT_PORT, "protocol": "TCP"}]
    assert "initContainers" not in storefront  # no database, nothing to migrate
    images.add(app["image"])
    (image,) = images
    repo, _, tag = image.rpartition(":")
    assert repo.endswith("/shop")
    assert tag
    assert tag != "latest"


@pytest.mark.parametrize("name", WORKLOADS)
def test_deployment_rollout_and_probes(prod, name):
    dep = by_kind(prod, "Deployment")[name]
    assert dep["spec"]["replicas"] == 2
    # The seed's rolling update; each new pod serves a while before the next old one goes.
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1},
    }
    assert dep["spec"]["minReadySeconds"] == 5
    app = pod_spec(dep)["containers"][0]
    assert app["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert app["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert app["startupProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert app[probe]["httpGet"]["port"] == "http"
    assert pod_spec(dep)["terminationGracePeriodSeconds"] == 30
    assert app["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(app["resources"][key])


@pytest.mark.parametrize("name", WORKLOADS)
def test_pods_are_locked_down(prod, name):
    spec = pod_spec(by_kind(prod, "Deployment")[name])
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == name
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"] + spec.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["runAsUser"] == 10001
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    token = volumes["vault-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "vault"
    assert token["expirationSeconds"] <= 3600


def test_service_accounts_mount_no_token(prod):
    accounts = by_kind(prod, "ServiceAccount")
    assert set(accounts) == {
        *WORKLOADS,
        "shop-backup",
        "redis",
        "redis-carts",
        NOTIFICATIONS,
        "rabbitmq",
        *TRACING,
    }
    assert all(sa["automountServiceAccountToken"] is False for sa in accounts.values())


def test_roles_only_read_the_own_configmap(prod):
    roles = by_kind(prod, "Role")
    configmaps = by_kind(prod, "ConfigMap")
    assert set(roles) == set(WORKLOADS)
    for name, role in roles.items():
        (rule,) = role["rules"]
        assert rule["verbs"] == ["get"]
        assert rule["resources"] == ["configmaps"]
        (cm,) = rule["resourceNames"]
        assert cm.startswith(f"{name}-config-")
        assert cm in configmaps
    for name, binding in by_kind(prod, "RoleBinding").items():
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": "shop"}
        ]


@pytest.mark.parametrize("name", SERVICES)
def test_vault_agent_renders_the_secrets_as_files(prod, name):
    dep = by_kind(prod, "Deployment")[name]
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    cli, _port, db = SERVICES[name]
    assert ann["vault.hashicorp.com/agent-inject"] == "true"
    assert ann["vault.hashicorp.com/role"] == name
    assert ann["vault.hashicorp.com/agent-init-first"] == "true"
    assert ann["vault.hashicorp.com/agent-service-account-token-volume-name"] == "vault-token"
    prefix = "vault.hashicorp.com/agent-inject-secret-"
    files = {k[len(prefix) :]: v for k, v in ann.items() if k.startswith(prefix)}
    expected = {"SHOP_DATABASE_URL", "SHOP_SERVICE_TOKEN_SECRET", "SHOP_AMQP_URL"}
    if cli == "users":
        expected |= {"SHOP_JWT_PRIVATE_KEY", "SHOP_ADMIN_PASSWORD"}
    assert set(files) == expected
    assert files["SHOP_DATABASE_URL"] == f"database/creds/{cli}"
    assert files["SHOP_SERVICE_TOKEN_SECRET"] == "secret/data/shop/internal"
    template = ann["vault.hashicorp.com/agent-inject-template-SHOP_DATABASE_URL"]
    assert f"@postgres:5432/{db}" in template
    assert template.count("postgresql://") == 1
    for key in expected:
        assert f"agent-inject-template-{key}" in " ".join(ann)


def test_the_storefront_gets_only_the_internal_secret_from_vault(prod):
    ann = by_kind(prod, "Deployment")[STOREFRONT]["spec"]["template"]["metadata"]["annotations"]
    assert ann["vault.hashicorp.com/agent-inject"] == "true"
    assert ann["vault.hashicorp.com/role"] == STOREFRONT
    assert ann["vault.hashicorp.com/agent-service-account-token-volume-name"] == "vault-token"
    prefix = "vault.hashicorp.com/agent-inject-secret-"
    files = {k[len(prefix) :]: v for k, v in ann.items() if k.startswith(prefix)}
    assert files == {"SHOP_SERVICE_TOKEN_SECRET": "secret/data/shop/internal"}
    assert (
        "SHOP_SERVICE_TOKEN_SECRET"
        in ann["vault.hashicorp.com/agent-inject-template-SHOP_SERVICE_TOKEN_SECRET"]
    )


def test_the_storefront_calls_the_services_by_their_in_cluster_names(prod):
    app = pod_spec(by_kind(prod, "Deployment")[STOREFRONT])["containers"][0]
    (source,) = app["envFrom"]
    data = by_kind(prod, "ConfigMap")[source["configMapRef"]["name"]]["data"]
    assert data["SHOP_ENV"] == "production"
    assert data["SHOP_PORT"] == str(STOREFRONT_PORT)
    assert data["SHOP_SECRETS_DIR"] == "/vault/secrets"
    assert data["SHOP_JWKS_URL"] == "http://user-service:5000/.well-known/jwks.json"
    # Each setting of StorefrontSettings that names a service, at that service's Service.
    for name, (cli, port, _db) in SERVICES.items():
        assert data[f"SHOP_{cli.upper()}_URL"] == f"http://{name}:{port}"
    assert "SHOP_DATABASE_URL" not in data
    assert not {k for k in data if "PASSWORD" in k or ("SECRET" in k and k != "SHOP_SECRETS_DIR")}


@pytest.mark.parametrize("name", SERVICES)
def test_configuration_follows_the_env_contract(prod, name):
    dep = by_kind(prod, "Deployment")[name]
    app = pod_spec(dep)["containers"][0]
    (source,) = app["envFrom"]
    data = by_kind(prod, "ConfigMap")[source["configMapRef"]["name"]]["data"]
    cli, port, _db = SERVICES[name]
    assert data["SHOP_ENV"] == "production"
    assert data["SHOP_PORT"] == str(port)
    assert data["SHOP_SECRETS_DIR"] == "/vault/secrets"
    assert "SHOP_LOG_LEVEL" in data
    if cli == "users":
        assert "SHOP_JWKS_URL" not in data
        assert {"SHOP_ADMIN_USERNAME", "SHOP_ADMIN_EMAIL"} <= set(data)
    else:
        assert data["SHOP_JWKS_URL"] == "http://user-service:5000/.well-known/jwks.json"
    if cli == "orders":
        assert data["SHOP_PRODUCTS_URL"] == "http://product-service:5001"
        assert data["SHOP_PAYMENTS_URL"] == "http://payment-service:5003"
    # Secrets come from Vault only, never from the ConfigMap or plain env.
    assert not {k for k in data if "PASSWORD" in k or ("SECRET" in k and k != "SHOP_SECRETS_DIR")}
    assert app["env"] == [
        {"name": "SHOP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]


@pytest.mark.parametrize("name", WORKLOADS)
def test_services_and_service_monitors(prod, name):
    port = WORKLOADS[name]
    svc = by_kind(prod, "Service")[name]
    # The four services' pods also run the outbox relay, whose /metrics is scraped too.
    relay = name in SERVICES
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"},
    ] + relay * [
        {"name": "relay-metrics", "port": 9464, "targetPort": "relay-metrics", "protocol": "TCP"},
    ]
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": name}
    monitor = by_kind(prod, "ServiceMonitor")[name]
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"  # job = Service name
    assert svc["metadata"]["labels"]["app.kubernetes.io/name"] == name
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"},
    ] + relay * [
        {"port": "relay-metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"},
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("name", SERVICES)
def test_each_service_pod_runs_its_outbox_relay_as_a_sidecar(rendered, env, name):
    """The relay (`shop relay SERVICE`) beside the app: same image and settings, the app
    not relaying (SHOP_RELAY_IN_PROCESS unset: false), metrics scraped and reachable."""
    docs = rendered[env]
    spec = pod_spec(by_kind(docs, "Deployment")[name])
    cli, _port, _db = SERVICES[name]
    app, relay = spec["containers"]
    assert relay["name"] == "relay"
    assert relay["args"] == ["relay", cli]
    assert relay["image"] == app["image"]
    assert relay["envFrom"] == app["envFrom"]
    env_vars = {e["name"]: e for e in relay["env"]}
    assert env_vars["SHOP_RELAY_PORT"]["value"] == "9464"
    assert env_vars["SHOP_POD_NAME"] == app["env"][0]
    assert relay["ports"] == [{"name": "relay-metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert relay["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "relay-metrics"}
    assert "readinessProbe" not in relay  # a relay in trouble must not take the pod's traffic
    assert relay["securityContext"] == app["securityContext"]
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(relay["resources"][key])
    (cm,) = [e["configMapRef"]["name"] for e in app["envFrom"]]
    assert "SHOP_RELAY_IN_PROCESS" not in by_kind(docs, "ConfigMap")[cm]["data"]
    ingress = by_kind(docs, "NetworkPolicy")[f"{name}-ingress"]["spec"]["ingress"]
    scrape = [r for r in ingress if "monitoring" in str(r["from"])]
    assert {"protocol": "TCP", "port": 9464} in scrape[0]["ports"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_autoscaling_and_disruption_budgets(rendered, env):
    hpas = by_kind(rendered[env], "HorizontalPodAutoscaler")
    pdbs = by_kind(rendered[env], "PodDisruptionBudget")
    # Every service, the storefront and the notification worker scale (issue 31).
    assert set(hpas) == {*WORKLOADS, NOTIFICATIONS}
    # The email worker and the broker keep a budget too; the broker: one node at a time.
    assert set(pdbs) == {*WORKLOADS, NOTIFICATIONS, "rabbitmq", *TRACING}
    assert pdbs["rabbitmq"]["spec"]["maxUnavailable"] == 1
    for name, hpa in hpas.items():
        spec = hpa["spec"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert spec["minReplicas"] == 2
        # prod: min 2, max 10 for every one, as the architecture document sets them (the
        # capacity model sizes the guard rails for all at once, test_capacity.py); dev: a
        # lower ceiling for all (its node group is not sized for them).
        assert spec["maxReplicas"] == (4 if env == "dev" else 10)
        targets = {
            m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
            for m in spec["metrics"]
        }
        assert targets == {"cpu": 70, "memory": 80}
        assert pdbs[name]["spec"]["minAvailable"] == 1
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_prod_is_stricter_than_dev(rendered):
    def requests(env):
        dep = by_kind(rendered[env], "Deployment")["order-service"]
        return pod_spec(dep)["containers"][0]["resources"]["requests"]["memory"]

    def cpu(env):
        dep = by_kind(rendered[env], "Deployment")["order-service"]
        return pod_spec(dep)["containers"][0]["resources"]["requests"]["cpu"]

    # prod's are the capacity model's (test_capacity.py); dev's are smaller.
    assert requests("dev") == "192Mi"
    assert (cpu("dev"), cpu("prod")) == ("50m", "800m")
    prod_spread = pod_spec(by_kind(rendered["prod"], "Deployment")["order-service"])
    assert prod_spread["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    rps = {
        env: by_kind(rendered[env], "BackendTrafficPolicy")["shop-default"]["spec"]["rateLimit"][
            "local"
        ]["rules"][0]["limit"]["requests"]
        for env in ENVIRONMENTS
    }
    assert rps["prod"] < rps["dev"]


# --- namespace, gateway ----------------------------------------------------------------------


def test_namespace_enforces_restricted_pod_security(prod):
    labels = by_kind(prod, "Namespace")["shop"]["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_gateway_terminates_tls_and_redirects_plain_http(rendered, env):
    gateway = by_kind(rendered[env], "Gateway")["shop"]
    assert gateway["spec"]["gatewayClassName"] == "envoy-gateway"
    assert gateway["metadata"]["annotations"]["cert-manager.io/cluster-issuer"].startswith(
        "letsencrypt-"
    )
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    assert listeners["https"]["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "shop-tls"}]
    host = listeners["https"]["hostname"]
    assert listeners["http"]["hostname"] == host
    routes = by_kind(rendered[env], "HTTPRoute")
    assert all(r["spec"]["hostnames"] == [host] for r in routes.values())
    (redirect,) = routes["shop-redirect"]["spec"]["rules"]
    assert redirect["filters"][0]["requestRedirect"]["scheme"] == "https"
    assert routes["shop-redirect"]["spec"]["parentRefs"][0]["sectionName"] == "http"


def test_routes_are_generated_from_the_gateway_table_and_fresh():
    proc = run(
        [str(ROOT / ".venv/bin/python"), str(ROOT / "scripts/gen-gateway-routes.py"), "--check"]
    )
    assert proc.returncode == 0, proc.stderr


def _route_paths(route: dict[str, Any]) -> set[tuple[str, str | None, str]]:
    return {
        (m["path"]["value"], m.get("method"), rule["backendRefs"][0]["name"])
        for rule in route["spec"]["rules"]
        for m in rule.get("matches", [])
    }


def test_protected_routes_need_a_user_token_and_public_ones_do_not(prod):
    routes = by_kind(prod, "HTTPRoute")
    policies = by_kind(prod, "SecurityPolicy")
    jwt = policies["shop-jwt"]["spec"]
    assert [t["name"] for t in jwt["targetRefs"]] == ["shop-protected"]
    (provider,) = jwt["jwt"]["providers"]
    assert (provider["issuer"], provider["audiences"]) == ("shop-users", ["shop"])
    assert provider["remoteJWKS"]["uri"].endswith(":5000/.well-known/jwks.json")
    public = _route_paths(routes["shop-public"]) | _route_paths(routes["shop-auth"])
    assert ("/api/v1/products", "GET", "product-service") in public
    assert ("/api/v1/users/login", "POST", "user-service") in public
    assert not any(backend in {"order-service", "payment-service"} for _p, _m, backend in public)
    assert all(method is not None for _p, method, _b in public)  # public by method, never all
    protected = _route_paths(routes["shop-protected"])
    assert not any(b == STOREFRONT for _p, _m, b in public | protected)
    assert {(p, b) for p, _m, b in protected} >= {
        ("/api/v1/users", "user-service"),
        ("/api/v1/products", "product-service"),
        ("/api/v1/orders", "order-service"),
        ("/api/v1/payments", "payment-service"),
    }


def test_storefront_routes_take_an_optional_token_as_the_local_gateway_does(prod):
    routes = by_kind(prod, "HTTPRoute")
    policies = by_kind(prod, "SecurityPolicy")
    optional = _route_paths(routes["shop-optional"])
    # Every method of each storefront prefix, the catch-all last (Gateway API prefers the
    # longest prefix, so /api/v1/... still goes to the services).
    assert optional == {
        (path, None, STOREFRONT) for path in ("/graphql", "/static/", "/admin", "/")
    }
    policy = policies["shop-jwt-optional"]["spec"]
    assert [t["name"] for t in policy["targetRefs"]] == ["shop-optional"]
    # No token passes; a token that is sent is checked against the same provider.
    assert policy["jwt"]["optional"] is True
    assert policy["jwt"]["providers"] == policies["shop-jwt"]["spec"]["jwt"]["providers"]
    assert "optional" not in policies["shop-jwt"]["spec"]["jwt"]
    assert policy["cors"] == policies["shop-jwt"]["spec"]["cors"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_rate_limits_per_client_and_tighter_for_login(rendered, env):
    policies = by_kind(rendered[env], "BackendTrafficPolicy")

    def limit(name: str) -> tuple[int, str]:
        (rule,) = policies[name]["spec"]["rateLimit"]["local"]["rules"]
        assert rule["clientSelectors"] == [
            {"sourceCIDR": {"type": "Distinct", "value": "0.0.0.0/0"}}
        ]
        return rule["limit"]["requests"], rule["limit"]["unit"]

    per_second = limit("shop-default")
    assert per_second[1] == "Second"
    assert limit("shop-auth") == (30, "Minute")
    assert limit("shop-auth")[0] / 60 < per_second[0]
    for policy in policies.values():  # retries never resend a request that reached a service
        triggers = set(policy["spec"]["retry"]["retryOn"]["triggers"])
        assert triggers <= {"connect-failure", "refused-stream", "reset-before-request"}
        assert "httpStatusCodes" not in policy["spec"]["retry"]["retryOn"]


# --- network policy --------------------------------------------------------------------------


def peers_of(rules: list[dict[str, Any]], key: str) -> list[tuple[dict[str, Any], set[int]]]:
    out = []
    for rule in rules:
        ports = {p["port"] for p in rule.get("ports", [])}
        for peer in rule[key]:
            out.append((peer, ports))
    return out


def allowed(policies, name: str, direction: str) -> list[tuple[dict[str, Any], set[int]]]:
    """(peer, ports) allowed for the pods of `name` in a direction ('ingress' or 'egress')."""
    key = "from" if direction == "ingress" else "to"
    out = []
    for pol in policies.values():
        selector = pol["spec"]["podSelector"]
        labels = selector.get("matchLabels", {})
        exprs = selector.get("matchExpressions", [])
        applies = (not labels and not exprs) or labels.get("app.kubernetes.io/name") == name
        applies = applies or any(name in e.get("values", []) for e in exprs)
        if applies and direction.capitalize() in pol["spec"]["policyTypes"]:
            out += peers_of(pol["spec"].get(direction, []), key)
    return out


def pod(name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}


def namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def test_default_deny_all(prod):
    deny = by_kind(prod, "NetworkPolicy")["default-deny-all"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("name", WORKLOADS)
def test_ingress_only_from_the_gateway_monitoring_and_named_callers(prod, name):
    policies = by_kind(prod, "NetworkPolicy")
    port = WORKLOADS[name]
    peers = allowed(policies, name, "ingress")
    assert (namespace("envoy-gateway-system"), {port}) in peers
    # Prometheus also scrapes the relay sidecar's /metrics in the four services' pods.
    scraped = {port, 9464} if name in SERVICES else {port}
    assert (namespace("monitoring"), scraped) in peers
    callers = {
        # JWKS; the storefront calls every service's API with its user's token.
        "user-service": {
            "product-service",
            "order-service",
            "payment-service",
            STOREFRONT,
            NOTIFICATIONS,  # a customer's address for an email
        },
        "product-service": {"order-service", STOREFRONT},
        "payment-service": {"order-service", STOREFRONT},
        "order-service": {STOREFRONT},
        STOREFRONT: set(),  # the gateway's and Prometheus' only
    }[name]
    pod_peers = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for p, ports in peers
        if "podSelector" in p and "namespaceSelector" not in p and ports == {port}
    }
    assert pod_peers == callers
    assert all(ports in ({port}, scraped) for _p, ports in peers), "every rule names its ports"


@pytest.mark.parametrize("name", SERVICES)
def test_egress_dns_vault_database_and_service_calls(prod, name):
    peers = allowed(by_kind(prod, "NetworkPolicy"), name, "egress")
    dns = {**namespace("kube-system"), **pod("kube-dns")}
    dns["podSelector"] = {"matchLabels": {"k8s-app": "kube-dns"}}
    assert (dns, {53}) in peers
    assert (namespace("vault"), {8200}) in peers
    db = [p["ipBlock"]["cidr"] for p, ports in peers if "ipBlock" in p and ports == {5432}]
    assert len(db) == 3
    assert all("ipBlock" not in p or ports == {5432} for p, ports in peers)
    services = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: ports
        for p, ports in peers
        if "podSelector" in p and "namespaceSelector" not in p
    }
    # events (docs/events.md), spans (components/tracing)
    expected = {"rabbitmq": {5672}, "otel-collector": {4318}}
    if name != "user-service":
        expected["user-service"] = {5000}
    if name == "order-service":
        expected |= {"product-service": {5001}, "payment-service": {5003}}
    if name == "product-service":
        expected["redis"] = {6379}  # the catalogue cache
    assert services == expected


def test_storefront_egress_is_dns_vault_the_four_services_and_the_carts_only(prod):
    peers = allowed(by_kind(prod, "NetworkPolicy"), STOREFRONT, "egress")
    dns = {**namespace("kube-system"), **pod("kube-dns")}
    dns["podSelector"] = {"matchLabels": {"k8s-app": "kube-dns"}}
    assert (dns, {53}) in peers
    assert (namespace("vault"), {8200}) in peers  # Vault Agent
    assert not any("ipBlock" in p for p, _ports in peers)  # no database
    services = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: ports
        for p, ports in peers
        if "podSelector" in p and "namespaceSelector" not in p
    }
    carts = {"redis-carts": {6379}}  # signed-in customers' carts (issue 28)
    spans = {"otel-collector": {4318}}  # its spans (components/tracing)
    assert (
        services == {name: {port} for name, (_cli, port, _db) in SERVICES.items()} | carts | spans
    )


def cidrsubnet(prefix: str, newbits: int, netnum: int) -> str:
    """Terraform's cidrsubnet()."""
    net = ipaddress.ip_network(prefix)
    return str(list(net.subnets(prefixlen_diff=newbits))[netnum])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_database_egress_matches_the_terraform_database_subnets(rendered, hcl, env):
    vpc_cidr = hcl[f"environments/{env}/terraform.tfvars"]["vpc_cidr"]
    locals_ = next(iter(hcl["modules/network/main.tf"]["locals"]))
    assert locals_["database_cidrs"] == (
        "${[for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 128 + i)]}"
    ), "the subnet layout changed: update this test and the overlays"
    expected = [cidrsubnet(vpc_cidr, 8, 128 + i) for i in range(3)]
    pol = by_kind(rendered[env], "NetworkPolicy")["allow-database-egress"]
    (rule,) = pol["spec"]["egress"]
    assert [p["ipBlock"]["cidr"] for p in rule["to"]] == expected


# --- monitoring ------------------------------------------------------------------------------


def test_generated_monitoring_manifests_are_fresh():
    proc = run(["python3", str(ROOT / "scripts/gen-monitoring-manifests.py"), "--check"])
    assert proc.returncode == 0, proc.stderr


def test_prometheus_rule_wraps_the_alert_rules_file(prod):
    (rule,) = by_kind(prod, "PrometheusRule").values()
    source = yaml.safe_load(
        (ROOT / "deploy/monitoring/prometheus/alerts.yml").read_text(encoding="utf-8")
    )
    assert rule["spec"] == {"groups": source["groups"]}
    names = [g["name"] for g in source["groups"]]
    assert len(names) == len(set(names)), "rule group names must be unique"


def test_grafana_dashboards_are_configmaps(prod):
    files = sorted((ROOT / "deploy/monitoring/grafana/dashboards").glob("*.json"))
    assert files
    dashboards = {
        key: json.loads(value)
        for cm in by_kind(prod, "ConfigMap").values()
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        for key, value in cm["data"].items()
    }
    assert dashboards == {f.name: json.loads(f.read_text(encoding="utf-8")) for f in files}


# --- events (docs/events.md) -----------------------------------------------------------------


def test_rabbitmq_is_a_three_node_statefulset_reached_only_by_the_event_clients(prod):
    sts = by_kind(prod, "StatefulSet")["rabbitmq"]
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == "rabbitmq-nodes"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    policies = by_kind(prod, "NetworkPolicy")
    peers = allowed(policies, "rabbitmq", "ingress")
    clients = {*SERVICES, NOTIFICATIONS}
    amqp = [p for p, ports in peers if ports == {5672}]
    (rule,) = amqp
    (expr,) = rule["podSelector"]["matchExpressions"]
    assert set(expr["values"]) == clients
    assert (namespace("monitoring"), {15692}) in peers
    assert all(ports <= {5672, 15692, 4369, 25672} for _p, ports in peers)


def test_the_notification_worker_reaches_only_the_broker_users_redis_and_smtp(prod):
    dep = by_kind(prod, "Deployment")[NOTIFICATIONS]
    app = pod_spec(dep)["containers"][0]
    assert app["args"] == ["notifications"]
    (source,) = app["envFrom"]
    data = by_kind(prod, "ConfigMap")[source["configMapRef"]["name"]]["data"]
    assert data["SHOP_SMTP_PORT"] == "587"
    assert data["SHOP_SMTP_STARTTLS"] == "true"
    assert data["SHOP_USERS_URL"] == "http://user-service:5000"
    peers = allowed(by_kind(prod, "NetworkPolicy"), NOTIFICATIONS, "egress")
    pods = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: ports
        for p, ports in peers
        if "podSelector" in p and "namespaceSelector" not in p
    }
    assert pods == {
        "user-service": {5000},
        "rabbitmq": {5672},
        "redis": {6379},  # the inbox
        "otel-collector": {4318},  # its spans
    }
    assert ({"ipBlock": {"cidr": "0.0.0.0/0"}}, {587}) in peers
    ingress = allowed(by_kind(prod, "NetworkPolicy"), NOTIFICATIONS, "ingress")
    assert ingress == [(namespace("monitoring"), {5005})]
