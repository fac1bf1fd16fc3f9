"""The platform's one OpenAPI document: the four services' documents, as the gateway routes
them (issue 17).

``platform_openapi()`` builds it from the services' own apps (no process, no network): every
operation the gateway's :data:`~shop.edge.ROUTES` sends to a service, with that
service's schemas (a name two services use for different schemas is prefixed with the
service's), and the gateway's own answers (429 from its rate limits, 401 from its token check
on protected routes). ``shop run`` serves it at the gateway's ``/openapi.json``;
``scripts/gen-openapi.py`` renders it for the cluster (a ConfigMap, checked current by
tests/deploy/test_openapi_configmap.py).
"""

from __future__ import annotations

import copy
import importlib
import json
import re

from shop.common.openapi import OpenApi
from shop.common.services import SERVICES
from shop.edge import ROUTES

TITLE = "shop platform"
_GATEWAY_429 = {
    "description": "Too many requests from this client (the gateway's rate limit; Retry-After)",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_GATEWAY_401 = {
    "description": "Missing, invalid or expired token (the gateway checks it first)",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def routed_service(path: str) -> str | None:
    """The service the gateway sends ``path`` to (the first matching route), if any."""
    for route in ROUTES:
        if path == route.path if route.exact else path.startswith(route.path):
            return route.service
    return None


def service_openapi(service: str) -> OpenApi:
    app = importlib.import_module(f"shop.{service}.app").create_app()
    spec: OpenApi = copy.deepcopy(app.openapi())
    return spec


def _rename(spec: OpenApi, renames: dict[str, str]) -> OpenApi:
    text = json.dumps(spec)
    for old, new in renames.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    renamed: OpenApi = json.loads(text)
    schemas = renamed.get("components", {}).get("schemas", {})
    for old, new in renames.items():
        schemas[new] = schemas.pop(old)
    return renamed


_REF = re.compile(r'"#/components/schemas/([^"]+)"')


def _referenced(paths: OpenApi, schemas: OpenApi) -> OpenApi:
    """The schemas the paths use, directly or through other schemas (the services' health
    bodies, not routed by the gateway, are left out)."""
    wanted = set(_REF.findall(json.dumps(paths)))
    todo = list(wanted)
    while todo:
        for name in _REF.findall(json.dumps(schemas[todo.pop()])):
            if name not in wanted:
                wanted.add(name)
                todo.append(name)
    return {name: schemas[name] for name in wanted}


def combine(specs: dict[str, OpenApi]) -> OpenApi:
    """One document from each service's (``{service: openapi}``), as the gateway routes them."""
    paths: OpenApi = {}
    schemas: OpenApi = {}
    security: OpenApi = {}
    tags: OpenApi = {}
    for service, original in specs.items():
        own = original.get("components", {}).get("schemas", {})
        clash = {n: f"{service.title()}{n}" for n, s in own.items() if schemas.get(n, s) != s}
        spec = _rename(original, clash)
        for path, operations in spec["paths"].items():
            if routed_service(path) == service:
                paths[path] = operations
        schemas.update(spec.get("components", {}).get("schemas", {}))
        security.update(spec.get("components", {}).get("securitySchemes", {}))
        for tag in spec.get("tags", []):
            tags.setdefault(tag["name"], tag)
    public = {(r.path, m.lower()) for r in ROUTES for m in r.public}
    for path, operations in paths.items():
        route = next(r for r in ROUTES if (path == r.path if r.exact else path.startswith(r.path)))
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.setdefault("429", _GATEWAY_429)
            if (route.path, method) not in public:
                responses.setdefault("401", _GATEWAY_401)
    document: OpenApi = {
        "openapi": next(iter(specs.values()))["openapi"],
        "info": {
            "title": TITLE,
            "version": "1.0.0",
            "description": "Every operation of the users, products, orders and payments"
            " services, as the gateway serves them. Each service's own document is its"
            " /openapi.json.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(_referenced(paths, schemas).items())),
            "securitySchemes": security,
        },
    }
    if tags:
        document["tags"] = list(tags.values())
    return document


def platform_openapi() -> OpenApi:
    return combine({service: service_openapi(service) for service in SERVICES})
