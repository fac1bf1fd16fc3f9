"""The server spans' fast path (``tracing_sdk.server_spans``): a request is traced by
OpenTelemetry's ASGI middleware only when it is sampled; an unsampled one runs in a trace
context that says so, which its calls pass on. A provider of the test's own (never the
process's global one) and spans kept in memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased

from shop.common.tracing_sdk import RequestRootSampler, server_spans

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def _run(ratio: float, headers: list[tuple[bytes, bytes]]) -> tuple[list[Any], list[Any]]:
    """One request through ``server_spans``: the spans it exported, and the span context the
    app saw as current."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(root=RequestRootSampler(ratio)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(trace.get_current_span().get_span_context())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    traced = server_spans(app, provider, excluded_urls="/health/live$", ratio=ratio)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/products/1",
        "raw_path": b"/api/v1/products/1",
        "query_string": b"",
        "headers": headers,
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5555),
        "http_version": "1.1",
        "root_path": "",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Any) -> None:
        return None

    asyncio.run(traced(scope, receive, send))
    return list(exporter.get_finished_spans()), seen


def test_an_unsampled_new_trace_makes_no_span_but_a_context_that_says_not_sampled() -> None:
    spans, (seen,) = _run(0.0, [])
    assert spans == []
    assert seen.is_valid
    assert not seen.trace_flags.sampled  # its calls' traceparent ends in -00


def test_a_sampled_new_trace_is_one_server_span_with_no_parent() -> None:
    spans, (seen,) = _run(1.0, [])
    (span,) = spans
    assert span.kind is trace.SpanKind.SERVER
    assert span.parent is None
    assert seen.trace_id == span.context.trace_id
    assert seen.trace_flags.sampled


@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_a_callers_decision_is_followed_whatever_the_ratio(ratio: float) -> None:
    sampled, (seen,) = _run(ratio, [(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode())])
    (span,) = sampled
    assert span.parent is not None
    assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (TRACE, PARENT)
    unsampled, (seen,) = _run(ratio, [(b"traceparent", f"00-{TRACE}-{PARENT}-00".encode())])
    assert unsampled == []
    assert (f"{seen.trace_id:032x}", seen.trace_flags.sampled) == (TRACE, False)


def test_a_malformed_traceparent_is_a_new_trace() -> None:
    spans, (seen,) = _run(1.0, [(b"traceparent", b"not-a-traceparent")])
    (span,) = spans
    assert span.parent is None
    assert seen.trace_id == span.context.trace_id
