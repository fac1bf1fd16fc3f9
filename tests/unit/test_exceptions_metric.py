"""An unhandled exception is answered as a 500 problem and counted in http_exceptions_total."""

from __future__ import annotations

import httpx
from fastapi import APIRouter
from prometheus_client import REGISTRY

from shop.common.app import create_service_app
from shop.common.logging import configure_logging
from shop.common.settings import ServiceSettings


class LedgerCorrupted(RuntimeError):
    """A failure no handler maps to a problem."""


def _exceptions(route: str, exception: str) -> float:
    labels = {"route": route, "exception": exception}
    return REGISTRY.get_sample_value("http_exceptions_total", labels) or 0.0


def _requests(route: str, status_class: str) -> float:
    labels = {"method": "GET", "route": route, "status_class": status_class}
    return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


async def test_unhandled_exception_is_a_counted_500() -> None:
    router = APIRouter()

    @router.get("/boom/{item_id}")
    async def boom(item_id: int) -> None:
        raise LedgerCorrupted(f"item {item_id}")

    @router.get("/fine")
    async def fine() -> dict[str, str]:
        return {"status": "ok"}

    # As a service's lifespan would (structlog's default renders tracebacks slowly, in colour).
    configure_logging(service="test-service", pod="test")
    app = create_service_app(ServiceSettings(), title="t", description="d", routers=[router])
    exceptions_before = _exceptions("/boom/{item_id}", "LedgerCorrupted")
    errors_before = _requests("/boom/{item_id}", "5xx")
    transport = httpx.ASGITransport(app=app)  # no lifespan: these routes need no database
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/boom/7")
        assert (await client.get("/fine")).status_code == 200

    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert "item 7" not in answer.text  # logged, never shown
    # By route template, never the raw path; and only for the failing route.
    assert _exceptions("/boom/{item_id}", "LedgerCorrupted") == exceptions_before + 1
    assert _exceptions("/boom/7", "LedgerCorrupted") == 0
    assert _requests("/boom/{item_id}", "5xx") == errors_before + 1
    assert not any(
        sample.labels.get("route") == "/fine"
        for metric in REGISTRY.collect()
        if metric.name == "http_exceptions"
        for sample in metric.samples
    )
