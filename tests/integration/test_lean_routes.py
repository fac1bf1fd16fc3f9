"""The order path's lean routes (``shop.common.fastpath``) answer as the FastAPI routes do.

Each request is sent twice: as the saga sends it (``application/json``: the lean route
answers) and with a ``+json`` media type, a JSON body FastAPI reads as such and the lean route
leaves to it. Both answers must be the same: status, media type and body (less what differs
by nature: the request id, and the ids and times of a new record). A counting wrapper round
each lean handler shows which route answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shop.common.fastpath import LeanRoute
from tests.integration.conftest import Platform

LEAN = {"Content-Type": "application/json"}
FASTAPI = {"Content-Type": "application/vnd.shop+json"}
RESERVE = "/api/v1/reservations"
NEW_RECORD = {"id", "payment_id", "transaction_id", "order_id", "created_at", "updated_at"}


@pytest.fixture
def answered(platform: Platform) -> Iterator[Counter[str]]:
    """Counts the answers each lean route gave (by route template)."""
    counts: Counter[str] = Counter()
    wrapped: list[tuple[LeanRoute, Any]] = []
    for app in platform.apps.values():
        for route in app.router.routes:
            if isinstance(route, LeanRoute):
                original = route.handler

                async def counting(
                    *args: Any, _route: LeanRoute = route, _f: Any = original
                ) -> Any:
                    response = await _f(*args)
                    counts[_route.path] += 1
                    return response

                wrapped.append((route, original))
                route.handler = counting
    yield counts
    for route, original in wrapped:
        route.handler = original


def _shape(response: httpx.Response, *, new_record: bool = False) -> tuple[int, str, Any]:
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
        if new_record:
            body = {k: v for k, v in body.items() if k not in NEW_RECORD}
    return response.status_code, response.headers["content-type"], body


async def _post(
    client: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str], kind: dict[str, str]
) -> httpx.Response:
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return await client.post(path, content=content, headers={**headers, **kind})


async def test_reservations_answer_alike_on_both_routes(
    platform: Platform, make_product: Any, answered: Counter[str]
) -> None:
    product = await make_product(stock=5)
    path, pid = RESERVE, product["id"]
    service = platform.service_token()

    def order(order_id: int, quantity: int) -> dict[str, Any]:
        return {"order_id": order_id, "lines": [{"product_id": pid, "quantity": quantity}]}

    async def both(
        body: Any, headers: dict[str, str], *, lean_answers: bool
    ) -> tuple[httpx.Response, httpx.Response]:
        before = answered[RESERVE]
        lean = await _post(platform.products, path, body, headers, LEAN)
        assert answered[RESERVE] == before + lean_answers
        fastapi = await _post(platform.products, path, body, headers, FASTAPI)
        assert answered[RESERVE] == before + lean_answers
        return lean, fastapi

    # New, then the same order again: 201 on the lean route, 200 with the same body on both.
    first = await _post(platform.products, path, order(7, 2), service, LEAN)
    assert first.status_code == 201, first.text
    lean, fastapi = await both(order(7, 2), service, lean_answers=True)
    assert lean.status_code == fastapi.status_code == 200
    assert _shape(lean) == _shape(fastapi) == (200, "application/json", first.json())

    # The use case's problems, a refused token, a user's token, a body or a token missing.
    cases: list[tuple[Any, dict[str, str], int, bool]] = [
        (order(8, 9), service, 409, False),  # insufficient stock
        (order(7, 1), service, 409, False),  # other lines for order 7
        (order(9, 1), {"Authorization": "Bearer not.a.token"}, 401, False),
        (order(9, 1), platform.token(5), 403, False),
        (order(9, 1), {}, 401, False),
        (order(0, 1), service, 422, False),
        (b"{not json", service, 400, False),
    ]
    for body, headers, status, lean_answers in cases:
        lean, fastapi = await both(body, headers, lean_answers=lean_answers)
        assert _shape(lean) == _shape(fastapi), (body, lean.text, fastapi.text)
        assert lean.status_code == status, lean.text
        assert lean.headers["content-type"] == "application/problem+json"
    (stock,) = await platform.sql(
        "products", "SELECT stock FROM products WHERE id = $1", product["id"]
    )
    assert stock["stock"] == 3  # one reservation of 2, whatever the route


async def test_payments_answer_alike_on_both_routes(
    platform: Platform, answered: Counter[str]
) -> None:
    service = platform.service_token()

    def payment(order_id: int, amount: str = "12.50") -> dict[str, Any]:
        return {
            "order_id": order_id,
            "user_id": 3,
            "amount": amount,
            "payment_method": "card",
            "confirm": True,
        }

    lean = await _post(platform.payments, "/api/v1/payments", payment(1), service, LEAN)
    assert answered["/api/v1/payments"] == 1
    fastapi = await _post(platform.payments, "/api/v1/payments", payment(2), service, FASTAPI)
    assert answered["/api/v1/payments"] == 1
    assert lean.status_code == fastapi.status_code == 201, (lean.text, fastapi.text)
    assert _shape(lean, new_record=True) == _shape(fastapi, new_record=True)
    assert lean.json()["status"] == "completed"

    # A repeat of order 1 on either route: its payment as it is.
    again = await _post(platform.payments, "/api/v1/payments", payment(1), service, FASTAPI)
    assert _shape(again) == (200, "application/json", lean.json())

    # With an Idempotency-Key: the lean route records it, the FastAPI route replays it.
    keyed = {**service, "Idempotency-Key": "pay-3"}
    first = await _post(platform.payments, "/api/v1/payments", payment(3), keyed, LEAN)
    replay = await _post(platform.payments, "/api/v1/payments", payment(3), keyed, FASTAPI)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert answered["/api/v1/payments"] == 2
    other = await _post(platform.payments, "/api/v1/payments", payment(3, "1.00"), keyed, LEAN)
    assert other.status_code == 422  # the key's first body was another

    long_key = {**service, "Idempotency-Key": "k" * 256}
    for body, headers in (
        (payment(4), long_key),
        (payment(4), platform.token(3)),
        ({**payment(4), "amount": "-1"}, service),
    ):
        a = await _post(platform.payments, "/api/v1/payments", body, headers, LEAN)
        b = await _post(platform.payments, "/api/v1/payments", body, headers, FASTAPI)
        assert _shape(a) == _shape(b), (a.text, b.text)
        assert a.status_code in (403, 422), a.text
    assert answered["/api/v1/payments"] == 2


async def test_orders_answer_alike_on_both_routes(
    platform: Platform, make_product: Any, answered: Counter[str]
) -> None:
    product = await make_product(price="4.00", stock=10)
    user = platform.token(21)
    order = {"product_id": product["id"], "quantity": 2, "payment_method": "card"}

    lean = await _post(platform.orders, "/api/v1/orders", order, user, LEAN)
    assert answered["/api/v1/orders"] == 1
    fastapi = await _post(platform.orders, "/api/v1/orders", order, user, FASTAPI)
    assert answered["/api/v1/orders"] == 1
    assert lean.status_code == fastapi.status_code == 201, (lean.text, fastapi.text)
    assert _shape(lean, new_record=True) == _shape(fastapi, new_record=True)
    assert lean.json()["status"] == "paid"

    keyed = {**user, "Idempotency-Key": "order-1"}
    first = await _post(platform.orders, "/api/v1/orders", order, keyed, LEAN)
    replay = await _post(platform.orders, "/api/v1/orders", order, keyed, FASTAPI)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()

    for body, headers, status in (
        ({**order, "quantity": 100}, user, 409),  # insufficient stock
        ({**order, "quantity": 1}, keyed, 422),  # the key's first body was another
        (order, {**user, "Idempotency-Key": "k" * 256}, 422),
        (order, platform.service_token(), 403),  # orders are placed by users
        ({**order, "product_id": 99_999_999}, user, 404),
    ):
        a = await _post(platform.orders, "/api/v1/orders", body, headers, LEAN)
        b = await _post(platform.orders, "/api/v1/orders", body, headers, FASTAPI)
        assert _shape(a, new_record=True) == _shape(b, new_record=True), (a.text, b.text)
        assert a.status_code == status, a.text
    rows = await platform.sql("orders", "SELECT status, count(*) AS n FROM orders GROUP BY 1")
    assert {r["status"]: r["n"] for r in rows} == {"paid": 3, "failed": 4}  # 2 x (stock, product)
