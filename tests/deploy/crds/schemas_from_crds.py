"""Turn controllers' CustomResourceDefinitions into the strict JSON schemas in ../schemas.

Run once per controller upgrade, by hand (it needs the CRD files, which are large):

    .venv/bin/python tests/deploy/crds/schemas_from_crds.py CRD.yaml [CRD.yaml ...]

The CRDs vendored on 2026-12-01: Envoy Gateway (github envoyproxy/gateway, commit d32f282,
charts/gateway-helm/charts/crds: Gateway API bundle v1.6.1 and gateway.envoyproxy.io
v1alpha1; EnvoyProxy added on 2026-12-06 from the same commit) and Istio (github istio/istio,
commit 86c9f01, manifests/charts/base/files/crd-all.gen.yaml). Each kind's served version's
``openAPIV3Schema`` is kept, made strict: an object with ``properties`` and no
``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields`` refuses unknown fields
(the API server would prune them silently, which is how a misspelt field goes unnoticed).
CEL rules (``x-kubernetes-validations``) are not evaluated offline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

WANTED = {
    ("gateway.networking.k8s.io", "v1"): {"Gateway", "GatewayClass", "HTTPRoute"},
    ("gateway.envoyproxy.io", "v1alpha1"): {
        "SecurityPolicy",
        "BackendTrafficPolicy",
        "ClientTrafficPolicy",
        "EnvoyProxy",
    },
    ("security.istio.io", "v1"): {"PeerAuthentication", "AuthorizationPolicy"},
    ("networking.istio.io", "v1"): {"DestinationRule", "VirtualService"},
}
OUT = Path(__file__).resolve().parents[1] / "schemas"


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def main(paths: list[str]) -> None:
    for path in paths:
        for crd in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if kind not in WANTED.get((group, version["name"]), set()):
                    continue
                schema = strict(version["schema"]["openAPIV3Schema"])
                schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
                schema["properties"]["kind"] = {"const": kind}
                schema["properties"]["metadata"] = {"type": "object"}
                schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
                schema = {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "title": f"{kind} {group}/{version['name']} (from its CRD, strict)",
                    **schema,
                }
                target = OUT / f"{kind.lower()}.{group}-{version['name']}.json"
                target.write_text(json.dumps(schema, separators=(",", ":")) + "\n")
                print(f"{target.name}: {target.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
