"""The cart: what a visitor means to buy, product id -> quantity, in the order it was added.

Where it lives (a ``CartStore``, shared by the pages and GraphQL):

* a signed-in customer, with Redis configured (``SHOP_REDIS_URL``): one hash per user,
  ``<prefix><user id>`` (product id -> quantity), kept ``ttl`` (30 days) after its last change.
  Every device the customer signs in on sees and changes the same cart.
* anyone else (a visitor not signed in, or no Redis configured): the ``shop_cart`` cookie, in
  that browser only. At login an anonymous cookie cart merges into the customer's Redis cart
  (quantities added, within the bounds) and the cookie is dropped.

The bounds (``limits.CART_MAX_LINES``, ``limits.CART_MAX_QUANTITY``) are enforced here, once: a
change that would break them is a ``CartRefused`` (GraphQL ``BAD_USER_INPUT``); a merge never
fails, it keeps what fits. While a configured Redis does not answer, a signed-in customer's cart
is a ``CartUnavailable`` (``UNAVAILABLE``): falling back to a cookie then would split the cart.

Errors: ``CartError`` is the root; ``code`` is the GraphQL error code of API.md.
"""

from __future__ import annotations

import asyncio
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError
from starlette.responses import Response

from shop.storefront.limits import CART_MAX_LINES, CART_MAX_QUANTITY

Cart = dict[int, int]
COOKIE = "shop_cart"
THIRTY_DAYS = 30 * 24 * 3600


class CartError(Exception):
    """The root of the cart's errors; ``code`` is the GraphQL error code."""

    code: ClassVar[str] = "UNAVAILABLE"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CartRefused(CartError):
    """A change the cart's bounds do not allow, or of a product it does not hold."""

    code = "BAD_USER_INPUT"


class CartEmpty(CartRefused):
    """A checkout of an empty cart (a second submit finds the first one's order placed)."""


class CartUnavailable(CartError):
    """The server-side cart cannot be reached now."""

    code = "UNAVAILABLE"


# --- the rules, without I/O ------------------------------------------------------------------


def _check_quantity(quantity: int, *, least: int) -> None:
    if not least <= quantity <= CART_MAX_QUANTITY:
        raise CartRefused(f"The quantity must be {least}-{CART_MAX_QUANTITY}.")


def added(cart: Cart, product_id: int, quantity: int) -> Cart:
    """The cart with ``quantity`` more of the product."""
    _check_quantity(quantity, least=1)
    held = cart.get(product_id, 0)
    if held + quantity > CART_MAX_QUANTITY:
        raise CartRefused(
            f"At most {CART_MAX_QUANTITY} of one product fit in a cart; it holds {held} already."
        )
    if not held and len(cart) >= CART_MAX_LINES:
        raise CartRefused(f"A cart holds at most {CART_MAX_LINES} different products.")
    return {**cart, product_id: held + quantity}


def with_quantity(cart: Cart, product_id: int, quantity: int) -> Cart:
    """The cart with the product's quantity set; 0 removes it."""
    _check_quantity(quantity, least=0)
    if product_id not in cart:
        raise CartRefused("That product is not in the cart.")
    if quantity == 0:
        return without(cart, product_id)
    return {**cart, product_id: quantity}


def without(cart: Cart, *product_ids: int) -> Cart:
    """The cart without these products (absent ones are ignored)."""
    return {p: q for p, q in cart.items() if p not in product_ids}


def merged(cart: Cart, other: Cart) -> Cart:
    """``other``'s lines added to ``cart``: quantities summed up to the most of one product,
    new products while there is room for them; what does not fit is left out."""
    result = dict(cart)
    for product_id, quantity in other.items():
        if product_id in result:
            result[product_id] = min(CART_MAX_QUANTITY, result[product_id] + quantity)
        elif len(result) < CART_MAX_LINES:
            result[product_id] = min(CART_MAX_QUANTITY, quantity)
    return result


def parsed(raw: str | None) -> Cart:
    """A cart from the cookie's JSON; anything malformed is dropped, bounds applied."""
    try:
        data = json.loads(raw or "{}")
        items = data.items() if isinstance(data, dict) else ()
        lines = [(int(k), int(v)) for k, v in items]
    except (ValueError, TypeError):
        return {}
    cart: Cart = {}
    for product_id, quantity in lines:
        if product_id >= 1 and quantity >= 1:
            cart = merged(cart, {product_id: quantity})
    return cart


def serialised(cart: Cart) -> str:
    return json.dumps({str(p): q for p, q in cart.items()}, separators=(",", ":"))


# --- where it lives --------------------------------------------------------------------------


class CartStore(ABC):
    """One visitor's cart. ``update`` applies a change atomically and returns the new cart."""

    where: ClassVar[str]

    @abstractmethod
    async def load(self) -> Cart: ...

    @abstractmethod
    async def update(self, change: Callable[[Cart], Cart]) -> Cart: ...

    async def clear(self) -> None:
        await self.update(lambda _: {})

    async def remember_checkout(self, key: str, lines: list[tuple[int, int]]) -> None:
        """Keep what a checkout with this idempotency key ordered, so that a retry after its
        answer was lost (the cart emptied meanwhile) sends the same order again. The cookie
        keeps none: a retry there finds the cart empty."""
        return

    async def recall_checkout(self, key: str) -> list[tuple[int, int]] | None:
        """The lines of an earlier checkout with this key; None if unknown here."""
        return None


class CookieCartStore(CartStore):
    """The cart in the browser's cookie; a change is written to the response by ``apply``."""

    where = "cookie"

    def __init__(self, raw: str | None, *, secure: bool) -> None:
        self._cart = parsed(raw)
        self._secure = secure
        self.changed = False

    def held(self) -> Cart:
        """The cart as it is now (no I/O: it came with the request)."""
        return dict(self._cart)

    async def load(self) -> Cart:
        return dict(self._cart)

    async def update(self, change: Callable[[Cart], Cart]) -> Cart:
        self._cart = change(dict(self._cart))
        self.changed = True
        return dict(self._cart)

    def apply(self, response: Response) -> None:
        """Write a changed cart to the response (an empty one deletes the cookie)."""
        if not self.changed:
            return
        if self._cart:
            response.set_cookie(
                COOKIE,
                serialised(self._cart),
                httponly=True,
                samesite="lax",
                secure=self._secure,
                path="/",
            )
        else:
            response.delete_cookie(COOKIE, path="/")


class RedisCartStore(CartStore):
    """A signed-in customer's cart: one Redis hash, changed in a WATCH/MULTI transaction so a
    phone and a laptop changing it at once both count."""

    where = "redis"
    ATTEMPTS = 20  # optimistic retries before giving up on a hotly contended cart
    CHECKOUT_SECONDS = 24 * 3600  # how long a checkout can be retried by its key

    def __init__(self, client: Redis, key: str, *, ttl_seconds: int) -> None:
        self._redis, self._key, self._ttl = client, key, ttl_seconds

    async def load(self) -> Cart:
        try:
            raw = await self._redis.hgetall(self._key)
        except (RedisError, OSError):
            raise _unavailable() from None
        return _decoded(raw)

    async def update(self, change: Callable[[Cart], Cart]) -> Cart:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for attempt in range(self.ATTEMPTS):
                    try:
                        await pipe.watch(self._key)
                        cart = change(_decoded(await pipe.hgetall(self._key)))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.delete(self._key)
                        if cart:
                            pipe.hset(self._key, mapping={str(p): q for p, q in cart.items()})
                            pipe.expire(self._key, self._ttl)
                        await pipe.execute()
                        return cart
                    except WatchError:  # changed meanwhile: read it again, after a short pause
                        await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311
        except (RedisError, OSError):
            raise _unavailable() from None
        raise CartUnavailable("The cart is being changed elsewhere; try again.")

    def _checkout_key(self, key: str) -> str:
        return f"{self._key}:checkout:{key}"

    async def remember_checkout(self, key: str, lines: list[tuple[int, int]]) -> None:
        try:
            await self._redis.set(
                self._checkout_key(key), json.dumps(lines), ex=self.CHECKOUT_SECONDS
            )
        except (RedisError, OSError):
            raise _unavailable() from None

    async def recall_checkout(self, key: str) -> list[tuple[int, int]] | None:
        try:
            raw = await self._redis.get(self._checkout_key(key))
        except (RedisError, OSError):
            raise _unavailable() from None
        if raw is None:
            return None
        return [(int(p), int(q)) for p, q in json.loads(raw)]


def _unavailable() -> CartUnavailable:
    return CartUnavailable("Your cart cannot be reached right now; try again in a moment.")


def _decoded(raw: dict[Any, Any]) -> Cart:
    cart: Cart = {}
    for key, value in raw.items():
        try:
            cart[int(key)] = int(value)
        except (TypeError, ValueError):
            continue  # not written by this module: ignored
    return cart


class Carts:
    """The app's carts: Redis for signed-in customers when configured, else the cookie."""

    def __init__(
        self,
        client: Redis | None,
        *,
        ttl_seconds: int = THIRTY_DAYS,
        prefix: str = "shop:cart:",
    ) -> None:
        self._redis, self._ttl, self._prefix = client, ttl_seconds, prefix

    @classmethod
    def from_url(cls, url: str | None, **options: Any) -> Carts:
        if not url:
            return cls(None, **options)
        return cls(Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5), **options)

    @property
    def mode(self) -> str:
        """``redis`` or ``cookie``: where a signed-in customer's cart lives."""
        return "cookie" if self._redis is None else "redis"

    def key(self, user_id: int) -> str:
        return f"{self._prefix}{user_id}"

    def of(self, *, user_id: int | None, cookie: CookieCartStore) -> CartStore:
        """The visitor's cart: their Redis cart when signed in and configured, else the cookie."""
        if self._redis is None or user_id is None:
            return cookie
        return RedisCartStore(self._redis, self.key(user_id), ttl_seconds=self._ttl)

    async def merge_at_login(self, *, user_id: int, cookie: CookieCartStore) -> None:
        """Move an anonymous cookie cart into the customer's server cart."""
        if self._redis is None:
            return  # the cookie is the cart: nothing to move
        anonymous = await cookie.load()
        if not anonymous:
            return
        await self.of(user_id=user_id, cookie=cookie).update(lambda cart: merged(cart, anonymous))
        await cookie.clear()

    async def available(self) -> bool:
        """Whether the configured Redis answers now (for the start-up log)."""
        if self._redis is None:
            return False
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
