"""bench.sizing's choices: the RDS class, the pools and the HPA bounds follow the measured load.

Pure computation over a reference run (no platform, no wrk): scaling what the run measured
must move the deploy values the way the model promises.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench import sizing

ROOT = Path(__file__).resolve().parents[2]
RUN = "bench/results/reference/catalogue-cache/cache-run.json"


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return json.loads((ROOT / RUN).read_text(encoding="utf-8"))


def scaled(result: dict[str, Any], *, postgres: float = 1.0, services: float = 1.0) -> Any:
    """The run with PostgreSQL's and/or the services' CPU per request multiplied."""
    out = copy.deepcopy(result)
    for s in out["scenarios"].values():
        if s.get("postgres_cpu_seconds") is not None:
            s["postgres_cpu_seconds"] *= postgres
        for proc in s.get("processes", {}).values():
            proc["cpu_seconds"] *= services
    return out


def test_deterministic_and_named(result):
    a = sizing.deploy_values(result, source=RUN, rps=10_000)
    b = sizing.deploy_values(copy.deepcopy(result), source=RUN, rps=10_000)
    assert a == b
    assert a["source"] == RUN
    assert RUN in a["generated_by"]
    assert "--write-deploy" in a["generated_by"]


def test_a_busier_database_gets_a_bigger_class_never_a_burstable_one(result):
    small = sizing.deploy_values(result, source=RUN, rps=10_000)["rds"]
    big = sizing.deploy_values(scaled(result, postgres=4), source=RUN, rps=10_000)["rds"]
    assert big["vcpu"] > small["vcpu"]
    for rds in (small, big):
        assert not rds["instance_class"].startswith("db.t")
        assert rds["cores_busy_at_target"] <= rds["vcpu"] * rds["cpu_target"]


def test_more_replicas_raise_the_hpa_maximum_and_the_pools_still_fit(result):
    base = sizing.deploy_values(result, source=RUN, rps=10_000)
    more = sizing.deploy_values(result, source=RUN, rps=40_000)
    for name in sizing.DEPLOYMENTS.values():
        assert more["services"][name]["hpa"]["max"] >= base["services"][name]["hpa"]["max"]
    for values in (base, more):
        rds = values["rds"]
        worst = sum(
            s["hpa"]["max"] * (s["db_pool"]["max"] + rds["relay_pool_per_replica"])
            for s in values["services"].values()
        )
        assert worst <= rds["connection_budget"] <= rds["max_connections"]


def test_a_load_no_class_carries_is_refused(result):
    with pytest.raises(SystemExit, match="no RDS class"):
        sizing.deploy_values(scaled(result, postgres=100), source=RUN, rps=10_000)


def test_the_gateways_proxies_take_node_room_once_measured():
    run = "bench/results/reference/make-bench/issue12-third-round.json"
    measured = json.loads((ROOT / run).read_text(encoding="utf-8"))
    with_gateway = sizing.deploy_values(measured, source=run, rps=10_000)
    assert with_gateway["gateway"]["cpu_ms_per_request"] > 0
    assert with_gateway["gateway"]["replicas"] >= 2
    without = copy.deepcopy(measured)
    del without["scenarios"]["product_by_id_gateway"]
    plain = sizing.deploy_values(without, source=run, rps=10_000)
    assert plain["gateway"] == {"cpu_ms_per_request": None, "cores_at_target": 0.0, "replicas": 0}
    services_pods = sum(s["replicas_at_target"] for s in plain["services"].values())
    assert plain["nodes_at_target"] == -(-services_pods // plain["pods_per_node"])
    assert with_gateway["nodes_at_target"] == -(
        -(services_pods + with_gateway["gateway"]["replicas"]) // plain["pods_per_node"]
    )
