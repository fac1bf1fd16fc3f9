"""The deploy values of ``deploy/capacity.json``, computed from the capacity model of one run.

``python -m bench capacity RESULT.json --write-deploy deploy/capacity.json`` writes them;
``tests/deploy/test_capacity.py`` recomputes them from the JSON's named source run and fails
when the file, the rendered kustomize output or the Terraform say anything else.

What is measured comes from :func:`bench.capacity.model` (CPU per request of each service and
of PostgreSQL, peak RSS, replicas at the HPA target). Everything else is a deployment choice,
named below with its reason, not a measurement.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench import capacity

# The Kubernetes names of the modelled services (the storefront is not in the benchmark: its
# values stay hand-set in deploy/k8s/base/storefront).
DEPLOYMENTS = {
    "users": "user-service",
    "products": "product-service",
    "orders": "order-service",
    "payments": "payment-service",
}

HPA_MIN = 2  # one replica per zone-pair survives a node loss; the PDB keeps one
# Every HPA's maximum, as the architecture document sets it (min 2, max 10): a flash sale may
# take a service to ten replicas; the guard rails below are sized for all of them at once.
HPA_MAX = 10
# The notification worker (issue 31): a smaller pod (it only composes and sends mail), on an
# HPA of its own at the same target and bounds.
NOTIFICATIONS = "notifications"
NOTIFIER_CPU_REQUEST = 0.25
NOTIFIER_CPU_LIMIT = "500m"
# The relay sidecar in every service pod (shop relay SERVICE): its request is its share of the
# relay's CPU at the target, at least this; its pool is the sidecar's (events/sidecar.py).
RELAY_CPU_REQUEST_MIN = 0.02
RELAY_POOL = 2
# Vault Agent's sidecar in every pod (its annotations: agent-requests-cpu 10m).
VAULT_AGENT_CPU = 0.01
STOREFRONT_CPU_REQUEST = 0.25  # the prod overlay's, set by hand
# Amazon MQ for RabbitMQ host types considered, smallest first: (type, vCPU, GiB). The broker
# is kept under BROKER_CPU_TARGET of its vCPUs with every HPA at its maximum.
MQ_TYPES: tuple[tuple[str, int, int], ...] = (
    ("mq.m5.large", 2, 8),
    ("mq.m5.xlarge", 4, 16),
    ("mq.m5.2xlarge", 8, 32),
    ("mq.m5.4xlarge", 16, 64),
)
BROKER_CPU_TARGET = 0.6
# The storefront is not in the benchmark, but its pods take node room at its HPA maximum too.
STOREFRONT_HPA_MAX = HPA_MAX
# The alert that fires before the first limit binds: at this share of the limit's rate.
ALERT_AT = 0.8
CPU_LIMIT = "1"  # one uvicorn process uses one core at most
MEMORY_REQUEST_HEADROOM = 1.5  # request = 1.5 x the run's peak RSS (the HPA's memory target is 80%)
MEMORY_LIMIT_FACTOR = 2  # limit = 2 x the request: a burst is throttled by the HPA, not OOM-killed
MEMORY_STEP_MI = 64  # requests rounded up to 64 Mi
POOL_MIN = 2  # SHOP_DB_POOL_MIN: connections each replica keeps open
CONNECTION_HEADROOM = 0.25  # of max_connections kept free: Vault's role rotation, migrations,
# the backup job, replication, rdsadmin and a human with psql
RDS_CPU_TARGET = capacity.RDS_TARGET

# RDS classes considered, smallest first: (class, vCPU, GiB, burstable, default max_connections).
# RDS PostgreSQL's default max_connections is LEAST(DBInstanceClassMemory/9531392, 5000);
# 413 (4 GiB) and 856 (8 GiB) are what `SHOW max_connections` reports on those sizes, the larger
# ones the same formula at 95% of the class memory.
RDS_CLASSES: tuple[tuple[str, int, int, bool, int], ...] = (
    ("db.t3.medium", 2, 4, True, 413),
    ("db.m6i.large", 2, 8, False, 856),
    ("db.m6i.xlarge", 4, 16, False, 1712),
    ("db.m6i.2xlarge", 8, 32, False, 3424),
    ("db.m6i.4xlarge", 16, 64, False, 5000),
)

# ElastiCache node types considered, smallest first: (type, vCPU, GiB of memory, burstable).
REDIS_NODE_TYPES: tuple[tuple[str, int, float, bool], ...] = (
    ("cache.t4g.small", 2, 1.37, True),
    ("cache.m6g.large", 2, 6.38, False),
    ("cache.m6g.xlarge", 4, 12.93, False),
)
# The catalogue's cached JSON (10,000 products of ~1 KiB, list pages) is a few tens of MB;
# 1 GiB of dataset leaves room for 100,000 products before the node type changes.
REDIS_DATASET_GIB = 1.0
# The in-cluster Redis of deploy/k8s (the same cache, no persistence): maxmemory and its pod.
REDIS_K8S_MAXMEMORY_MI = 256
REDIS_K8S_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "384Mi"},
    "limits": {"cpu": "500m", "memory": "384Mi"},
}


def _mi(mb: float) -> int:
    return MEMORY_STEP_MI * math.ceil(mb / MEMORY_STEP_MI)


def _millicores(vcpu: float) -> str:
    return f"{round(vcpu * 1000)}m"


def deploy_values(
    result: dict[str, Any],
    *,
    source: str,
    rps: float,
    events: dict[str, Any] | None = None,
    events_source: str | None = None,
) -> dict[str, Any]:
    """Every value deploy/ takes from the model, as the JSON ``deploy/capacity.json`` holds.

    Deterministic for given result files: the test recomputes it and compares for equality.
    Raises SystemExit when no class fits (the model then says the platform needs a redesign,
    not a bigger number in a YAML file). ``events``: a run with the event side, whose order
    replaces the first run's and sizes the notification worker, relays and broker.
    """
    m = capacity.model(result, rps=rps, events=events)
    services: dict[str, Any] = {}
    for svc, name in DEPLOYMENTS.items():
        need = m["replicas"][svc]
        request_mi = _mi(m["peak_rss_mb"][svc] * MEMORY_REQUEST_HEADROOM)
        services[name] = {
            "replicas_at_target": need,
            "cores_at_target": m["cores_at_target"][svc],
            "peak_rss_mb": m["peak_rss_mb"][svc],
            "hpa": {"min": HPA_MIN, "max": HPA_MAX},
            "resources": {
                "requests": {
                    "cpu": _millicores(capacity.POD_CPU_REQUEST),
                    "memory": f"{request_mi}Mi",
                },
                "limits": {"cpu": CPU_LIMIT, "memory": f"{request_mi * MEMORY_LIMIT_FACTOR}Mi"},
            },
        }
    max_pods = sum(s["hpa"]["max"] for s in services.values())
    pg_cores = m["cores_at_target"]["postgres"]
    rds: dict[str, Any] | None = None
    # The smallest class with the CPU and the connections; the pool is what every replica at
    # its HPA maximum may open inside the budget (at most the service default).
    for cls, vcpu, gib, burstable, max_connections in RDS_CLASSES:
        budget = math.floor(max_connections * (1 - CONNECTION_HEADROOM))
        # A t3's baseline is 20% of each vCPU: a sustained peak needs a class without credits.
        # Every service pod at its maximum holds its pool and its relay sidecar's.
        if (
            burstable
            or vcpu * RDS_CPU_TARGET < pg_cores
            or budget < max_pods * (POOL_MIN + RELAY_POOL)
        ):
            continue
        pool = min(capacity.POOL_MAX, budget // max_pods - RELAY_POOL)
        rds = {
            "instance_class": cls,
            "vcpu": vcpu,
            "memory_gib": gib,
            "cores_busy_at_target": pg_cores,
            "cpu_at_target": round(pg_cores / vcpu, 3),
            "cpu_target": RDS_CPU_TARGET,
            "max_connections": max_connections,
            "connection_budget": budget,
            "connections_at_hpa_max": max_pods * (pool + RELAY_POOL),
            "connection_headroom": round(1 - max_pods * (pool + RELAY_POOL) / max_connections, 3),
            "pool_per_replica": pool,
            "relay_pool_per_replica": RELAY_POOL,
        }
        break
    if rds is None:
        raise SystemExit(f"no RDS class of {[c[0] for c in RDS_CLASSES]} fits {pg_cores} cores")
    for entry in services.values():
        entry["db_pool"] = {"min": POOL_MIN, "max": rds["pool_per_replica"]}
    event_side = _event_side(m, services, rds, rps=rps)
    node = next(
        (n for n in REDIS_NODE_TYPES if not n[3] and n[2] * 0.75 >= REDIS_DATASET_GIB), None
    )
    if node is None:
        raise SystemExit("no ElastiCache node type fits the catalogue dataset")
    events_arg = f" --events {events_source}" if events_source else ""
    nodes_at_hpa_max = _nodes_at_hpa_max(m, max_pods, event_side)
    if event_side:
        event_side["guard_rails"]["nodes"] = {
            "nodes_at_hpa_max": nodes_at_hpa_max,
            "node_group_max": nodes_at_hpa_max,
        }
    return {
        "generated_by": (
            f"python -m bench capacity {source}{events_arg} --rps {rps:g}"
            " --write-deploy deploy/capacity.json"
        ),
        "source": source,
        "events_source": events_source,
        "rps": rps,
        "mix": m["mix"],
        "hpa_cpu_target": capacity.HPA_TARGET,
        "pods_per_node": m["pods_per_node"],
        "nodes_at_target": m["nodes"],
        "nodes_with_spare": m["nodes_n_plus_one"],
        "pods_at_hpa_max": max_pods,
        # Every HPA at its maximum (the four services, the notification worker, the
        # storefront) and the gateway's proxies at the target: what the EKS node group's
        # maximum (the cluster autoscaler's) must allow for the maximums to be reachable.
        "nodes_at_hpa_max": nodes_at_hpa_max,
        "events": event_side,
        # The Envoy proxies Envoy Gateway runs (counted in the nodes above; their replicas
        # are the controller's EnvoyProxy settings, not yet sized from here).
        "gateway": m["gateway"],
        "services": services,
        "rds": rds,
        "redis": {
            "elasticache_node_type": node[0],
            "elasticache_node_memory_gib": node[2],
            "dataset_gib": REDIS_DATASET_GIB,
            "k8s_maxmemory_mi": REDIS_K8S_MAXMEMORY_MI,
            "k8s_resources": REDIS_K8S_RESOURCES,
        },
    }


def _nodes_at_hpa_max(m: dict[str, Any], service_pods: int, event_side: Any) -> int:
    """Nodes for every HPA at its maximum, counting each pod's sidecars (the relay, Vault
    Agent): a service pod's request is its app's, its relay's and its agent's, so fewer fit a
    node than the app's request alone says. The larger of: the service pods and the gateway's
    proxies placed whole on the nodes, and every pod's CPU request over the nodes' CPU."""
    usable = capacity.NODE_ALLOCATABLE_VCPU - capacity.DAEMONSETS_VCPU
    relay = 0.0
    notifier_pods, notifier_cpu = 0, 0.0
    if event_side:
        relay = float(event_side["relay_sidecar"]["cpu_request"].removesuffix("m")) / 1000
        notifier_pods = event_side["notifications"]["hpa"]["max"]
        notifier_cpu = NOTIFIER_CPU_REQUEST + VAULT_AGENT_CPU
    service_pod = capacity.POD_CPU_REQUEST + relay + VAULT_AGENT_CPU
    gateway = m["gateway"]["replicas"]
    big = service_pods + gateway
    per_node = max(1, math.floor(usable / max(service_pod, capacity.POD_CPU_REQUEST)))
    total = (
        service_pods * service_pod
        + gateway * capacity.POD_CPU_REQUEST
        + notifier_pods * notifier_cpu
        + STOREFRONT_HPA_MAX * (STOREFRONT_CPU_REQUEST + VAULT_AGENT_CPU)
    )
    return max(math.ceil(big / per_node), math.ceil(total / usable))


def _event_side(
    m: dict[str, Any], services: dict[str, Any], rds: dict[str, Any], *, rps: float
) -> dict[str, Any] | None:
    """The notification worker, the relay sidecars and the broker, and the guard rails with
    every HPA at its maximum: the rate each limit allows and which binds first."""
    ev = m.get("events")
    if ev is None:
        return None
    per_replica = capacity.POD_CPU_REQUEST * capacity.HPA_TARGET
    # The rate (of the mix) at which each HPA reaches its maximum at the CPU target.
    hpa_rate = {
        name: rps * HPA_MAX * per_replica / m["cores_at_target"][svc]
        for svc, name in DEPLOYMENTS.items()
        if m["cores_at_target"][svc] > 0
    }
    notifier_cores = ev["cores_at_target"]["notifications"]
    notifier_per_replica = NOTIFIER_CPU_REQUEST * capacity.HPA_TARGET
    if notifier_cores > 0:
        hpa_rate[NOTIFICATIONS] = rps * HPA_MAX * notifier_per_replica / notifier_cores
    at_max = min(hpa_rate.values())  # the rate at which the first HPA is at its maximum
    if at_max < rps:
        first = min(hpa_rate, key=lambda k: hpa_rate[k])
        raise SystemExit(f"{first} is at its HPA maximum ({HPA_MAX}) below {rps:g} req/s")
    # The broker: the smallest host type under its CPU target at that rate.
    broker_cores_at_max = ev["cores_at_target"]["rabbitmq"] * at_max / rps
    broker = next((t for t in MQ_TYPES if t[1] * BROKER_CPU_TARGET >= broker_cores_at_max), None)
    if broker is None:
        raise SystemExit(f"no Amazon MQ host type of {[t[0] for t in MQ_TYPES]} fits")
    rates = {f"hpa_max:{name}": rate for name, rate in hpa_rate.items()}
    rates["rds_cpu"] = rps * rds["vcpu"] * rds["cpu_target"] / rds["cores_busy_at_target"]
    if ev["cores_at_target"]["rabbitmq"] > 0:
        rates["broker_cpu"] = (
            rps * broker[1] * BROKER_CPU_TARGET / ev["cores_at_target"]["rabbitmq"]
        )
    first = min(rates, key=lambda k: rates[k])
    relay_cores = ev["cores_at_target"]["relay"]
    pods_at_target = sum(s["replicas_at_target"] for s in services.values())
    relay_request = max(RELAY_CPU_REQUEST_MIN, relay_cores / pods_at_target / capacity.HPA_TARGET)
    return {
        "cpu_ms_per_order": ev["cpu_ms_per_order"],
        "cores_at_target": ev["cores_at_target"],
        "notifications": {
            "replicas_at_target": max(HPA_MIN, math.ceil(notifier_cores / notifier_per_replica)),
            "hpa": {"min": HPA_MIN, "max": HPA_MAX},
            "resources": {
                "requests": {"cpu": _millicores(NOTIFIER_CPU_REQUEST), "memory": "128Mi"},
                "limits": {"cpu": NOTIFIER_CPU_LIMIT, "memory": "256Mi"},
            },
        },
        "relay_sidecar": {
            "cores_at_target": relay_cores,
            "cpu_request": _millicores(math.ceil(relay_request * 100) / 100),
        },
        "broker": {
            "mq_instance_type": broker[0],
            "vcpu": broker[1],
            "memory_gib": broker[2],
            "cpu_target": BROKER_CPU_TARGET,
            "cores_busy_at_target": ev["cores_at_target"]["rabbitmq"],
            "cores_busy_at_hpa_max": round(broker_cores_at_max, 3),
        },
        "guard_rails": {
            "rate_at_first_hpa_max": round(at_max),
            "rates": {k: round(v) for k, v in sorted(rates.items())},
            "binds_first": first,
            "binds_first_rate": round(rates[first]),
            "alert_at_rate": round(ALERT_AT * rates[first]),
            "connections": {
                "at_hpa_max": rds["connections_at_hpa_max"],
                "budget": rds["connection_budget"],
                "max_connections": rds["max_connections"],
            },
        },
    }


def write(values: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
