"""The storefront's GraphQL over the real services (in-process, real PostgreSQL).

Every downstream call goes through a transport that records it, so the tests can count the
calls a query costs and check what each carries (the caller's token, the X-Request-ID).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shop.common.settings import Environment
from shop.storefront.app import create_app
from shop.storefront.settings import StorefrontSettings
from tests.integration.conftest import ADMIN_PASSWORD, SERVICE_SECRET, FlakyTransport, Platform

ME_ORDERS = """
{ me { username orders(limit: 20) { total items {
    id status totalPrice product { name } payment { status amount } } } } }
"""
PLACE = """
mutation ($p: ID!, $key: String) {
  placeOrder(productId: $p, quantity: 1, paymentMethod: PAYPAL, idempotencyKey: $key) {
    id status payment { status paymentMethod } } }
"""


@dataclass
class Recorder(httpx.AsyncBaseTransport):
    """Passes each call to the service's app and remembers it."""

    service: str
    inner: httpx.AsyncBaseTransport
    log: list[tuple[str, httpx.Request]] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.log.append((self.service, request))
        return await self.inner.handle_async_request(request)


@dataclass
class Storefront:
    client: httpx.AsyncClient
    calls: list[tuple[str, httpx.Request]]
    links: dict[str, FlakyTransport]

    async def gql(
        self,
        query: str,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **vars: Any,
    ) -> dict[str, Any]:
        all_headers = {**(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": vars}, headers=all_headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def _storefront(
    platform: Platform, tmp_path: Path, **settings: Any
) -> AsyncIterator[Storefront]:
    keys_file = tmp_path / "jwks.json"
    keys_file.write_text(json.dumps(platform.keys.jwks()))
    log: list[tuple[str, httpx.Request]] = []
    links = {
        name: FlakyTransport(Recorder(name, httpx.ASGITransport(platform.apps[name]), log))
        for name in ("users", "products", "orders", "payments")
    }
    app = create_app(
        StorefrontSettings(
            **{
                "env": Environment.TEST,
                "service_token_secret": SERVICE_SECRET,
                "jwt_public_keys_file": keys_file,
                **settings,
            },
        ),
        transports=links,
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bff") as client,
    ):
        yield Storefront(client, log, links)


@pytest.fixture
async def bff(platform: Platform, tmp_path: Path) -> AsyncIterator[Storefront]:
    async for storefront in _storefront(platform, tmp_path):
        yield storefront


async def _customer(bff: Storefront, name: str = "gql_buyer") -> str:
    body = await bff.gql(
        f'mutation ($u: String!) {{ register(username: $u, email: "{name}@example.com",'
        ' password: "correct horse battery") { id role } }',
        u=name,
    )
    assert body["data"]["register"]["role"] == "customer", body
    login = await bff.gql(
        'mutation ($u: String!) { login(username: $u, password: "correct horse battery")'
        " { accessToken expiresIn refreshToken } }",
        u=name,
    )
    tokens = login["data"]["login"]
    assert tokens["refreshToken"]
    assert tokens["expiresIn"] > 0
    token: str = tokens["accessToken"]
    return token


async def test_my_orders_with_products_and_payments_cost_four_calls(
    bff: Storefront, make_product: Callable[..., Any]
) -> None:
    token = await _customer(bff)
    products = [await make_product(name=f"Thing {i}", price=f"{i}.50") for i in range(1, 6)]
    for i, product in enumerate(products * 2):  # ten orders over five products
        placed = await bff.gql(PLACE, token, p=str(product["id"]), key=f"k-{i}")
        assert placed["data"]["placeOrder"]["status"] == "paid", placed

    bff.calls.clear()
    body = await bff.gql(ME_ORDERS, token, headers={"X-Request-ID": "req-gql-batch"})

    orders = body["data"]["me"]["orders"]
    assert orders["total"] == 10
    assert len(orders["items"]) == 10
    assert {o["product"]["name"] for o in orders["items"]} == {f"Thing {i}" for i in range(1, 6)}
    assert all(o["payment"]["status"] == "completed" for o in orders["items"])
    # One call per service, not one per order: user, orders page, products batch, payments batch.
    assert sorted(service for service, _ in bff.calls) == [
        "orders",
        "payments",
        "products",
        "users",
    ]
    batch = dict(bff.calls)
    assert sorted(int(i) for i in batch["products"].url.params["ids"].split(",")) == sorted(
        p["id"] for p in products
    )
    assert len(batch["payments"].url.params["order_ids"].split(",")) == 10
    for _, request in bff.calls:  # the caller's own token and request id, passed on
        assert request.headers["authorization"] == f"Bearer {token}"
        assert request.headers["x-request-id"] == "req-gql-batch"


async def test_place_order_is_idempotent_by_key(
    bff: Storefront, make_product: Callable[..., Any]
) -> None:
    token = await _customer(bff)
    product = await make_product(stock=5)
    first = await bff.gql(PLACE, token, p=str(product["id"]), key="checkout-1")
    again = await bff.gql(PLACE, token, p=str(product["id"]), key="checkout-1")
    assert first["data"]["placeOrder"]["id"] == again["data"]["placeOrder"]["id"]
    me = await bff.gql(ME_ORDERS, token)
    assert me["data"]["me"]["orders"]["total"] == 1
    stock = await bff.gql("query ($id: ID!) { product(id: $id) { stock } }", id=str(product["id"]))
    assert stock["data"]["product"]["stock"] == 4


async def test_errors_carry_the_contract_codes_and_no_trace(
    bff: Storefront, make_product: Callable[..., Any]
) -> None:
    anonymous = await bff.gql(PLACE, p="1")
    assert codes(anonymous) == ["UNAUTHENTICATED"]
    assert (await bff.gql("{ me { id } }"))["data"]["me"] is None
    assert codes(await bff.gql("{ me { id } }", "not-a-jwt")) == ["UNAUTHENTICATED"]

    token = await _customer(bff)
    necklace = await make_product(name="Necklace", price="12500.00", stock=2)
    declined = await bff.gql(PLACE, token, p=str(necklace["id"]))
    assert codes(declined) == ["PAYMENT_DECLINED"]
    failed_id = declined["errors"][0]["extensions"]["order_id"]
    order = await bff.gql(
        "query ($id: ID!) { order(id: $id) { status payment { status failureReason } } }",
        token,
        id=str(failed_id),
    )
    assert order["data"]["order"]["status"] == "failed"
    assert order["data"]["order"]["payment"]["status"] == "failed"

    cheap = await make_product(price="5.00")
    placed = await bff.gql(PLACE, token, p=str(cheap["id"]))
    order_id = placed["data"]["placeOrder"]["id"]
    cancel = "mutation ($id: ID!) { cancelOrder(id: $id) { status payment { status } } }"
    cancelled = await bff.gql(cancel, token, id=order_id)
    assert cancelled["data"]["cancelOrder"] == {
        "status": "cancelled",
        "payment": {"status": "refunded"},
    }
    assert codes(await bff.gql(cancel, token, id=order_id)) == ["CONFLICT"]
    assert codes(await bff.gql(cancel, token, id="999999")) == ["NOT_FOUND"]
    assert codes(await bff.gql(cancel, token, id="x")) == ["BAD_USER_INPUT"]
    assert codes(await bff.gql("{ users { total } }", token)) == ["FORBIDDEN"]
    assert codes(await bff.gql("{ nosuchfield }")) == ["BAD_USER_INPUT"]
    assert codes(await bff.gql("{ products(limit: 500) { total } }")) == ["BAD_USER_INPUT"]
    taken = await bff.gql(
        'mutation { register(username: "gql_buyer", email: "other@example.com",'
        ' password: "correct horse battery") { id } }'
    )
    assert codes(taken) == ["CONFLICT"]

    bff.links["products"].down = True
    down = await bff.gql("{ products { total } }")
    assert codes(down) == ["UNAVAILABLE"]
    assert "Traceback" not in json.dumps(down)
    assert "httpx" not in json.dumps(down)


async def test_depth_and_cost_are_limited(bff: Storefront) -> None:
    deep = "{ me { orders { items { product { name } } } } }"
    assert "errors" not in await bff.gql(deep)
    too_deep = await bff.gql(
        "{ a: products { items { id } } "
        + "b: me { orders { items { payment { status } product { name } } } } }"
    )
    assert "errors" not in too_deep  # depth 5: allowed
    costly = "{ users(limit: 100) { items { orders(limit: 100) { items { product { name } } } } } }"
    refused = await bff.gql(costly)
    assert codes(refused) == ["BAD_USER_INPUT"]
    assert "cost" in refused["errors"][0]["message"]
    assert refused.get("data") is None


async def test_depth_limit(platform: Platform, tmp_path: Path) -> None:
    async for bff in _storefront(platform, tmp_path, graphql_max_depth=3):
        refused = await bff.gql("{ me { orders { items { product { name } } } } }")
        assert codes(refused) == ["BAD_USER_INPUT"]
        assert "depth" in refused["errors"][0]["message"]


async def test_introspection_is_off_in_production(platform: Platform, tmp_path: Path) -> None:
    async for bff in _storefront(platform, tmp_path, env=Environment.PRODUCTION):
        refused = await bff.gql("{ __schema { types { name } } }")
        assert set(codes(refused)) == {"BAD_USER_INPUT"}
        assert "introspection" in refused["errors"][0]["message"].lower()
        assert "errors" not in await bff.gql("{ products { total } }")


async def test_admin_manages_products_and_orders(
    bff: Storefront, make_product: Callable[..., Any]
) -> None:
    login = await bff.gql(
        'mutation ($p: String!) { login(username: "admin", password: $p) { accessToken } }',
        p=ADMIN_PASSWORD,
    )
    admin = login["data"]["login"]["accessToken"]
    created = await bff.gql(
        'mutation { createProduct(product: {name: "Lamp", price: "12.00", category: "home"},'
        " stock: 3) { id name stock } }",
        admin,
    )
    product = created["data"]["createProduct"]
    assert product["stock"] == 3
    restocked = await bff.gql(
        "mutation ($id: ID!) { setStock(id: $id, stock: 9) { stock } }", admin, id=product["id"]
    )
    assert restocked["data"]["setStock"]["stock"] == 9

    token = await _customer(bff, "gql_shipper")
    placed = await bff.gql(PLACE, token, p=product["id"])
    order_id = placed["data"]["placeOrder"]["id"]
    ship = (
        "mutation ($id: ID!, $s: OrderStatusChange!)"
        " { changeOrderStatus(id: $id, status: $s) { status } }"
    )
    assert (await bff.gql(ship, admin, id=order_id, s="SHIPPED"))["data"]["changeOrderStatus"] == {
        "status": "shipped"
    }
    assert codes(await bff.gql(ship, admin, id=order_id, s="CANCELLED")) == ["CONFLICT"]
    assert codes(await bff.gql(ship, token, id=order_id, s="DELIVERED")) == ["FORBIDDEN"]
    everyone = await bff.gql(
        "{ users(limit: 50) { total items { username orders { total } } } }", admin
    )
    shipper = [u for u in everyone["data"]["users"]["items"] if u["username"] == "gql_shipper"]
    assert shipper[0]["orders"]["total"] == 1
    newest = await bff.gql(
        '{ orders(limit: 5, status: "shipped") { total items { id status product { name } } } }',
        admin,
    )
    assert newest["data"]["orders"]["items"][0] == {
        "id": order_id,
        "status": "shipped",
        "product": {"name": "Lamp"},
    }
    assert codes(await bff.gql("{ orders { total } }", token)) == ["FORBIDDEN"]
    deleted = await bff.gql(
        "mutation ($id: ID!) { deleteProduct(id: $id) }", admin, id=product["id"]
    )
    assert deleted["data"]["deleteProduct"] is True
    gone = await bff.gql("query ($id: ID!) { product(id: $id) { id } }", id=product["id"])
    assert gone["data"]["product"] is None


async def test_an_expired_page_session_is_refreshed_once(bff: Storefront) -> None:
    """The access cookie has expired (the browser dropped it); the refresh cookie is
    traded for a new pair before the page runs, and the old refresh token is spent."""
    await _customer(bff, "gql_sleeper")
    login = await bff.gql(
        'mutation { login(username: "gql_sleeper", password: "correct horse battery")'
        " { refreshToken } }"
    )
    refresh = login["data"]["login"]["refreshToken"]

    page = await bff.client.get("/orders", cookies={"shop_refresh": refresh})
    assert page.status_code == 200, page.text
    assert "gql_sleeper" in page.text  # logged in, not sent to /login
    new = {c.name: c.value for c in bff.client.cookies.jar}
    bff.client.cookies.clear()
    assert new["shop_access"]
    assert new["shop_refresh"] != refresh  # single use: a new one replaces it

    again = await bff.client.get("/orders", cookies={"shop_refresh": refresh})
    assert again.status_code in (303, 307) or "gql_sleeper" not in again.text
    assert 'shop_refresh=""' in again.headers.get("set-cookie", "")  # the spent one is dropped
    bff.client.cookies.clear()

    # A refresh token used twice revokes its whole login (the user service's reuse rule), so
    # whoever replayed it, the visitor or a thief, must log in again.
    fresh = await bff.client.get("/orders", cookies={"shop_refresh": new["shop_refresh"]})
    assert "gql_sleeper" not in fresh.text
