"""The Grafana dashboards: structure, datasource, and every query valid PromQL.

No Grafana runs here: the JSON is checked against what Grafana needs to load it, and each
query (variables substituted) goes through Prometheus' own parser via `promtool check
rules` on a generated rule file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from shop.common.metrics import TRACE_ID_LABEL

from .conftest import run_promtool
from .queries import (
    DASHBOARD_FILES,
    DASHBOARDS_DIR,
    DATASOURCE,
    GATEWAY_METRICS,
    MONITORING,
    PROMETHEUS_METRICS,
    SERVICE_METRICS,
    is_external,
    iter_dashboard_queries,
    iter_panels,
    load_dashboards,
    metric_names,
    recorded_names,
    substitute,
)

PROVISIONING = MONITORING / "grafana" / "provisioning"
DASHBOARDS = load_dashboards()


def test_the_four_dashboards_exist() -> None:
    assert set(DASHBOARD_FILES) <= set(DASHBOARDS), sorted(DASHBOARDS)


def test_uids_and_titles_are_unique() -> None:
    uids = [d.get("uid") for d in DASHBOARDS.values()]
    titles = [d.get("title") for d in DASHBOARDS.values()]
    assert all(uids), uids
    assert len(set(uids)) == len(uids), uids
    assert all(titles), titles
    assert len(set(titles)) == len(titles), titles
    for uid in uids:
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", uid), f"uid {uid!r}: Grafana allows 40 chars"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_structure(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert isinstance(dashboard.get("schemaVersion"), int)
    assert dashboard.get("panels"), f"{name}: no panels"
    panels = list(iter_panels(dashboard["panels"]))
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) for i in ids), f"{name}: every panel needs an integer id"
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    for panel in panels:
        where = f"{name} / {panel.get('title')!r}"
        assert panel.get("title"), f"{name}: panel {panel.get('id')} has no title"
        grid = panel.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= set(grid), f"{where}: gridPos"
        assert grid["x"] + grid["w"] <= 24, f"{where}: wider than the 24-column grid"
        if panel.get("type") == "row":
            assert not panel.get("targets"), f"{where}: a row has no queries"
            continue
        assert panel.get("datasource") == DATASOURCE, f"{where}: datasource"
        targets = panel.get("targets", [])
        assert targets, f"{where}: no targets"
        ref_ids = [t.get("refId") for t in targets]
        assert all(ref_ids), f"{where}: refId missing"
        assert len(set(ref_ids)) == len(ref_ids), f"{where}: duplicate refIds"
        for target in targets:
            assert target.get("datasource") == DATASOURCE, f"{where}: target datasource"
            assert str(target.get("expr", "")).strip(), f"{where}: empty expr"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables(name: str) -> None:
    variables = DASHBOARDS[name].get("templating", {}).get("list", [])
    defined = {v["name"] for v in variables}
    for variable in variables:
        if variable.get("type") == "query":
            assert variable.get("datasource") == DATASOURCE, variable["name"]
    for query in iter_dashboard_queries():
        if query.dashboard != name:
            continue
        used = set(re.findall(r"\$\{?(\w+)", query.expr)) - {
            "__rate_interval",
            "__interval",
            "__range",
        }
        assert used <= defined, f"{name} / {query.panel}: undefined variables {used - defined}"


def test_service_dashboard_has_a_job_variable() -> None:
    variables = {v["name"]: v for v in DASHBOARDS["service.json"]["templating"]["list"]}
    assert "job" in variables
    assert "label_values(http_requests_total, job)" in json.dumps(variables["job"])
    exprs = [q.expr for q in iter_dashboard_queries() if q.dashboard == "service.json"]
    assert sum('job=~"$job"' in e for e in exprs) >= len(exprs) - 2


def test_all_queries_listed() -> None:
    """Lists every query (pytest -rA -k all_queries shows them) and checks substitution."""
    queries = list(iter_dashboard_queries())
    assert len(queries) >= 40
    for query in queries:
        promql = substitute(query.expr)
        assert "$" not in promql, f"{query}: variable left"
        assert "[[" not in promql, f"{query}: variable left"
        print(f"{query.dashboard:22} {query.panel[:40]:40} {promql}")


def test_queries_use_only_known_metrics() -> None:
    known = SERVICE_METRICS | GATEWAY_METRICS | PROMETHEUS_METRICS | recorded_names()
    unknown = {
        (q.dashboard, q.panel, metric)
        for q in iter_dashboard_queries()
        for metric in metric_names(substitute(q.expr))
        if metric not in known and not is_external(metric)
    }
    assert not unknown, f"metrics outside the contract: {sorted(unknown)}"


def test_queries_parse_as_promql(promtool: str, tmp_path: Path) -> None:
    """Each query becomes a recording rule; promtool parses it with Prometheus' parser."""
    groups = [
        {
            "name": f"{i:03d} {q.dashboard} / {q.panel}",
            "rules": [{"record": f"dashboard:query_{i:03d}", "expr": substitute(q.expr)}],
        }
        for i, q in enumerate(iter_dashboard_queries())
    ]
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    output = run_promtool(promtool, "check", "rules", rule_file)
    assert f"SUCCESS: {len(groups)} rules found" in output


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_external_panels_sit_in_their_own_rows(name: str) -> None:
    """Panels on kube-state-metrics/cAdvisor/postgres_exporter/ALERTS data are kept in rows
    that say so, apart from the panels a local run (services only) fills with data."""
    row_title = ""
    rows: dict[str, list[bool]] = {}
    for panel in DASHBOARDS[name]["panels"]:
        if panel.get("type") == "row":
            row_title = panel.get("title", "")
        for inner in iter_panels([panel]):
            exprs = [t.get("expr", "") for t in inner.get("targets", [])]
            if exprs:
                rows.setdefault(row_title, []).append(any(map(is_external, exprs)))
    for title, external in rows.items():
        if any(external):
            assert all(external), f"{name}: row {title!r} mixes local and external panels"
            assert "no data" in title, f"{name}: row {title!r} should say when it has no data"


def test_business_kpis_cover_the_contract() -> None:
    used = set().union(
        *(
            metric_names(q.expr)
            for q in iter_dashboard_queries()
            if q.dashboard == "business-kpis.json"
        )
    )
    for metric in (
        "shop_user_registrations_total",
        "shop_user_logins_total",
        "shop_orders_total",
        "shop_order_amount_total",
        "shop_payments_total",
        "shop_payment_amount_total",
        "shop_refunds_total",
        "shop_stock_outs_total",
        "shop_saga_recovery_backlog",
    ):
        assert metric in used, f"business-kpis.json has no panel on {metric}"


def test_database_dashboard_pool_and_exporter_panels() -> None:
    used = set().union(
        *(metric_names(q.expr) for q in iter_dashboard_queries() if q.dashboard == "database.json")
    )
    assert {
        "db_pool_size",
        "db_pool_in_use",
        "db_pool_max",
        "db_pool_acquire_seconds_bucket",
    } <= used
    assert "pg_up" in used


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_datasource_provisioning() -> None:
    config = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")
    assert config["apiVersion"] == 1
    (datasource,) = config["datasources"]
    assert datasource["uid"] == DATASOURCE["uid"]
    assert datasource["type"] == DATASOURCE["type"]
    assert datasource["url"]


def test_the_jaeger_datasource_and_the_exemplars_link_to_it() -> None:
    (jaeger,) = load_yaml(PROVISIONING / "datasources" / "jaeger.yml")["datasources"]
    assert (jaeger["type"], jaeger["uid"]) == ("jaeger", "jaeger")
    assert jaeger["url"] == "$JAEGER_URL"
    (prometheus,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    # The label the services put on their latency exemplars opens the trace in Jaeger.
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": TRACE_ID_LABEL, "datasourceUid": jaeger["uid"]}
    ]


def test_the_service_dashboard_opens_the_services_traces_and_shows_exemplars() -> None:
    service = DASHBOARDS["service.json"]
    (link,) = [link for link in service["links"] if "Jaeger" in link["title"]]
    assert link["type"] == "link"
    assert link["url"].startswith("/explore?left=")
    explore = json.loads(unquote(link["url"].removeprefix("/explore?left=")))
    (query,) = explore["queries"]
    assert explore["datasource"] == query["datasource"]["uid"] == "jaeger"
    # The job is the Service name, which is also the service.name of its spans (the settings).
    assert (query["queryType"], query["service"]) == ("search", "${job}")
    latency = [
        target
        for panel in iter_panels(service["panels"])
        for target in panel.get("targets", [])
        if "http_request_duration_seconds_bucket" in target["expr"] and panel["type"] != "stat"
    ]
    assert latency
    assert all(target.get("exemplar") is True for target in latency)


def test_dashboard_provisioning() -> None:
    config = load_yaml(PROVISIONING / "dashboards" / "shop.yml")
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    assert DASHBOARDS_DIR.is_dir()
