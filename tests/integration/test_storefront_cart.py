"""The cart over GraphQL against the real services and a real Redis: one cart per customer on
every device, an anonymous cookie cart merged at login, the bounds of limits.py, and a checkout
that places one order for the whole cart."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from shop.common.logging import configure_logging
from shop.devtools.redis import find_redis
from shop.storefront.cart import THIRTY_DAYS, Carts, CookieCartStore, added
from shop.storefront.limits import CART_MAX_LINES, CART_MAX_QUANTITY
from tests.integration.conftest import Platform
from tests.integration.test_storefront_graphql import Storefront, _customer, _storefront, codes

CART = "{ cart { total count lines { quantity lineTotal product { id name } } } }"
ADD = (
    "mutation ($p: ID!, $q: Int!) { addToCart(productId: $p, quantity: $q)"
    " { count total lines { quantity product { id } } } }"
)
SET = "mutation ($p: ID!, $q: Int!) { setCartQuantity(productId: $p, quantity: $q) { count } }"
REMOVE = "mutation ($p: ID!) { removeFromCart(productId: $p) { count } }"
CHECKOUT = (
    "mutation ($k: String) { checkout(paymentMethod: PAYPAL, idempotencyKey: $k)"
    " { id status totalPrice lines { name quantity unitPrice lineTotal priced }"
    " payment { status amount } } }"
)
LOGIN = (
    'mutation ($u: String!) { login(username: $u, password: "correct horse battery")'
    " { accessToken } }"
)


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = find_redis()
    if url is None:
        pytest.skip("no Redis and no redis-server to start")
    return url


@pytest.fixture
def prefix() -> str:
    return f"shop:test-cart:{secrets.token_hex(4)}:"


@pytest.fixture
async def redis(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def shop(
    platform: Platform, tmp_path: Path, redis_url: str, prefix: str
) -> AsyncIterator[Storefront]:
    async for storefront in _storefront(
        platform, tmp_path, redis_url=redis_url, cart_prefix=prefix
    ):
        yield storefront


@pytest.fixture
def startup_log(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """The captured output; afterwards the logs go to the real stdout again (the storefront's
    lifespan points the root handler at whatever stdout is while it starts)."""
    yield capsys
    with capsys.disabled():
        configure_logging(service="tests", pod="tests")


def _cookie_cart(shop: Storefront) -> dict[str, int]:
    raw = shop.client.cookies.get("shop_cart")
    assert raw is not None
    return dict(json.loads(SimpleCookie(f"shop_cart={raw}")["shop_cart"].value))


async def _user_id(shop: Storefront, token: str) -> int:
    return int((await shop.gql("{ me { id } }", token))["data"]["me"]["id"])


async def test_a_customers_cart_is_the_same_on_two_devices_and_kept_thirty_days(
    shop: Storefront, make_product: Callable[..., Any], redis: aioredis.Redis, prefix: str
) -> None:
    phone = await _customer(shop, "cart_two_devices")
    laptop = (await shop.gql(LOGIN, u="cart_two_devices"))["data"]["login"]["accessToken"]
    assert laptop != phone  # two logins, as two devices have
    kettle = await make_product(name="Kettle", price="19.90")
    mugs = await make_product(name="Mug", price="4.25")

    await shop.gql(ADD, phone, p=str(kettle["id"]), q=1)
    added = await shop.gql(ADD, laptop, p=str(mugs["id"]), q=2)
    assert added["data"]["addToCart"]["count"] == 3, added
    on_phone = (await shop.gql(CART, phone))["data"]["cart"]
    assert on_phone["total"] == "28.40"
    assert [
        (line["product"]["name"], line["quantity"], line["lineTotal"]) for line in on_phone["lines"]
    ] == [("Kettle", 1, "19.90"), ("Mug", 2, "8.50")]

    assert (await shop.gql(SET, phone, p=str(mugs["id"]), q=5))["data"]["setCartQuantity"] == {
        "count": 6
    }
    assert (await shop.gql(CART, laptop))["data"]["cart"]["total"] == "41.15"
    await shop.gql(REMOVE, laptop, p=str(kettle["id"]))
    assert (await shop.gql(CART, phone))["data"]["cart"]["count"] == 5

    key = f"{prefix}{await _user_id(shop, phone)}"
    assert await redis.hgetall(key) == {str(mugs["id"]): "5"}
    assert THIRTY_DAYS - 60 < await redis.ttl(key) <= THIRTY_DAYS
    assert await shop.gql(SET, phone, p=str(mugs["id"]), q=0)  # 0 removes the last line
    assert await redis.exists(key) == 0


async def test_adding_checks_the_product_and_the_bounds(
    shop: Storefront, make_product: Callable[..., Any]
) -> None:
    token = await _customer(shop, "cart_bounds")
    unknown = await shop.gql(ADD, token, p="999999", q=1)
    assert codes(unknown) == ["NOT_FOUND"]
    assert codes(await shop.gql(ADD, token, p="abc", q=1)) == ["BAD_USER_INPUT"]

    one = await make_product(name="Pencil", price="0.50", stock=500)
    too_many = await shop.gql(ADD, token, p=str(one["id"]), q=CART_MAX_QUANTITY + 1)
    assert codes(too_many) == ["BAD_USER_INPUT"]
    assert f"{CART_MAX_QUANTITY}" in too_many["errors"][0]["message"]
    assert codes(await shop.gql(ADD, token, p=str(one["id"]), q=0)) == ["BAD_USER_INPUT"]
    full = await shop.gql(ADD, token, p=str(one["id"]), q=CART_MAX_QUANTITY)
    assert full["data"]["addToCart"]["count"] == CART_MAX_QUANTITY
    assert codes(await shop.gql(ADD, token, p=str(one["id"]), q=1)) == ["BAD_USER_INPUT"]
    over = await shop.gql(SET, token, p=str(one["id"]), q=CART_MAX_QUANTITY + 1)
    assert codes(over) == ["BAD_USER_INPUT"]
    absent = await shop.gql(SET, token, p="999999", q=1)
    assert codes(absent) == ["BAD_USER_INPUT"]

    for i in range(CART_MAX_LINES - 1):  # the cart holds one line already
        product = await make_product(name=f"Line {i}", price="1.00")
        assert "errors" not in await shop.gql(ADD, token, p=str(product["id"]), q=1)
    extra = await make_product(name="One too many", price="1.00")
    refused = await shop.gql(ADD, token, p=str(extra["id"]), q=1)
    assert codes(refused) == ["BAD_USER_INPUT"]
    assert f"{CART_MAX_LINES}" in refused["errors"][0]["message"]
    assert (await shop.gql(CART, token))["data"]["cart"]["count"] == (
        CART_MAX_QUANTITY + CART_MAX_LINES - 1
    )


async def test_an_anonymous_cart_merges_into_the_customers_at_login(
    shop: Storefront, make_product: Callable[..., Any], redis: aioredis.Redis, prefix: str
) -> None:
    token = await _customer(shop, "cart_merger")
    held = await make_product(name="Held", price="3.00")
    browsed = await make_product(name="Browsed", price="2.00")
    await shop.gql(ADD, token, p=str(held["id"]), q=2)  # on another device, earlier

    shop.client.cookies.clear()  # a fresh browser, not signed in
    await shop.gql(ADD, p=str(held["id"]), q=1)
    await shop.gql(ADD, p=str(browsed["id"]), q=4)
    assert _cookie_cart(shop) == {str(held["id"]): 1, str(browsed["id"]): 4}
    assert (await shop.gql(CART))["data"]["cart"]["count"] == 5  # anonymous: the cookie's

    login = await shop.gql(LOGIN, u="cart_merger")
    assert "errors" not in login, login
    assert shop.client.cookies.get("shop_cart") is None  # moved to the server
    merged = (await shop.gql(CART, token))["data"]["cart"]
    assert [(line["product"]["name"], line["quantity"]) for line in merged["lines"]] == [
        ("Held", 3),
        ("Browsed", 4),
    ]
    assert await redis.hgetall(f"{prefix}{await _user_id(shop, token)}") == {
        str(held["id"]): "3",
        str(browsed["id"]): "4",
    }


async def test_checkout_places_one_order_paid_once_and_empties_the_cart(
    shop: Storefront, make_product: Callable[..., Any], platform: Platform
) -> None:
    token = await _customer(shop, "cart_checkout")
    products = [
        await make_product(name=name, price=price, stock=10)
        for name, price in (("Tea", "4.00"), ("Pot", "21.50"), ("Cup", "3.25"))
    ]
    for product, quantity in zip(products, (3, 1, 2), strict=True):
        await shop.gql(ADD, token, p=str(product["id"]), q=quantity)

    shop.calls.clear()
    placed = await shop.gql(CHECKOUT, token, k="cart-checkout-1")
    order = placed["data"]["checkout"]
    assert order["status"] == "paid", placed
    assert order["totalPrice"] == "40.00"
    assert order["payment"] == {"status": "completed", "amount": "40.00"}
    assert [
        (line["name"], line["quantity"], line["unitPrice"], line["lineTotal"])
        for line in order["lines"]
    ] == [
        ("Tea", 3, "4.00", "12.00"),
        ("Pot", 1, "21.50", "21.50"),
        ("Cup", 2, "3.25", "6.50"),
    ]
    assert all(line["priced"] for line in order["lines"])
    posts = [r for service, r in shop.calls if service == "orders" and r.method == "POST"]
    assert len(posts) == 1  # one order, not one per line
    assert (await shop.gql(CART, token))["data"]["cart"]["count"] == 0

    user_id = await _user_id(shop, token)
    orders = await platform.orders.get(
        f"/api/v1/orders/user/{user_id}", headers=platform.token(user_id)
    )
    assert orders.json()["total"] == 1
    payments = await platform.payments.get(
        f"/api/v1/payments/order/{order['id']}", headers=platform.token(user_id)
    )
    assert payments.json()["amount"] == "40.00"
    for product, left in zip(products, (7, 9, 8), strict=True):
        stock = await platform.products.get(f"/api/v1/products/{product['id']}")
        assert stock.json()["stock"] == left
    again = await shop.gql(CHECKOUT, token, k="cart-checkout-1")  # a retry: the same order
    assert again["data"]["checkout"]["id"] == order["id"]
    assert codes(await shop.gql(CHECKOUT, token, k="cart-checkout-2")) == ["BAD_USER_INPUT"]


async def test_a_retried_checkout_answers_the_same_order_once_the_cart_is_empty(
    shop: Storefront, make_product: Callable[..., Any], platform: Platform
) -> None:
    """The answer to a checkout was lost (the cart emptied meanwhile): the retry with the same
    idempotency key gets the same order, and nothing is ordered or charged again."""
    token = await _customer(shop, "cart_retry")
    product = await make_product(name="Retried", price="8.00", stock=5)
    await shop.gql(ADD, token, p=str(product["id"]), q=2)
    first = (await shop.gql(CHECKOUT, token, k="cart-retry-1"))["data"]["checkout"]
    assert (await shop.gql(CART, token))["data"]["cart"]["lines"] == []

    again = await shop.gql(CHECKOUT, token, k="cart-retry-1")
    assert again["data"]["checkout"] == first
    user_id = await _user_id(shop, token)
    orders = await platform.orders.get(
        f"/api/v1/orders/user/{user_id}", headers=platform.token(user_id)
    )
    assert orders.json()["total"] == 1
    stock = await platform.products.get(f"/api/v1/products/{product['id']}")
    assert stock.json()["stock"] == 3
    assert codes(await shop.gql(CHECKOUT, token, k="cart-retry-2")) == ["BAD_USER_INPUT"]
    await shop.gql(ADD, token, p=str(product["id"]), q=1)
    for bad in ("", "k" * 256):  # the services' Idempotency-Key bounds, before anything is kept
        assert codes(await shop.gql(CHECKOUT, token, k=bad)) == ["BAD_USER_INPUT"]
    assert (await shop.gql(CART, token))["data"]["cart"]["count"] == 1


async def test_a_checkout_short_of_stock_names_the_line_and_keeps_the_cart(
    shop: Storefront, make_product: Callable[..., Any], platform: Platform
) -> None:
    token = await _customer(shop, "cart_short")
    plenty = await make_product(name="Plenty", price="1.00", stock=50)
    scarce = await make_product(name="Scarce", price="2.00", stock=1)
    await shop.gql(ADD, token, p=str(plenty["id"]), q=2)
    await shop.gql(ADD, token, p=str(scarce["id"]), q=3)

    refused = await shop.gql(CHECKOUT, token, k="cart-short-1")
    assert codes(refused) == ["CONFLICT"], refused
    short = refused["errors"][0]["extensions"]["errors"]
    assert [(e["loc"], e["productId"], e["available"]) for e in short] == [
        (["body", "lines", 1, "quantity"], str(scarce["id"]), 1)
    ]
    assert (await shop.gql(CART, token))["data"]["cart"]["count"] == 5  # kept, all of it

    # The service keeps the refused order as failed, never priced: GraphQL says so, and names
    # its lines from the products as they are now.
    failed = await shop.gql(
        "query ($id: ID!) { order(id: $id) { status totalPrice lines { name unitPrice"
        " lineTotal priced } } }",
        token,
        id=str(refused["errors"][0]["extensions"]["order_id"]),
    )
    assert failed["data"]["order"] == {
        "status": "failed",
        "totalPrice": "0.00",
        "lines": [
            {"name": "Plenty", "unitPrice": "1.00", "lineTotal": "0.00", "priced": False},
            {"name": "Scarce", "unitPrice": "2.00", "lineTotal": "0.00", "priced": False},
        ],
    }
    user_id = await _user_id(shop, token)
    payments = await platform.sql(
        "payments", "SELECT count(*) FROM payments WHERE user_id=$1", user_id
    )
    assert payments[0][0] == 0  # nothing charged
    for product, stock in ((plenty, 50), (scarce, 1)):
        found = await platform.products.get(f"/api/v1/products/{product['id']}")
        assert found.json()["stock"] == stock


async def test_place_order_takes_lines_or_one_product(
    shop: Storefront, make_product: Callable[..., Any]
) -> None:
    token = await _customer(shop, "cart_place")
    a = await make_product(name="A", price="1.00")
    b = await make_product(name="B", price="2.00")
    place = (
        "mutation ($l: [OrderLineInput!], $p: ID, $q: Int) { placeOrder(lines: $l,"
        " productId: $p, quantity: $q) { id status quantity product { name }"
        " lines { name quantity } } }"
    )
    shop.calls.clear()
    both = await shop.gql(
        place, token, l=[{"productId": str(a["id"]), "quantity": 1}], p=str(b["id"]), q=1
    )
    assert codes(both) == ["BAD_USER_INPUT"]
    assert codes(await shop.gql(place, token)) == ["BAD_USER_INPUT"]
    assert codes(await shop.gql(place, token, p=str(a["id"]))) == ["BAD_USER_INPUT"]
    assert [s for s, _ in shop.calls if s == "orders"] == []  # refused before any order call

    single = (await shop.gql(place, token, p=str(a["id"]), q=2))["data"]["placeOrder"]
    assert single["quantity"] == 2
    assert single["product"] == {"name": "A"}
    assert single["lines"] == [{"name": "A", "quantity": 2}]
    lines = [{"productId": str(a["id"]), "quantity": 1}, {"productId": str(b["id"]), "quantity": 3}]
    multi = (await shop.gql(place, token, l=lines))["data"]["placeOrder"]
    assert multi["status"] == "paid"
    assert multi["quantity"] == 4  # the sum of the lines'
    assert multi["product"] is None  # more than one line: see lines
    assert multi["lines"] == [{"name": "A", "quantity": 1}, {"name": "B", "quantity": 3}]


async def test_order_lines_cost_one_products_call_for_every_order(
    shop: Storefront, make_product: Callable[..., Any]
) -> None:
    token = await _customer(shop, "cart_batch")
    products = [await make_product(name=f"Batch {i}", price="1.00") for i in range(4)]
    place = "mutation ($l: [OrderLineInput!]) { placeOrder(lines: $l) { id } }"
    for first in range(3):  # three orders of two lines each, over four products
        lines = [{"productId": str(p["id"]), "quantity": 1} for p in products[first : first + 2]]
        assert "errors" not in await shop.gql(place, token, l=lines)

    shop.calls.clear()
    body = await shop.gql(
        "{ me { orders { items { lines { name unitPrice product { name stock } } } } } }", token
    )
    lines = [line for o in body["data"]["me"]["orders"]["items"] for line in o["lines"]]
    assert len(lines) == 6
    assert all(line["product"]["name"] == line["name"] for line in lines)
    assert [s for s, _ in shop.calls].count("products") == 1


async def test_without_redis_the_cart_is_the_cookie_and_start_up_says_so(
    platform: Platform,
    tmp_path: Path,
    make_product: Callable[..., Any],
    startup_log: pytest.CaptureFixture[str],
) -> None:
    async for shop in _storefront(platform, tmp_path):
        started = startup_log.readouterr().out
        assert "carts in cookies (SHOP_REDIS_URL unset)" in started
        token = await _customer(shop, "cart_cookie_only")
        product = await make_product(name="Cookie jar", price="6.00")
        added = await shop.gql(ADD, token, p=str(product["id"]), q=2)
        assert added["data"]["addToCart"]["count"] == 2
        assert _cookie_cart(shop) == {str(product["id"]): 2}
        assert (await shop.gql(CART, token))["data"]["cart"]["total"] == "12.00"


async def test_start_up_says_where_the_carts_are(
    platform: Platform, tmp_path: Path, redis_url: str, startup_log: pytest.CaptureFixture[str]
) -> None:
    async for _ in _storefront(platform, tmp_path, redis_url=redis_url):
        assert "carts in Redis" in startup_log.readouterr().out
    async for _ in _storefront(platform, tmp_path, redis_url="redis://127.0.0.1:1/0"):
        assert "cart Redis unreachable" in startup_log.readouterr().out


async def test_changes_from_many_devices_at_once_all_count(
    redis_url: str, redis: aioredis.Redis, prefix: str
) -> None:
    carts = Carts.from_url(redis_url, prefix=prefix)
    anonymous = CookieCartStore(None, secure=False)
    devices = [carts.of(user_id=42, cookie=anonymous) for _ in range(8)]
    try:
        await asyncio.gather(
            *(
                device.update(lambda cart, p=product: added(cart, p, 1))
                for product in range(1, 21)
                for device in devices[product % 8 : product % 8 + 1]
            ),
            *(devices[0].update(lambda cart: added(cart, 100, 1)) for _ in range(10)),
        )
        assert await devices[3].load() == {**dict.fromkeys(range(1, 21), 1), 100: 10}
    finally:
        await carts.aclose()
    assert anonymous.changed is False  # a signed-in customer's cart never touched the cookie


async def test_a_deleted_product_leaves_the_cart(
    shop: Storefront,
    make_product: Callable[..., Any],
    platform: Platform,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    token = await _customer(shop, "cart_deleted")
    kept = await make_product(name="Kept", price="1.00")
    dropped = await make_product(name="Dropped", price="9.00")
    await shop.gql(ADD, token, p=str(kept["id"]), q=1)
    await shop.gql(ADD, token, p=str(dropped["id"]), q=4)
    gone = await platform.products.delete(
        f"/api/v1/products/{dropped['id']}", headers=platform.admin
    )
    assert gone.status_code == 204, gone.text

    cart = (await shop.gql(CART, token))["data"]["cart"]
    assert (cart["count"], cart["total"]) == (1, "1.00")
    # Gone from storage too, so it takes no place among the 50 lines and no count in the header.
    assert await redis.hgetall(f"{prefix}{await _user_id(shop, token)}") == {str(kept["id"]): "1"}
