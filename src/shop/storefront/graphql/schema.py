"""The GraphQL root operations (``Query``, ``Mutation``), the schema's limits, and the error
codes of API.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules, DisableIntrospection, QueryDepthLimiter
from strawberry.types import Info

from shop.common.errors import Unauthorized
from shop.common.types import IDEMPOTENCY_KEY_MAX, JsonObject
from shop.storefront import cart as carts
from shop.storefront.cart import CartEmpty, CartError
from shop.storefront.clients import (
    ApiError,
)
from shop.storefront.graphql.context import Context, ctx, log, page_args, parse_id
from shop.storefront.graphql.types import (
    Cart,
    Category,
    Order,
    OrderLineInput,
    OrderPage,
    OrderStatusChange,
    PaymentMethod,
    Product,
    ProductInput,
    ProductPage,
    ProductSort,
    Tokens,
    User,
    UserPage,
    cart_view,
    catalogue_args,
)
from shop.storefront.limits import CART_MAX_LINES, CART_MAX_QUANTITY, cost_rule


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
            **page_args(limit, offset),
            **catalogue_args(q, category, min_price, max_price, in_stock, sort),
        }
        page = await ctx(info).call("products", "GET", "/api/v1/products", params=params)
        return ProductPage(items=[Product.of(p) for p in page["items"]], total=page["total"])

    @strawberry.field(description="Every category with its number of products, by name.")
    async def categories(self, info: Info[Context, None]) -> list[Category]:
        found = await ctx(info).call("products", "GET", "/api/v1/categories")
        return [Category(name=c["name"], count=c["count"]) for c in found["items"]]

    @strawberry.field
    async def product(self, info: Info[Context, None], id: strawberry.ID) -> Product | None:
        found = await ctx(info).products.load(parse_id(id))
        return None if found is None else Product.of(found)

    @strawberry.field(
        description="The caller's cart: on the server for a signed-in customer (the same on"
        " every device), else in this browser's cookie."
    )
    async def cart(self, info: Info[Context, None]) -> Cart:
        context = ctx(info)
        store = await context.cart()
        return await cart_view(context, await store.load(), store)

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
            return Order.of(await context.call("orders", "GET", f"/api/v1/orders/{parse_id(id)}"))
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
        params: dict[str, str | int] = {**page_args(limit, offset)}
        if status:
            params["status"] = status
        page = await context.call("orders", "GET", "/api/v1/orders", params=params)
        return OrderPage(items=[Order.of(o) for o in page["items"]], total=page["total"])

    @strawberry.field(description="Every user (admins only), each with their orders.")
    async def users(self, info: Info[Context, None], limit: int = 20, offset: int = 0) -> UserPage:
        context = ctx(info)
        await context.admin()
        page = await context.call("users", "GET", "/api/v1/users", params=page_args(limit, offset))
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
            wanted = [(parse_id(line.product_id, "productId"), line.quantity) for line in lines]
            return await _place(context, wanted, payment_method, idempotency_key)
        if quantity is None:
            raise ApiError("BAD_USER_INPUT", "productId needs a quantity.")
        single = [(parse_id(strawberry.ID(str(product_id)), "productId"), quantity)]
        return await _place(context, single, payment_method, idempotency_key)

    @strawberry.mutation(
        description=f"Add a product to the cart (at most {CART_MAX_LINES} products,"
        f" {CART_MAX_QUANTITY} of one); NOT_FOUND for a product that does not exist."
    )
    async def add_to_cart(
        self, info: Info[Context, None], product_id: strawberry.ID, quantity: int = 1
    ) -> Cart:
        context = ctx(info)
        wanted = parse_id(product_id, "productId")
        if await context.products.load(wanted) is None:
            raise ApiError("NOT_FOUND", "No such product.")
        store = await context.cart()
        cart = await store.update(lambda current: carts.added(current, wanted, quantity))
        return await cart_view(context, cart, store)

    @strawberry.mutation(description="Set a cart line's quantity; 0 removes it.")
    async def set_cart_quantity(
        self, info: Info[Context, None], product_id: strawberry.ID, quantity: int
    ) -> Cart:
        context = ctx(info)
        wanted = parse_id(product_id, "productId")
        store = await context.cart()
        cart = await store.update(lambda current: carts.with_quantity(current, wanted, quantity))
        return await cart_view(context, cart, store)

    @strawberry.mutation(description="Take a product out of the cart.")
    async def remove_from_cart(self, info: Info[Context, None], product_id: strawberry.ID) -> Cart:
        context = ctx(info)
        wanted = parse_id(product_id, "productId")
        store = await context.cart()
        cart = await store.update(lambda c: carts.without(c, wanted))
        return await cart_view(context, cart, store)

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
        view = await cart_view(context, await store.load(), store)
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
        return Order.of(
            await context.call("orders", "POST", f"/api/v1/orders/{parse_id(id)}/cancel")
        )

    @strawberry.mutation(description="Admins: ship, deliver or cancel an order.")
    async def change_order_status(
        self, info: Info[Context, None], id: strawberry.ID, status: OrderStatusChange
    ) -> Order:
        context = ctx(info)
        await context.admin()
        order = await context.call(
            "orders",
            "PATCH",
            f"/api/v1/orders/{parse_id(id)}/status",
            json={"status": status.value},
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
        path = f"/api/v1/products/{parse_id(id)}"
        return Product.of(await context.call("products", "PUT", path, json=_product_body(product)))

    @strawberry.mutation(description="Admins: set a product's stock.")
    async def set_stock(self, info: Info[Context, None], id: strawberry.ID, stock: int) -> Product:
        context = ctx(info)
        await context.admin()
        path = f"/api/v1/products/{parse_id(id)}/stock"
        return Product.of(await context.call("products", "PATCH", path, json={"stock": stock}))

    @strawberry.mutation(description="Admins: delete a product.")
    async def delete_product(self, info: Info[Context, None], id: strawberry.ID) -> bool:
        context = ctx(info)
        await context.admin()
        await context.call("products", "DELETE", f"/api/v1/products/{parse_id(id)}")
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
