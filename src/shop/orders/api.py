"""HTTP handlers of the order service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.datastructures import State
from starlette.responses import Response

from shop.common import fastpath
from shop.common.auth import Principal
from shop.common.deps import (
    AdminDep,
    DbDep,
    PageDep,
    PrincipalDep,
    PrivilegedDep,
)
from shop.common.errors import Forbidden, NotFound
from shop.common.openapi import order_links, problems
from shop.common.responses import JSONResponse, json_response
from shop.common.types import MAX_ID
from shop.common.wire import Wire
from shop.orders import service
from shop.orders.saga import Contact, OrderStatus
from shop.orders.schemas import OrderCreate, OrderPage, OrderRead, StatusChange
from shop.orders.service import Saga

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


async def _saga(request: Request) -> Saga:
    saga: Saga = request.app.state.saga
    return saga


SagaDep = Annotated[Saga, Depends(_saga)]


ORDER = Wire(OrderRead)


async def place_order(
    *, state: State, principal: Principal, body: OrderCreate, key: str | None
) -> JSONResponse:
    """Place an order; with an ``Idempotency-Key``, at most once per user and key
    (semantics: ``shop.common.idempotency``; the order row is the key's record)."""
    if principal.user_id is None:
        raise Forbidden("Orders are placed by users.")
    customer = (
        Contact(principal.username, principal.email)
        if principal.username and principal.email
        else None  # a token issued before it carried them: mails fall back to a look-up
    )
    saga: Saga = state.saga
    order = await saga.place(
        user_id=principal.user_id,
        order_in=body,
        idempotency_key=key,
        currency=state.settings.currency,
        customer=customer,
    )
    return json_response(ORDER(order), 201)


# Both routes of POST /api/v1/orders, from one declaration (shop.common.fastpath.hot_post).
PLACE_ORDER = fastpath.hot_post(
    router,
    "",
    name="place_order",
    body=OrderCreate,
    use_case=place_order,
    idempotent=True,
    status_code=201,
    response_model=OrderRead,
    responses={
        201: {
            "description": "Placed (paid), or the key's order as it is now",
            "links": order_links(
                GetOrder="get_order", CancelOrder="cancel_order", ChangeStatus="change_status"
            ),
        },
        **problems(
            401,
            402,
            403,
            404,
            409,
            422,
            503,
            descriptions={
                402: "Payment declined: the order is kept as failed, stock released",
                403: "Not a user's token (orders are placed by users)",
                404: "A line's product does not exist (nothing reserved or charged)",
                409: "Insufficient stock (one entry in errors per short line, with the stock"
                " available; nothing reserved or charged), or the key's order is still being"
                " placed (with Retry-After)",
                422: "Invalid body, or an Idempotency-Key reused with another body",
                503: "A dependency is unavailable; retry with the same Idempotency-Key",
            },
        ),
    },
)


@router.get(
    "",
    response_model=OrderPage,
    responses=problems(401, 403, descriptions={403: "Admins only"}),
)
async def all_orders(
    db: DbDep,
    page: PageDep,
    _: AdminDep,
    status: Annotated[OrderStatus | None, Query(description="only orders in this status")] = None,
) -> Response:
    """Every customer's orders, newest first (the admin's order list)."""
    rows, total = await service.list_all(db=db, status=status, limit=page.limit, offset=page.offset)
    return page.response([ORDER(r) for r in rows], total)


@router.get(
    "/{order_id}",
    response_model=OrderRead,
    responses=problems(401, 404, descriptions={404: "No such order (or not yours)"}),
)
async def get_order(order_id: Id, db: DbDep, principal: PrincipalDep) -> Response:
    return json_response(
        ORDER(await service.get_order(db=db, order_id=order_id, principal=principal))
    )


@router.get(
    "/user/{user_id}",
    response_model=OrderPage,
    responses=problems(401, 404, descriptions={404: "Not this caller's user id"}),
)
async def orders_of_user(
    user_id: Id, db: DbDep, page: PageDep, principal: PrincipalDep
) -> Response:
    if not principal.may_access_user(user_id):
        raise NotFound(f"User {user_id} does not exist.")
    rows, total = await service.list_for_user(
        db=db, user_id=user_id, limit=page.limit, offset=page.offset
    )
    return page.response([ORDER(r) for r in rows], total)


@router.patch(
    "/{order_id}/status",
    response_model=OrderRead,
    responses=problems(
        401,
        403,
        404,
        409,
        descriptions={
            403: "Not an admin or a service",
            404: "No such order",
            409: "Not an allowed transition",
        },
    ),
)
async def change_status(
    order_id: Id, change: StatusChange, saga: SagaDep, principal: PrivilegedDep
) -> Response:
    order = await service.change_status(
        saga=saga, order_id=order_id, status=OrderStatus(change.status), principal=principal
    )
    return json_response(ORDER(order))


@router.post(
    "/{order_id}/cancel",
    response_model=OrderRead,
    responses=problems(
        401,
        404,
        409,
        descriptions={
            404: "No such order (or not yours)",
            409: "Shipped, delivered, failed or already cancelled",
        },
    ),
)
async def cancel_order(order_id: Id, saga: SagaDep, principal: PrincipalDep) -> Response:
    return json_response(ORDER(await saga.cancel(order_id=order_id, principal=principal)))


LEAN_ROUTES = [PLACE_ORDER]
