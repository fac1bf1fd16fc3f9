"""deploy/ follows the capacity model: every value deploy/capacity.json holds is recomputed
from its named benchmark run by bench.sizing, and the rendered kustomize output and the parsed
Terraform must say the same. A change to the model, to the run or to a manifest alone fails
here; regenerate with the command in the file's ``generated_by`` and commit both.

Production (the prod overlay, the prod tfvars and the root variable defaults) is what the
model sizes; dev is deliberately smaller and only checked not to exceed production.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from bench import sizing

from .conftest import ROOT, by_kind
from .test_terraform import module_call, resolve, resource, variables

CAPACITY = ROOT / "deploy" / "capacity.json"
MESSAGE = "deploy/ differs from the capacity model: run {cmd}, apply the values, commit both"


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return json.loads(CAPACITY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model(committed) -> dict[str, Any]:
    """The values recomputed now from the run the committed file names."""
    result = json.loads((ROOT / committed["source"]).read_text(encoding="utf-8"))
    events_source = committed.get("events_source")
    events = (
        json.loads((ROOT / events_source).read_text(encoding="utf-8")) if events_source else None
    )
    return sizing.deploy_values(
        result,
        source=committed["source"],
        rps=committed["rps"],
        events=events,
        events_source=events_source,
    )


def test_the_committed_values_are_the_models(committed, model):
    assert committed == model, MESSAGE.format(cmd=model["generated_by"])


def test_the_model_keeps_its_promises(model):
    rds = model["rds"]
    pods = sum(s["hpa"]["max"] for s in model["services"].values())
    assert pods == model["pods_at_hpa_max"]
    # Every pod at its maximum: its pool and its relay sidecar's.
    worst = sum(
        s["hpa"]["max"] * (s["db_pool"]["max"] + rds["relay_pool_per_replica"])
        for s in model["services"].values()
    )
    assert worst == rds["connections_at_hpa_max"]
    assert worst <= rds["max_connections"] * (1 - sizing.CONNECTION_HEADROOM)
    assert rds["cores_busy_at_target"] <= rds["vcpu"] * rds["cpu_target"]
    assert not rds["instance_class"].startswith("db.t")  # no CPU credits at a sustained peak
    for svc in model["services"].values():
        assert svc["hpa"]["max"] >= svc["replicas_at_target"] >= 1
        assert (svc["hpa"]["min"], svc["hpa"]["max"]) == (2, 10)  # the architecture document's


def test_the_guard_rails_hold_with_every_hpa_at_its_maximum(model):
    """Issue 31: connections (every pod's pool and its relay sidecar's), the node group's
    maximum and the broker fit every HPA at its maximum; the first limit and its alert."""
    events = model["events"]
    assert events is not None, "deploy/capacity.json names no run with the event side"
    rds, rails = model["rds"], events["guard_rails"]
    pods = model["pods_at_hpa_max"]
    assert pods == 10 * len(sizing.DEPLOYMENTS)
    per_pod = rds["pool_per_replica"] + rds["relay_pool_per_replica"]
    assert pods * per_pod == rds["connections_at_hpa_max"] <= rds["connection_budget"]
    assert rails["nodes"]["node_group_max"] >= rails["nodes"]["nodes_at_hpa_max"]
    broker = events["broker"]
    assert broker["cores_busy_at_hpa_max"] <= broker["vcpu"] * broker["cpu_target"]
    assert rails["binds_first"] in rails["rates"]
    assert rails["binds_first_rate"] == min(rails["rates"].values())
    assert rails["alert_at_rate"] < rails["binds_first_rate"]
    assert events["notifications"]["hpa"] == {"min": 2, "max": 10}


def test_prod_event_side_follows_the_model(rendered, hcl, model):
    events, cmd = model["events"], model["generated_by"]
    prod = rendered["prod"]
    worker = by_kind(prod, "Deployment")["notifications"]
    assert app_container(worker)["resources"] == events["notifications"]["resources"], (
        MESSAGE.format(cmd=cmd)
    )
    hpa = by_kind(prod, "HorizontalPodAutoscaler")["notifications"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    for name in sizing.DEPLOYMENTS.values():
        containers = by_kind(prod, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
        (relay,) = [c for c in containers if c["name"] == "relay"]
        assert relay["resources"]["requests"]["cpu"] == events["relay_sidecar"]["cpu_request"], (
            MESSAGE.format(cmd=cmd)
        )
    prod_vars = hcl["environments/prod/terraform.tfvars"]
    assert prod_vars["node_max_size"] == events["guard_rails"]["nodes"]["node_group_max"], (
        MESSAGE.format(cmd=cmd)
    )
    assert prod_vars["mq_instance_type"] == events["broker"]["mq_instance_type"], MESSAGE.format(
        cmd=cmd
    )


def app_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (app,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    return app


def config(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, str]:
    (source,) = app_container(deployment)["envFrom"]
    return by_kind(docs, "ConfigMap")[source["configMapRef"]["name"]]["data"]


@pytest.mark.parametrize("name", sorted(sizing.DEPLOYMENTS.values()))
def test_prod_manifests_follow_the_model(rendered, model, name):
    want = model["services"][name]
    prod = rendered["prod"]
    deployment = by_kind(prod, "Deployment")[name]
    hpa = by_kind(prod, "HorizontalPodAutoscaler")[name]["spec"]
    data = config(prod, deployment)
    cmd = model["generated_by"]
    assert app_container(deployment)["resources"] == want["resources"], MESSAGE.format(cmd=cmd)
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        want["hpa"]["min"],
        want["hpa"]["max"],
    ), MESSAGE.format(cmd=cmd)
    # The HPA scales on the CPU target the model assumed.
    cpu = next(m for m in hpa["metrics"] if m["resource"]["name"] == "cpu")
    assert cpu["resource"]["target"]["averageUtilization"] == round(100 * model["hpa_cpu_target"])
    assert (data["SHOP_DB_POOL_MIN"], data["SHOP_DB_POOL_MAX"]) == (
        str(want["db_pool"]["min"]),
        str(want["db_pool"]["max"]),
    ), MESSAGE.format(cmd=cmd)


@pytest.mark.parametrize("name", sorted(sizing.DEPLOYMENTS.values()))
def test_dev_pools_never_exceed_prod(rendered, model, name):
    data = config(rendered["dev"], by_kind(rendered["dev"], "Deployment")[name])
    assert int(data["SHOP_DB_POOL_MAX"]) <= model["services"][name]["db_pool"]["max"]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_catalogue_cache_redis_in_kubernetes(rendered, model, env):
    docs = rendered[env]
    redis = by_kind(docs, "StatefulSet")["redis"]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == model["redis"]["k8s_resources"]
    args = container["args"]
    assert args[args.index("--maxmemory") + 1] == f"{model['redis']['k8s_maxmemory_mi']}mb"
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    # maxmemory fits the container's memory limit with room for Redis' own overhead.
    limit_mi = int(container["resources"]["limits"]["memory"].removesuffix("Mi"))
    assert model["redis"]["k8s_maxmemory_mi"] * 1.25 <= limit_mi
    service = by_kind(docs, "Service")["redis"]["spec"]
    assert service["ports"][0]["port"] == 6379
    assert service["selector"] == {"app.kubernetes.io/name": "redis"}
    products = by_kind(docs, "Deployment")["product-service"]
    assert config(docs, products)["SHOP_REDIS_URL"] == "redis://redis:6379/0"
    notifications = by_kind(docs, "Deployment")["notifications"]
    assert config(docs, notifications)["SHOP_REDIS_URL"] == "redis://redis:6379/0"
    # Only the product service (the cache) and the notification worker (its inbox) reach
    # Redis, and they may.
    policies = by_kind(docs, "NetworkPolicy")
    ingress = policies["redis-ingress"]["spec"]
    assert ingress["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "redis"}}
    (rule,) = ingress["ingress"]
    (peer,) = rule["from"]
    (allowed,) = peer["podSelector"]["matchExpressions"]
    assert allowed["key"] == "app.kubernetes.io/name"
    assert allowed["operator"] == "In"
    assert set(allowed["values"]) == {"product-service", "notifications"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    clients = {"product-service-redis-egress", "notifications-redis-egress"}
    for name in clients:
        assert policies[name]["spec"]["egress"][0]["to"] == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}}}
        ]
    # No other pod is selected by a policy that lets it reach 6379, but the storefront's to
    # the carts' own Redis (test_the_carts_redis_keeps_every_cart).
    for name, policy in policies.items():
        for rule in policy["spec"].get("egress", []):
            if {"protocol": "TCP", "port": 6379} in rule.get("ports", []):
                assert name in clients | {"storefront-redis-carts-egress"}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_carts_redis_keeps_every_cart(rendered, env) -> None:
    """Issue 28: signed-in carts live in a Redis of their own that never evicts, keeps an
    append-only file on a persistent volume, and is reached by the storefront only."""
    docs = rendered[env]
    carts = by_kind(docs, "StatefulSet")["redis-carts"]
    (container,) = carts["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data"]
    (claim,) = carts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert "volumes" not in carts["spec"]["template"]["spec"]  # not an emptyDir
    storefront = by_kind(docs, "Deployment")["storefront"]
    assert config(docs, storefront)["SHOP_REDIS_URL"] == "redis://redis-carts:6379/0"
    policies = by_kind(docs, "NetworkPolicy")
    ingress = policies["redis-carts-ingress"]["spec"]
    assert ingress["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "redis-carts"}}
    (rule,) = ingress["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "storefront"}}}
    ]
    egress = policies["storefront-redis-carts-egress"]["spec"]["egress"]
    assert egress[0]["to"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis-carts"}}}
    ]


def test_terraform_follows_the_model(hcl, model):
    cmd = model["generated_by"]
    for address in ("aws_db_instance.primary", "aws_db_instance.replica"):
        db = resource(hcl, "database", address)
        got = resolve(hcl, "database", db["instance_class"], "prod")
        assert got == model["rds"]["instance_class"], MESSAGE.format(cmd=cmd)
    group = resource(hcl, "cache", "aws_elasticache_replication_group.this")
    got = resolve(hcl, "cache", group["node_type"], "prod")
    assert got == model["redis"]["elasticache_node_type"], MESSAGE.format(cmd=cmd)
    # The root variables' defaults are "the production values" (main.tf): the same.
    defaults = variables(hcl["variables.tf"])
    assert defaults["db_instance_class"]["default"] == model["rds"]["instance_class"]
    assert defaults["redis_node_type"]["default"] == model["redis"]["elasticache_node_type"]


def test_elasticache_is_private_and_encrypted(hcl):
    group = resource(hcl, "cache", "aws_elasticache_replication_group.this")
    assert group["engine"] == "redis"
    assert group["at_rest_encryption_enabled"] is True
    assert group["kms_key_id"] == "${aws_kms_key.cache.arn}"
    assert group["transit_encryption_enabled"] is True
    assert group["auth_token"] == "${random_password.auth.result}"
    assert group["automatic_failover_enabled"] is True
    assert group["multi_az_enabled"] is True
    assert group["subnet_group_name"] == "${aws_elasticache_subnet_group.this.name}"
    call = module_call(hcl, "cache")
    assert call["subnet_ids"] == "${module.network.database_subnet_ids}"
    assert call["allowed_cidr_blocks"] == "${module.network.app_subnet_cidrs}"
    sg = resource(hcl, "cache", "aws_security_group.cache")
    (rule,) = sg["ingress"]
    assert (rule["from_port"], rule["to_port"], rule["protocol"]) == (6379, 6379, "tcp")
    assert rule["cidr_blocks"] == "${var.allowed_cidr_blocks}"
    assert "egress" not in sg
    secret = resource(hcl, "cache", "aws_secretsmanager_secret.auth")
    assert secret["kms_key_id"] == "${aws_kms_key.cache.arn}"


def test_the_capacity_alert_fires_below_the_first_limit(model):
    """PlatformNearCapacityLimit's threshold is the model's: 80% of the rate at which the
    first limit binds with every HPA at its maximum (issue 31)."""
    rules = yaml.safe_load(
        (ROOT / "deploy/monitoring/prometheus/alerts.yml").read_text(encoding="utf-8")
    )
    (alert,) = [
        r
        for group in rules["groups"]
        for r in group["rules"]
        if r.get("alert") == "PlatformNearCapacityLimit"
    ]
    threshold = float(alert["expr"].rsplit(">", 1)[1])
    assert threshold == model["events"]["guard_rails"]["alert_at_rate"], MESSAGE.format(
        cmd=model["generated_by"]
    )
