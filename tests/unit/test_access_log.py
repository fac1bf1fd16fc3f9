"""One JSON access-log line per request, in the seed's shape, with the request's id and route
counted by its template (the one request middleware, ``shop.common.middleware``)."""

from __future__ import annotations

import datetime as dt

import httpx
import orjson
import pytest
from fastapi import APIRouter
from prometheus_client import REGISTRY

from shop.common.app import create_service_app
from shop.common.logging import configure_logging, timestamp
from shop.common.settings import ServiceSettings

SEED_KEYS = ["timestamp", "level", "service", "pod", "message", "user_id", "request_id"]


def _requests(route: str) -> float:
    labels = {"method": "GET", "route": route, "status_class": "2xx"}
    return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


async def test_each_request_writes_one_json_line_and_is_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    configure_logging(service="test-service", pod="pod-1")
    app = create_service_app(ServiceSettings(), title="t", description="d", routers=[router])
    before = _requests("/items/{item_id}")
    transport = httpx.ASGITransport(app=app)  # no lifespan: the route needs no database
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/items/7", headers={"X-Request-ID": "req-abc"})
        await client.get("/health/live")  # probes write no access line

    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "req-abc"
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    handled = [line for line in lines if line.get("message") == "request handled"]
    assert len(handled) == 1
    line = handled[0]
    assert list(line)[: len(SEED_KEYS)] == SEED_KEYS
    assert (line["level"], line["service"], line["pod"]) == ("INFO", "test-service", "pod-1")
    assert (line["request_id"], line["method"], line["path"]) == ("req-abc", "GET", "/items/7")
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["timestamp"].endswith("Z")
    assert _requests("/items/{item_id}") == before + 1


@pytest.mark.parametrize("now", [0.0, 1_764_700_000.0, 1_764_700_000.1234, 1_764_700_059.9999])
def test_the_timestamp_is_the_isoformat_one_with_z(now: float) -> None:
    expected = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds")
    assert timestamp(now) == expected.replace("+00:00", "Z")
    assert timestamp(now + 1.0) != timestamp(now)  # the cached second moves on


def test_a_line_written_inside_a_span_carries_its_trace_and_span_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """So a log line opens its trace in Jaeger, and a trace finds its lines (issue 30)."""
    from opentelemetry.sdk.trace import TracerProvider

    from shop.common.logging import access_log, get_logger

    configure_logging(service="test-service", pod="pod-1")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        get_logger("shop.test").info("inside")
        access_log(method="GET", path="/x", status=200, duration_ms=1.0)
    get_logger("shop.test").info("outside")
    context = span.get_span_context()
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    inside, handled, outside = lines[-3:]
    for line in (inside, handled):
        assert line["trace_id"] == f"{context.trace_id:032x}"
        assert line["span_id"] == f"{context.span_id:016x}"
    assert (outside["trace_id"], outside["span_id"]) == (None, None)
    assert list(inside)[: len(SEED_KEYS) + 2] == [*SEED_KEYS, "trace_id", "span_id"]
