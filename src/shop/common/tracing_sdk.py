"""The OpenTelemetry SDK side of tracing: the process's provider and sampler, the server spans
(OpenTelemetry's ASGI middleware), the aiohttp, httpx and asyncpg instrumentations and the OTLP
exporter. ``shop.common.tracing`` imports this only once an OTLP endpoint is configured, so a
service that does not trace never loads any of it (docs/performance.md, "Memory")."""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from types import SimpleNamespace
from typing import cast

import aiohttp
import httpx
from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.asgi import (
    OpenTelemetryMiddleware,
    asgi_getter,
    collect_custom_headers_attributes,
    collect_request_attributes,
    get_host_port_url_tuple,
    set_status_code,
)
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
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
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.http import normalise_request_header_name
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop.common.settings import ServiceSettings
from shop.common.tracing_env import sample_ratio_from_env

# A server span's sampling decision made before the span (``server_spans``): the sampler
# follows it, so a request the fast path chose to trace is traced, once, at the chosen ratio.
_DECIDED: ContextVar[bool | None] = ContextVar("shop_server_span_sampled", default=None)


class RequestRootSampler(Sampler):
    """For spans without a parent: sample server (and explicitly opened internal) spans at
    ``ratio`` (or as ``server_spans`` decided); drop client spans, which are SQL or HTTP calls
    made outside any request."""

    def __init__(self, ratio: float = 1.0) -> None:
        self._ratio = TraceIdRatioBased(ratio)
        self.ratio = ratio

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
        decided = _DECIDED.get() if kind is SpanKind.SERVER else None
        if decided is not None:
            decision = Decision.RECORD_AND_SAMPLE if decided else Decision.DROP
            return SamplingResult(decision, attributes if decided else None, trace_state)
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
    RecordedSQLInstrumentor(sampler).instrument(tracer_provider=provider)
    return provider


def client_span_recorded(sampler: Sampler) -> bool:
    """Whether ``sampler`` would record a client span started now, in the current context.

    The trace id is not drawn: a client span is never a trace's root (``RequestRootSampler``
    drops those), so the decision is its parent's."""
    return sampler.should_sample(None, 0, "", SpanKind.CLIENT).decision is not Decision.DROP


_Statement = Callable[..., Awaitable[object]]  # an asyncpg connection's method, as wrapt hands it


def _when_recorded(wrapper: str) -> Callable[..., Coroutine[object, object, object]]:
    """``AsyncPGInstrumentor``'s ``wrapper``, run only for a statement whose span would be
    recorded; any other statement runs as it is."""

    async def run(
        self: RecordedSQLInstrumentor,
        func: _Statement,
        instance: object,
        args: Sequence[object],
        kwargs: Mapping[str, object],
    ) -> object:
        if not client_span_recorded(self._sampler):
            return await func(*args, **kwargs)
        traced = getattr(AsyncPGInstrumentor, wrapper)
        return await traced(self, func, instance, args, kwargs)

    return run


class RecordedSQLInstrumentor(AsyncPGInstrumentor):
    """OpenTelemetry's asyncpg instrumentation, for statements whose span would be recorded.

    It parses each statement for the span's name and builds its attributes before it starts
    the span, which the sampler then drops in an unsampled request (nine in ten) or outside
    any request: about 27 us a statement for nothing (timed in-process,
    docs/observability.md). This asks the sampler first; a span it would keep is made as
    before."""

    _instance = None  # its own one instance, not its base class's (BaseInstrumentor.__new__)

    def __init__(self, sampler: Sampler) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._sampler = sampler

    # Both of the base class's wrappers: statements, and a cursor's fetches.
    _do_execute = _when_recorded("_do_execute")
    _do_cursor_execute = _when_recorded("_do_cursor_execute")


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


def server_spans(
    app: ASGIApp, provider: TracerProvider, *, excluded_urls: str, ratio: float
) -> ASGIApp:
    """``app`` with a server span round every request it samples, and the trace context of
    every other one.

    A sampled request (a caller's sampled ``traceparent``, or a new trace kept at ``ratio``)
    gets the span OpenTelemetry's ASGI middleware would make (``lean_server_span``), here
    round the service app itself so that the lean front stays on (shop.common.fastpath). Its
    span starts named by the method; the request middleware names it ``METHOD
    route-template`` once routed (``shop.common.tracing.name_server_span``).

    An unsampled request skips that span: the middleware cost about 125 us a request even when
    it records nothing (its request attributes and metrics are built first; timed in-process,
    docs/observability.md). It runs in its trace context alone (the caller's, or a new trace's
    ids, not sampled), so its calls carry a ``traceparent`` that says "not sampled" and the
    services it calls keep the decision instead of starting traces of their own.
    """
    full = lean_server_span(
        OpenTelemetryMiddleware(
            app,
            excluded_urls=excluded_urls,
            default_span_details=lambda scope: (str(scope.get("method") or "HTTP"), {}),
            tracer_provider=provider,
            # As attribute http.request.header.x_request_id: from a log line to its trace and
            # back.
            http_capture_headers_server_request=["x-request-id"],
            # One span per request, not one more per ASGI message.
            exclude_spans=["receive", "send"],
        )
    )
    propagator = TraceContextTextMapPropagator()
    bound = round(ratio * 2**64)  # TraceIdRatioBased's rule, on a fresh 64-bit draw
    unsampled = TraceFlags(TraceFlags.DEFAULT)

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        context = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                context = propagator.extract({"traceparent": value.decode("latin-1")})
                parent = trace.get_current_span(context).get_span_context()
                if not parent.is_valid:
                    context = None  # malformed: a new trace
                elif parent.trace_flags.sampled:
                    await full(scope, receive, send)  # parent-based: the caller decided
                    return
                break
        if context is None:
            if random.getrandbits(64) < bound:
                decided = _DECIDED.set(True)
                try:
                    await full(scope, receive, send)
                finally:
                    _DECIDED.reset(decided)
                return
            context = trace.set_span_in_context(
                NonRecordingSpan(
                    SpanContext(
                        trace_id=random.getrandbits(128) or 1,
                        span_id=random.getrandbits(64) or 1,
                        is_remote=False,
                        trace_flags=unsampled,
                    )
                )
            )
        # Unsampled: the app runs in the trace context alone (attached here, not in a helper
        # coroutine: one frame fewer on nine requests in ten).
        token = otel_context.attach(context)
        try:
            await app(scope, receive, send)
        finally:
            otel_context.detach(token)

    return traced


def lean_server_span(middleware: OpenTelemetryMiddleware) -> ASGIApp:
    """``middleware``'s server span of an HTTP request without its per-request extras.

    The span is the middleware's own, built from its configuration and with its functions
    (``collect_request_attributes``, ``set_status_code``, the global propagator's
    ``extract``; tests/unit/test_lean_server_span.py runs both on the same requests). What it
    leaves out is what the services never had: its ``http.server.*`` metrics (no meter
    provider is set, so they were no-ops, still paid for: their attributes were built twice a
    request), its attributes set a second time on the started span, and its ``send`` wrapper's
    work for response headers nobody captures (timed in-process: docs/observability.md). A
    configuration that needs one of those extras (response headers captured, a response
    propagator) keeps the middleware.
    """
    inner = middleware.app
    tracer = middleware.tracer
    excluded = middleware.excluded_urls
    request_headers = middleware.http_capture_headers_server_request
    sanitize = middleware.http_capture_headers_sanitize_fields
    mode = middleware._sem_conv_opt_in_mode
    response_propagator = get_global_response_propagator()  # type: ignore[no-untyped-call]
    if middleware.http_capture_headers_server_response or response_propagator:
        return middleware

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or trace.get_current_span() is not trace.INVALID_SPAN
            or not is_http_instrumentation_enabled()
        ):
            await middleware(scope, receive, send)  # websockets, a span within a span, off
            return
        request = cast("dict[str, object]", scope)  # the server's scope is a dict
        url = get_host_port_url_tuple(request)[2]  # type: ignore[no-untyped-call]
        if excluded and excluded.url_disabled(url):
            await inner(scope, receive, send)
            return
        name, extra = middleware.default_span_details(request)
        attributes = collect_request_attributes(request, mode)  # type: ignore[no-untyped-call]
        attributes.update(extra)
        if request_headers:
            attributes.update(
                collect_custom_headers_attributes(
                    request, sanitize, request_headers, normalise_request_header_name
                )
            )
        parent = propagate.extract(request, getter=asgi_getter)
        span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                set_status_code(span, message["status"], None, mode)  # type: ignore[no-untyped-call]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                span.end()  # when the middleware ends it: at the response's last byte

        token = otel_context.attach(parent)
        try:
            with trace.use_span(span, end_on_exit=False):
                await inner(scope, receive, send_with_status)
        finally:
            otel_context.detach(token)
            if span.is_recording():
                span.end()

    return traced


def aiohttp_tracing(provider: TracerProvider) -> aiohttp.TraceConfig:
    """A client span and a ``traceparent`` for every call an aiohttp session makes
    (OpenTelemetry's aiohttp client instrumentation).

    A call whose span the sampler would drop (in an unsampled request) gets only the
    ``traceparent``, which tells the service called that the trace is not sampled: the
    instrumentation would first build the span's attributes (the URL redacted and parsed,
    every request header copied) for a span nobody records. Such a ``traceparent`` names the
    caller's span, as no span of the call's own exists."""
    config = create_trace_config(tracer_provider=provider)
    (start,) = config.on_request_start
    sampler = provider.sampler

    async def start_if_recorded(
        session: aiohttp.ClientSession,
        trace_config_ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        if client_span_recorded(sampler):
            await start(session, trace_config_ctx, params)
        elif is_http_instrumentation_enabled() and not trace_config_ctx.excluded_urls.url_disabled(
            str(params.url)
        ):
            propagate.inject(params.headers)  # as the instrumentation's start ends

    config.on_request_start[0] = start_if_recorded
    return config


def instrument_httpx(client: httpx.AsyncClient | httpx.Client, provider: TracerProvider) -> None:
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


def otlp_exporter(endpoint: str) -> BatchSpanProcessor:
    """Batches of spans over OTLP/HTTP to ``endpoint`` ("": the exporter reads OTEL_*)."""
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint or None, timeout=5))
