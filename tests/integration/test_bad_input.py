"""Bad input of every kind gets the contract's status and a problem+json body, and loses nothing."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Platform

pytestmark = pytest.mark.asyncio
INJECTIONS = [
    "'; DROP TABLE products; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "../../etc/passwd",
    "\u0000",
]


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"]
    assert body["detail"]
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize("service", ["users", "products", "orders", "payments"])
async def test_malformed_json_is_400(platform: Platform, service: str) -> None:
    path = {
        "users": "/api/v1/users/register",
        "products": "/api/v1/products",
        "orders": "/api/v1/orders",
        "payments": "/api/v1/payments",
    }[service]
    headers = {**platform.admin, "content-type": "application/json"}
    if service == "orders":
        headers = {**platform.token(3), "content-type": "application/json"}
    response = await getattr(platform, service).post(path, content=b'{"name": ', headers=headers)
    assert_problem(response, 400)


async def test_wrong_types_are_422_with_locations(platform: Platform) -> None:
    response = await platform.orders.post(
        "/api/v1/orders", json={"product_id": "one", "quantity": [1]}, headers=platform.token(3)
    )
    body = assert_problem(response, 422)
    locs = {tuple(e["loc"]) for e in body["errors"]}
    assert ("body", "product_id") in locs
    assert ("body", "quantity") in locs


@pytest.mark.parametrize("quantity", [0, -1, 10_001, 2**70])
async def test_out_of_range_quantities_are_422(platform: Platform, quantity: int) -> None:
    response = await platform.orders.post(
        "/api/v1/orders", json={"product_id": 1, "quantity": quantity}, headers=platform.token(3)
    )
    assert_problem(response, 422)
    assert await platform.sql("orders", "SELECT 1 FROM orders") == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/products/0",
        "/api/v1/products/abc",
        "/api/v1/products/99999999999999999999999",
        f"/api/v1/products/{2**53}",  # one past MAX_ID: the lean route once answered 404 here
        f"/api/v1/products/{2**53 + 1}",
    ],
)
async def test_bad_ids_are_422(platform: Platform, path: str) -> None:
    assert_problem(await platform.products.get(path), 422)


async def test_a_user_path_that_is_not_an_id_is_no_resource(platform: Platform) -> None:
    # The user id is typed in the route (`{user_id:int}`): "abc" names nothing.
    assert_problem(await platform.users.get("/api/v1/users/abc", headers=platform.admin), 404)


async def test_an_undeclared_method_is_405_with_every_allowed_method(platform: Platform) -> None:
    # /users/login is not read as a user id; and Allow lists every route's methods of a path.
    login = await platform.users.get("/api/v1/users/login")
    assert_problem(login, 405)
    assert login.headers["allow"] == "POST"
    products = await platform.products.request("OPTIONS", "/api/v1/products")
    assert_problem(products, 405)
    assert products.headers["allow"] == "GET, HEAD, POST"
    one = await platform.products.patch("/api/v1/products/1")
    assert one.headers["allow"] == "GET, HEAD, PUT, DELETE"


async def test_unknown_query_parameters_are_422(platform: Platform) -> None:
    response = await platform.products.get("/api/v1/products?limt=5")
    assert_problem(response, 422)
    assert response.json()["errors"] == [
        {"loc": ["query", "limt"], "msg": "Unknown query parameter"}
    ]


async def test_stock_stays_within_its_bound(platform: Platform) -> None:
    created = await platform.products.post(
        "/api/v1/products",
        json={"name": "Bounded", "price": "1.00", "stock": 1_000_000_000},
        headers=platform.admin,
    )
    pid = created.json()["id"]
    more = await platform.products.patch(
        f"/api/v1/products/{pid}/stock", json={"delta": 1}, headers=platform.admin
    )
    assert_problem(more, 409)
    both = await platform.products.patch(
        f"/api/v1/products/{pid}/stock", json={"delta": 1, "stock": 1}, headers=platform.admin
    )
    assert_problem(both, 422)


async def test_unknown_ids_and_routes_are_404(platform: Platform) -> None:
    assert_problem(await platform.products.get("/api/v1/products/123456"), 404)
    assert_problem(await platform.products.get("/no/such/route"), 404)
    assert_problem(
        await platform.orders.get("/api/v1/orders/987654321", headers=platform.admin), 404
    )


async def test_oversized_bodies_are_413(platform: Platform) -> None:
    big = {"name": "x", "price": "1.00", "description": "y" * 200_000}
    response = await platform.products.post("/api/v1/products", json=big, headers=platform.admin)
    assert_problem(response, 413)
    assert await platform.sql("products", "SELECT 1 FROM products") == []


async def test_chunked_oversized_bodies_are_413(platform: Platform) -> None:
    async def chunks():
        for _ in range(100):
            yield b"x" * 10_000

    response = await platform.products.post(
        "/api/v1/products",
        content=chunks(),
        headers={**platform.admin, "content-type": "application/json"},
    )
    assert_problem(response, 413)


@pytest.mark.parametrize("text", INJECTIONS)
async def test_injection_strings_are_data_not_code(platform: Platform, text: str) -> None:
    body = {"name": f"n{text}"[:200], "price": "1.00", "description": text, "category": "c"}
    response = await platform.products.post("/api/v1/products", json=body, headers=platform.admin)
    if "\u0000" in text:
        assert_problem(response, 422)  # PostgreSQL text cannot hold NUL: refused, not a 500
        return
    assert response.status_code == 201, response.text
    stored = (await platform.products.get(f"/api/v1/products/{response.json()['id']}")).json()
    assert stored["description"] == text
    listing = await platform.products.get("/api/v1/products", params={"category": text})
    assert listing.status_code == 200
    assert listing.json()["total"] == 0
    login = await platform.users.post(
        "/api/v1/users/login", json={"username": text, "password": text or "x"}
    )
    assert login.status_code in (401, 422)
    assert len(await platform.sql("products", "SELECT 1 FROM products")) == 1


async def test_request_ids_are_echoed_or_made(platform: Platform) -> None:
    given = await platform.products.get("/api/v1/products", headers={"X-Request-ID": "req-abc-123"})
    assert given.headers["x-request-id"] == "req-abc-123"
    made = await platform.products.get("/api/v1/products")
    assert made.headers["x-request-id"].startswith("req-")
    assert made.headers["x-content-type-options"] == "nosniff"
