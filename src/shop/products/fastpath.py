"""The lean routes of the two catalogue reads: ``GET /api/v1/products/{product_id}`` and
``GET /api/v1/products`` (a plain page).

Routes placed before FastAPI's that match only **plain requests** (a GET with a valid id and
no query string; a page whose parameters the FastAPI route would accept as they are) and
answer as raw ASGI: a near-cache hit with the cached bytes and no I/O at all, a miss through
the same use case as the FastAPI route (``service.product_body`` / ``page_body``: Redis, then
PostgreSQL, the body serialised once and cached). No dependency solving, no validation
layer, no response model: the parameters are checked here by one regular expression. A
missing product raises the same ``NotFound``, which the app's problem handler answers.
Everything else (an id out of range, a query string, ``ids=``, any other method) does not
match and goes to the FastAPI route, which owns the contract and the OpenAPI; both answer
the same bytes (tests/integration/test_catalogue_cache.py). The platform's middleware wraps
both: request id, security headers, the access-log line and the metrics (under the same
route template). Measured against the FastAPI route in one run: docs/performance.md.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from shop.common.types import MAX_ID, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX
from shop.products import service
from shop.products.cache import CachedBody, CatalogueCache
from shop.products.schemas import CATEGORY_MAX_LENGTH

PATH = "/api/v1/products/{product_id}"
_PATH = re.compile(r"^/api/v1/products/([1-9][0-9]{0,15})$")  # MAX_ID has 16 digits
_SCOPE_KEY = "shop.cached_body"  # the near cache's body, or None: load it
_QUERY_KEY = "shop.page_query"


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
    if not 1 <= int(limit) <= PAGE_LIMIT_MAX or int(offset) > PAGE_OFFSET_MAX:
        return None
    if category is not None and not (
        1 <= len(category) <= CATEGORY_MAX_LENGTH and "\x00" not in category
    ):
        return None
    return f"{int(limit)}:{int(offset)}:{category or ''}"


class _LeanRoute(BaseRoute):
    def __init__(self, *, max_age_seconds: int) -> None:
        self._cache_control = f"public, max-age={max_age_seconds}".encode()

    async def load(self, scope: Scope) -> CachedBody:
        """The body on a near-cache miss (the use case the FastAPI route calls)."""
        raise NotImplementedError

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        from starlette.routing import NoMatchFound

        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        cached: CachedBody | None = scope[_SCOPE_KEY]
        if cached is None:
            cached = await self.load(scope)
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


class PageRoute(_LeanRoute):
    """``GET /api/v1/products``: a plain page (``limit``, ``offset``, ``category``)."""

    path = _LIST_PATH

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != _LIST_PATH:
            return Match.NONE, {}
        query = page_query(scope["query_string"])
        if query is None:
            return Match.NONE, {}
        cache: CatalogueCache | None = scope["app"].state.catalogue_cache
        cached = cache.near_page(query) if cache is not None else None
        return Match.FULL, {
            "route": self,
            "path_params": {},
            _SCOPE_KEY: cached,
            _QUERY_KEY: query,
        }

    async def load(self, scope: Scope) -> CachedBody:
        limit, offset, category = scope[_QUERY_KEY].split(":", 2)
        state = scope["app"].state
        return await service.page_body(
            db=state.db,
            cache=state.catalogue_cache,
            limit=int(limit),
            offset=int(offset),
            category=category or None,
        )


class ProductRoute(_LeanRoute):
    """``GET /api/v1/products/{product_id}`` with no query string."""

    path = PATH  # the metrics' route label, shared with the FastAPI route

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            return Match.NONE, {}
        found = _PATH.match(scope["path"])
        if found is None:
            return Match.NONE, {}
        product_id = int(found.group(1))
        if product_id > MAX_ID:  # the FastAPI route answers the contract's 422
            return Match.NONE, {}
        cache: CatalogueCache | None = scope["app"].state.catalogue_cache
        cached = cache.near_product(product_id) if cache is not None else None
        return Match.FULL, {
            "route": self,
            "path_params": {"product_id": product_id},
            _SCOPE_KEY: cached,
        }

    async def load(self, scope: Scope) -> CachedBody:
        state = scope["app"].state
        return await service.product_body(
            db=state.db,
            cache=state.catalogue_cache,
            product_id=scope["path_params"]["product_id"],
        )
