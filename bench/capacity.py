"""The capacity model of docs/performance.md, computed from one benchmark result JSON.

``python -m bench capacity bench/results/reference/<run>.json`` prints every derived figure.
The measured inputs are each scenario's CPU milliseconds per request of every service process
and of the PostgreSQL backends, its commits per request and its peak memory; the rest are the
deployment's choices, named below, not measurements.

``--events RUN.json`` (issue 31) names a run with the event side (bench/platform.py: the relay,
every consumer, the notification worker, the broker): its ``order`` scenario gives the CPU per
order of the relay, the notification worker (per mail sent: one per paid order) and the broker,
which size the event side. The services' own figures stay the first run's: a run of the order
scenario alone on a busy machine would resize the services and RDS from a disturbed figure (the
user service's look-up per mail, which the events run charges to users, is left out so).
"""

from __future__ import annotations

import math
from typing import Any

SERVICES = ("users", "products", "orders", "payments")
KINDS = ("product_by_id", "product_list", "login", "order")

# The deployment's choices (docs/performance.md says why).
TARGET_RPS = 10_000
NODE_ALLOCATABLE_VCPU = 1.93  # t3.medium (2 vCPU) after EKS's kube/system reservation
DAEMONSETS_VCPU = 0.25  # aws-node, kube-proxy, the log shipper, node exporter
POD_CPU_REQUEST = 0.8  # one uvicorn process per pod: two pods per node
HPA_TARGET = 0.70  # the seed's HPA target: 70% of the request
POOL_MAX = 10  # SHOP_DB_POOL_MAX, per process
RDS_TARGET = 0.60  # keep the database below 60% CPU at peak


def per_request(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """CPU ms per request of each service (and ``postgres``), commits per request, per kind."""
    figures: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        s = result["scenarios"].get(kind)
        if not s or not s["requests"]:
            continue
        n = s["requests"]
        row = {svc: 1000 * s["processes"][svc]["cpu_seconds"] / n for svc in SERVICES}
        row["postgres"] = 1000 * (s.get("postgres_cpu_seconds") or 0.0) / n
        row["transactions"] = (s.get("postgres_commits") or 0) / n
        row["wrk"] = 1000 * s.get("wrk_cpu_seconds", 0.0) / n
        figures[kind] = row
    return figures


EVENT_PROCESSES = ("relay", "notifications", "rabbitmq")


def event_figures(events: dict[str, Any] | None) -> dict[str, float] | None:
    """CPU ms per order of the relay, the notification worker and the broker, and mails per
    order, from a run's ``order`` scenario with the event side; None without one."""
    if events is None:
        return None
    s = events["scenarios"].get("order")
    if not s or not s["requests"] or not all(p in s["processes"] for p in EVENT_PROCESSES):
        raise SystemExit("the events run has no order scenario with the relay, worker and broker")
    n = s["requests"]
    row = {p: 1000 * s["processes"][p]["cpu_seconds"] / n for p in EVENT_PROCESSES}
    # One mail per paid order: the worker's CPU per mail sent in the same window is its cost
    # per order (the window's mails include the warm-up's, sent late, so per request would
    # charge the worker for more mails than the requests counted).
    if s.get("mails_sent"):
        row["notifications"] = (
            1000 * s["processes"]["notifications"]["cpu_seconds"] / s["mails_sent"]
        )
    return row


def gateway_ms_per_request(result: dict[str, Any]) -> float | None:
    """The Envoy gateway's CPU ms per request, from ``product_by_id_gateway`` (the same read
    sent through it); None for a run without that scenario. Taken as every kind's: the proxy's
    work is per request and per header, and the mix is 95% small catalogue reads."""
    s = result["scenarios"].get("product_by_id_gateway")
    if not s or not s["requests"] or "gateway" not in s["processes"]:
        return None
    return 1000 * s["processes"]["gateway"]["cpu_seconds"] / s["requests"]


def model(
    result: dict[str, Any], *, rps: float = TARGET_RPS, events: dict[str, Any] | None = None
) -> dict[str, Any]:
    mix: dict[str, float] = result["options"]["mix"]
    figures = per_request(result)
    event_side = event_figures(events)
    missing = [k for k in mix if k not in figures]
    if missing:
        raise SystemExit(f"the result has no figures for {missing}: run every scenario")
    cores = {
        svc: rps * sum(share * figures[k][svc] for k, share in mix.items()) / 1000
        for svc in (*SERVICES, "postgres")
    }
    per_replica = POD_CPU_REQUEST * HPA_TARGET
    replicas = {svc: max(2, math.ceil(cores[svc] / per_replica)) for svc in SERVICES}
    # The gateway's Envoy proxies run on the same nodes, sized the same way (at least two).
    gateway_ms = gateway_ms_per_request(result)
    gateway_cores = rps * (gateway_ms or 0.0) / 1000
    gateway_replicas = max(2, math.ceil(gateway_cores / per_replica)) if gateway_ms else 0
    pods_per_node = math.floor((NODE_ALLOCATABLE_VCPU - DAEMONSETS_VCPU) / POD_CPU_REQUEST)
    nodes = math.ceil((sum(replicas.values()) + gateway_replicas) / pods_per_node)
    share_of_cpu = {k: share * sum(figures[k][svc] for svc in SERVICES) for k, share in mix.items()}
    total_share = sum(share_of_cpu.values())
    peak_rss = {
        svc: max(
            s["processes"][svc]["peak_rss_mb"]
            for s in result["scenarios"].values()
            if "processes" in s
        )
        for svc in SERVICES
    }
    return {
        "rps": rps,
        "mix": mix,
        "cpu_ms_per_request": {
            k: {n: round(v, 3) for n, v in row.items()} for k, row in figures.items()
        },
        "requests_per_core_second": {
            k: round(1000 / sum(row[svc] for svc in SERVICES), 1) for k, row in figures.items()
        },
        "cores_at_target": {svc: round(c, 2) for svc, c in cores.items()},
        "cpu_share_by_kind": {k: round(v / total_share, 3) for k, v in share_of_cpu.items()},
        "replicas": replicas,
        "gateway": {
            "cpu_ms_per_request": None if gateway_ms is None else round(gateway_ms, 3),
            "cores_at_target": round(gateway_cores, 2),
            "replicas": gateway_replicas,
        },
        "pods_per_node": pods_per_node,
        "nodes": nodes,
        "nodes_n_plus_one": nodes + 1,
        "connections_at_pool_max": {svc: replicas[svc] * POOL_MAX for svc in SERVICES},
        "transactions_per_second": round(
            rps * sum(share * figures[k]["transactions"] for k, share in mix.items())
        ),
        # Reads run in autocommit and count as transactions too; the writes are the saga's
        # and the logins' (refresh tokens), each a WAL flush at commit.
        "write_transactions_per_second": round(
            rps
            * sum(
                share * figures[k]["transactions"]
                for k, share in mix.items()
                if k in ("order", "login")
            )
        ),
        "rds_vcpu_needed": round(cores["postgres"] / RDS_TARGET, 1),
        "peak_rss_mb": peak_rss,
        # The event side per order and its cores at the target (None: not measured).
        "events": None
        if event_side is None
        else {
            "cpu_ms_per_order": {k: round(v, 3) for k, v in event_side.items()},
            "cores_at_target": {
                p: round(rps * mix.get("order", 0.0) * event_side[p] / 1000, 3)
                for p in EVENT_PROCESSES
            },
        },
    }


def render(m: dict[str, Any]) -> str:
    lines = [f"capacity for {m['rps']:,} req/s of the mix {m['mix']}", ""]
    lines.append("CPU ms per request (service processes, PostgreSQL backends, wrk), transactions:")
    for kind, row in m["cpu_ms_per_request"].items():
        lines.append(
            f"  {kind:<14} "
            + "  ".join(f"{name} {value:g}" for name, value in row.items())
            + f"   -> {m['requests_per_core_second'][kind]:g} req per core-second"
        )
    lines.append("")
    lines.append(
        "cores busy at the target rate: "
        + ", ".join(f"{svc} {c:g}" for svc, c in m["cores_at_target"].items())
    )
    lines.append(
        "share of service CPU by request kind: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in m["cpu_share_by_kind"].items())
    )
    lines.append(
        f"replicas at {HPA_TARGET:.0%} of a {POD_CPU_REQUEST} vCPU request: "
        + ", ".join(f"{svc} {n}" for svc, n in m["replicas"].items())
        + f" = {sum(m['replicas'].values())}"
    )
    gateway = m["gateway"]
    if gateway["cpu_ms_per_request"] is None:
        lines.append("gateway: not measured in this run (no product_by_id_gateway): not counted")
    else:
        lines.append(
            f"gateway (Envoy): {gateway['cpu_ms_per_request']:g} ms per request,"
            f" {gateway['cores_at_target']:g} cores, {gateway['replicas']} proxies"
        )
    lines.append(
        f"t3.medium nodes: {m['nodes']} at {m['pods_per_node']} pods per node,"
        f" {m['nodes_n_plus_one']} with one spare"
    )
    lines.append(
        f"connections at pool max {POOL_MAX}: "
        + ", ".join(f"{svc} {n}" for svc, n in m["connections_at_pool_max"].items())
        + f" = {sum(m['connections_at_pool_max'].values())}"
    )
    lines.append(
        f"PostgreSQL: {m['cores_at_target']['postgres']:g} cores busy,"
        f" {m['rds_vcpu_needed']:g} vCPU at {RDS_TARGET:.0%},"
        f" ~{m['transactions_per_second']:,} transactions/s, of which"
        f" ~{m['write_transactions_per_second']:,} from orders and logins (the writes)"
    )
    lines.append("peak RSS MB: " + ", ".join(f"{s} {v:g}" for s, v in m["peak_rss_mb"].items()))
    if m.get("events"):
        ev = m["events"]
        lines.append(
            "event side per order (ms CPU): "
            + ", ".join(f"{k} {v:g}" for k, v in ev["cpu_ms_per_order"].items())
            + "; cores at the target: "
            + ", ".join(f"{k} {v:g}" for k, v in ev["cores_at_target"].items())
        )
    return "\n".join(lines)
