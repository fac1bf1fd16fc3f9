"""Client spans only where they are recorded (``tracing_sdk.RecordedSQLInstrumentor``,
``tracing_sdk.aiohttp_tracing``): a statement or a call in an unsampled request makes no span
and builds nothing for one, and the call still tells the service it calls that the trace is
not sampled; in a sampled request both are traced as OpenTelemetry's instrumentations trace
them. A provider of the test's own and spans kept in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import yarl
from multidict import CIMultiDict
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from shop.common.tracing_sdk import RecordedSQLInstrumentor, RequestRootSampler, aiohttp_tracing

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SQL = "SELECT id, name FROM products WHERE id = $1"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(sampler=ParentBased(root=RequestRootSampler(1.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def sql(provider: TracerProvider) -> Iterator[RecordedSQLInstrumentor]:
    instrumentor = RecordedSQLInstrumentor(provider.sampler)
    instrumentor.instrument(tracer_provider=provider)
    yield instrumentor
    instrumentor.uninstrument()


class _Connection:
    """What the instrumentation reads of an asyncpg connection."""

    _params = SimpleNamespace(database="products", user="shop")
    _addr = ("127.0.0.1", 5432)


def _within(sampled: bool | None) -> Any:
    """A request's context: a server span of ``provider``'s when sampled, the trace context of
    an unsampled request when not, no context at all when None."""
    if sampled is None:
        return trace.use_span(trace.INVALID_SPAN)
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return trace.use_span(NonRecordingSpan(SpanContext(TRACE, 0xB7AD6B7169203331, True, flags)))


async def _statement(*args: Any, **kwargs: Any) -> str:
    return "the rows"


@pytest.mark.parametrize("sampled", [False, None])
def test_a_statement_outside_a_sampled_trace_makes_no_span(
    sampled: bool | None, sql: RecordedSQLInstrumentor, exporter: InMemorySpanExporter
) -> None:
    async def run() -> Any:
        with _within(sampled):
            return await sql._do_execute(_statement, _Connection(), (SQL, 1), {})

    assert asyncio.run(run()) == "the rows"
    assert exporter.get_finished_spans() == ()


def test_a_statement_in_a_sampled_trace_is_the_instrumentations_span(
    sql: RecordedSQLInstrumentor, exporter: InMemorySpanExporter
) -> None:
    async def run() -> Any:
        with _within(True):
            return await sql._do_execute(_statement, _Connection(), (SQL, 1), {})

    assert asyncio.run(run()) == "the rows"
    (span,) = exporter.get_finished_spans()
    assert (span.name, span.kind, span.context.trace_id) == ("SELECT", trace.SpanKind.CLIENT, TRACE)
    assert (span.attributes or {})["db.statement"] == SQL


def _call(provider: TracerProvider, sampled: bool) -> CIMultiDict[str]:
    """One call's start and end through the trace config: the headers it goes out with."""
    config = aiohttp_tracing(provider)
    (start,), (end,) = config.on_request_start, config.on_request_end
    url = yarl.URL("http://product-service:8000/api/v1/products/1")
    headers: CIMultiDict[str] = CIMultiDict({"x-request-id": "r1"})
    response: Any = SimpleNamespace(status=200, headers=CIMultiDict[str]())
    session: Any = None  # the handlers do not read it

    async def run() -> None:
        with _within(sampled):
            context = config.trace_config_ctx(trace_request_ctx=None)
            await start(session, context, aiohttp.TraceRequestStartParams("GET", url, headers))
            ended = aiohttp.TraceRequestEndParams("GET", url, headers, response)
            await end(session, context, ended)

    asyncio.run(run())
    return headers


def test_a_call_in_an_unsampled_trace_passes_the_decision_on_and_makes_no_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    headers = _call(provider, sampled=False)
    assert headers["traceparent"] == f"00-{TRACE:032x}-b7ad6b7169203331-00"
    assert exporter.get_finished_spans() == ()


def test_a_call_in_a_sampled_trace_is_a_client_span_its_traceparent_names(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    headers = _call(provider, sampled=True)
    (span,) = exporter.get_finished_spans()
    assert span.kind is trace.SpanKind.CLIENT
    assert (span.attributes or {})["http.status_code"] == 200
    assert headers["traceparent"] == f"00-{TRACE:032x}-{span.context.span_id:016x}-01"
