"""The OpenTelemetry SDK side of tracing: the process's provider and sampler, the server spans
(OpenTelemetry's ASGI middleware), the aiohttp, httpx and asyncpg instrumentations and the OTLP
exporter. ``shop.common.tracing`` imports this only once an OTLP endpoint is configured, so a
service that does not trace never loads any of it (docs/performance.md, "Memory")."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import aiohttp
import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
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
from starlette.types import ASGIApp, Scope

from shop.common.settings import ServiceSettings
from shop.common.tracing_env import sample_ratio_from_env


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


def sample_ratio(settings: ServiceSettings) -> float:
    """The share of new traces kept (``tracing_env.sample_ratio_from_env``, with
    ``SHOP_TRACE_SAMPLE_RATIO`` as the default). A traced caller's decision is always followed
    (parent-based)."""
    return sample_ratio_from_env(os.environ, settings.trace_sample_ratio)


def process_provider(settings: ServiceSettings) -> TracerProvider:
    """The process's provider (made once: it also patches asyncpg for the whole process)."""
    resource = Resource.create(
        {
            "service.name": settings.service_name,
            "service.instance.id": settings.pod_name,
            "deployment.environment": settings.env.value,
        }
    )
    sampler = ParentBased(root=RequestRootSampler(sample_ratio(settings)))
    provider = TracerProvider(resource=resource, sampler=sampler)
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    return provider


def instrument_fastapi(app: FastAPI, provider: TracerProvider, *, excluded_urls: str) -> None:
    """For an app that is not a ``ServiceApp`` (the storefront): FastAPI's instrumentation."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=excluded_urls,
        # As attribute http.request.header.x_request_id: from a log line to its trace and back.
        http_capture_headers_server_request=["x-request-id"],
        # One span per request, not one more per ASGI message.
        exclude_spans=["receive", "send"],
    )


def server_spans(app: ASGIApp, provider: TracerProvider, *, excluded_urls: str) -> ASGIApp:
    """``app`` with a server span round every request: OpenTelemetry's ASGI middleware, the one
    FastAPI's instrumentation puts round the whole stack, here put round the service app itself
    so that the lean front stays on (shop.common.fastpath). The span starts named by the method
    alone; the request middleware names it ``METHOD route-template`` and sets ``http.route`` once
    the request is routed (``shop.common.tracing.name_server_span``), lean or not, and only if
    it records: an unsampled request pays for no route matching of its own."""

    def details(scope: Scope) -> tuple[str, dict[str, Any]]:
        return str(scope.get("method") or "HTTP"), {}

    return OpenTelemetryMiddleware(
        app,
        excluded_urls=excluded_urls,
        default_span_details=details,
        tracer_provider=provider,
        # As attribute http.request.header.x_request_id: from a log line to its trace and back.
        http_capture_headers_server_request=["x-request-id"],
        # One span per request, not one more per ASGI message.
        exclude_spans=["receive", "send"],
    )


def aiohttp_tracing(provider: TracerProvider) -> aiohttp.TraceConfig:
    """A client span and a ``traceparent`` for every call an aiohttp session makes
    (OpenTelemetry's aiohttp client instrumentation)."""
    return create_trace_config(tracer_provider=provider)


def instrument_httpx(client: httpx.AsyncClient | httpx.Client, provider: TracerProvider) -> None:
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


def otlp_exporter(endpoint: str) -> BatchSpanProcessor:
    """Batches of spans over OTLP/HTTP to ``endpoint`` ("": the exporter reads OTEL_*)."""
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint or None, timeout=5))
