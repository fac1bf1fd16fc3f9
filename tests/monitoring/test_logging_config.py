"""The ELK pieces: Fluentd config and DaemonSet, Elasticsearch template and ILM, Kibana objects.

None of Elasticsearch, Kibana or Fluentd runs here: the files are parsed and checked
against each other and against the services' log line format. The DaemonSet goes through
kubernetes-validate (Kubernetes 1.28 schemas) when scripts/install-deploy-tools.sh has
installed it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .fluentconf import Directive, FluentConfError, parse, tag_matches
from .queries import ROOT

LOGGING = ROOT / "deploy" / "logging"
FLUENT_CONF = LOGGING / "fluentd" / "fluent.conf"
DAEMONSET = LOGGING / "fluentd" / "daemonset.yaml"
INDEX_TEMPLATE = LOGGING / "elasticsearch" / "index-template.json"
ILM_POLICY = LOGGING / "elasticsearch" / "ilm-policy.json"
KIBANA_OBJECTS = LOGGING / "kibana" / "saved-search.ndjson"
KUBERNETES_VALIDATE = ROOT / ".venv-tools" / "bin" / "kubernetes-validate"

# The log line every service writes (docs/observability.md#log-format), field -> ES type.
LOG_FORMAT = {
    "timestamp": "date",
    "level": "keyword",
    "service": "keyword",
    "pod": "keyword",
    "message": "text",
    "user_id": "long",
    "request_id": "keyword",
    "trace_id": "keyword",
    "span_id": "keyword",
}
EXAMPLE_LINE = (
    '{"timestamp": "2024-01-01T12:00:00.123Z", "level": "INFO", "service": "user-service",'
    ' "pod": "user-service-7d8f9c-abc123", "message": "User logged in: john_doe",'
    ' "user_id": 123, "request_id": "req-abc-123", "trace_id": "4bf92f3577b34da6",'
    ' "span_id": "00f067aa0ba902b7"}'
)
# Fields the pipeline adds: @timestamp (data streams need it), CRI stream, pod metadata.
PIPELINE_FIELDS = {"@timestamp", "stream", "kubernetes"}
# A tag the tail source gives a container log file (tag kubernetes.* + the path).
SAMPLE_TAG = "kubernetes.var.log.containers.order-service-7d8f9c-abc12_shop_app-0123abcd.log"
SAMPLE_FILE = "/var/log/containers/order-service-7d8f9c-abc12_shop_app-0123abcd.log"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def conf() -> Directive:
    return parse(FLUENT_CONF.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_json(INDEX_TEMPLATE)


@pytest.fixture(scope="module")
def kibana_objects() -> list[dict[str, Any]]:
    lines = KIBANA_OBJECTS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(DAEMONSET.read_text(encoding="utf-8")) if doc]


def es_output(conf: Directive) -> Directive:
    (match,) = [m for m in conf.find("match") if m.type == "elasticsearch"]
    return match


# ----------------------------------------------------------------- the structural parser


def test_parser_rejects_unbalanced_directives() -> None:
    with pytest.raises(FluentConfError, match="not closed"):
        parse("<source>\n  @type tail\n")
    with pytest.raises(FluentConfError, match="closes <parse>"):
        parse("<source>\n<parse>\n</source>\n")
    with pytest.raises(FluentConfError, match="closes nothing"):
        parse("</match>\n")


def test_tag_matching() -> None:
    assert tag_matches("kubernetes.**", SAMPLE_TAG)
    assert tag_matches("kubernetes.**", "kubernetes")
    assert not tag_matches("kubernetes.*", SAMPLE_TAG)
    assert not tag_matches("fluent.**", SAMPLE_TAG)
    assert tag_matches("{a,kubernetes}.**", SAMPLE_TAG)


# ----------------------------------------------------------------- fluent.conf


def test_fluent_conf_structure(conf: Directive) -> None:
    top = {d.name for d in conf.children}
    assert top <= {"system", "source", "filter", "match", "label"}, top
    for directive in conf.walk():
        if directive.name in {"source", "filter", "match", "parse", "buffer", "format"}:
            assert directive.type, f"<{directive.name}> on line {directive.line} has no @type"
        if directive.name in {"filter", "match"}:
            assert directive.arg, f"<{directive.name}> on line {directive.line} has no pattern"
    ids = [d.params["@id"] for d in conf.walk() if "@id" in d.params]
    assert len(ids) == len(set(ids)), "duplicate @id"


def test_tails_the_shop_container_logs(conf: Directive) -> None:
    (tail,) = [s for s in conf.find("source") if s.type == "tail"]
    path = tail.params["path"]
    assert path.startswith("/var/log/containers/")
    assert "shop" in path
    assert fnmatch.fnmatch(SAMPLE_FILE, path)
    assert not fnmatch.fnmatch("/var/log/containers/coredns-1_kube-system_coredns-0a.log", path)
    assert tail.params.get("pos_file", "").startswith("/var/log/fluentd/")
    (parser,) = tail.find("parse")
    assert parser.type in {"cri", "multi_format"}, "container lines are CRI formatted"
    assert tail.params["tag"] == "kubernetes.*"


def test_pipeline_order_and_tags(conf: Directive) -> None:
    """Every filter and the output see the tail's events, in the order of the pipeline."""
    steps = [d for d in conf.children if d.name in {"filter", "match"}]
    for step in steps:
        assert tag_matches(step.arg, SAMPLE_TAG), f"<{step.name} {step.arg}> misses the events"
    types = [step.type for step in steps]
    assert types.index("kubernetes_metadata") < types.index("parser") < types.index("elasticsearch")
    assert types[-1] == "elasticsearch"


def test_app_json_is_parsed_with_its_timestamp(conf: Directive) -> None:
    (parser,) = [f for f in conf.find("filter") if f.type == "parser"]
    assert parser.params["key_name"] == "message"
    assert parser.params["reserve_data"] == "true", "non-JSON lines must be kept"
    assert parser.params.get("remove_key_name_field", "false") == "false", (
        "the app's own 'message' replaces the raw line; removing key_name would drop it"
    )
    (json_parse,) = parser.find("parse")
    assert json_parse.type == "json"
    assert json_parse.params["time_key"] == "timestamp"
    assert json_parse.params["keep_time_key"] == "true"


def test_defaults_only_fill_log_format_fields(conf: Directive) -> None:
    (transformer,) = [f for f in conf.find("filter") if f.type == "record_transformer"]
    (record,) = transformer.find("record")
    assert set(record.params) <= set(LOG_FORMAT)


def test_elasticsearch_output(conf: Directive, template: dict[str, Any]) -> None:
    out = es_output(conf)
    index = out.params["index_name"]
    assert any(fnmatch.fnmatch(index, p) for p in template["index_patterns"]), (
        f"Fluentd writes {index}, the index template matches {template['index_patterns']}"
    )
    if "data_stream" in template:
        assert out.params["write_operation"] == "create", "data streams only accept create"
        assert out.params["include_timestamp"] == "true", "data streams need @timestamp"
        assert out.params.get("logstash_format", "false") == "false"
    else:
        assert out.params["logstash_format"] == "true"
        daily = out.params["logstash_prefix"] + "-2024.01.01"
        assert any(fnmatch.fnmatch(daily, p) for p in template["index_patterns"])
    assert "password" in out.params
    assert "user" in out.params
    assert out.params.get("ssl_verify", "true") == "true"
    (buffer,) = out.find("buffer")
    assert buffer.type == "file"
    assert buffer.params["path"].startswith("/var/log/fluentd/")
    for key in ("retry_type", "retry_max_interval", "retry_timeout", "flush_interval"):
        assert key in buffer.params, f"<buffer> needs {key}"
    assert buffer.params.get("retry_forever", "false") == "false"


# ----------------------------------------------------------------- Elasticsearch


def test_example_line_has_exactly_the_log_format_fields() -> None:
    assert set(json.loads(EXAMPLE_LINE)) == set(LOG_FORMAT)


def test_docs_log_format_example_matches() -> None:
    docs = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    section = docs.split("## Log format", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block, "docs/observability.md: no JSON example under '## Log format'"
    assert set(json.loads(block.group(1))) == set(LOG_FORMAT)


def test_index_template_mappings_match_the_log_format(template: dict[str, Any]) -> None:
    properties = template["template"]["mappings"]["properties"]
    log_fields = {name: spec.get("type") for name, spec in properties.items()}
    assert set(log_fields) - PIPELINE_FIELDS == set(LOG_FORMAT), (
        f"mapped {sorted(set(log_fields) - PIPELINE_FIELDS)}, log format {sorted(LOG_FORMAT)}"
    )
    for name, es_type in LOG_FORMAT.items():
        assert log_fields[name] == es_type, f"{name}: mapped as {log_fields[name]}, want {es_type}"
    assert properties["@timestamp"]["type"] == "date"


def test_index_template_is_composable_with_ilm(template: dict[str, Any]) -> None:
    assert template["index_patterns"] == ["shop-logs-*"]
    assert isinstance(template.get("priority"), int)
    assert template["priority"] > 100
    assert "order" not in template, "legacy template syntax"
    settings = template["template"]["settings"]
    policy = load_json(ILM_POLICY)["policy"]
    assert settings["index.lifecycle.name"] == policy["_meta"]["policy_name"]


def test_ilm_policy_rolls_over_and_deletes_after_30_days() -> None:
    phases = load_json(ILM_POLICY)["policy"]["phases"]
    assert "rollover" in phases["hot"]["actions"]
    assert phases["delete"]["min_age"] == "30d"
    assert phases["delete"]["actions"] == {"delete": {}}
    ages = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

    def seconds(age: str) -> float:
        number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", age).groups()  # type: ignore[union-attr]
        return int(number) * ages[unit]

    order = [
        seconds(phases[p]["min_age"]) for p in ("hot", "warm", "cold", "delete") if p in phases
    ]
    assert order == sorted(order), "phase min_age must grow"


# ----------------------------------------------------------------- Kibana


def test_kibana_objects_are_saved_object_exports(kibana_objects: list[dict[str, Any]]) -> None:
    assert kibana_objects
    ids = set()
    for obj in kibana_objects:
        assert {"type", "id", "attributes"} <= set(obj), obj.get("id")
        assert isinstance(obj["attributes"], dict)
        assert obj["attributes"].get("title")
        ids.add((obj["type"], obj["id"]))
    assert len(ids) == len(kibana_objects), "duplicate saved objects"
    for obj in kibana_objects:
        for ref in obj.get("references", []):
            assert (ref["type"], ref["id"]) in ids, f"{obj['id']}: dangling reference {ref}"
        for key in ("visState", "uiStateJSON"):
            if key in obj["attributes"]:
                json.loads(obj["attributes"][key])


def test_kibana_data_view_and_error_search(
    kibana_objects: list[dict[str, Any]], template: dict[str, Any], conf: Directive
) -> None:
    by_type = {obj["type"]: obj for obj in kibana_objects}
    view = by_type["index-pattern"]["attributes"]
    assert view["title"] == "shop-logs-*"
    assert fnmatch.fnmatch(es_output(conf).params["index_name"], view["title"])
    properties = template["template"]["mappings"]["properties"]
    assert properties[view["timeFieldName"]]["type"] == "date"
    search = by_type["search"]["attributes"]
    source = json.loads(search["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert "level" in source["query"]["query"]
    assert "ERROR" in source["query"]["query"]
    assert search["breakdownField"] == "service"
    assert set(search["columns"]) <= set(properties)


# ----------------------------------------------------------------- DaemonSet


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in manifests}


def test_daemonset_manifests(manifests: list[dict[str, Any]]) -> None:
    kinds = by_kind(manifests)
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"} <= set(
        kinds
    )
    role = kinds["ClusterRole"]
    (rule,) = role["rules"]
    assert set(rule["resources"]) == {"pods", "namespaces"}
    assert set(rule["verbs"]) == {"get", "list", "watch"}, "read-only"
    binding = kinds["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (subject,) = binding["subjects"]
    account = kinds["ServiceAccount"]["metadata"]
    assert (subject["name"], subject["namespace"]) == (account["name"], account["namespace"])

    daemonset = kinds["DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= (
        daemonset["spec"]["template"]["metadata"]["labels"].items()
    )
    (container,) = pod["containers"]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security.get("privileged", False) is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/var/log"]["name"]]["hostPath"]["path"] == "/var/log"
    assert mounts["/var/log"]["readOnly"] is True
    config_volume = volumes[mounts["/fluentd/etc"]["name"]]
    assert config_volume["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    # pos_file and buffers are on a writable hostPath under the read-only /var/log.
    assert volumes[mounts["/var/log/fluentd"]["name"]]["hostPath"]["path"] == "/var/log/fluentd"


def test_configmap_is_fluent_conf(manifests: list[dict[str, Any]]) -> None:
    embedded = by_kind(manifests)["ConfigMap"]["data"]["fluent.conf"]
    assert embedded == FLUENT_CONF.read_text(encoding="utf-8"), (
        "the ConfigMap in daemonset.yaml differs from fluent.conf: copy fluent.conf into it"
    )


def test_daemonset_validates_against_kubernetes_schemas() -> None:
    if not os.access(KUBERNETES_VALIDATE, os.X_OK):
        pytest.skip("kubernetes-validate missing: run scripts/install-deploy-tools.sh")
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "-k", "1.28.0", "--strict", "--quiet", str(DAEMONSET)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
