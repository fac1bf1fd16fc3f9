"""The storefront's pages: the catalogue, search, a product, the cart, the checkout, the
customer's orders, login and registration (what they share: ``shop.storefront.web``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from shop.storefront.cart import COOKIE as CART
from shop.storefront.cart import CartEmpty
from shop.storefront.graphql import error_code
from shop.storefront.limits import CART_MAX_QUANTITY
from shop.storefront.web import (
    ACCESS,
    REFRESH,
    CsrfField,
    check_csrf,
    current_user,
    execute,
    gql,
    redirect,
    render,
    set_tokens,
)

PAGE_SIZE = 12
router = APIRouter(include_in_schema=False)

DECLINE_WORDS = (
    "Your payment was declined, so you have not been charged and the order was not placed."
    " Try another payment method or a smaller order."
)


@router.get("/", response_class=HTMLResponse)
async def catalogue(request: Request, category: str | None = None, page: int = 1) -> Response:
    await current_user(request)
    page = max(1, min(page, 10_000))
    data, errors = await gql(
        request,
        "query ($limit: Int!, $offset: Int!, $category: String)"
        " { products(limit: $limit, offset: $offset, category: $category)"
        " { total items { id name price stock category } } categories { name count } }",
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        category=category or None,
    )
    products = (data or {}).get("products") or {"items": [], "total": 0}
    pages = max(1, -(-products["total"] // PAGE_SIZE))
    return render(
        request,
        "catalogue.html",
        products=products["items"],
        category=category or "",
        page=page,
        pages=pages,
        errors=errors,
        categories=_with_counts((data or {}).get("categories") or [], category),
    )


def _with_counts(found: list[dict[str, Any]], chosen: str | None) -> list[dict[str, Any]]:
    """The catalogue's categories with their counts; the chosen one is listed even if empty."""
    if chosen and chosen not in {c["name"] for c in found}:
        found = sorted([*found, {"name": chosen, "count": 0}], key=lambda c: str(c["name"]))
    return found


SEARCH_SORTS = (
    ("RELEVANCE", "Best match"),
    ("PRICE", "Price: low to high"),
    ("PRICE_DESC", "Price: high to low"),
    ("NEWEST", "Newest"),
    ("NAME", "Name"),
)
SEARCH_QUERY = (
    "query ($q: String, $category: String, $minPrice: String, $maxPrice: String,"
    " $inStock: Boolean!, $sort: ProductSort, $limit: Int!, $offset: Int!)"
    " { products(q: $q, category: $category, minPrice: $minPrice, maxPrice: $maxPrice,"
    " inStock: $inStock, sort: $sort, limit: $limit, offset: $offset)"
    " { total items { id name price stock category } } categories { name count } }"
)


@router.get("/search", response_class=HTMLResponse)
async def search(
    request: Request,
    q: str = "",
    category: str = "",
    min_price: str = "",
    max_price: str = "",
    in_stock: bool = False,
    sort: str = "RELEVANCE",
    page: int = 1,
) -> Response:
    """Search results with the filters, sort and category counts (API.md, "Catalogue search");
    the product service checks every value, and its refusal is shown as the page's error."""
    await current_user(request)
    page = max(1, min(page, 10_000))
    sort = sort if sort in dict(SEARCH_SORTS) else "RELEVANCE"
    data, errors = await gql(
        request,
        SEARCH_QUERY,
        q=q.strip() or None,
        category=category or None,
        minPrice=min_price or None,
        maxPrice=max_price or None,
        inStock=in_stock,
        sort=sort,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    products = (data or {}).get("products") or {"items": [], "total": 0}
    kept = {"q": q, "category": category, "min_price": min_price, "max_price": max_price}
    kept |= {"in_stock": "true" if in_stock else "", "sort": sort}
    return render(
        request,
        "search.html",
        products=products["items"],
        total=products["total"],
        q=q,
        category=category,
        min_price=min_price,
        max_price=max_price,
        in_stock=in_stock,
        sort=sort,
        sorts=SEARCH_SORTS,
        page=page,
        pages=max(1, -(-products["total"] // PAGE_SIZE)),
        query=urlencode({k: v for k, v in kept.items() if v}),
        errors=errors,
        categories=_with_counts((data or {}).get("categories") or [], category),
    )


@router.get("/products/{product_id}", response_class=HTMLResponse)
async def product_page(request: Request, product_id: int) -> Response:
    await current_user(request)
    data, errors = await gql(
        request,
        "query ($id: ID!) { product(id: $id) { id name description price stock category } }",
        id=str(product_id),
    )
    product = (data or {}).get("product")
    if product is None:
        return render(request, "message.html", 404, title="Not found", message="No such product.")
    return render(request, "product.html", product=product, errors=errors)


CART_QUERY = "{ cart { total count lines { quantity lineTotal product { id name price stock } } } }"
Quantity = Annotated[int, Form(ge=0, le=CART_MAX_QUANTITY)]


async def _cart_page(
    request: Request, status: int = 200, error: str | None = None, **values: object
) -> Response:
    data, errors = await gql(request, CART_QUERY)
    cart = (data or {}).get("cart") or {"lines": [], "total": "0.00", "count": 0}
    request.state.cart_count = cart["count"]
    if error is None and errors:
        error = errors[0][1]
    return render(request, "cart.html", status, cart=cart, error=error, **values)


async def _change_cart(
    request: Request,
    csrf_token: str | None,
    field: str,
    product_id: int,
    quantity: int | None = None,
) -> Response:
    """Run the cart mutation ``field`` for one product (and quantity, for the two that take
    one); back to the cart, or the cart page again with the API's error."""
    check_csrf(request, csrf_token)
    variables: dict[str, str | int] = {"p": str(product_id)}
    params, arguments = "$p: ID!", "productId: $p"
    if quantity is not None:
        params, arguments = params + ", $q: Int!", arguments + ", quantity: $q"
        variables["q"] = quantity
    mutation = f"mutation ({params}) {{ {field}({arguments}) {{ count }} }}"
    _, errors = await gql(request, mutation, **variables)
    if errors:
        code, message = errors[0]
        status = {"NOT_FOUND": 404, "UNAVAILABLE": 503}.get(code, 422)
        await current_user(request)
        return await _cart_page(request, status, error=message)
    return redirect("/cart")


@router.post("/cart")
async def add_to_cart(
    request: Request,
    product_id: Annotated[int, Form(ge=1)],
    csrf_token: CsrfField = None,
    quantity: Annotated[int, Form(ge=1, le=CART_MAX_QUANTITY)] = 1,
) -> Response:
    return await _change_cart(request, csrf_token, "addToCart", product_id, quantity)


@router.post("/cart/quantity")
async def set_cart_quantity(
    request: Request,
    product_id: Annotated[int, Form(ge=1)],
    quantity: Quantity,
    csrf_token: CsrfField = None,
) -> Response:
    return await _change_cart(request, csrf_token, "setCartQuantity", product_id, quantity)


@router.post("/cart/remove")
async def remove_from_cart(
    request: Request, product_id: Annotated[int, Form(ge=1)], csrf_token: CsrfField = None
) -> Response:
    return await _change_cart(request, csrf_token, "removeFromCart", product_id)


@router.get("/cart", response_class=HTMLResponse)
async def cart_page(request: Request) -> Response:
    await current_user(request)
    return await _cart_page(request)


async def _checkout_page(
    request: Request,
    status: int = 200,
    *,
    checkout_key: str,
    error: str | None = None,
    short: dict[str, int] | None = None,
) -> Response:
    data, errors = await gql(request, CART_QUERY)
    cart = (data or {}).get("cart")
    if cart is None:
        return render(request, "message.html", 503, title="Cart unavailable", message=errors[0][1])
    if not cart["lines"]:
        return redirect("/cart")
    request.state.cart_count = cart["count"]
    return render(
        request,
        "checkout.html",
        status,
        cart=cart,
        checkout_key=checkout_key,
        error=error,
        short=short or {},
    )


@router.get("/checkout", response_class=HTMLResponse)
async def checkout_page(request: Request) -> Response:
    if await current_user(request) is None:
        return redirect("/login?next=/checkout")
    # One key per checkout: a second submit (double click, reload) places nothing new.
    return await _checkout_page(request, checkout_key=uuid.uuid4().hex)


SHORT_WORDS = (
    "Some of your cart is not in stock in the quantity you asked for, so nothing was ordered"
    " or charged. The lines marked below say what is left; change them in your cart."
)
CHECKOUT = (
    "mutation ($m: PaymentMethod!, $k: String!)"
    " { checkout(paymentMethod: $m, idempotencyKey: $k) { id } }"
)


@router.post("/checkout")
async def place_order(
    request: Request,
    checkout_key: Annotated[str, Form(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9]+$")],
    payment_method: Annotated[str, Form(pattern=r"^(CARD|PAYPAL|BANK_TRANSFER)$")] = "CARD",
    csrf_token: CsrfField = None,
) -> Response:
    """One order for the whole cart, paid once; on a refusal the cart keeps everything."""
    check_csrf(request, csrf_token)
    if await current_user(request) is None:
        return redirect("/login?next=/checkout")
    result = await execute(request, CHECKOUT, m=payment_method, k=checkout_key)
    if not result.errors and result.data:
        return redirect(f"/orders/{result.data['checkout']['id']}")
    if not result.errors:
        return redirect("/orders")
    error = result.errors[0]
    code = error_code(error)
    if isinstance(error.original_error, CartEmpty):
        return redirect("/orders")  # a second submit after the first placed the order
    status = {"PAYMENT_DECLINED": 402, "UNAVAILABLE": 503}.get(code, 409)
    short = _short_lines(error.extensions or {}, getattr(error.original_error, "details", {}))
    words = DECLINE_WORDS if code == "PAYMENT_DECLINED" else SHORT_WORDS if short else error.message
    # A new key: what was refused placed nothing, and the next try is a new attempt.
    return await _checkout_page(
        request, status, checkout_key=uuid.uuid4().hex, error=words, short=short
    )


def _short_lines(*sources: dict[str, Any]) -> dict[str, int]:
    """product id -> how many are left, from a short-stock refusal's errors."""
    short: dict[str, int] = {}
    for source in sources:
        for entry in source.get("errors") or []:
            if isinstance(entry, dict) and "productId" in entry and "available" in entry:
                short[str(entry["productId"])] = int(entry["available"])
    return short


@router.get("/orders", response_class=HTMLResponse)
async def my_orders(request: Request) -> Response:
    if await current_user(request) is None:
        return redirect("/login?next=/orders")
    data, errors = await gql(
        request,
        "{ me { orders(limit: 50) { total items { id status quantity totalPrice createdAt"
        " lines { name quantity } payment { status } } } } }",
    )
    orders = ((data or {}).get("me") or {}).get("orders") or {"items": []}
    return render(request, "orders.html", orders=orders["items"], errors=errors)


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(request: Request, order_id: int) -> Response:
    if await current_user(request) is None:
        return redirect(f"/login?next=/orders/{order_id}")
    data, _ = await gql(
        request,
        "query ($id: ID!) { order(id: $id) { id status quantity totalPrice createdAt"
        " failureReason lines { name quantity unitPrice lineTotal priced product { id } }"
        " payment { status amount paymentMethod failureReason } } }",
        id=str(order_id),
    )
    order = (data or {}).get("order")
    if order is None:
        return render(request, "message.html", 404, title="Not found", message="No such order.")
    declined = order["status"] == "failed"
    return render(request, "order.html", order=order, declined=declined, decline=DECLINE_WORDS)


@router.post("/orders/{order_id}/cancel")
async def cancel(request: Request, order_id: int, csrf_token: CsrfField = None) -> Response:
    check_csrf(request, csrf_token)
    _, errors = await gql(
        request, "mutation ($id: ID!) { cancelOrder(id: $id) { id } }", id=str(order_id)
    )
    if errors:
        return render(request, "message.html", 409, title="Not cancelled", message=errors[0][1])
    return redirect(f"/orders/{order_id}")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", next=_safe_next(next))


def _safe_next(target: str) -> str:
    # Only a path on this site: never an open redirect to another one.
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def _log_in(request: Request, username: str, password: str, target: str) -> Response:
    data, errors = await gql(
        request,
        "mutation ($u: String!, $p: String!) { login(username: $u, password: $p)"
        " { accessToken expiresIn refreshToken } }",
        u=username,
        p=password,
    )
    if errors:
        message = (
            "Wrong username or password." if errors[0][0] == "UNAUTHENTICATED" else errors[0][1]
        )
        return render(request, "login.html", 401, error=message, next=target)
    assert data is not None  # no errors: the login's result
    tokens = data["login"]
    response = redirect(target)
    set_tokens(
        request,
        response,
        {
            "access_token": tokens["accessToken"],
            "expires_in": tokens["expiresIn"],
            "refresh_token": tokens["refreshToken"],
        },
    )
    return response


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=256)],
    csrf_token: CsrfField = None,
    next: Annotated[str, Form()] = "/",
) -> Response:
    check_csrf(request, csrf_token)
    return await _log_in(request, username, password, _safe_next(next))


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request) -> Response:
    return render(request, "register.html")


@router.post("/register")
async def register(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=256)],
    csrf_token: CsrfField = None,
) -> Response:
    check_csrf(request, csrf_token)
    _, errors = await gql(
        request,
        "mutation ($u: String!, $e: String!, $p: String!)"
        " { register(username: $u, email: $e, password: $p) { id } }",
        u=username,
        e=email,
        p=password,
    )
    if errors:
        return render(
            request, "register.html", 422, error=errors[0][1], username=username, email=email
        )
    return await _log_in(request, username, password, "/")


@router.post("/logout")
async def logout(request: Request, csrf_token: CsrfField = None) -> Response:
    check_csrf(request, csrf_token)
    if refresh := request.cookies.get(REFRESH):
        await gql(request, "mutation ($r: String!) { logout(refreshToken: $r) }", r=refresh)
    response = redirect("/")
    for name in (ACCESS, REFRESH, CART):
        response.delete_cookie(name, path="/")
    return response
