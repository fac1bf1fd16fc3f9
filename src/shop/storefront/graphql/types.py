"""The GraphQL object types, enums and inputs, each resolving its nested fields through the
request's dataloaders (``context.Context``)."""

from __future__ import annotations

import enum
from decimal import Decimal

import strawberry
from strawberry.types import Info

from shop.common.types import format_money
from shop.storefront import cart as carts
from shop.storefront.cart import CartStore
from shop.storefront.clients import (
    OrderJson,
    OrderLineJson,
    PaymentJson,
    ProductJson,
    UserJson,
)
from shop.storefront.graphql.context import Context, ctx, page_args
from shop.storefront.limits import CART_MAX_LINES, CART_MAX_QUANTITY


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


async def cart_view(context: Context, cart: carts.Cart, store: CartStore) -> Cart:
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


def catalogue_args(
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
            "orders", "GET", f"/api/v1/orders/user/{self.id}", params=page_args(limit, offset)
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
