"""The published GraphQL schema: a change to it must be deliberate."""

from __future__ import annotations

from pathlib import Path

from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

from shop.storefront.graphql import schema
from shop.storefront.limits import selection_cost

EXPORTED = Path(__file__).resolve().parents[2] / "src/shop/storefront/schema.graphql"
EXPORT_COMMAND = "shop export-schema"


def test_schema_matches_the_exported_file() -> None:
    assert schema.as_str() + "\n" == EXPORTED.read_text(), (
        f"The GraphQL schema changed. If that is intended, run `{EXPORT_COMMAND}` and commit"
        " src/shop/storefront/schema.graphql (clients build against it)."
    )


def test_schema_has_the_contract_minimum() -> None:
    text = EXPORTED.read_text()
    for line in (
        "products(limit: Int! = 20, offset: Int! = 0, category: String = null, q: String = null,"
        " minPrice: String = null, maxPrice: String = null, inStock: Boolean! = false,"
        " sort: ProductSort = null): ProductPage!",
        "categories: [Category!]!",
        "product(id: ID!): Product",
        "me: User",
        "order(id: ID!): Order",
        "cancelOrder(id: ID!): Order!",
        "placeOrder(lines: [OrderLineInput!] = null, productId: ID = null, quantity: Int = null,"
        " paymentMethod: PaymentMethod! = CARD, idempotencyKey: String = null): Order!",
        "input OrderLineInput {\n  productId: ID!\n  quantity: Int!\n}",
        "lines: [OrderLine!]!",
        "cart: Cart!",
        "addToCart(productId: ID!, quantity: Int! = 1): Cart!",
        "setCartQuantity(productId: ID!, quantity: Int!): Cart!",
        "removeFromCart(productId: ID!): Cart!",
        "checkout(paymentMethod: PaymentMethod! = CARD, idempotencyKey: String = null): Order!",
        "refreshToken: String",
    ):
        assert line in text, line


def _cost(query: str) -> int:
    document = parse(query)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return selection_cost(operation.selection_set, fragments)


def test_cost_multiplies_by_page_size() -> None:
    assert _cost("{ product(id: 1) { name } }") == 2
    assert _cost("{ products(limit: 5) { items { name } } }") == 1 + 5 * 2
    assert _cost("{ products { items { name } } }") == 1 + 20 * 2  # the default page
    assert _cost("query ($n: Int) { products(limit: $n) { total } }") == 1 + 100 * 1
    nested = "{ users(limit: 10) { items { orders(limit: 10) { items { id } } } } }"
    assert _cost(nested) == 1 + 10 * (1 + 1 + 10 * 2)
    spread = "fragment F on ProductPage { items { name } } { products(limit: 2) { ...F } }"
    assert _cost(spread) == 1 + 2 * 2
