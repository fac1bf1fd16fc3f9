"""The lean server span (``tracing_sdk.lean_server_span``) against OpenTelemetry's ASGI
middleware it stands in for: the same requests through both, every span kept in memory, and
the spans compared field by field. A difference is a trace that reads differently from one
service to the next."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shop.common.tracing import EXCLUDED_URLS
from shop.common.tracing_sdk import lean_server_span

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADERS = [(b"host", b"products:8000"), (b"user-agent", b"aiohttp/3.9"), (b"x-request-id", b"r1")]


def _scope(path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("10.0.0.7", 50123),
        "server": ("10.0.0.2", 8000),
    }


def _app(status: int | None) -> Any:
    """An app that answers ``status``, or raises before answering when it is None."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if status is None:
            raise RuntimeError("the handler failed")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _spans(lean: bool, status: int | None, scope: dict[str, Any]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # As tracing_sdk.server_spans configures it.
    middleware = OpenTelemetryMiddleware(
        _app(status),
        excluded_urls=EXCLUDED_URLS,
        default_span_details=lambda scope: (str(scope.get("method") or "HTTP"), {}),
        tracer_provider=provider,
        http_capture_headers_server_request=["x-request-id"],
        exclude_spans=["receive", "send"],
    )
    traced = lean_server_span(middleware) if lean else middleware
    assert (traced is middleware) is not lean

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Any) -> None:
        return None

    async def request() -> None:
        await traced(scope, receive, send)

    try:
        asyncio.run(request())
    except RuntimeError:
        assert status is None
    return list(exporter.get_finished_spans())


def _seen(span: ReadableSpan) -> dict[str, Any]:
    """What a tracing backend shows of a span (its own ids are random; an exception's stack
    trace names the wrapper it passed through)."""
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": dict(span.attributes or {}),
        "status": (span.status.status_code, span.status.description),
        "trace_id": span.context.trace_id if span.parent else None,
        "parent": (span.parent.span_id, span.parent.is_remote) if span.parent else None,
        "events": [
            (event.name, {k: v for k, v in (event.attributes or {}).items() if "stack" not in k})
            for event in span.events
        ],
        "scope": span.instrumentation_scope,
        "resource": span.resource.attributes,
    }


@pytest.mark.parametrize("status", [200, 201, 404, 422, 500, 503, None])
@pytest.mark.parametrize("traceparent", [True, False])
@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/products/1", b""),
        ("/api/v1/products", b"q=floor%20tile&limit=20"),
        ("/health/ready", b""),
        ("/metrics", b""),
    ],
)
def test_the_lean_span_is_the_middlewares(
    status: int | None, traceparent: bool, path: str, query: bytes
) -> None:
    headers = [*HEADERS, (b"traceparent", TRACEPARENT)] if traceparent else HEADERS
    middleware = _spans(False, status, _scope(path, query, list(headers)))
    lean = _spans(True, status, _scope(path, query, list(headers)))
    assert [_seen(span) for span in lean] == [_seen(span) for span in middleware]
    assert len(lean) == (0 if path in ("/health/ready", "/metrics") else 1)


def test_the_comparison_sees_the_attributes() -> None:
    """The case the comparison above rests on: a span with the request's attributes."""
    (span,) = _spans(True, 500, _scope("/api/v1/products", b"q=a", list(HEADERS)))
    attributes = dict(span.attributes or {})
    assert attributes["http.status_code"] == 500
    assert attributes["http.request.header.x_request_id"] == ("r1",)
    assert attributes["http.url"] == "http://products:8000/api/v1/products?q=a"
    assert span.status.status_code.name == "ERROR"


def test_suppressed_http_instrumentation_makes_no_span_either_way() -> None:
    for lean in (False, True):
        with suppress_http_instrumentation():
            spans = _spans(lean, 200, _scope("/api/v1/products/1", b"", list(HEADERS)))
        assert spans == []
