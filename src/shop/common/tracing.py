"""OpenTelemetry tracing: spans for HTTP handlers, calls to other services and SQL, exported
over OTLP/HTTP, with W3C trace context (``traceparent``) on every call between services.

Tracing is on only where an endpoint is configured: ``SHOP_OTLP_ENDPOINT`` (a collector's base
URL, ``http://otel-collector:4318``), else the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``OTEL_SDK_DISABLED=true`` turns it off. Without one,
nothing is instrumented, so requests pay nothing for it, and the SDK, the OTLP exporter and the
instrumentations (``shop.common.tracing_sdk``, with protobuf, requests and httpx) are not even
imported: about 8 MB of RSS a process (tests/unit/test_runtime_imports.py).

A trace starts where work comes in: at a request (a server span), or at a span code opens
itself. A bare SQL statement or HTTP call with no enclosing span (readiness probes, the
recovery worker's polling, pool start-up) starts no trace of its own, so probes do not flood
the tracing backend. ``SHOP_TRACE_SAMPLE_RATIO`` keeps that share of new traces; a call
carrying a sampled ``traceparent`` is always recorded, so a trace is never cut in the middle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from fastapi import FastAPI
from opentelemetry import trace

from shop.common.metrics import record_trace_exemplars
from shop.common.settings import ServiceSettings

if TYPE_CHECKING:
    import aiohttp
    import httpx
    from opentelemetry.sdk.trace import TracerProvider

# Probes and scrapes are not worth a trace each.
EXCLUDED_URLS = "/health/live$,/health/ready$,/metrics$"
_Client = TypeVar("_Client", "httpx.AsyncClient", "httpx.Client")

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


def instrument_app(app: FastAPI, settings: ServiceSettings) -> None:
    """Trace the app's requests and SQL if an endpoint is configured (spans are exported once
    the lifespan runs ``exporting``). A service app (``trace_requests``) puts the server spans
    round itself, so its lean routes stay on and are traced like the rest; another app gets
    FastAPI's instrumentation."""
    global _provider
    if traces_endpoint(settings) is None:
        return
    from shop.common import tracing_sdk  # only when tracing: see the module's docstring

    if _provider is None:
        _provider = tracing_sdk.process_provider(settings)
        record_trace_exemplars()  # latency buckets link to their traces
    provider = _provider
    trace_requests = getattr(app, "trace_requests", None)
    if trace_requests is not None:
        trace_requests(
            lambda inner: tracing_sdk.server_spans(
                inner,
                provider,
                excluded_urls=EXCLUDED_URLS,
                ratio=tracing_sdk.sample_ratio(settings),
            )
        )
    else:
        tracing_sdk.instrument_fastapi(app, provider, excluded_urls=EXCLUDED_URLS)
    app.state.tracer_provider = provider


def aiohttp_trace_configs() -> list[aiohttp.TraceConfig]:
    """The trace configs an aiohttp session needs to trace its calls (none when off)."""
    if _provider is None:
        return []
    from shop.common import tracing_sdk

    return [tracing_sdk.aiohttp_tracing(_provider)]


def instrument_client(client: _Client) -> _Client:
    """Give a client's calls a span each and a ``traceparent`` header, if tracing is on."""
    if _provider is not None:
        from shop.common import tracing_sdk

        tracing_sdk.instrument_httpx(client, _provider)
    return client


@asynccontextmanager
async def exporting(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs, export its spans in batches; flush what is left at shutdown."""
    provider: TracerProvider | None = getattr(app.state, "tracer_provider", None)
    endpoint = traces_endpoint(app.state.settings)
    if provider is None or endpoint is None:
        yield
        return
    from shop.common import tracing_sdk

    processor = tracing_sdk.otlp_exporter(endpoint)
    provider.add_span_processor(processor)
    try:
        yield
    finally:
        # Blocks up to the export timeout if the collector is away: keep it off the loop.
        await asyncio.to_thread(processor.shutdown)


@asynccontextmanager
async def traced_process(settings: ServiceSettings) -> AsyncIterator[None]:
    """For a process that is not an app (the notification worker): if an endpoint is
    configured, a provider and its exporter while the body runs, so its consumers' spans join
    the traces their events carry (``traceparent``) and its calls to services are traced."""
    global _provider
    endpoint = traces_endpoint(settings)
    if endpoint is None:
        yield
        return
    from shop.common import tracing_sdk

    if _provider is None:
        _provider = tracing_sdk.process_provider(settings)
    processor = tracing_sdk.otlp_exporter(endpoint)
    _provider.add_span_processor(processor)
    try:
        yield
    finally:
        await asyncio.to_thread(processor.shutdown)


def name_server_span(span: trace.Span, method: str, route: str) -> None:
    """Name the request's server ``span`` (the current span as the request came in) after its
    route template, known once it is routed (the request middleware calls this for every
    request); nothing unless it is recording."""
    if _provider is None:
        return
    if span.is_recording() and route != "unmatched":
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


def record_exception(exc: BaseException) -> None:
    """Attach an exception to the current span (a no-op when nothing is recording)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
