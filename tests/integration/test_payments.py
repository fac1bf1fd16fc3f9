from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import Platform

pytestmark = pytest.mark.asyncio


def payment_body(order_id: int = 1, amount: str = "30.00", **kw: object) -> dict:
    return {
        "order_id": order_id,
        "user_id": kw.get("user_id", 5),
        "amount": amount,
        "payment_method": kw.get("payment_method", "card"),
    }


async def create(platform: Platform, **kw: object) -> dict:
    response = await platform.payments.post(
        "/api/v1/payments", json=payment_body(**kw), headers=platform.service_token()
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_process_completes_and_refund_refunds_once(platform: Platform) -> None:
    payment = await create(platform)
    assert payment["status"] == "pending"
    assert payment["payment_id"].startswith("pay_")
    svc = platform.service_token()
    url = f"/api/v1/payments/{payment['payment_id']}"
    processed = await platform.payments.post(f"{url}/process", headers=svc)
    assert processed.json()["status"] == "completed"
    assert processed.json()["transaction_id"]
    refunds = await asyncio.gather(
        *[platform.payments.post(f"{url}/refund", headers=svc) for _ in range(5)]
    )
    assert {r.status_code for r in refunds} == {200}
    assert {r.json()["status"] for r in refunds} == {"refunded"}
    again = await platform.payments.post(f"{url}/process", headers=svc)
    assert again.status_code == 409


async def test_amount_over_the_limit_is_declined_with_402(platform: Platform) -> None:
    payment = await create(platform, amount="10000.01")
    response = await platform.payments.post(
        f"/api/v1/payments/{payment['payment_id']}/process", headers=platform.service_token()
    )
    assert response.status_code == 402
    assert response.json()["payment_id"] == payment["payment_id"]
    refund = await platform.payments.post(
        f"/api/v1/payments/{payment['payment_id']}/refund", headers=platform.service_token()
    )
    assert refund.status_code == 409


async def test_one_payment_per_order(platform: Platform) -> None:
    first = await create(platform, order_id=3)
    same = await platform.payments.post(
        "/api/v1/payments", json=payment_body(order_id=3), headers=platform.service_token()
    )
    assert same.status_code == 200
    assert same.json()["payment_id"] == first["payment_id"]
    other = await platform.payments.post(
        "/api/v1/payments",
        json=payment_body(order_id=3, amount="1.00"),
        headers=platform.service_token(),
    )
    assert other.status_code == 409


async def test_idempotency_key_replays_and_refuses_a_different_body(platform: Platform) -> None:
    headers = {**platform.service_token(), "Idempotency-Key": "k-1"}
    responses = await asyncio.gather(
        *[
            platform.payments.post(
                "/api/v1/payments", json=payment_body(order_id=11), headers=headers
            )
            for _ in range(10)
        ]
    )
    assert {r.json()["payment_id"] for r in responses} == {responses[0].json()["payment_id"]}
    assert {r.status_code for r in responses} == {201}
    rows = await platform.sql("payments", "SELECT count(*) AS n FROM payments")
    assert rows[0]["n"] == 1
    different = await platform.payments.post(
        "/api/v1/payments", json=payment_body(order_id=12), headers=headers
    )
    assert different.status_code == 409


async def test_customers_read_only_their_own_payments(platform: Platform) -> None:
    payment = await create(platform, user_id=5)
    mine = await platform.payments.get(
        f"/api/v1/payments/{payment['payment_id']}", headers=platform.token(5)
    )
    theirs = await platform.payments.get(
        f"/api/v1/payments/{payment['payment_id']}", headers=platform.token(6)
    )
    assert (mine.status_code, theirs.status_code) == (200, 404)
    listing = await platform.payments.get("/api/v1/payments/user/5", headers=platform.token(5))
    assert listing.json()["total"] == 1
    assert (
        await platform.payments.get("/api/v1/payments/user/5", headers=platform.token(6))
    ).status_code == 404
    by_order = await platform.payments.get("/api/v1/payments/order/1", headers=platform.token(5))
    assert by_order.json()["payment_id"] == payment["payment_id"]
    create_as_customer = await platform.payments.post(
        "/api/v1/payments", json=payment_body(order_id=99), headers=platform.token(5)
    )
    assert create_as_customer.status_code == 403


async def test_batch_read_by_order_ids(platform: Platform) -> None:
    mine = [await create(platform, order_id=i, user_id=5) for i in (11, 12)]
    await create(platform, order_id=13, user_id=6)
    url = "/api/v1/payments?order_ids=13,12,11,99"
    own = (await platform.payments.get(url, headers=platform.token(5))).json()
    # A customer gets only their own, in order-id order; orders without one are left out.
    assert [p["payment_id"] for p in own["items"]] == [p["payment_id"] for p in mine]
    every = (await platform.payments.get(url, headers=platform.admin)).json()
    assert [p["order_id"] for p in every["items"]] == [11, 12, 13]
    assert (await platform.payments.get(url)).status_code == 401
    for bad in ("", "a", "0", ",".join(["1"] * 101)):
        response = await platform.payments.get(
            "/api/v1/payments", params={"order_ids": bad}, headers=platform.admin
        )
        assert response.status_code == 422, (bad, response.text)
