from __future__ import annotations

import pytest
from pydantic import ValidationError

from shop.common.errors import Conflict, NotFound, PaymentDeclined
from shop.common.http import CircuitBreaker
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
    order = {"id": 1, "failure_reason": reason}
    assert isinstance(failure_problem(order), problem)
