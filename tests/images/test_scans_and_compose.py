"""Offline checks of the deployment files: Trivy's built-in misconfiguration checks over the
Dockerfile, deploy/k8s and deploy/terraform with every accepted HIGH/CRITICAL finding explained
in .trivyignore, and compose.yaml validated by the Compose CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from shop.common.services import DEFAULT_PORTS, SERVICES
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
SCANNED = ["Dockerfile", "deploy/k8s", "deploy/terraform"]


def ignore_entries() -> dict[str, list[str]]:
    """.trivyignore's IDs, each with the comment lines directly above it (its reason)."""
    entries: dict[str, list[str]] = {}
    reason: list[str] = []
    for line in (ROOT / ".trivyignore").read_text().splitlines():
        if line.startswith("#"):
            reason.append(line.lstrip("# ").strip())
        elif line.strip():
            entries[line.strip()] = reason
            reason = []
        else:
            reason = []
    return entries


def findings() -> set[tuple[str, str]]:
    """(ID, file) of every HIGH/CRITICAL finding, with no ignore file."""
    found = set()
    for target in SCANNED:
        done = subprocess.run(
            [
                str(BIN / "trivy"),
                "config",
                "--skip-check-update",
                "--quiet",
                "--severity",
                "HIGH,CRITICAL",
                "--ignorefile",
                "/dev/null",
                "--format",
                "json",
                str(ROOT / target),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        for result in json.loads(done.stdout).get("Results") or []:
            for miss in result.get("Misconfigurations") or []:
                found.add((miss["ID"], f"{target}:{result['Target']}"))
    return found


def test_every_accepted_finding_has_a_reason_and_is_still_reported():
    entries = ignore_entries()
    assert entries, ".trivyignore lists nothing"
    for finding_id, reason in entries.items():
        assert re.fullmatch(r"[A-Z]+-\d{4}", finding_id), finding_id
        assert reason, f"{finding_id} has no reason above it"
        assert finding_id in reason[0], f"{finding_id}'s reason does not start by naming it"
        assert len(" ".join(reason)) > 80, f"{finding_id}: say why it is accepted"
    found = findings()
    unexplained = sorted(f for f in found if f[0] not in entries)
    assert not unexplained, f"HIGH/CRITICAL findings neither fixed nor explained: {unexplained}"
    stale = sorted(set(entries) - {finding_id for finding_id, _ in found})
    assert not stale, f".trivyignore entries no longer reported, remove them: {stale}"


def compose_config() -> dict:
    done = subprocess.run(
        [
            str(BIN / "docker-compose"),
            "-f",
            str(ROOT / "compose.yaml"),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_file_is_valid_and_runs_every_process_like_the_deployments():
    config = compose_config()
    services = config["services"]
    assert {"postgres", "rabbitmq", "redis", "vault", "gateway", "prometheus"} <= set(services)
    for svc in SERVICES:
        app = services[svc]
        assert app["command"] == ["serve", svc]
        assert app["read_only"] is True
        assert app["user"] == "10001:10001"
        assert app["cap_drop"] == ["ALL"]
        assert app["environment"]["SHOP_PORT"] == str(DEFAULT_PORTS[svc])
        migrate = services[f"migrate-{svc}"]
        assert migrate["command"] == ["migrate", svc]
        assert app["depends_on"][f"migrate-{svc}"]["condition"] == (
            "service_completed_successfully"
        )
        assert app["image"] == migrate["image"] == "localhost/shop:dev"


def test_compose_prometheus_scrapes_every_process_and_the_gateway_routes_them():
    raw = yaml.safe_load((ROOT / "compose.yaml").read_text())
    scrape = yaml.safe_load(raw["configs"]["prometheus"]["content"])
    targets = {
        t for job in scrape["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    assert targets == {f"{svc}:{DEFAULT_PORTS[svc]}" for svc in SERVICES}
    gateway = raw["configs"]["gateway"]["content"]
    for svc in SERVICES:
        assert f"http://{svc}:{DEFAULT_PORTS[svc]}" in gateway
