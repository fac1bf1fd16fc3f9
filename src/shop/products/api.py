"""HTTP handlers of the product service."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, cast
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.datastructures import State
from starlette.types import Scope

from shop.common import fastpath
from shop.common.auth import Principal
from shop.common.deps import AdminDep, DbDep, PageDep, PrivilegedDep
from shop.common.errors import Unprocessable
from shop.common.openapi import Responses, problems
from shop.common.responses import JSONResponse, json_response
from shop.common.types import MAX_ID, NO_NUL, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX
from shop.products import service
from shop.products.cache import CachedBody, CatalogueCache
from shop.products.db import ProductRepository, SearchQuery, Sort
from shop.products.schemas import (
    CATEGORY_MAX_LENGTH,
    ID_LIST_DESCRIPTION,
    ID_LIST_PATTERN,
    PRICE_FILTER_PATTERN,
    PRODUCT,
    SEARCH_MAX_LENGTH,
    SEARCH_MAX_WORDS,
    STOCK_MAX,
    CategoryList,
    ProductCreate,
    ProductPage,
    ProductRead,
    ProductUpdate,
    ReservationCreate,
    ReservationRead,
    ReservationRefusal,
    StockUpdate,
    search_words,
)

router = APIRouter(prefix="/api/v1/products", tags=["products"])
categories_router = APIRouter(prefix="/api/v1/categories", tags=["products"])
ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]
OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_FOUND = problems(404, descriptions={404: "No such product"})
ADMIN = problems(401, 403)
# Reservations are for services (the order saga) and admins.
PRIVILEGED = problems(401, 403, descriptions={403: "Not an admin or a service"})
_CACHE_HEADERS = {
    "ETag": {
        "description": "A strong validator of this body: send it back in If-None-Match.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "public, max-age=N (SHOP_CATALOGUE_MAX_AGE_SECONDS): stock shown may"
        " lag by that much; placing an order always checks real stock.",
        "schema": {"type": "string"},
    },
}
CACHED_READ: Responses = {
    200: {"description": "Successful Response", "headers": _CACHE_HEADERS},
    304: {
        "description": "Not modified: the If-None-Match tag is current",
        "headers": _CACHE_HEADERS,
    },
}
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description="ETags of a body the client holds: 304 with no body when one is current.",
    ),
]


async def get_cache(request: Request) -> CatalogueCache | None:
    cache: CatalogueCache | None = request.app.state.catalogue_cache
    return cache


CacheDep = Annotated[CatalogueCache | None, Depends(get_cache)]


class CachedResponse(Response):
    """A catalogue read's answer, the one way both routes (FastAPI's and the lean one) send
    it: the cached body with its ETag, or 304 with no body when ``If-None-Match`` names it;
    ``Cache-Control`` from the settings either way. Its headers are built as raw bytes, not
    through Response's header handling: the lean reads' near-cache hits are the hottest path
    (docs/performance.md)."""

    def __init__(self, state: State, cached: CachedBody, if_none_match: str | None) -> None:
        max_age: int = state.settings.catalogue_max_age_seconds
        self.background = None
        self.raw_headers = [
            (b"etag", cached.etag.encode()),
            (b"cache-control", b"public, max-age=%d" % max_age),
        ]
        if cached.matches(if_none_match):
            self.status_code, self.body = 304, b""
            return
        self.status_code, self.body = 200, cached.body
        self.raw_headers += [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(cached.body)),
        ]


def _cached_response(request: Request, cached: CachedBody, if_none_match: str | None) -> Response:
    return CachedResponse(request.app.state, cached, if_none_match)


@router.get("", response_model=ProductPage, responses=CACHED_READ)
async def list_products(
    request: Request,
    db: DbDep,
    cache: CacheDep,
    page: PageDep,
    category: Annotated[
        str | None, Query(min_length=1, max_length=CATEGORY_MAX_LENGTH, pattern=NO_NUL)
    ] = None,
    ids: Annotated[
        str | None,
        Query(pattern=ID_LIST_PATTERN, description=ID_LIST_DESCRIPTION, examples=["1,2,3"]),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=SEARCH_MAX_LENGTH,
            pattern=NO_NUL,
            description="Words to search for in the name (ranked highest), category and"
            " description: English stems, and a typo or two in a name's word. Punctuation"
            f" separates words; the first {SEARCH_MAX_WORDS} distinct words are searched for,"
            " and a product matches when it matches every one.",
            examples=["wireless headphones"],
        ),
    ] = None,
    min_price: Annotated[
        str | None,
        Query(
            pattern=PRICE_FILTER_PATTERN,
            description="Products at this price or more.",
            examples=["10.00"],
        ),
    ] = None,
    max_price: Annotated[
        str | None,
        Query(
            pattern=PRICE_FILTER_PATTERN,
            description="Products at this price or less.",
            examples=["99.99"],
        ),
    ] = None,
    in_stock: Annotated[
        bool, Query(description="true: only products with stock above zero.")
    ] = False,
    sort: Annotated[
        Sort | None,
        Query(
            description="The order: relevance (the default with q), price, -price (highest"
            " first), newest or name. Without q and sort, by id."
        ),
    ] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    if ids is not None:
        return await _batch(db, page, ids)
    low = None if min_price is None else Decimal(min_price)
    high = None if max_price is None else Decimal(max_price)
    if low is not None and high is not None and low > high:
        raise Unprocessable(
            "min_price is above max_price.",
            errors=[{"loc": ["query", "min_price"], "msg": "must be at most max_price"}],
        )
    if q is None and low is None and high is None and not in_stock and sort in (None, "relevance"):
        # A plain page: the lean route's answer, byte for byte (lean_list_products).
        cached = await service.page_body(
            db=db, cache=cache, limit=page.limit, offset=page.offset, category=category
        )
        return _cached_response(request, cached, if_none_match)
    query = SearchQuery(
        words=None if q is None else search_words(q),
        category=category,
        min_price=low,
        max_price=high,
        in_stock=in_stock,
        sort=sort or "relevance",
        limit=page.limit,
        offset=page.offset,
    )
    cached = await service.search_body(db=db, cache=cache, query=query)
    return _cached_response(request, cached, if_none_match)


def page_query(query_string: bytes) -> str | None:
    """The cache key of a plain list request (``limit``, ``offset``, ``category``) if every
    parameter is one ``list_products`` would accept as is, by the same bounds (``PageDep``'s
    and its ``category``); None for anything else (``ids``, a repeated or blank parameter, a
    value out of range), which that route then answers."""
    found = list_query(query_string)
    return found if isinstance(found, str) else None


_SEARCH_PARAMS = frozenset(
    ("limit", "offset", "category", "q", "min_price", "max_price", "in_stock", "sort")
)
_SORTS: frozenset[str] = frozenset(("relevance", "price", "-price", "newest", "name"))
_PRICE = re.compile(PRICE_FILTER_PATTERN.removeprefix("^").removesuffix("$"))


def list_query(query_string: bytes) -> str | SearchQuery | None:
    """What the lean list route answers: a plain page's cache key (``page_query``), or the
    search ``list_products`` would make of these parameters if each is one it accepts as is
    (``q``, ``min_price``, ``max_price``, ``in_stock`` as ``true`` or ``false``, ``sort``, by
    the route's own bounds and patterns) and the request is not a 422 (``min_price`` above
    ``max_price``) or a plain page in disguise; None for anything else, which the FastAPI
    route then answers. A search's Python cost through FastAPI's route machinery was about
    a third of the uncached search's CPU in the product process (docs/performance.md,
    "Search without ts_rank")."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in params or name not in _SEARCH_PARAMS:
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
    if params.keys() <= {"limit", "offset", "category"}:
        return f"{int(limit)}:{int(offset)}:{category or ''}"
    q, sort = params.get("q"), params.get("sort")
    if q is not None and not (1 <= len(q) <= SEARCH_MAX_LENGTH and "\x00" not in q):
        return None
    if sort is not None and sort not in _SORTS:
        return None
    in_stock = params.get("in_stock", "false")
    if in_stock not in ("true", "false"):
        return None
    low, high = params.get("min_price"), params.get("max_price")
    if any(p is not None and _PRICE.fullmatch(p) is None for p in (low, high)):
        return None
    min_price = None if low is None else Decimal(low)
    max_price = None if high is None else Decimal(high)
    if min_price is not None and max_price is not None and min_price > max_price:
        return None  # the route's 422
    plain = q is None and low is None and high is None and in_stock == "false"
    if plain and sort in (None, "relevance"):
        return None  # a plain page with extra parameters: the route's
    return SearchQuery(
        words=None if q is None else search_words(q),
        category=category,
        min_price=min_price,
        max_price=max_price,
        in_stock=in_stock == "true",
        sort=cast(Sort, sort or "relevance"),
        limit=int(limit),
        offset=int(offset),
    )


# Digits enough for either page bound; page_query compares the values themselves.
_NUMBER = re.compile(f"^[0-9]{{1,{len(str(max(PAGE_LIMIT_MAX, PAGE_OFFSET_MAX)))}}}$")


async def lean_list_products(scope: Scope, params: dict[str, Any], _: bytes) -> Response:
    """``list_products`` for a plain page (``page_query``): the near cache's bytes with no
    I/O at all, else the same use case (``service.page_body``); for a search (``list_query``),
    the route's use case (``service.search_body``)."""
    state = scope["app"].state
    cache: CatalogueCache | None = state.catalogue_cache
    query: str | SearchQuery = params["query"]
    if_none_match = fastpath.header(scope, b"if-none-match")
    if isinstance(query, SearchQuery):
        found = await service.search_body(db=state.db, cache=cache, query=query)
        return CachedResponse(state, found, if_none_match)
    cached = cache.near_page(query) if cache is not None else None
    if cached is None:
        limit, offset, category = query.split(":", 2)
        cached = await service.page_body(
            db=state.db,
            cache=cache,
            limit=int(limit),
            offset=int(offset),
            category=category or None,
        )
    return CachedResponse(state, cached, if_none_match)


@categories_router.get("", response_model=CategoryList, responses=CACHED_READ)
async def list_categories(
    request: Request, db: DbDep, cache: CacheDep, if_none_match: IfNoneMatch = None
) -> Response:
    """Every category of the catalogue with its number of products, by name."""
    cached = await service.categories_body(db=db, cache=cache)
    return _cached_response(request, cached, if_none_match)


async def _batch(db: DbDep, page: PageDep, ids: str) -> Response:
    wanted = sorted({int(i) for i in ids.split(",")})
    if wanted[-1] > MAX_ID:
        raise Unprocessable(
            "The request is not valid.", errors=[{"loc": ["query", "ids"], "msg": "out of range"}]
        )
    async with db.acquire() as conn:
        rows = await ProductRepository(conn).many(wanted)
    return page.response(PRODUCT.many(rows), len(rows))


@router.get("/{product_id}", response_model=ProductRead, responses={**NOT_FOUND, **CACHED_READ})
async def get_product(
    request: Request,
    product_id: ProductId,
    db: DbDep,
    cache: CacheDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    cached = await service.product_body(db=db, cache=cache, product_id=product_id)
    return _cached_response(request, cached, if_none_match)


async def lean_get_product(scope: Scope, params: dict[str, Any], _: bytes) -> Response:
    """``get_product`` with no query string: the near cache's bytes with no I/O at all, else
    the same use case (``service.product_body``; a missing product is its ``NotFound``)."""
    state = scope["app"].state
    cache: CatalogueCache | None = state.catalogue_cache
    product_id: int = params["product_id"]
    cached = cache.near_product(product_id) if cache is not None else None
    if cached is None:
        cached = await service.product_body(db=state.db, cache=cache, product_id=product_id)
    return CachedResponse(state, cached, fastpath.header(scope, b"if-none-match"))


@router.post("", status_code=201, response_model=ProductRead, responses=ADMIN)
async def create_product(
    product_in: ProductCreate, db: DbDep, cache: CacheDep, _: AdminDep
) -> Response:
    product = await service.create_product(db=db, cache=cache, product_in=product_in)
    return json_response(PRODUCT(product), 201)


@router.put("/{product_id}", response_model=ProductRead, responses={**NOT_FOUND, **ADMIN})
async def update_product(
    product_id: ProductId, product_in: ProductUpdate, db: DbDep, cache: CacheDep, _: AdminDep
) -> Response:
    product = await service.update_product(
        db=db, cache=cache, product_id=product_id, product_in=product_in
    )
    return json_response(PRODUCT(product))


@router.delete("/{product_id}", status_code=204, responses={**NOT_FOUND, **ADMIN})
async def delete_product(
    product_id: ProductId, db: DbDep, cache: CacheDep, _: AdminDep
) -> Response:
    await service.delete_product(db=db, cache=cache, product_id=product_id)
    return Response(status_code=204)


@router.patch(
    "/{product_id}/stock",
    response_model=ProductRead,
    responses={
        **NOT_FOUND,
        **ADMIN,
        **problems(409, descriptions={409: f"Stock would go below zero or above {STOCK_MAX}"}),
    },
)
async def update_stock(
    product_id: ProductId, change: StockUpdate, db: DbDep, cache: CacheDep, _: AdminDep
) -> Response:
    product = await service.update_stock(db=db, cache=cache, product_id=product_id, change=change)
    return json_response(PRODUCT(product))


# Reservations: the saga's view of stock, one per order with every line (internal).
reservations = APIRouter(prefix="/api/v1/reservations", tags=["reservations"])


async def reserve(
    *, state: State, principal: Principal, body: ReservationCreate, key: str | None
) -> JSONResponse:
    # Services and admins only (hot_post's privileged); idempotent by order id, not by key.
    reservation, created = await service.reserve(
        db=state.db, cache=state.catalogue_cache, order_id=body.order_id, lines=body.pairs()
    )
    return json_response(reservation, 201 if created else 200)


# Both routes of POST /api/v1/reservations, from one declaration (fastpath.hot_post): the
# saga's every order.
RESERVE = fastpath.hot_post(
    reservations,
    "",
    name="reserve",
    body=ReservationCreate,
    use_case=reserve,
    privileged=True,
    status_code=201,
    response_model=ReservationRead,
    summary="Reserve every line of an order, all or nothing (internal; idempotent by order id)",
    responses={
        200: {"description": "Already reserved for this order", "model": ReservationRead},
        **problems(
            404,
            409,
            model=ReservationRefusal,
            descriptions={
                404: "A line's product does not exist (code product_not_found, with"
                " product_ids); nothing was reserved",
                409: "Insufficient stock (code insufficient_stock, one entry in errors per"
                " short line with the stock available), the reservation was released"
                " (reservation_released), or the order reserved other lines"
                " (reservation_conflict); nothing was reserved",
            },
        ),
        **PRIVILEGED,
    },
)


@reservations.delete(
    "/{order_id}",
    response_model=ReservationRead,
    summary="Release every line of an order's reservation (internal; idempotent: restores"
    " once; before a reservation, refuses it for good)",
    responses=PRIVILEGED,
)
async def release(order_id: OrderId, db: DbDep, cache: CacheDep, _: PrivilegedDep) -> Response:
    return json_response(await service.release(db=db, cache=cache, order_id=order_id))


# First in the app's line (shop.common.fastpath): the catalogue reads' plain requests and the
# saga's reservations.
LEAN_ROUTES = [
    fastpath.LeanRoute("GET", "/api/v1/products/{product_id}", lean_get_product),
    fastpath.LeanRoute("GET", "/api/v1/products", lean_list_products, query=list_query),
    RESERVE,
]
