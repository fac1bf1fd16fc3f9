"""The cache-hit fast paths of ``GET /api/v1/products/{product_id}`` and ``GET /api/v1/products``.

A route placed before FastAPI's that **matches only when this replica's near cache holds the
product** and answers with the cached bytes as a raw ASGI response: no dependency solving, no
validation, no serialisation. Everything else (a miss, Redis down, an id out of range, any
other method) does not match here and goes to the FastAPI route, which owns the contract and
the OpenAPI. The platform's middleware still wraps it: request id, security headers, the
access-log line and the metrics (under the same route template as the FastAPI route).
Measured against the FastAPI route in one run: docs/performance.md.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from shop.products.cache import CachedBody, CatalogueCache

PATH = "/api/v1/products/{product_id}"
_PATH = re.compile(r"^/api/v1/products/([1-9][0-9]{0,18})$")
_MAX_ID = 2**63 - 1
_SCOPE_KEY = "shop.cached_product"


_LIST_PATH = "/api/v1/products"
_NUMBER = re.compile(r"^[0-9]{1,7}$")


def page_query(query_string: bytes) -> str | None:
    """The cache key of a plain list request (``limit``, ``offset``, ``category``) if every
    parameter is one the FastAPI route would accept as is; None for anything else (``ids``,
    a repeated or blank parameter, a value out of range), which that route then answers."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in params or name not in ("limit", "offset", "category"):
            return None
        params[name] = value
    limit, offset = params.get("limit", "20"), params.get("offset", "0")
    category = params.get("category")
    if not (_NUMBER.match(limit) and _NUMBER.match(offset)):
        return None
    if not 1 <= int(limit) <= 100 or int(offset) > 1_000_000:
        return None
    if category is not None and not 1 <= len(category) <= 100:
        return None
    return f"{int(limit)}:{int(offset)}:{category or ''}"


class _CachedRoute(BaseRoute):
    def __init__(self, *, max_age_seconds: int) -> None:
        self._cache_control = f"public, max-age={max_age_seconds}".encode()

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        from starlette.routing import NoMatchFound

        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        cached: CachedBody = scope[_SCOPE_KEY]
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
                break
        headers = [(b"etag", cached.etag.encode()), (b"cache-control", self._cache_control)]
        if cached.matches(if_none_match):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(cached.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": cached.body})


class CachedPageRoute(_CachedRoute):
    """``GET /api/v1/products`` (a plain page) from the near cache; matches only on a hit."""

    path = _LIST_PATH

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != _LIST_PATH:
            return Match.NONE, {}
        cache: CatalogueCache | None = scope["app"].state.catalogue_cache
        query = page_query(scope["query_string"]) if cache is not None else None
        if cache is None or query is None:
            return Match.NONE, {}
        cached = cache.near_page(query)
        if cached is None:
            return Match.NONE, {}
        return Match.FULL, {"route": self, "path_params": {}, _SCOPE_KEY: cached}


class CachedProductRoute(_CachedRoute):
    """``GET /api/v1/products/{product_id}`` from the near cache; matches only on a hit."""

    path = PATH  # the metrics' route label, shared with the FastAPI route

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        found = _PATH.match(scope["path"])
        if found is None:
            return Match.NONE, {}
        product_id = int(found.group(1))
        cache: CatalogueCache | None = scope["app"].state.catalogue_cache
        if product_id > _MAX_ID or cache is None:
            return Match.NONE, {}
        cached = cache.near_product(product_id)
        if cached is None:
            return Match.NONE, {}
        return Match.FULL, {
            "route": self,
            "path_params": {"product_id": product_id},
            _SCOPE_KEY: cached,
        }
