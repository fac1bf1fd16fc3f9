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
HPA_MAX_HEADROOM = 1.25  # maximums 25% above the need at the target: surges while nodes join
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


def deploy_values(result: dict[str, Any], *, source: str, rps: float) -> dict[str, Any]:
    """Every value deploy/ takes from the model, as the JSON ``deploy/capacity.json`` holds.

    Deterministic for a given result file: the test recomputes it and compares for equality.
    Raises SystemExit when no class fits (the model then says the platform needs a redesign,
    not a bigger number in a YAML file).
    """
    m = capacity.model(result, rps=rps)
    services: dict[str, Any] = {}
    for svc, name in DEPLOYMENTS.items():
        need = m["replicas"][svc]
        request_mi = _mi(m["peak_rss_mb"][svc] * MEMORY_REQUEST_HEADROOM)
        services[name] = {
            "replicas_at_target": need,
            "cores_at_target": m["cores_at_target"][svc],
            "peak_rss_mb": m["peak_rss_mb"][svc],
            "hpa": {"min": HPA_MIN, "max": max(HPA_MIN, math.ceil(need * HPA_MAX_HEADROOM))},
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
        if burstable or vcpu * RDS_CPU_TARGET < pg_cores or budget < max_pods * POOL_MIN:
            continue
        pool = min(capacity.POOL_MAX, budget // max_pods)
        rds = {
            "instance_class": cls,
            "vcpu": vcpu,
            "memory_gib": gib,
            "cores_busy_at_target": pg_cores,
            "cpu_at_target": round(pg_cores / vcpu, 3),
            "cpu_target": RDS_CPU_TARGET,
            "max_connections": max_connections,
            "connection_budget": budget,
            "connections_at_hpa_max": max_pods * pool,
            "connection_headroom": round(1 - max_pods * pool / max_connections, 3),
            "pool_per_replica": pool,
        }
        break
    if rds is None:
        raise SystemExit(f"no RDS class of {[c[0] for c in RDS_CLASSES]} fits {pg_cores} cores")
    for entry in services.values():
        entry["db_pool"] = {"min": POOL_MIN, "max": rds["pool_per_replica"]}
    node = next(
        (n for n in REDIS_NODE_TYPES if not n[3] and n[2] * 0.75 >= REDIS_DATASET_GIB), None
    )
    if node is None:
        raise SystemExit("no ElastiCache node type fits the catalogue dataset")
    return {
        "generated_by": (
            f"python -m bench capacity {source} --rps {rps:g} --write-deploy deploy/capacity.json"
        ),
        "source": source,
        "rps": rps,
        "mix": m["mix"],
        "hpa_cpu_target": capacity.HPA_TARGET,
        "pods_per_node": m["pods_per_node"],
        "nodes_at_target": m["nodes"],
        "nodes_with_spare": m["nodes_n_plus_one"],
        "pods_at_hpa_max": max_pods,
        # The four services at their HPA maximums and the gateway's proxies at the target,
        # before the storefront and Redis: what the EKS node group's maximum must allow for
        # the maximums to be reachable.
        "nodes_at_hpa_max": math.ceil((max_pods + m["gateway"]["replicas"]) / m["pods_per_node"]),
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


def write(values: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
