"""OpenTelemetry tracing: spans for HTTP handlers, calls to other services and SQL, exported
over OTLP/HTTP, with W3C trace context (``traceparent``) on every call between services.

Tracing is on only where an endpoint is configured: ``SHOP_OTLP_ENDPOINT`` (a collector's base
URL, ``http://otel-collector:4318``), else the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``OTEL_SDK_DISABLED=true`` turns it off. Without one,
nothing is instrumented, so requests pay nothing for it.

A trace starts where work comes in: at a request (a server span), or at a span code opens
itself. A bare SQL statement or HTTP call with no enclosing span (readiness probes, the
recovery worker's polling, pool start-up) starts no trace of its own, so probes do not flood
the tracing backend. ``SHOP_TRACE_SAMPLE_RATIO`` keeps that share of new traces; a call
carrying a sampled ``traceparent`` is always recorded, so a trace is never cut in the middle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from shop.common.settings import ServiceSettings

# Probes and scrapes are not worth a trace each.
EXCLUDED_URLS = "/health/live$,/health/ready$,/metrics$"
_Client = TypeVar("_Client", httpx.AsyncClient, httpx.Client)

# One provider per process: the SQL instrumentation patches asyncpg for the whole process.
_provider: TracerProvider | None = None


def traces_endpoint(settings: ServiceSettings) -> str | None:
    """Where spans go (a full OTLP/HTTP traces URL, or "" to let the exporter read OTEL_*);
    None when tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if settings.otlp_endpoint:
        return settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        return ""
    return None


class RequestRootSampler(Sampler):
    """For spans without a parent: sample server (and explicitly opened internal) spans at
    ``ratio``; drop client spans, which are SQL or HTTP calls made outside any request."""

    def __init__(self, ratio: float = 1.0) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP, None, trace_state)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"RequestRootSampler{{{self._ratio.get_description()}}}"


def _process_provider(settings: ServiceSettings) -> TracerProvider:
    global _provider
    if _provider is None:
        resource = Resource.create(
            {
                "service.name": settings.service_name,
                "service.instance.id": settings.pod_name,
                "deployment.environment": settings.env.value,
            }
        )
        sampler = ParentBased(root=RequestRootSampler(settings.trace_sample_ratio))
        _provider = TracerProvider(resource=resource, sampler=sampler)
        trace.set_tracer_provider(_provider)
        AsyncPGInstrumentor().instrument(tracer_provider=_provider)  # type: ignore[no-untyped-call]
    return _provider


def instrument_app(app: FastAPI, settings: ServiceSettings) -> None:
    """Trace the app's requests and SQL if an endpoint is configured (spans are exported once
    the lifespan runs ``exporting``)."""
    if traces_endpoint(settings) is None:
        return
    provider = _process_provider(settings)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        # As attribute http.request.header.x_request_id: from a log line to its trace and back.
        http_capture_headers_server_request=["x-request-id"],
        # One span per request, not one more per ASGI message.
        exclude_spans=["receive", "send"],
    )
    app.state.tracer_provider = provider


def tracing_enabled() -> bool:
    """Whether this process traces (``instrument_app`` found an OTLP endpoint)."""
    return _provider is not None


def instrument_client(client: _Client) -> _Client:
    """Give a client's calls a span each and a ``traceparent`` header, if tracing is on."""
    if _provider is not None:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_provider)
    return client


@asynccontextmanager
async def exporting(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs, export its spans in batches; flush what is left at shutdown."""
    provider: TracerProvider | None = getattr(app.state, "tracer_provider", None)
    endpoint = traces_endpoint(app.state.settings)
    if provider is None or endpoint is None:
        yield
        return
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint or None, timeout=5))
    provider.add_span_processor(processor)
    try:
        yield
    finally:
        # Blocks up to the export timeout if the collector is away: keep it off the loop.
        await asyncio.to_thread(processor.shutdown)


def record_exception(exc: BaseException) -> None:
    """Attach an exception to the current span (a no-op when nothing is recording)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
