"""The GraphQL request's context: the caller, once verified, and the dataloaders that batch
every nested read of a request (see the package's docstring); the argument checks the
resolvers share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from shop.common.auth import Principal, TokenVerifier
from shop.common.errors import Unauthorized
from shop.common.logging import get_logger
from shop.common.types import MAX_ID
from shop.storefront.cart import Carts, CartStore, CookieCartStore
from shop.storefront.clients import (
    ApiError,
    Backend,
    PaymentJson,
    ProductJson,
)
from shop.storefront.limits import MAX_PAGE

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


def parse_id(value: strawberry.ID, what: str = "id") -> int:
    if not str(value).isdigit() or not 1 <= int(value) <= MAX_ID:
        raise ApiError("BAD_USER_INPUT", f"{what} must be a positive integer.")
    return int(value)


def page_args(limit: int, offset: int) -> dict[str, int]:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ApiError("BAD_USER_INPUT", f"limit must be 1-{MAX_PAGE} and offset at least 0.")
    return {"limit": limit, "offset": offset}


def ctx(info: Info[Context, None]) -> Context:
    return info.context
