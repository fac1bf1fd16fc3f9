"""GitHub Actions: actionlint-clean, pinned actions, and the seed's build and deploy stages."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from .conftest import ROOT, SERVICES, run, tool

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps(doc: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return doc["jobs"][job]["steps"]


def uses(doc: dict[str, Any], job: str) -> list[str]:
    return [s["uses"] for s in steps(doc, job) if "uses" in s]


def scripts(doc: dict[str, Any], job: str) -> str:
    return "\n".join(s.get("run", "") for s in steps(doc, job))


def test_actionlint_is_clean():
    proc = run([tool("actionlint"), "-no-color"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_actions_are_pinned_to_a_version(name):
    doc = load(name)
    for job in doc["jobs"]:
        for ref in uses(doc, job):
            _action, _, version = ref.partition("@")
            assert re.fullmatch(r"v?\d+(\.\d+)*|[0-9a-f]{40}", version), ref
    assert load(name)["permissions"]["contents"] == "read"


def test_ci_build_stage():
    ci = load("ci.yml")
    assert "actions/checkout@v5" in uses(ci, "lint")
    setup = [s for s in steps(ci, "lint") if s.get("uses", "").startswith("actions/setup-python")]
    assert setup[0]["with"]["python-version"] == "${{ env.PYTHON_VERSION }}"
    assert ci["env"]["PYTHON_VERSION"] == "3.11"
    assert "ruff check ." in scripts(ci, "lint")

    test = ci["jobs"]["test"]
    assert test["services"]["postgres"]["image"] == "postgres:15"
    assert test["env"]["DATABASE_URL"].startswith("postgresql://")
    assert "@localhost:5432/" in test["env"]["DATABASE_URL"]
    assert "make test" in scripts(ci, "test")
    assert "scripts/install-deploy-tools.sh" in scripts(ci, "test")

    image = ci["jobs"]["image"]
    assert set(image["needs"]) == {"lint", "test"}
    by_action = {s["uses"].split("@")[0]: s for s in image["steps"] if "uses" in s}
    trivy = by_action["aquasecurity/trivy-action"]["with"]
    assert trivy["severity"] == "HIGH,CRITICAL"
    assert trivy["exit-code"] == "1"
    login = by_action["docker/login-action"]
    assert login["with"] == {
        "username": "${{ secrets.DOCKERHUB_USERNAME }}",
        "password": "${{ secrets.DOCKERHUB_TOKEN }}",
    }
    pushes = [
        s for s in image["steps"]
        if s.get("uses", "").startswith("docker/build-push-action") and s["with"].get("push")
    ]  # fmt: skip
    assert len(pushes) == 1
    main_only = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert pushes[0]["if"] == main_only
    assert login["if"] == main_only
    # the scan runs before the push
    order = [id(s) for s in image["steps"]]
    assert order.index(id(by_action["aquasecurity/trivy-action"])) < order.index(id(pushes[0]))


def test_deploy_stage():
    deploy = load("deploy.yml")
    on = deploy["on"]
    assert on["workflow_run"]["workflows"] == ["CI"]
    assert on["workflow_run"]["branches"] == ["main"]
    assert on["workflow_dispatch"]["inputs"]["environment"]["options"] == ["dev", "prod"]
    assert deploy["permissions"]["id-token"] == "write"
    job = deploy["jobs"]["deploy"]
    assert "success" in job["if"]
    script = scripts(deploy, "deploy")
    assert any(
        u.startswith("aws-actions/configure-aws-credentials@") for u in uses(deploy, "deploy")
    )
    assert "aws eks update-kubeconfig" in script
    assert 'kustomize edit set image "shop=' in script
    assert 'kubectl apply -k "deploy/k8s/overlays/${DEPLOY_ENV}"' in script
    assert "rollout status" in script
    assert "--timeout=" in script
    assert "scripts/smoke_test.py --base-url" in script
    assert "rollout undo" in script
    assert set(deploy["env"]["DEPLOYMENTS"].split()) == set(SERVICES)
    rollback = [s for s in steps(deploy, "deploy") if "rollout undo" in s.get("run", "")]
    assert rollback[0]["if"].startswith("failure()")
    slack = [s for s in steps(deploy, "deploy") if "SLACK_WEBHOOK_URL" in s.get("run", "")]
    assert slack
    assert slack[0]["if"].startswith("always()")
