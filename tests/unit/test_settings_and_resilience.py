from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shop.common.errors import Conflict, NotFound, PaymentDeclined, ServiceUnavailable
from shop.common.http import Bulkhead, CircuitBreaker
from shop.orders.saga import Order, OrderLine, OrderStatus, SagaStep
from shop.orders.service import failure_problem
from shop.orders.settings import OrdersSettings
from shop.users.settings import UsersSettings


def test_production_refuses_placeholder_secrets() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        OrdersSettings(env="production")
    with pytest.raises(ValidationError, match="placeholder"):
        UsersSettings(
            env="production",
            service_token_secret="a-real-secret-value-that-is-long-enough-123",
            admin_password="changeme",
        )
    ok = OrdersSettings(
        env="production", service_token_secret="a-real-secret-value-that-is-long-enough-123"
    )
    assert ok.is_production


def test_production_refuses_fault_injection() -> None:
    with pytest.raises(ValidationError, match="fault injection"):
        OrdersSettings(
            env="production",
            service_token_secret="a-real-secret-value-that-is-long-enough-123",
            fault_injection=True,
        )


def test_breaker_opens_after_failures_and_half_opens_later(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr("shop.common.http.time.monotonic", lambda: now[0])
    breaker = CircuitBreaker(threshold=3, reset_seconds=5)
    for _ in range(3):
        assert breaker.allow()
        breaker.record(ok=False)
    assert not breaker.allow()
    now[0] += 5
    assert breaker.allow()  # one trial
    assert not breaker.allow()
    breaker.record(ok=True)
    assert breaker.allow()


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        ("insufficient_stock", Conflict),
        ("product_not_found", NotFound),
        ("payment_declined", PaymentDeclined),
        ("abandoned", Conflict),
    ],
)
def test_failed_orders_map_to_the_contracts_status(reason, problem) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    order = Order(
        id=1,
        user_id=1,
        lines=(OrderLine(1, 1),),
        total_price=None,
        currency="USD",
        status=OrderStatus.FAILED,
        payment_id=None,
        payment_method="card",
        saga_step=SagaStep.DONE,
        failure_reason=reason,
        request_fingerprint=None,
        created_at=now,
        updated_at=now,
    )
    assert isinstance(failure_problem(order), problem)


async def test_bulkhead_bounds_concurrency_and_sheds_what_waits_too_long() -> None:
    bulkhead = Bulkhead(2, queue_timeout=0.05, name="orders")
    inside, peak = 0, 0
    gate = asyncio.Event()

    async def work() -> None:
        nonlocal inside, peak
        async with bulkhead.slot():
            inside += 1
            peak = max(peak, inside)
            await gate.wait()
            inside -= 1

    holders = [asyncio.create_task(work()) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailable, match="Too many orders"):
        async with bulkhead.slot():
            pass
    gate.set()
    await asyncio.gather(*holders)
    assert peak == 2
    async with bulkhead.slot():  # slots come back once the holders leave
        pass
