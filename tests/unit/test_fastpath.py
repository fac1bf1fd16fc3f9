"""What a lean route takes (``shop.common.fastpath.LeanRoute.matches``); the rest is FastAPI's."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Match

from shop.common.fastpath import LeanRoute


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
        _scope("/api/v1/products/9223372036854775808/reservations"),  # over the id range
        _scope("/api/v1/products/4a/reservations"),
        _scope("/api/v1/products/42/reservations/"),
        _scope("/api/v1/products/42/reservationsx"),
        _scope("/api/v1/products/42/reservations", **{"shop.lean_deferred": True}),
        {"type": "websocket", "path": "/api/v1/products/42/reservations"},
    ],
)
def test_anything_else_is_left_to_the_fastapi_route(scope: dict[str, Any]) -> None:
    assert ROUTE.matches(scope)[0] is Match.NONE
