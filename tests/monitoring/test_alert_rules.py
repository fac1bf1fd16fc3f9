"""The alert rules: valid for Prometheus, unit-tested, documented, and complete.

promtool (Debian package prometheus, scripts/install-apt-tools.sh) parses the rules and
runs deploy/monitoring/prometheus/alerts.test.yml, which feeds series to every alert and
checks when it fires (labels and rendered annotations) and when it stays quiet.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from .conftest import run_promtool
from .queries import (
    ALERTS_FILE,
    ALERTS_TEST_FILE,
    GATEWAY_METRICS,
    PROMETHEUS_METRICS,
    ROOT,
    SERVICE_METRICS,
    alert_names,
    is_external,
    iter_alert_exprs,
    iter_rules,
    metric_names,
    recorded_names,
    render_local_config,
)

DOCS = ROOT / "docs" / "observability.md"

# The architecture's alerts (seed document, Мониторинг -> Алерты) and the ones the
# metric contract makes possible; renaming one breaks links from runbooks and pagers.
ARCHITECTURE_ALERTS = {
    "HighErrorRate",  # >5% over 5 minutes
    "HighLatency",  # p95 > 1s
    "PodNotReady",
    "HighCPUUsage",  # > 90%
    "HighMemoryUsage",  # > 90%
    "ServiceDown",
}
SRE_ALERTS = {
    "HighProcessCPU",
    "HighProcessMemory",
    "DatabasePoolNearLimit",
    "DatabasePoolWaitHigh",
    "OrdersFailing",
    "PaymentDeclinesSpiking",
    "SagaRecoveryBacklog",
    "OutboundCallsFailing",
}
SEVERITIES = {"critical", "warning"}


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for _, rule in iter_rules() if "alert" in rule]


def rule(name: str) -> dict[str, Any]:
    return next(r for r in alerting_rules() if r["alert"] == name)


def test_promtool_check_rules(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", ALERTS_FILE)
    assert "SUCCESS" in output


def test_promtool_unit_tests(promtool: str) -> None:
    output = run_promtool(promtool, "test", "rules", ALERTS_TEST_FILE.name, cwd=ALERTS_FILE.parent)
    assert "SUCCESS" in output


def test_local_prometheus_config_is_valid(promtool: str, tmp_path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(render_local_config(), encoding="utf-8")
    run_promtool(promtool, "check", "config", config)
    parsed = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert parsed["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: job for job in parsed["scrape_configs"]}
    assert set(jobs) == {
        "user-service",
        "product-service",
        "order-service",
        "payment-service",
        "gateway",
    }
    assert jobs["gateway"]["metrics_path"] == "/stats/prometheus"
    assert jobs["order-service"]["static_configs"][0]["targets"] == ["127.0.0.1:5002"]
    assert parsed["rule_files"] == [str(ALERTS_FILE)]


def test_architecture_and_sre_alerts_exist() -> None:
    missing = (ARCHITECTURE_ALERTS | SRE_ALERTS) - alert_names()
    assert not missing, f"alerts missing from {ALERTS_FILE.name}: {sorted(missing)}"


def test_alert_names_are_unique() -> None:
    names = [r["alert"] for r in alerting_rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", sorted(alert_names()))
def test_alert_has_severity_and_annotations(name: str) -> None:
    alert = rule(name)
    assert alert.get("labels", {}).get("severity") in SEVERITIES, f"{name}: labels.severity"
    annotations = alert.get("annotations", {})
    for key in ("summary", "description", "runbook", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: annotations.{key} is missing"
    assert len(annotations["runbook"]) >= 60, f"{name}: the runbook says what to check and do"


@pytest.mark.parametrize("name", sorted(alert_names()))
def test_runbook_url_points_to_a_section_of_the_docs(name: str) -> None:
    url = rule(name)["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path == "docs/observability.md", url
    assert anchor == name.lower(), f"{name}: anchor should be #{name.lower()}"
    headings = re.findall(r"^#+\s+(.+?)\s*$", DOCS.read_text(encoding="utf-8"), re.MULTILINE)
    assert name in headings, f"docs/observability.md has no heading '{name}' (runbook)"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = yaml.safe_load(ALERTS_TEST_FILE.read_text(encoding="utf-8"))["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = alert_names()
    assert names - fires == set(), f"no test where these fire: {sorted(names - fires)}"
    assert names - quiet == set(), f"no test where these stay quiet: {sorted(names - quiet)}"


def test_rule_exprs_use_only_known_metrics() -> None:
    """Catches a misspelled metric, which would make an alert silently never fire."""
    known = SERVICE_METRICS | GATEWAY_METRICS | PROMETHEUS_METRICS | recorded_names()
    unknown = {
        (expr.name, metric)
        for expr in iter_alert_exprs()
        for metric in metric_names(expr.expr)
        if metric not in known and not is_external(metric)
    }
    assert not unknown, f"metrics outside the contract: {sorted(unknown)}"


def test_architecture_thresholds() -> None:
    """The numbers of the architecture document, read from the rules."""
    exprs = {e.name: " ".join(e.expr.split()) for e in iter_alert_exprs()}
    # 5xx > 5% over 5 minutes, per job.
    assert exprs["HighErrorRate"] == "job:http_requests_errors:ratio_rate5m > 0.05"
    assert "[5m]" in exprs["job:http_requests:rate5m"]
    assert 'status_class="5xx"' in exprs["job:http_requests_5xx:rate5m"]
    assert "sum by (job)" in exprs["job:http_requests:rate5m"]
    # p95 > 1s over 5 minutes, from the histogram.
    assert exprs["HighLatency"] == "job:http_request_duration_seconds:p95_5m > 1"
    assert exprs["job:http_request_duration_seconds:p95_5m"].startswith("histogram_quantile(0.95,")
    assert (
        "http_request_duration_seconds_bucket[5m]"
        in exprs["job:http_request_duration_seconds_bucket:rate5m"]
    )
    # CPU and memory > 90% of the limits.
    for name, usage in (
        ("HighCPUUsage", "container_cpu_usage_seconds_total"),
        ("HighMemoryUsage", "container_memory_working_set_bytes"),
    ):
        assert usage in exprs[name]
        assert "kube_pod_container_resource_limits" in exprs[name]
        assert exprs[name].endswith("> 0.9")
    assert 'condition=~"false|unknown"' in exprs["PodNotReady"]
    assert 'namespace="shop"' in exprs["PodNotReady"]
    assert exprs["ServiceDown"].startswith("up{")
    assert exprs["ServiceDown"].endswith("== 0")
    assert rule("ServiceDown")["for"] == "1m"
    assert rule("PodNotReady")["for"] == "5m"
    assert rule("SagaRecoveryBacklog")["for"] == "10m"
    assert exprs["HighProcessCPU"].endswith("> 0.9")
