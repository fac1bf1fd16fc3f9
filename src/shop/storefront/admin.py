"""The admin pages under /admin, for admins only: products, every order (newest first), users.

Each page checks the visitor's role through ``me`` (the user service's answer, not a cookie);
the services check it again on every write, so these pages hold no authority of their own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from shop.storefront.web import CsrfField, check_csrf, current_user, gql, redirect, render

router = APIRouter(prefix="/admin", include_in_schema=False)
PRODUCT_FIELDS = "id name description price stock category"

ORDERS_PER_PAGE = 50


async def _admin(request: Request) -> Response | None:
    me = await current_user(request)
    if me is None:
        return redirect(f"/login?next={request.url.path}")
    if me["role"] != "admin":
        return render(request, "message.html", 403, title="Forbidden", message="Admins only.")
    return None


@router.get("", response_class=HTMLResponse)
async def products(request: Request, error: str | None = None) -> Response:
    if refused := await _admin(request):
        return refused
    data, errors = await gql(
        request, f"{{ products(limit: 100) {{ total items {{ {PRODUCT_FIELDS} }} }} }}"
    )
    items = ((data or {}).get("products") or {}).get("items", [])
    return render(request, "admin_products.html", products=items, errors=errors, error=error)


@router.post("/products")
async def save_product(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    price: Annotated[str, Form(max_length=20)],
    description: Annotated[str, Form(max_length=10_000)] = "",
    category: Annotated[str, Form(max_length=100)] = "",
    stock: Annotated[int, Form(ge=0)] = 0,
    product_id: Annotated[str, Form(max_length=20)] = "",
    csrf_token: CsrfField = None,
) -> Response:
    check_csrf(request, csrf_token)
    if refused := await _admin(request):
        return refused
    product = {"name": name, "price": price, "description": description, "category": category}
    if product_id:
        _, errors = await gql(
            request,
            "mutation ($id: ID!, $p: ProductInput!, $s: Int!) { updateProduct(id: $id, product: $p)"
            " { id } setStock(id: $id, stock: $s) { id } }",
            id=product_id,
            p=product,
            s=stock,
        )
    else:
        _, errors = await gql(
            request,
            "mutation ($p: ProductInput!, $s: Int!)"
            " { createProduct(product: $p, stock: $s) { id } }",
            p=product,
            s=stock,
        )
    if errors:
        return render(request, "message.html", 422, title="Not saved", message=errors[0][1])
    return redirect("/admin")


@router.post("/products/{product_id}/delete")
async def delete_product(
    request: Request, product_id: int, csrf_token: CsrfField = None
) -> Response:
    check_csrf(request, csrf_token)
    if refused := await _admin(request):
        return refused
    await gql(request, "mutation ($id: ID!) { deleteProduct(id: $id) }", id=str(product_id))
    return redirect("/admin")


@router.get("/orders", response_class=HTMLResponse)
async def orders(request: Request, page: int = 1) -> Response:
    if refused := await _admin(request):
        return refused
    page = max(1, min(page, 10_000))
    data, errors = await gql(
        request,
        "query ($limit: Int!, $offset: Int!) { orders(limit: $limit, offset: $offset)"
        " { total items { id userId status totalPrice createdAt"
        " lines { name quantity unitPrice priced } } } }",
        limit=ORDERS_PER_PAGE,
        offset=(page - 1) * ORDERS_PER_PAGE,
    )
    found = (data or {}).get("orders") or {"items": [], "total": 0}
    pages = max(1, -(-found["total"] // ORDERS_PER_PAGE))
    return render(
        request, "admin_orders.html", orders=found["items"], page=page, pages=pages, errors=errors
    )


@router.post("/orders/{order_id}/status")
async def change_status(
    request: Request,
    order_id: int,
    status: Annotated[str, Form(pattern=r"^(SHIPPED|DELIVERED|CANCELLED)$")],
    csrf_token: CsrfField = None,
) -> Response:
    check_csrf(request, csrf_token)
    if refused := await _admin(request):
        return refused
    _, errors = await gql(
        request,
        "mutation ($id: ID!, $s: OrderStatusChange!) { changeOrderStatus(id: $id, status: $s)"
        " { id } }",
        id=str(order_id),
        s=status,
    )
    if errors:
        return render(request, "message.html", 409, title="Not changed", message=errors[0][1])
    return redirect("/admin/orders")


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request) -> Response:
    if refused := await _admin(request):
        return refused
    data, errors = await gql(
        request, "{ users(limit: 100) { total items { id username email role } } }"
    )
    items = ((data or {}).get("users") or {}).get("items", [])
    return render(request, "admin_users.html", users=items, errors=errors)
