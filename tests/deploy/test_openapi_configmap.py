"""The cluster's copy of the platform's OpenAPI (a ConfigMap) is the one the code publishes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG_MAP = ROOT / "deploy/k8s/base/gateway/openapi.yaml"


def test_the_openapi_configmap_is_current() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen-openapi.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_configmap_holds_the_platform_document_and_is_deployed() -> None:
    from shop.devtools.contract import platform_openapi

    config_map = yaml.safe_load(CONFIG_MAP.read_text(encoding="utf-8"))
    assert config_map["kind"] == "ConfigMap"
    assert json.loads(config_map["data"]["openapi.json"]) == platform_openapi()
    kustomization = yaml.safe_load((CONFIG_MAP.parent / "kustomization.yaml").read_text())
    assert "openapi.yaml" in kustomization["resources"]
