"""The GraphQL schema (API.md's minimum, orders with lines, the cart and the admin's
operations), resolved over REST.

Nested reads are batched per request by dataloaders over the services' batch endpoints
(``GET /api/v1/products?ids=`` and ``GET /api/v1/payments?order_ids=``), so
``me { orders(limit: 20) { items { lines { product { name } } payment { status } } } }`` costs
four downstream calls (user, orders page, products, payments) whatever the page size and
however many lines the orders have: every line's product, and the current name of a line whose
order did not record one, come from the one products batch.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.dataloader import DataLoader
from strawberry.extensions import AddValidationRules, DisableIntrospection, QueryDepthLimiter
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from shop.common.auth import Principal, TokenVerifier
from shop.common.errors import Unauthorized
from shop.common.logging import get_logger
from shop.common.types import IDEMPOTENCY_KEY_MAX, MAX_ID, JsonObject, format_money
from shop.storefront import cart as carts
from shop.storefront.cart import CartEmpty, CartError, Carts, CartStore, CookieCartStore
from shop.storefront.clients import (
    ApiError,
    Backend,
    OrderJson,
    OrderLineJson,
    PaymentJson,
    ProductJson,
    UserJson,
)
from shop.storefront.limits import CART_MAX_LINES, CART_MAX_QUANTITY, MAX_PAGE, cost_rule

log = get_logger("shop.storefront")
BATCH = 100  # the services' batch endpoints take at most this many ids


class Context(BaseContext):
    """Per request: the caller's token, who they are (verified once) and the dataloaders."""

    def __init__(
        self,
        backend: Backend,
        verifier: TokenVerifier,
        token: str | None,
        *,
        carts: Carts,
        cookie_cart: CookieCartStore,
    ) -> None:
        super().__init__()
        self.backend, self.verifier, self.token = backend, verifier, token
        self.carts, self.cookie_cart = carts, cookie_cart
        self._principal: Principal | None = None
        self.products = DataLoader(self._load_products, max_batch_size=BATCH)
        self.payments = DataLoader(self._load_payments, max_batch_size=BATCH)

    async def principal(self) -> Principal | None:
        if self.token is None:
            return None
        if self._principal is None:
            try:
                self._principal = await self.verifier.verify(self.token)
            except Unauthorized as exc:
                raise ApiError("UNAUTHENTICATED", exc.detail) from None
        return self._principal

    async def user(self) -> Principal:
        principal = await self.principal()
        if principal is None or principal.user_id is None:
            raise ApiError("UNAUTHENTICATED", "Log in first: send Authorization: Bearer <token>.")
        return principal

    async def admin(self) -> Principal:
        principal = await self.user()
        if not principal.is_admin:
            raise ApiError("FORBIDDEN", "Only admins may do this.")
        return principal

    async def cart(self) -> CartStore:
        """The caller's cart: on the server when signed in (and Redis is configured)."""
        principal = await self.principal()
        user_id = None if principal is None else principal.user_id
        return self.carts.of(user_id=user_id, cookie=self.cookie_cart)

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        return await self.backend.call(service, method, path, token=self.token, **kwargs)

    async def _load_products(self, ids: Sequence[int]) -> list[ProductJson | None]:
        page = await self.call("products", "GET", "/api/v1/products", params={"ids": _csv(ids)})
        found = {p["id"]: p for p in page["items"]}
        return [found.get(i) for i in ids]

    async def _load_payments(self, order_ids: Sequence[int]) -> list[PaymentJson | None]:
        page = await self.call(
            "payments", "GET", "/api/v1/payments", params={"order_ids": _csv(order_ids)}
        )
        found = {p["order_id"]: p for p in page["items"]}
        return [found.get(i) for i in order_ids]


def _csv(ids: Sequence[int]) -> str:
    return ",".join(str(i) for i in ids)


def _id(value: strawberry.ID, what: str = "id") -> int:
    if not str(value).isdigit() or not 1 <= int(value) <= MAX_ID:
        raise ApiError("BAD_USER_INPUT", f"{what} must be a positive integer.")
    return int(value)


def _page_args(limit: int, offset: int) -> dict[str, int]:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ApiError("BAD_USER_INPUT", f"limit must be 1-{MAX_PAGE} and offset at least 0.")
    return {"limit": limit, "offset": offset}


def ctx(info: Info[Context, None]) -> Context:
    return info.context


@strawberry.enum
class PaymentMethod(enum.Enum):
    CARD = "card"
    PAYPAL = "paypal"
    BANK_TRANSFER = "bank_transfer"


@strawberry.enum
class OrderStatusChange(enum.Enum):
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


@strawberry.type
class Product:
    id: strawberry.ID
    name: str
    description: str | None
    price: str
    stock: int
    category: str | None

    @classmethod
    def of(cls, p: ProductJson) -> Product:
        return cls(
            id=strawberry.ID(str(p["id"])),
            name=p["name"],
            description=p["description"],
            price=p["price"],
            stock=p["stock"],
            category=p["category"],
        )


@strawberry.type
class Payment:
    payment_id: str
    status: str
    amount: str
    currency: str
    payment_method: str
    failure_reason: str | None

    @classmethod
    def of(cls, p: PaymentJson) -> Payment:
        return cls(
            payment_id=p["payment_id"],
            status=p["status"],
            amount=p["amount"],
            currency=p["currency"],
            payment_method=p["payment_method"],
            failure_reason=p.get("failure_reason"),
        )


@strawberry.type(description="One product of an order, as it was when the order was placed.")
class OrderLine:
    product_id: strawberry.Private[int]
    recorded_name: strawberry.Private[str | None]
    recorded_unit_price: strawberry.Private[str | None]
    quantity: int
    line_total: str = strawberry.field(
        description='unitPrice x quantity as charged; "0.00" for a line never priced (its'
        " order failed before its stock was reserved, so nothing was charged for it)."
    )

    @classmethod
    def of(cls, line: OrderLineJson) -> OrderLine:
        unit = line.get("unit_price")
        total = line.get("line_total")
        return cls(
            product_id=int(line["product_id"]),
            recorded_name=line.get("name"),
            recorded_unit_price=unit,
            quantity=int(line["quantity"]),
            line_total=total if unit is not None and total is not None else "0.00",
        )

    @strawberry.field(description="The product now; null once it has been deleted.")
    async def product(self, info: Info[Context, None]) -> Product | None:
        found = await ctx(info).products.load(self.product_id)
        return None if found is None else Product.of(found)

    @strawberry.field(
        description="The product's name when the order was placed; for an order that did not"
        ' record it, the product\'s current name, or "Product <id>" once it is gone.'
    )
    async def name(self, info: Info[Context, None]) -> str:
        if self.recorded_name is not None:
            return self.recorded_name
        found = await ctx(info).products.load(self.product_id)
        return f"Product {self.product_id}" if found is None else str(found["name"])

    @strawberry.field(description="Whether the line was priced when the order was placed.")
    def priced(self) -> bool:
        return self.recorded_unit_price is not None

    @strawberry.field(
        description="The unit price when the order was placed. A line whose order failed before"
        " its stock was reserved was never priced (priced: false): then this is the product's"
        ' price now, or "0.00" once the product is gone, and lineTotal is "0.00".'
    )
    async def unit_price(self, info: Info[Context, None]) -> str:
        if self.recorded_unit_price is not None:
            return self.recorded_unit_price
        found = await ctx(info).products.load(self.product_id)
        return "0.00" if found is None else str(found["price"])


def _lines_of(o: OrderJson) -> list[OrderLine]:
    lines = o.get("lines")
    if lines is not None:
        return [OrderLine.of(line) for line in lines]
    # An answer from before order lines (API.md's seed fields only): its one line.
    product_id, quantity, total = o["product_id"], o["quantity"], o.get("total_price")
    if product_id is None or quantity is None:
        raise TypeError("an order without lines names its one product and quantity")
    unit = None if total is None else format_money(Decimal(total) / quantity)
    return [
        OrderLine.of(
            {
                "product_id": product_id,
                "name": None,
                "quantity": quantity,
                "unit_price": unit,
                "line_total": total,
            }
        )
    ]


@strawberry.type
class Order:
    id: strawberry.ID
    status: str
    quantity: int = strawberry.field(
        description="The quantity of a one-line order; for more lines, the sum of theirs."
    )
    total_price: str
    created_at: str
    user_id: strawberry.ID
    failure_reason: str | None
    product_id: strawberry.Private[int | None]
    lines: list[OrderLine]

    @classmethod
    def of(cls, o: OrderJson) -> Order:
        lines, quantity = _lines_of(o), o.get("quantity")
        return cls(
            id=strawberry.ID(str(o["id"])),
            status=o["status"],
            quantity=quantity if quantity is not None else sum(line.quantity for line in lines),
            total_price=o["total_price"] or "0.00",
            created_at=o["created_at"],
            user_id=strawberry.ID(str(o["user_id"])),
            failure_reason=o.get("failure_reason"),
            product_id=o.get("product_id"),
            lines=lines,
        )

    @strawberry.field(description="The product of a one-line order; null for more (see lines).")
    async def product(self, info: Info[Context, None]) -> Product | None:
        if self.product_id is None:
            return None
        found = await ctx(info).products.load(self.product_id)
        return None if found is None else Product.of(found)

    @strawberry.field
    async def payment(self, info: Info[Context, None]) -> Payment | None:
        found = await ctx(info).payments.load(int(self.id))
        return None if found is None else Payment.of(found)


@strawberry.type(description="A product in the cart, at its price now.")
class CartLine:
    product: Product
    quantity: int
    line_total: str


@strawberry.type(
    description=f"The caller's cart: at most {CART_MAX_LINES} products, {CART_MAX_QUANTITY} of"
    " one. A deleted product drops out of it."
)
class Cart:
    lines: list[CartLine]
    total: str = strawberry.field(description="The sum of the line totals, at today's prices.")
    count: int = strawberry.field(description="How many items: the sum of the quantities.")


async def _cart_view(context: Context, cart: carts.Cart, store: CartStore) -> Cart:
    """The cart priced now; products deleted since they were added leave it for good."""
    products = await context.products.load_many(list(cart))
    if gone := [p for p, found in zip(cart, products, strict=True) if found is None]:
        await store.update(lambda current: carts.without(current, *gone))
    lines = [
        CartLine(
            product=Product.of(product),
            quantity=quantity,
            line_total=format_money(Decimal(product["price"]) * quantity),
        )
        for product, quantity in zip(products, cart.values(), strict=True)
        if product is not None
    ]
    return Cart(
        lines=lines,
        total=format_money(sum((Decimal(line.line_total) for line in lines), Decimal(0))),
        count=sum(line.quantity for line in lines),
    )


@strawberry.type
class ProductPage:
    items: list[Product]
    total: int


@strawberry.enum(description="The order of a product list (REST: relevance, price, -price, ...).")
class ProductSort(enum.Enum):
    RELEVANCE = "relevance"
    PRICE = "price"
    PRICE_DESC = "-price"
    NEWEST = "newest"
    NAME = "name"


@strawberry.type
class Category:
    name: str
    count: int


def _catalogue_args(
    q: str | None,
    category: str | None,
    min_price: str | None,
    max_price: str | None,
    in_stock: bool,
    sort: ProductSort | None,
) -> dict[str, str]:
    """The REST query of a catalogue search; the product service checks every value."""
    params = {
        "q": q,
        "category": category or None,
        "min_price": min_price,
        "max_price": max_price,
        "in_stock": "true" if in_stock else None,
        "sort": None if sort is None else sort.value,
    }
    return {k: v for k, v in params.items() if v is not None}


@strawberry.type
class OrderPage:
    items: list[Order]
    total: int


@strawberry.type
class User:
    id: strawberry.ID
    username: str
    email: str
    role: str

    @classmethod
    def of(cls, u: UserJson) -> User:
        return cls(
            id=strawberry.ID(str(u["id"])), username=u["username"], email=u["email"], role=u["role"]
        )

    @strawberry.field
    async def orders(
        self, info: Info[Context, None], limit: int = 20, offset: int = 0
    ) -> OrderPage:
        page = await ctx(info).call(
            "orders", "GET", f"/api/v1/orders/user/{self.id}", params=_page_args(limit, offset)
        )
        return OrderPage(items=[Order.of(o) for o in page["items"]], total=page["total"])


@strawberry.type
class UserPage:
    items: list[User]
    total: int


@strawberry.type
class Tokens:
    access_token: str
    expires_in: int
    refresh_token: str | None


@strawberry.input
class OrderLineInput:
    product_id: strawberry.ID
    quantity: int


@strawberry.input
class ProductInput:
    name: str
    price: str
    description: str = ""
    category: str | None = None


@strawberry.type
class Query:
    @strawberry.field
    async def products(
        self,
        info: Info[Context, None],
        limit: int = 20,
        offset: int = 0,
        category: str | None = None,
        q: str | None = None,
        min_price: str | None = None,
        max_price: str | None = None,
        in_stock: bool = False,
        sort: ProductSort | None = None,
    ) -> ProductPage:
        params: dict[str, str | int] = {
            **_page_args(limit, offset),
            **_catalogue_args(q, category, min_price, max_price, in_stock, sort),
        }
        page = await ctx(info).call("products", "GET", "/api/v1/products", params=params)
        return ProductPage(items=[Product.of(p) for p in page["items"]], total=page["total"])

    @strawberry.field(description="Every category with its number of products, by name.")
    async def categories(self, info: Info[Context, None]) -> list[Category]:
        found = await ctx(info).call("products", "GET", "/api/v1/categories")
        return [Category(name=c["name"], count=c["count"]) for c in found["items"]]

    @strawberry.field
    async def product(self, info: Info[Context, None], id: strawberry.ID) -> Product | None:
        found = await ctx(info).products.load(_id(id))
        return None if found is None else Product.of(found)

    @strawberry.field(
        description="The caller's cart: on the server for a signed-in customer (the same on"
        " every device), else in this browser's cookie."
    )
    async def cart(self, info: Info[Context, None]) -> Cart:
        context = ctx(info)
        store = await context.cart()
        return await _cart_view(context, await store.load(), store)

    @strawberry.field(description="The caller; null without a token.")
    async def me(self, info: Info[Context, None]) -> User | None:
        context = ctx(info)
        principal = await context.principal()
        if principal is None or principal.user_id is None:
            return None
        return User.of(await context.call("users", "GET", f"/api/v1/users/{principal.user_id}"))

    @strawberry.field(description="An order of the caller's (any order, for admins).")
    async def order(self, info: Info[Context, None], id: strawberry.ID) -> Order | None:
        context = ctx(info)
        await context.user()
        try:
            return Order.of(await context.call("orders", "GET", f"/api/v1/orders/{_id(id)}"))
        except ApiError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise

    @strawberry.field(description="Every customer's orders, newest first (admins only).")
    async def orders(
        self,
        info: Info[Context, None],
        limit: int = 20,
        offset: int = 0,
        status: str | None = None,
    ) -> OrderPage:
        context = ctx(info)
        await context.admin()
        params: dict[str, str | int] = {**_page_args(limit, offset)}
        if status:
            params["status"] = status
        page = await context.call("orders", "GET", "/api/v1/orders", params=params)
        return OrderPage(items=[Order.of(o) for o in page["items"]], total=page["total"])

    @strawberry.field(description="Every user (admins only), each with their orders.")
    async def users(self, info: Info[Context, None], limit: int = 20, offset: int = 0) -> UserPage:
        context = ctx(info)
        await context.admin()
        page = await context.call("users", "GET", "/api/v1/users", params=_page_args(limit, offset))
        return UserPage(items=[User.of(u) for u in page["items"]], total=page["total"])


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def register(
        self, info: Info[Context, None], username: str, email: str, password: str
    ) -> User:
        body = {"username": username, "email": email, "password": password}
        return User.of(
            await ctx(info).backend.call("users", "POST", "/api/v1/users/register", json=body)
        )

    @strawberry.mutation
    async def login(self, info: Info[Context, None], username: str, password: str) -> Tokens:
        context = ctx(info)
        body = {"username": username, "password": password}
        tokens = await context.backend.call("users", "POST", "/api/v1/users/login", json=body)
        await _merge_cart(context, tokens["access_token"])
        return Tokens(
            access_token=tokens["access_token"],
            expires_in=tokens["expires_in"],
            refresh_token=tokens.get("refresh_token"),
        )

    @strawberry.mutation(description="Revoke a login's refresh tokens.")
    async def logout(self, info: Info[Context, None], refresh_token: str) -> bool:
        body = {"refresh_token": refresh_token}
        await ctx(info).backend.call("users", "POST", "/api/v1/users/logout", json=body)
        return True

    @strawberry.mutation(
        description="Place one order: either lines, or productId and quantity (one line)."
        " The same idempotencyKey again returns the same order. Short stock is a CONFLICT whose"
        " extensions.errors name each short line (loc, productId, available)."
    )
    async def place_order(
        self,
        info: Info[Context, None],
        lines: list[OrderLineInput] | None = None,
        product_id: strawberry.ID | None = None,
        quantity: int | None = None,
        payment_method: PaymentMethod = PaymentMethod.CARD,
        idempotency_key: str | None = None,
    ) -> Order:
        context = ctx(info)
        await context.user()
        if (lines is None) == (product_id is None):
            raise ApiError("BAD_USER_INPUT", "Give either lines or productId, not both.")
        if lines is not None:
            if quantity is not None:
                raise ApiError("BAD_USER_INPUT", "quantity goes in each line with lines.")
            wanted = [(_id(line.product_id, "productId"), line.quantity) for line in lines]
            return await _place(context, wanted, payment_method, idempotency_key)
        if quantity is None:
            raise ApiError("BAD_USER_INPUT", "productId needs a quantity.")
        single = [(_id(strawberry.ID(str(product_id)), "productId"), quantity)]
        return await _place(context, single, payment_method, idempotency_key)

    @strawberry.mutation(
        description=f"Add a product to the cart (at most {CART_MAX_LINES} products,"
        f" {CART_MAX_QUANTITY} of one); NOT_FOUND for a product that does not exist."
    )
    async def add_to_cart(
        self, info: Info[Context, None], product_id: strawberry.ID, quantity: int = 1
    ) -> Cart:
        context = ctx(info)
        wanted = _id(product_id, "productId")
        if await context.products.load(wanted) is None:
            raise ApiError("NOT_FOUND", "No such product.")
        store = await context.cart()
        cart = await store.update(lambda current: carts.added(current, wanted, quantity))
        return await _cart_view(context, cart, store)

    @strawberry.mutation(description="Set a cart line's quantity; 0 removes it.")
    async def set_cart_quantity(
        self, info: Info[Context, None], product_id: strawberry.ID, quantity: int
    ) -> Cart:
        context = ctx(info)
        wanted = _id(product_id, "productId")
        store = await context.cart()
        cart = await store.update(lambda current: carts.with_quantity(current, wanted, quantity))
        return await _cart_view(context, cart, store)

    @strawberry.mutation(description="Take a product out of the cart.")
    async def remove_from_cart(self, info: Info[Context, None], product_id: strawberry.ID) -> Cart:
        context = ctx(info)
        wanted = _id(product_id, "productId")
        store = await context.cart()
        cart = await store.update(lambda c: carts.without(c, wanted))
        return await _cart_view(context, cart, store)

    @strawberry.mutation(
        description="Place one order for the whole cart, paid once; the ordered lines leave the"
        " cart. On any refusal (short stock, a decline) the cart keeps everything. Retried"
        " with the same idempotencyKey (within a day), it answers the same order, even once"
        " the cart is empty."
    )
    async def checkout(
        self,
        info: Info[Context, None],
        payment_method: PaymentMethod = PaymentMethod.CARD,
        idempotency_key: str | None = None,
    ) -> Order:
        context = ctx(info)
        await context.user()
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
            raise ApiError(
                "BAD_USER_INPUT", f"idempotencyKey must be 1-{IDEMPOTENCY_KEY_MAX} characters."
            )
        store = await context.cart()
        view = await _cart_view(context, await store.load(), store)
        wanted = [(int(line.product.id), line.quantity) for line in view.lines]
        if wanted and idempotency_key:
            await store.remember_checkout(idempotency_key, wanted)
        elif idempotency_key:  # a retry whose first try emptied the cart: the same order again
            wanted = await store.recall_checkout(idempotency_key) or []
        if not wanted:
            raise CartEmpty("The cart is empty.")
        order = await _place(context, wanted, payment_method, idempotency_key)
        placed = [product_id for product_id, _ in wanted]
        await store.update(lambda cart: carts.without(cart, *placed))
        return order

    @strawberry.mutation
    async def cancel_order(self, info: Info[Context, None], id: strawberry.ID) -> Order:
        context = ctx(info)
        await context.user()
        return Order.of(await context.call("orders", "POST", f"/api/v1/orders/{_id(id)}/cancel"))

    @strawberry.mutation(description="Admins: ship, deliver or cancel an order.")
    async def change_order_status(
        self, info: Info[Context, None], id: strawberry.ID, status: OrderStatusChange
    ) -> Order:
        context = ctx(info)
        await context.admin()
        order = await context.call(
            "orders", "PATCH", f"/api/v1/orders/{_id(id)}/status", json={"status": status.value}
        )
        return Order.of(order)

    @strawberry.mutation(description="Admins: add a product.")
    async def create_product(
        self, info: Info[Context, None], product: ProductInput, stock: int = 0
    ) -> Product:
        context = ctx(info)
        await context.admin()
        body = {**_product_body(product), "stock": stock}
        return Product.of(await context.call("products", "POST", "/api/v1/products", json=body))

    @strawberry.mutation(description="Admins: replace a product's editable fields.")
    async def update_product(
        self, info: Info[Context, None], id: strawberry.ID, product: ProductInput
    ) -> Product:
        context = ctx(info)
        await context.admin()
        path = f"/api/v1/products/{_id(id)}"
        return Product.of(await context.call("products", "PUT", path, json=_product_body(product)))

    @strawberry.mutation(description="Admins: set a product's stock.")
    async def set_stock(self, info: Info[Context, None], id: strawberry.ID, stock: int) -> Product:
        context = ctx(info)
        await context.admin()
        path = f"/api/v1/products/{_id(id)}/stock"
        return Product.of(await context.call("products", "PATCH", path, json={"stock": stock}))

    @strawberry.mutation(description="Admins: delete a product.")
    async def delete_product(self, info: Info[Context, None], id: strawberry.ID) -> bool:
        context = ctx(info)
        await context.admin()
        await context.call("products", "DELETE", f"/api/v1/products/{_id(id)}")
        return True


async def _merge_cart(context: Context, access_token: str) -> None:
    """At login, an anonymous cookie cart joins the customer's server cart. A cart that cannot
    be reached now stays in the cookie (merged at the next login); the login goes on."""
    try:
        principal = await context.verifier.verify(access_token)
    except Unauthorized:
        return
    if principal.user_id is None:
        return
    try:
        await context.carts.merge_at_login(user_id=principal.user_id, cookie=context.cookie_cart)
    except CartError as exc:
        log.warning("cart not merged at login", reason=exc.message)


async def _place(
    context: Context,
    lines: list[tuple[int, int]],
    payment_method: PaymentMethod,
    idempotency_key: str | None,
) -> Order:
    """One order for these (product id, quantity) lines; a one-line order keeps the seed's
    body. A short-stock refusal's errors gain the productId of the line they name."""
    body: JsonObject = {"payment_method": payment_method.value}
    if len(lines) == 1:
        body |= {"product_id": lines[0][0], "quantity": lines[0][1]}
    else:
        body["lines"] = [{"product_id": p, "quantity": q} for p, q in lines]
    try:
        order = await context.call(
            "orders", "POST", "/api/v1/orders", json=body, idempotency_key=idempotency_key
        )
    except ApiError as exc:
        for error in exc.details.get("errors") or []:
            loc = error.get("loc") if isinstance(error, dict) else None
            if isinstance(loc, list) and "available" in error:
                index = loc[2] if len(loc) > 2 and loc[1] == "lines" else 0
                if isinstance(index, int) and 0 <= index < len(lines):
                    error["productId"] = str(lines[index][0])
        raise
    return Order.of(order)


def _product_body(product: ProductInput) -> JsonObject:
    return {
        "name": product.name,
        "price": product.price,
        "description": product.description,
        "category": product.category or None,
    }


@dataclass(frozen=True)
class Limits:
    max_depth: int = 8
    max_cost: int = 5000
    introspection: bool = True


class ShopSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # A refusal by a service or the limits is the caller's answer, not ours to log with a
        # trace; anything else is a bug, logged in full (and masked in the response).
        unexpected = [
            e
            for e in errors
            if error_code(e) == "UNAVAILABLE"
            and not isinstance(e.original_error, ApiError | CartError)
        ]
        if unexpected:
            super().process_errors(unexpected, execution_context)


def build_schema(limits: Limits = Limits()) -> strawberry.Schema:
    rule = cost_rule(limits.max_cost)
    extensions: list[Any] = [
        lambda: QueryDepthLimiter(max_depth=limits.max_depth),
        lambda: AddValidationRules([rule]),
    ]
    if not limits.introspection:
        extensions.append(DisableIntrospection)
    return ShopSchema(query=Query, mutation=Mutation, extensions=extensions)


# The schema with its default limits: what schema.graphql is exported from.
schema = build_schema()


def error_code(error: GraphQLError) -> str:
    """The API.md code of an error: the service's, BAD_USER_INPUT for a query the schema or the
    limits refuse, and UNAVAILABLE (message masked) for anything unexpected."""
    original = error.original_error
    if isinstance(original, ApiError | CartError):
        return original.code
    # A variable the schema refuses (an enum's unknown value) comes wrapped in its own error.
    if original is None or isinstance(original, GraphQLError):
        return "BAD_USER_INPUT"
    return "UNAVAILABLE"
