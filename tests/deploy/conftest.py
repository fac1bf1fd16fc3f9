"""Fixtures of the offline deployment checks: the validator binaries and their outputs.

The validators live in two virtual environments made by scripts/install-deploy-tools.sh
(.venv-tools and .venv-checkov at the repository root). A missing tool is a failure, never
a skip: a green run means every check below really ran.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".venv-tools" / "bin"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
K8S = ROOT / "deploy" / "k8s"
TERRAFORM = ROOT / "deploy" / "terraform"
ENVIRONMENTS = ("dev", "prod")
SERVICES = {
    # Deployment/Service name: (CLI name, port, database)
    "user-service": ("users", 5000, "userdb"),
    "product-service": ("products", 5001, "productdb"),
    "order-service": ("orders", 5002, "orderdb"),
    "payment-service": ("payments", 5003, "paymentdb"),
}
# The storefront (GraphQL BFF and pages): a Deployment from the same image, no database.
STOREFRONT = "storefront"
STOREFRONT_PORT = 5004
# Every Deployment of the platform and its port.
WORKLOADS = {**{name: port for name, (_cli, port, _db) in SERVICES.items()}, STOREFRONT: 5004}
GATEWAY_KINDS = {
    "Gateway",
    "HTTPRoute",
    "SecurityPolicy",
    "BackendTrafficPolicy",
    "ClientTrafficPolicy",
    "EnvoyProxy",  # the gateway's tracer (components/tracing)
}
# The tracing component (deploy/k8s/components/tracing), in both overlays: Deployment names.
TRACING = ("otel-collector", "jaeger")
MESH_KINDS = {"PeerAuthentication", "AuthorizationPolicy", "DestinationRule", "VirtualService"}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", *GATEWAY_KINDS}
INSTALL_HINT = "run scripts/install-deploy-tools.sh"


def tool(name: str) -> str:
    """Path of a validator; fails the test (not skip) when it is not installed."""
    path = CHECKOV if name == "checkov" else TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} is not installed at {path}: {INSTALL_HINT}", pytrace=False)
    return str(path)


def run(
    args: list[str],
    *,
    input: str | None = None,
    timeout: int = 300,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
):
    """Run a command, returning the CompletedProcess (text mode, output captured)."""
    return subprocess.run(
        args,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )


def tools_python(script: Path, *args: str, input: str | None = None) -> Any:
    """Run a helper script with .venv-tools' python (it has hcl2 and jsonschema); parse JSON."""
    python = tool("python")
    proc = run([python, str(script), *args], input=input)
    if proc.returncode != 0:
        pytest.fail(f"{script.name} failed ({proc.returncode}):\n{proc.stderr}", pytrace=False)
    return json.loads(proc.stdout)


def render(overlay: Path) -> str:
    proc = run([tool("kubectl"), "kustomize", str(overlay)])
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize {overlay} failed:\n{proc.stderr}", pytrace=False)
    return proc.stdout


@pytest.fixture(scope="session")
def rendered_text() -> dict[str, str]:
    """The kustomize output of each overlay, as YAML text."""
    return {env: render(K8S / "overlays" / env) for env in ENVIRONMENTS}


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The kustomize output of each overlay, as a list of documents."""
    return {
        env: [doc for doc in yaml.safe_load_all(text) if doc] for env, text in rendered_text.items()
    }


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="session")
def hcl() -> dict[str, Any]:
    """Every .tf/.tfvars/.hcl file under deploy/terraform, parsed by python-hcl2."""
    return tools_python(Path(__file__).with_name("hcl2json.py"), str(TERRAFORM))


def checkov_failures(report: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(failed checks, skipped checks, passed count) of a checkov JSON report.

    A file checkov could not parse is a failure too: its checks did not run.
    """
    reports = report if isinstance(report, list) else [report]
    failed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    passed = 0
    for rep in reports:
        results = rep.get("results", {})
        failed += results.get("failed_checks", [])
        skipped += results.get("skipped_checks", [])
        summary = rep.get("summary", {})
        passed += summary.get("passed", 0)
        for path in results.get("parsing_errors", []) or []:
            failed.append(
                {"check_id": "PARSING_ERROR", "check_name": "not parsed", "file_path": path}
            )
        if summary.get("parsing_errors") and not results.get("parsing_errors"):
            failed.append({"check_id": "PARSING_ERROR", "check_name": str(summary)})
    return failed, skipped, passed


def checkov_command(directory: Path, framework: str) -> list[str]:
    return [
        tool("checkov"),
        "--directory",
        str(directory),
        "--framework",
        framework,
        "--output",
        "json",
        "--compact",
        "--quiet",
        "--skip-download",
    ]


# No HCL parse timeout: on a busy machine the default 10 s drops files silently.
CHECKOV_ENV = {"HCL_PARSE_TIMEOUT_SEC": "0", "BC_SKIP_MAPPING": "TRUE"}


@pytest.fixture(scope="session")
def checkov_reports(rendered_text, tmp_path_factory) -> dict[str, Any]:
    """checkov over deploy/terraform and over both rendered overlays, once per session.

    The two runs go in parallel (each is a few seconds of single-threaded Python).
    """
    rendered_dir = tmp_path_factory.mktemp("rendered")
    for env, text in rendered_text.items():
        (rendered_dir / f"{env}.yaml").write_text(text, encoding="utf-8")
    targets = {"terraform": TERRAFORM, "kubernetes": rendered_dir}
    procs = {
        framework: subprocess.Popen(
            checkov_command(directory, framework),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **CHECKOV_ENV},
        )
        for framework, directory in targets.items()
    }
    reports = {}
    for framework, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for other in procs.values():
                other.kill()
            pytest.fail(f"checkov --framework {framework} timed out", pytrace=False)
        # checkov exits 1 when a check failed; anything else is a crash.
        if proc.returncode not in (0, 1) or not out.strip():
            pytest.fail(
                f"checkov --framework {framework} crashed ({proc.returncode}):\n{err[-3000:]}",
                pytrace=False,
            )
        reports[framework] = json.loads(out)
    return reports


def describe_failures(failed: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{c.get('check_id')} {c.get('check_name')} -- {c.get('resource')} "
        f"({c.get('file_path')}:{c.get('file_line_range')})"
        for c in failed
    )
