"""HTTP handlers of the product service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from shop.common.deps import AdminDep, DbDep, PageDep, PrivilegedDep
from shop.common.errors import Unprocessable
from shop.common.openapi import problems
from shop.common.responses import json_response
from shop.common.types import MAX_ID, NO_NUL, ProblemRead
from shop.products import service
from shop.products.db import ProductRepository
from shop.products.schemas import (
    ID_LIST_DESCRIPTION,
    ID_LIST_PATTERN,
    ProductCreate,
    ProductPage,
    ProductRead,
    ProductUpdate,
    ReservationCreate,
    ReservationRead,
    StockUpdate,
)

router = APIRouter(prefix="/api/v1/products", tags=["products"])
ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]
OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_FOUND = problems(404, descriptions={404: "No such product"})
ADMIN = problems(401, 403)
# Reservations are for services (the order saga) and admins.
PRIVILEGED = problems(401, 403, descriptions={403: "Not an admin or a service"})


def _product(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": f"{row['price']:.2f}",
        "stock": row["stock"],
        "category": row["category"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _reservation(row: Any) -> dict[str, Any]:
    price = row["unit_price"]
    return {
        "order_id": row["order_id"],
        "product_id": row["product_id"],
        "quantity": row["quantity"],
        "status": row["status"],
        "unit_price": None if price is None else f"{price:.2f}",
    }


@router.get("", response_model=ProductPage)
async def list_products(
    db: DbDep,
    page: PageDep,
    category: Annotated[str | None, Query(min_length=1, max_length=100, pattern=NO_NUL)] = None,
    ids: Annotated[
        str | None,
        Query(pattern=ID_LIST_PATTERN, description=ID_LIST_DESCRIPTION, examples=["1,2,3"]),
    ] = None,
) -> Any:
    if ids is not None:
        return await _batch(db, page, ids)
    rows, total = await service.list_products(
        db=db, limit=page.limit, offset=page.offset, category=category
    )
    return page.response([_product(r) for r in rows], total)


async def _batch(db: DbDep, page: PageDep, ids: str) -> Any:
    wanted = sorted({int(i) for i in ids.split(",")})
    if wanted[-1] > 2**63 - 1:
        raise Unprocessable(
            "The request is not valid.", errors=[{"loc": ["query", "ids"], "msg": "out of range"}]
        )
    async with db.acquire() as conn:
        rows = await ProductRepository(conn).many(wanted)
    return page.response([_product(r) for r in rows], len(rows))


@router.get("/{product_id}", response_model=ProductRead, responses=NOT_FOUND)
async def get_product(product_id: ProductId, db: DbDep) -> Any:
    return json_response(_product(await service.get_product(db=db, product_id=product_id)))


@router.post("", status_code=201, response_model=ProductRead, responses=ADMIN)
async def create_product(product_in: ProductCreate, db: DbDep, _: AdminDep) -> Any:
    return json_response(_product(await service.create_product(db=db, product_in=product_in)), 201)


@router.put("/{product_id}", response_model=ProductRead, responses={**NOT_FOUND, **ADMIN})
async def update_product(
    product_id: ProductId, product_in: ProductUpdate, db: DbDep, _: AdminDep
) -> Any:
    product = await service.update_product(db=db, product_id=product_id, product_in=product_in)
    return json_response(_product(product))


@router.delete("/{product_id}", status_code=204, responses={**NOT_FOUND, **ADMIN})
async def delete_product(product_id: ProductId, db: DbDep, _: AdminDep) -> Response:
    await service.delete_product(db=db, product_id=product_id)
    return Response(status_code=204)


@router.patch(
    "/{product_id}/stock",
    response_model=ProductRead,
    responses={
        **NOT_FOUND,
        **ADMIN,
        **problems(409, descriptions={409: "Stock would go below zero or above 1000000000"}),
    },
)
async def update_stock(product_id: ProductId, change: StockUpdate, db: DbDep, _: AdminDep) -> Any:
    product = await service.update_stock(db=db, product_id=product_id, change=change)
    return json_response(_product(product))


@router.post(
    "/{product_id}/reservations",
    status_code=201,
    response_model=ReservationRead,
    summary="Reserve stock for an order (internal; idempotent by order id)",
    responses={
        200: {"description": "Already reserved for this order", "model": ReservationRead},
        **problems(
            409,
            model=ProblemRead,
            descriptions={
                409: "Insufficient stock (code insufficient_stock), the reservation was"
                " released (reservation_released), or the order reserved other terms"
            },
        ),
        **NOT_FOUND,
        **PRIVILEGED,
    },
)
async def reserve(
    product_id: ProductId, body: ReservationCreate, db: DbDep, _: PrivilegedDep
) -> Any:
    reservation, created = await service.reserve_stock(
        db=db, product_id=product_id, order_id=body.order_id, quantity=body.quantity
    )
    return json_response(_reservation(reservation), 201 if created else 200)


@router.delete(
    "/{product_id}/reservations/{order_id}",
    response_model=ReservationRead,
    summary="Release an order's stock (internal; idempotent: restores once)",
    responses={
        **problems(404, descriptions={404: "The order has no reservation of this product"}),
        **PRIVILEGED,
    },
)
async def release(product_id: ProductId, order_id: OrderId, db: DbDep, _: PrivilegedDep) -> Any:
    reservation = await service.release_stock(db=db, product_id=product_id, order_id=order_id)
    return json_response(_reservation(reservation))
