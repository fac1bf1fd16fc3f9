"""HTTP handlers of the product service."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.datastructures import State
from starlette.types import Receive, Scope, Send

from shop.common import fastpath
from shop.common.auth import Principal
from shop.common.db import Database
from shop.common.deps import AdminDep, DbDep, PageDep, PageParams, PrivilegedDep
from shop.common.errors import Unprocessable
from shop.common.openapi import Responses, problems
from shop.common.responses import JSONResponse, json_response
from shop.common.types import MAX_ID, NO_NUL
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


_JSON = (b"content-type", b"application/json")


class CachedResponse(Response):
    """A catalogue read's answer, the one way both routes (FastAPI's and the lean one) send
    it: the cached body with its ETag, or 304 with no body when ``If-None-Match`` names it;
    ``Cache-Control`` from the settings either way. Its headers are built as raw bytes, not
    through Response's header handling: the lean reads' near-cache hits are the hottest path
    (docs/performance.md)."""

    def __init__(self, state: State, cached: CachedBody, if_none_match: str | None) -> None:
        max_age: int = state.settings.catalogue_max_age_seconds
        self.background = None
        etag = (b"etag", cached.etag.encode())
        cache_control = (b"cache-control", b"public, max-age=%d" % max_age)
        if if_none_match and cached.matches(if_none_match):
            self.status_code, self.body, self.raw_headers = 304, b"", [etag, cache_control]
            return
        body = cached.body
        self.status_code, self.body = 200, body
        self.raw_headers = [etag, cache_control, _JSON, (b"content-length", b"%d" % len(body))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Response.__call__ less what a catalogue read never needs (an HTTP request only,
        # no background task).
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})


async def list_products(
    *,
    state: State,
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
    # Both routes run this: a plain page is the near cache's bytes with no I/O at all, else
    # service.page_body; a search or a filter (issue 29) is service.search_body.
    cache: CatalogueCache | None = state.catalogue_cache
    if ids is not None:
        return await _batch(state.db, page, ids)
    low = None if min_price is None else Decimal(min_price)
    high = None if max_price is None else Decimal(max_price)
    if low is not None and high is not None and low > high:
        raise Unprocessable(
            "min_price is above max_price.",
            errors=[{"loc": ["query", "min_price"], "msg": "must be at most max_price"}],
        )
    if q is None and low is None and high is None and not in_stock and sort in (None, "relevance"):
        key = service.page_key(page.limit, page.offset, category)
        cached = cache.near_page(key) if cache is not None else None
        if cached is None:
            cached = await service.page_body(
                db=state.db, cache=cache, limit=page.limit, offset=page.offset, category=category
            )
        return CachedResponse(state, cached, if_none_match)
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
    cached = await service.search_body(db=state.db, cache=cache, query=query)
    return CachedResponse(state, cached, if_none_match)


# Both routes of GET /api/v1/products, from one declaration (fastpath.hot_get): the lean one
# takes a page, a search and a filter, each parameter checked by its declaration above;
# ``ids`` (the batch read) and anything the declarations refuse is FastAPI's. Through
# FastAPI's route machinery a search's Python cost was about a third of the uncached search's
# CPU in the product process (docs/performance.md, "Search without ts_rank").
LIST_PRODUCTS = fastpath.hot_get(
    router,
    "",
    name="list_products",
    use_case=list_products,
    lean_query=("limit", "offset", "category", "q", "min_price", "max_price", "in_stock", "sort"),
    response_model=ProductPage,
    responses=CACHED_READ,
)


@categories_router.get("", response_model=CategoryList, responses=CACHED_READ)
async def list_categories(
    request: Request, db: DbDep, cache: CacheDep, if_none_match: IfNoneMatch = None
) -> Response:
    """Every category of the catalogue with its number of products, by name."""
    cached = await service.categories_body(db=db, cache=cache)
    return CachedResponse(request.app.state, cached, if_none_match)


async def _batch(db: Database, page: PageParams, ids: str) -> Response:
    wanted = sorted({int(i) for i in ids.split(",")})
    if wanted[-1] > MAX_ID:
        raise Unprocessable(
            "The request is not valid.", errors=[{"loc": ["query", "ids"], "msg": "out of range"}]
        )
    async with db.acquire() as conn:
        rows = await ProductRepository(conn).many(wanted)
    return page.response(PRODUCT.many(rows), len(rows))


async def get_product(
    *, state: State, product_id: ProductId, if_none_match: IfNoneMatch = None
) -> Response:
    # The near cache's bytes with no I/O at all, else service.product_body (a missing
    # product is its NotFound).
    cache: CatalogueCache | None = state.catalogue_cache
    cached = cache.near_product(product_id) if cache is not None else None
    if cached is None:
        cached = await service.product_body(db=state.db, cache=cache, product_id=product_id)
    return CachedResponse(state, cached, if_none_match)


# Both routes of GET /api/v1/products/{product_id}, from one declaration (fastpath.hot_get):
# the catalogue's hottest read.
GET_PRODUCT = fastpath.hot_get(
    router,
    "/{product_id}",
    name="get_product",
    use_case=get_product,
    response_model=ProductRead,
    responses={**NOT_FOUND, **CACHED_READ},
)


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
LEAN_ROUTES = [GET_PRODUCT, LIST_PRODUCTS, RESERVE]
