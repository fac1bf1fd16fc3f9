from __future__ import annotations

from pydantic import Field

from shop.common.settings import ServiceSettings


class StorefrontSettings(ServiceSettings):
    """The BFF has no database of its own: it reads and writes through the four services."""

    service_name: str = "storefront"
    port: int = 5004
    users_url: str = "http://127.0.0.1:5000"
    products_url: str = "http://127.0.0.1:5001"
    orders_url: str = "http://127.0.0.1:5002"
    payments_url: str = "http://127.0.0.1:5003"
    jwks_url: str | None = "http://127.0.0.1:5000/.well-known/jwks.json"
    # Query limits (shop.storefront.limits): nesting depth, and the estimated number of
    # objects a query may ask for (each list multiplies its children by its page size).
    graphql_max_depth: int = Field(default=8, ge=2)
    graphql_max_cost: int = Field(default=5000, ge=10)
    # Introspection lets tools read the schema; off by default in production, where the
    # published schema.graphql is the contract.
    graphql_introspection: bool | None = None
    # Signed-in customers' carts (shop.storefront.cart): in Redis when configured, one hash per
    # user kept cart_ttl_seconds after its last change; unset: every cart is a cookie.
    redis_url: str | None = None
    cart_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    cart_prefix: str = "shop:cart:"

    @property
    def introspection(self) -> bool:
        if self.graphql_introspection is None:
            return not self.is_production
        return self.graphql_introspection
