"""Every PromQL query of the monitoring sources: dashboard panels and alert rules.

Reused by the offline checks in this folder and by tests that run a real Prometheus
against the services: feed `substitute(expr)` of each query to its HTTP API.

    for dashboard, panel, expr in iter_dashboard_queries(include_external=False):
        promql = substitute(expr)

Queries of metrics the services do not expose themselves (kube-state-metrics, cAdvisor,
postgres_exporter, Prometheus' own ALERTS) are "external": they return nothing outside a
cluster. Service-metric queries can still be empty until the event they count happened
(no 5xx yet, no refund yet): a test that wants data has to cause the event first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from shop.devtools.prometheus import render_config

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
ALERTS_FILE = MONITORING / "prometheus" / "alerts.yml"
ALERTS_TEST_FILE = MONITORING / "prometheus" / "alerts.test.yml"
LOCAL_CONFIG_TEMPLATE = MONITORING / "prometheus" / "prometheus.local.yml.tmpl"
DASHBOARDS_DIR = MONITORING / "grafana" / "dashboards"
DASHBOARD_FILES = ("cluster-overview.json", "service.json", "database.json", "business-kpis.json")

JOBS = ("user-service", "product-service", "order-service", "payment-service")
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

# Values given to Grafana's variables when a query runs outside Grafana.
TEMPLATE_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    # Grafana writes a multi-value (or All) variable in a regex as (a|b|c).
    "job": "(" + "|".join(JOBS) + ")",
}

# Metrics that come from somewhere else than the services' /metrics.
EXTERNAL_METRIC = re.compile(r"\b(kube_\w+|container_\w+|pg_\w+|ALERTS)\b")


# The metric contract of the services (docs/observability.md#metrics); histograms with
# their _bucket/_sum/_count series.
_HISTOGRAMS = (
    "http_request_duration_seconds",
    "db_pool_acquire_seconds",
    "outbound_request_duration_seconds",
)
SERVICE_METRICS = frozenset(
    {
        "http_requests_total",
        "http_requests_in_progress",
        "http_exceptions_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "db_pool_size",
        "db_pool_in_use",
        "db_pool_max",
        "outbound_requests_total",
        "shop_user_registrations_total",
        "shop_user_logins_total",
        "shop_orders_total",
        "shop_order_amount_total",
        "shop_payments_total",
        "shop_payment_amount_total",
        "shop_refunds_total",
        "shop_stock_outs_total",
        "shop_lean_requests_total",
        "shop_saga_recovery_backlog",
        "shop_saga_recovered_total",
        "shop_catalogue_cache_hits_total",
        "shop_catalogue_cache_misses_total",
        "shop_catalogue_cache_invalidations_total",
        "shop_catalogue_cache_errors_total",
        "shop_outbox_backlog",
        "shop_outbox_oldest_unsent_age_seconds",
        "shop_events_published_total",
        "shop_events_consumed_total",
        "shop_events_retried_total",
        "shop_events_dead_lettered_total",
    }
    | {f"{name}_{suffix}" for name in _HISTOGRAMS for suffix in ("bucket", "sum", "count")}
)
# The gateway's metrics (Envoy's admin /stats/prometheus, job "gateway"), those the
# dashboards and rules use.
GATEWAY_METRICS = frozenset(
    {
        "envoy_http_downstream_rq_xx",
        "envoy_http_downstream_rq_time_bucket",
        "envoy_http_jwt_authn_denied",
        "envoy_http_jwt_authn_jwks_fetch_failed",
        "envoy_http_jwt_authn_jwks_fetch_success",
        "envoy_http_local_rate_limit_rate_limited",
        "envoy_cluster_upstream_rq_retry",
        "envoy_cluster_outlier_detection_ejections_active",
        "envoy_cluster_membership_healthy",
    }
)
# Series Prometheus makes itself.
PROMETHEUS_METRICS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})


class Query(NamedTuple):
    """A panel's query: file name of the dashboard, panel title, PromQL with variables."""

    dashboard: str
    panel: str
    expr: str


class AlertExpr(NamedTuple):
    """A rule's query: group name, alert or record name, PromQL."""

    group: str
    name: str
    expr: str


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of the folder, by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The panels of a dashboard, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def is_external(expr: str) -> bool:
    """True when the query needs metrics the services do not expose themselves."""
    return EXTERNAL_METRIC.search(expr) is not None


def iter_dashboard_queries(*, include_external: bool = True) -> Iterator[Query]:
    """(dashboard, panel title, expr) for every target of every panel."""
    for name, dashboard in load_dashboards().items():
        for panel in iter_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                if include_external or not is_external(expr):
                    yield Query(name, panel.get("title", ""), expr)


def load_rule_groups(path: Path = ALERTS_FILE) -> list[dict[str, Any]]:
    """The rule groups of a Prometheus rule file."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


def iter_rules(path: Path = ALERTS_FILE) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, rule) for every recording and alerting rule."""
    for group in load_rule_groups(path):
        for rule in group["rules"]:
            yield group["name"], rule


def iter_alert_exprs(*, include_recording: bool = True) -> Iterator[AlertExpr]:
    """(group, name, expr) of every alerting rule, and of every recording rule by default."""
    for group, rule in iter_rules():
        if "alert" in rule:
            yield AlertExpr(group, rule["alert"], rule["expr"].strip())
        elif include_recording:
            yield AlertExpr(group, rule["record"], rule["expr"].strip())


def alert_names() -> set[str]:
    """Names of the alerting rules."""
    return {rule["alert"] for _, rule in iter_rules() if "alert" in rule}


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "Inf",
        "NaN",
        "atan2",
    }
)


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (a small lexer, not a parser)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {
        name
        for name in _IDENTIFIER.findall(text)
        if name not in _KEYWORDS and not re.fullmatch(r"\d+[smhdwy]?", name)
    }


def recorded_names() -> set[str]:
    """Names of the series the recording rules write."""
    return {rule["record"] for _, rule in iter_rules() if "record" in rule}


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana variables ($job, ${job}, ${job:regex}, [[job]], $__rate_interval...).

    `$job` becomes a regex of all four jobs, fit for the `job=~"$job"` matchers the
    dashboards use. Raises KeyError for a variable without a value.
    """
    table = {**TEMPLATE_VALUES, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in table:
            raise KeyError(f"no value for Grafana variable ${name} in: {expr}")
        return table[name]

    return _VARIABLE.sub(replace, expr)


def render_local_config(
    targets: dict[str, list[str]] | None = None,
    *,
    rules_file: Path = ALERTS_FILE,
) -> str:
    """prometheus.local.yml.tmpl filled in: targets by job (default 127.0.0.1:5000-5003)."""
    chosen = targets or {job: [f"127.0.0.1:{5000 + i}"] for i, job in enumerate(JOBS)}
    # One implementation of the template, shared with `shop run --prometheus`.
    return render_config(chosen, rules_file=rules_file)


if __name__ == "__main__":
    import sys

    # python -m tests.monitoring.queries > /tmp/prometheus.yml : the default local config.
    sys.stdout.write(render_local_config())
