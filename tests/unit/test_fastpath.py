"""What a lean route takes (``shop.common.fastpath.LeanRoute.matches``); the rest is FastAPI's.
And the lean front: what answers a lean route's request, and its errors."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, Header, Path, Query
from opentelemetry.sdk.trace import TracerProvider
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from shop.common import tracing_sdk
from shop.common.app import create_service_app
from shop.common.errors import NotFound
from shop.common.fastpath import LeanRoute, NotPlain, hot_get, hot_post, idempotency_key
from shop.common.settings import ServiceSettings
from shop.common.types import (
    IDEMPOTENCY_KEY_MAX,
    MAX_ID,
    PAGE_LIMIT_MAX,
    PAGE_OFFSET_MAX,
    StrictModel,
)
from shop.products.api import LEAN_ROUTES, LIST_PRODUCTS


async def _never(*_: Any) -> Any:
    raise AssertionError("not called")


ROUTE = LeanRoute("POST", "/api/v1/products/{product_id}/reservations", _never)


def _scope(path: str, method: str = "POST", query: bytes = b"", **extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query, **extra}


def test_a_plain_request_matches_with_its_integer_parameters() -> None:
    match, child = ROUTE.matches(_scope("/api/v1/products/42/reservations"))
    assert match is Match.FULL
    assert child == {"route": ROUTE, "path_params": {"product_id": 42}}


@pytest.mark.parametrize(
    "scope",
    [
        _scope("/api/v1/products/42/reservations", method="GET"),
        _scope("/api/v1/products/42/reservations", query=b"x=1"),
        _scope("/api/v1/products/0/reservations"),
        _scope("/api/v1/products/042/reservations"),
        _scope(f"/api/v1/products/{MAX_ID + 1}/reservations"),  # 2**53: over the id range
        _scope("/api/v1/products/9223372036854775808/reservations"),
        _scope("/api/v1/products/4a/reservations"),
        _scope("/api/v1/products/42/reservations/"),
        _scope("/api/v1/products/42/reservationsx"),
        _scope("/api/v1/products/42/reservations", **{"shop.lean_deferred": True}),
        {"type": "websocket", "path": "/api/v1/products/42/reservations"},
    ],
)
def test_anything_else_is_left_to_the_fastapi_route(scope: dict[str, Any]) -> None:
    assert ROUTE.matches(scope)[0] is Match.NONE


def test_the_id_boundary_is_the_contracts() -> None:
    """2**53 - 1 is the largest id (``common.types.MAX_ID``); the FastAPI route answers 422
    above it, so the lean routes must leave 2**53 to it rather than answer 404."""
    assert ROUTE.matches(_scope(f"/api/v1/products/{MAX_ID}/reservations"))[0] is Match.FULL
    assert ROUTE.matches(_scope(f"/api/v1/products/{MAX_ID + 1}/reservations"))[0] is Match.NONE
    product = next(r for r in LEAN_ROUTES if r.path == "/api/v1/products/{product_id}")
    read = _scope(f"/api/v1/products/{MAX_ID}", method="GET")
    assert product.matches(read)[0] is Match.FULL
    for beyond in (MAX_ID + 1, 2**63 - 1, 10**17):
        over = {**read, "path": f"/api/v1/products/{beyond}"}
        assert product.matches(over)[0] is Match.NONE, beyond


@pytest.mark.parametrize(("length", "plain"), [(1, True), (255, True), (256, False), (0, False)])
def test_an_idempotency_key_is_plain_within_the_contracts_bound(length: int, plain: bool) -> None:
    scope = _scope("/x", headers=[(b"idempotency-key", b"k" * length)])
    if plain:
        assert idempotency_key(scope) == "k" * length
    else:
        with pytest.raises(NotPlain):
            idempotency_key(scope)


def test_the_page_bounds_are_the_contracts() -> None:
    page_query = LIST_PRODUCTS.query
    assert page_query is not None
    assert page_query(f"limit={PAGE_LIMIT_MAX}&offset={PAGE_OFFSET_MAX}".encode())
    assert page_query(f"limit={PAGE_LIMIT_MAX + 1}".encode()) is None
    assert page_query(f"offset={PAGE_OFFSET_MAX + 1}".encode()) is None
    assert page_query(b"category=" + b"c" * 100) is not None
    assert page_query(b"category=" + b"c" * 101) is None


# --- the lean front (shop.common.app.ServiceApp, fastpath.front) ---------------------------

BELOW = "shop.lean_below"  # put in the scope by the front only


def _app(handler: Any, **settings: Any) -> Any:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, Any]:
        return {"id": thing_id, "by": "fastapi"}

    return create_service_app(
        ServiceSettings(**settings),
        title="t",
        description="d",
        routers=[router],
        lean_routes=[LeanRoute("GET", "/things/{thing_id}", handler)],
    )


async def _get(app: Any, *paths: str) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)  # no lifespan: the routes need no database
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [await client.get(path) for path in paths]


async def test_the_front_answers_a_lean_route_inside_the_request_middleware_only() -> None:
    fronted: list[bool] = []

    async def lean(scope: Any, params: dict[str, int], _: bytes) -> Response:
        fronted.append(BELOW in scope)
        return JSONResponse({"id": params["thing_id"], "by": "lean"})

    # The first request builds the app's stack (and the front with it) on its way.
    answers = await _get(_app(lean), "/things/1", "/things/2")
    assert fronted == [False, True]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.json()["by"] == "lean"
        assert answer.headers["x-request-id"].startswith("req-")  # the request middleware's
        assert answer.headers["x-content-type-options"] == "nosniff"


async def test_a_problem_on_the_front_is_answered_by_the_apps_handler() -> None:
    async def lean(*_: Any) -> Response:
        raise NotFound("Thing 7 does not exist.")

    for answer in await _get(_app(lean), "/things/7", "/things/7"):
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"] == "Thing 7 does not exist."
        assert "x-request-id" in answer.headers


async def test_a_request_handed_back_on_the_front_goes_down_fastapis_stack() -> None:
    async def lean(*_: Any) -> Response:
        raise NotPlain

    for answer in await _get(_app(lean), "/things/3", "/things/3"):
        assert answer.status_code == 200
        assert answer.json() == {"id": 3, "by": "fastapi"}
    (bad,) = await _get(_app(lean), "/things/x")  # no lean match: FastAPI's own 422
    assert bad.status_code == 422


async def test_an_unexpected_error_on_the_front_is_a_500_problem_with_no_trace() -> None:
    async def lean(*_: Any) -> Response:
        raise RuntimeError("secret internals")

    for answer in await _get(_app(lean), "/things/4", "/things/4"):
        assert answer.status_code == 500
        assert answer.headers["content-type"] == "application/problem+json"
        assert "secret internals" not in answer.text


async def test_with_another_middleware_installed_lean_routes_go_through_fastapi() -> None:
    fronted: list[bool] = []

    async def lean(scope: Any, *_: Any) -> Response:
        fronted.append(BELOW in scope)
        return JSONResponse({"by": "lean"})

    app = _app(lean, fault_injection=True)  # its middleware must see every request
    await _get(app, "/things/5", "/things/5")
    assert fronted == [False, False]


async def test_with_tracing_instrumented_lean_routes_go_through_its_middleware() -> None:
    fronted: list[bool] = []

    async def lean(scope: Any, *_: Any) -> Response:
        fronted.append(BELOW in scope)
        return JSONResponse({"by": "lean"})

    app = _app(lean)
    # What instrument_app does with an OTLP endpoint: OpenTelemetry wraps the whole stack.
    tracing_sdk.instrument_fastapi(app, TracerProvider(), excluded_urls="")
    await _get(app, "/things/6", "/things/6")
    assert fronted == [False, False]


# --- one declaration, both routes (fastpath.hot_post) ---------------------------------------


class _Thing(StrictModel):
    name: str


async def _make_thing(*, state: Any, principal: Any, body: _Thing, key: str | None) -> Response:
    """Make a thing."""
    return JSONResponse({"name": body.name, "key": key}, 201)


def test_a_hot_post_declares_the_fastapi_route_and_the_lean_route_alike() -> None:
    router = APIRouter(prefix="/api/v1/things")
    lean = hot_post(
        router,
        "",
        name="make_thing",
        body=_Thing,
        use_case=_make_thing,
        privileged=True,
        idempotent=True,
        status_code=201,
    )
    assert (lean.method, lean.path) == ("POST", "/api/v1/things")
    app = create_service_app(
        ServiceSettings(), title="t", description="d", routers=[router], lean_routes=[lean]
    )
    operation = app.openapi()["paths"]["/api/v1/things"]["post"]
    assert operation["operationId"] == "make_thing"
    assert operation["description"] == "Make a thing."
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/_Thing"
    }
    (key,) = operation["parameters"]
    assert key["name"] == "Idempotency-Key"
    assert key["schema"]["anyOf"][0]["maxLength"] == IDEMPOTENCY_KEY_MAX
    assert operation["security"] == [{"HTTPBearer": []}]


# --- one declaration, both routes (fastpath.hot_get) ----------------------------------------


async def _small_page(*, state: Any, size: Annotated[int, Query(ge=1, le=9)] = 3) -> Response:
    return JSONResponse({"size": size})


async def _read_thing(
    *,
    state: Any,
    thing_id: Annotated[int, Path(ge=1, le=99)],
    page: Annotated[Any, Depends(_page)],
    tag: Annotated[str | None, Header(alias="X-Tag", max_length=3)] = None,
) -> Response:
    return JSONResponse({"id": thing_id, "page": page, "tag": tag})


async def _page(size: Annotated[int, Query(ge=1, le=9)] = 3) -> int:
    return size


def test_a_hot_get_takes_its_bounds_from_its_declaration() -> None:
    router = APIRouter(prefix="/api/v1/things")
    lean = hot_get(
        router, "/{thing_id}", name="read_thing", use_case=_read_thing, lean_query=["size"]
    )
    assert (lean.method, lean.path) == ("GET", "/api/v1/things/{thing_id}")
    read = _scope("/api/v1/things/99", method="GET")
    assert lean.matches(read) == (Match.FULL, {"route": lean, "path_params": {"thing_id": 99}})
    assert lean.matches({**read, "path": "/api/v1/things/100"})[0] is Match.NONE
    assert lean.matches({**read, "query_string": b"size=9"})[1]["path_params"]["size"] == 9
    for query in (b"size=10", b"size=0", b"size=1&size=2", b"other=1"):
        assert lean.matches({**read, "query_string": query})[0] is Match.NONE, query
    app = create_service_app(
        ServiceSettings(), title="t", description="d", routers=[router], lean_routes=[lean]
    )
    operation = app.openapi()["paths"]["/api/v1/things/{thing_id}"]["get"]
    assert operation["operationId"] == "read_thing"
    assert [p["name"] for p in operation["parameters"]] == ["thing_id", "size", "X-Tag"]


async def test_a_hot_gets_lean_route_reads_headers_and_dependencies_as_fastapi_does() -> None:
    router = APIRouter(prefix="/api/v1/things")
    lean = hot_get(
        router, "/{thing_id}", name="read_thing", use_case=_read_thing, lean_query=["size"]
    )
    app = create_service_app(
        ServiceSettings(), title="t", description="d", routers=[router], lean_routes=[lean]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path, headers in [
            ("/api/v1/things/5?size=2", {"X-Tag": "abc"}),
            ("/api/v1/things/5", {"X-Tag": "abcd"}),  # over its bound: FastAPI's 422
            ("/api/v1/things/100", {}),
        ]:
            answer = await client.get(path, headers=headers)
            assert answer.status_code in (200, 422), answer.text
            if answer.status_code == 200:
                assert answer.json() == {"id": 5, "page": 2, "tag": "abc"}


def test_a_hot_get_lean_query_names_declared_query_parameters() -> None:
    with pytest.raises(TypeError):
        hot_get(APIRouter(), "", name="x", use_case=_small_page, lean_query=["nope"])


async def _unbounded(*, state: Any, thing_id: Annotated[int, Path(ge=1)]) -> Response:
    return JSONResponse({})


def test_a_hot_get_path_parameter_needs_both_bounds() -> None:
    with pytest.raises(TypeError):
        hot_get(APIRouter(), "/{thing_id}", name="x", use_case=_unbounded)
