"""The published contract's shared parts, declared once: problem responses, health and JWKS
bodies, and the ``Allow`` header of a 405.

A route names the problems it can answer with: ``responses=problems(404, 409)``. Each is
``application/problem+json`` (RFC 9457) with the body :data:`PROBLEM_SCHEMA` describes (or a
model's, for problems with extra members such as a payment's status). Every service also
declares :data:`DEFAULT_PROBLEMS` on every route (the app factory): 400 malformed JSON,
413 body too large, 422 validation, 503 database unavailable.

The contract is proven by schemathesis with every check (tests/e2e/test_zz_api_fuzz.py,
config in ``schemathesis.toml``) and by a client generated from it
(tests/e2e/test_generated_client.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from shop.common.errors import PROBLEM_CONTENT_TYPE, Unprocessable
from shop.common.types import JsonObject

# FastAPI's types of a route's ``responses`` (a model class may stand in a response) and of
# the OpenAPI document it builds.
Responses = dict[int | str, dict[str, object]]
OpenApi = dict[str, Any]

TITLES: dict[int, str] = {
    400: "Malformed JSON",
    401: "Missing, invalid or expired token",
    402: "Payment declined",
    403: "Not allowed for this caller",
    404: "No such resource (or not yours)",
    405: "Method not allowed (Allow lists the path's methods)",
    409: "Conflict with the resource's state",
    413: "Body too large",
    422: "Validation error",
    429: "Too many requests (Retry-After)",
    503: "A dependency is unavailable (Retry-After)",
}

PROBLEM_SCHEMA: JsonObject = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem. Members beyond these may be added (extensions).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "examples": ["https://shop.example.com/problems/not-found"]},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "A stable machine-readable reason."},
        "errors": {
            "type": "array",
            "description": "With 422: each invalid input, where it is and what is wrong. With"
            " 409 for stock: each short line of an order, and the stock it found.",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "available": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
    "additionalProperties": True,
}

_RETRY_AFTER: JsonObject = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
}


def _schema_of(model: type[BaseModel] | None) -> JsonObject:
    if model is None:
        return PROBLEM_SCHEMA
    schema = model.model_json_schema()
    # Inlined into each response: a model with nested models would need shared components.
    assert "$defs" not in schema, f"{model.__name__}: a problem model must be flat"
    return {**schema, "additionalProperties": True}


def problems(
    *statuses: int,
    model: type[BaseModel] | None = None,
    descriptions: dict[int, str] | None = None,
) -> Responses:
    """The OpenAPI ``responses`` of these problem statuses: ``problems(404, 409)``, with a
    route's own wording in ``descriptions`` and the body of ``model`` (a ``ProblemRead``
    subclass) instead of the generic problem where the route adds members."""
    described = descriptions or {}
    out: Responses = {}
    for status in statuses:
        response: dict[str, object] = {
            "description": described.get(status, TITLES.get(status, "Problem")),
            "content": {PROBLEM_CONTENT_TYPE: {"schema": _schema_of(model)}},
        }
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        out[status] = response
    return out


# Every route of every service: the body may be malformed or too large, an input invalid, and
# the database unreachable.
DEFAULT_PROBLEMS = problems(400, 413, 422, 503)


class HealthRead(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessRead(BaseModel):
    status: Literal["ok"] = "ok"
    checks: dict[str, bool] = Field(
        description="Each dependency's check (database, and the service's own), all true."
    )


class Jwk(BaseModel):
    """An Ed25519 public key (RFC 8037) as a JWK."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str = Field(description="The public key, base64url.")
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class JwksRead(BaseModel):
    keys: list[Jwk] = Field(description="The current signing key first, then recent ones.")


METRICS_RESPONSE: Responses = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


def _flatten(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    # FastAPI keeps an included router as one entry whose candidates are its routes with the
    # prefix applied (tests/integration/test_bad_input.py notices if that ever changes).
    out: list[BaseRoute] = []
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        out.extend(_flatten(candidates()) if callable(candidates) else [route])
    return out


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at this path (Starlette's own 405 lists only the first
    matching route's), with HEAD wherever GET is: the ``Allow`` header of a 405."""
    methods: set[str] = set()
    for route in _flatten(routes):
        route_methods = getattr(route, "methods", None)
        # FULL: path and method match; PARTIAL: the path matches, the method does not.
        if route_methods and route.matches(scope)[0] != Match.NONE:
            methods |= set(route_methods)
    if "GET" in methods:
        methods.add("HEAD")
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


async def refuse_unknown_query(request: Request) -> None:
    """The query parameters a route declares are all it takes: an unknown one is a 422, as an
    unknown body field is (a typo such as ``?limt=5`` is not silently ignored)."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _QUERY_NAMES.get(id(route))
    if known is None:
        known = _QUERY_NAMES[id(route)] = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise Unprocessable(
            "The request is not valid.",
            errors=[{"loc": ["query", name], "msg": "Unknown query parameter"} for name in unknown],
        )


def _share_problem_schemas(spec: OpenApi) -> OpenApi:
    """Each problem body once, under ``components.schemas`` by its title, referenced from the
    responses (a generated client then has one ``Problem`` type, not one per operation)."""
    shared = spec.setdefault("components", {}).setdefault("schemas", {})
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                media = response.get("content", {}).get(PROBLEM_CONTENT_TYPE)
                schema = media and media.get("schema")
                if schema and "title" in schema:
                    shared.setdefault(schema["title"], schema)
                    media["schema"] = {"$ref": f"#/components/schemas/{schema['title']}"}
    return spec


def operation_id(route: APIRoute) -> str:
    """An operation's id is its handler's name (``place_order``): unique across the platform,
    and the name of its function in a generated client."""
    return route.name


def order_links(**operations: str) -> JsonObject:
    """OpenAPI links from a response with an order's ``id`` to operations taking it as
    ``order_id`` (what a client, and schemathesis's stateful phase, do next)."""
    return {
        name: {"operationId": op, "parameters": {"order_id": "$response.body#/id"}}
        for name, op in operations.items()
    }


def publish(app: FastAPI) -> None:
    """Serve the app's OpenAPI with the problem bodies shared (built once, on first request)."""
    build = app.openapi

    def openapi() -> OpenApi:
        if app.openapi_schema is None:
            app.openapi_schema = _share_problem_schemas(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # the override FastAPI documents
