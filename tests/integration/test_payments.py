from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shop.payments.app import create_app as payments_app
from shop.payments.provider import ProviderResult, SimulatedProvider
from shop.payments.settings import PaymentsSettings
from tests.integration.conftest import Platform, _settings

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
    # One refund; every other is a 409 that says why (API.md, Corrections): refunded, or
    # being refunded at that moment (with Retry-After).
    assert sorted(r.status_code for r in refunds) == [200, 409, 409, 409, 409]
    refused = {
        (r.json()["code"], r.json()["payment_status"]) for r in refunds if r.status_code == 409
    }
    assert refused <= {("invalid_state", "refunded"), ("request_in_progress", "refunding")}
    again = await platform.payments.post(f"{url}/refund", headers=svc)
    assert (again.status_code, again.json()["payment_status"]) == (409, "refunded")
    keyed = {**svc, "Idempotency-Key": "refund-1"}
    first = await platform.payments.post(f"{url}/refund", headers=keyed)
    replay = await platform.payments.post(f"{url}/refund", headers=keyed)
    assert (first.status_code, replay.status_code) == (409, 409)  # the first answer, replayed
    assert replay.headers["Idempotent-Replayed"] == "true"
    processed_again = await platform.payments.post(f"{url}/process", headers=svc)
    assert processed_again.status_code == 409


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
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


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
    assert different.status_code == 422


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


class GatedProvider(SimulatedProvider):
    """A provider that answers only when the test opens its gate: as slow as a test needs."""

    def __init__(self) -> None:
        super().__init__(Decimal("10000.00"))
        self.asked = 0
        self.gate = asyncio.Event()

    async def charge(self, **kw: Any) -> ProviderResult:
        self.asked += 1
        await self.gate.wait()
        return await super().charge(**kw)


async def test_a_slow_provider_does_not_hold_the_service(
    platform: Platform, tmp_path: Path
) -> None:
    """Six charges wait on the provider at once while the service, with two pooled
    connections, still answers reads: no charge holds a connection or a lock meanwhile."""
    keys_file = tmp_path / "jwks.json"
    keys_file.write_text(json.dumps(platform.keys.jwks()))
    provider = GatedProvider()
    settings = _settings(PaymentsSettings, platform.urls["payments"], keys_file, db_pool_max=2)
    app = payments_app(settings, provider=provider)
    svc = platform.service_token()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://pay") as client,
    ):
        other = await create(platform, order_id=500)
        charges = [
            asyncio.create_task(
                client.post(
                    "/api/v1/payments",
                    json={**payment_body(order_id=600 + i), "confirm": True},
                    headers=svc,
                )
            )
            for i in range(6)
        ]
        deadline = asyncio.get_running_loop().time() + 120
        while provider.asked < len(charges):
            assert asyncio.get_running_loop().time() < deadline, "the charges did not all start"
            await asyncio.sleep(0.01)
        rows = await platform.sql(
            "payments", "SELECT count(*) AS n FROM payments WHERE status = 'processing'"
        )
        assert rows[0]["n"] == 6  # committed before the provider was asked
        read = await client.get(f"/api/v1/payments/{other['payment_id']}", headers=svc)
        assert read.status_code == 200
        repeat = await client.post(
            "/api/v1/payments", json={**payment_body(order_id=600), "confirm": True}, headers=svc
        )
        assert repeat.status_code == 409  # still being asked: in progress, not charged twice
        assert repeat.json()["payment_status"] == "processing"
        assert "Retry-After" in repeat.headers
        assert not any(task.done() for task in charges)
        provider.gate.set()
        answers = await asyncio.gather(*charges)
    assert {(r.status_code, r.json()["status"]) for r in answers} == {(201, "completed")}
    assert provider.asked == 6


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
