"""What an unsampled request's SQL statement and call to another service cost in their client
instrumentation, in-process, A/B in one run: OpenTelemetry's asyncpg and aiohttp
instrumentations as they are against ``tracing_sdk``'s (``RecordedSQLInstrumentor``,
``aiohttp_tracing``: the sampler asked first). The statement is a no-op and the call never
leaves the process, so what is timed is the instrumentation's work alone (and the harness's,
the same on both sides: the call's trace parameters).

    .venv/bin/python -m bench.client_spans   # CPU microseconds per statement and call, three rounds
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDict
from opentelemetry import context, trace
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from shop.common.tracing_sdk import RecordedSQLInstrumentor, RequestRootSampler, aiohttp_tracing

SQL = "SELECT id, name, price FROM products WHERE id = $1"
URL = yarl.URL("http://product-service:8000/api/v1/products/1")


class _Connection:
    """What the instrumentation reads of an asyncpg connection."""

    _params = SimpleNamespace(database="products", user="shop")
    _addr = ("127.0.0.1", 5432)


async def _statement(*args: Any, **kwargs: Any) -> None:
    return None


def _sql(instrumentor: Any) -> Callable[[], Awaitable[Any]]:
    connection = _Connection()
    return lambda: instrumentor._do_execute(_statement, connection, (SQL, 1), {})


def _call(config: aiohttp.TraceConfig) -> Callable[[], Awaitable[None]]:
    (start,), (end,) = config.on_request_start, config.on_request_end
    session: Any = None  # the handlers do not read it
    response: Any = SimpleNamespace(status=200, headers=CIMultiDict[str]())

    async def call() -> None:
        trace_context = config.trace_config_ctx(trace_request_ctx=None)
        headers: CIMultiDict[str] = CIMultiDict({"x-request-id": "r1"})
        await start(session, trace_context, aiohttp.TraceRequestStartParams("GET", URL, headers))
        await end(
            session, trace_context, aiohttp.TraceRequestEndParams("GET", URL, headers, response)
        )

    return call


async def _per_call_us(run: Callable[[], Awaitable[Any]], n: int = 20_000) -> float:
    for _ in range(1000):
        await run()
    started = time.process_time()
    for _ in range(n):
        await run()
    return (time.process_time() - started) / n * 1e6


async def main() -> None:
    provider = TracerProvider(sampler=ParentBased(root=RequestRootSampler(0.1)))
    theirs = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    ours = RecordedSQLInstrumentor(provider.sampler)
    for instrumentor in (theirs, ours):  # their tracers; asyncpg itself is never called
        instrumentor.instrument(tracer_provider=provider)
    unsampled = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True)
    context.attach(trace.set_span_in_context(NonRecordingSpan(unsampled)))
    assert not unsampled.trace_flags & TraceFlags.SAMPLED
    row = {
        "asyncpg instrumentation, statement": _sql(theirs),
        "RecordedSQLInstrumentor, statement": _sql(ours),
        "aiohttp instrumentation, call": _call(create_trace_config(tracer_provider=provider)),
        "aiohttp_tracing, call": _call(aiohttp_tracing(provider)),
    }
    for _ in range(3):
        figures = [f"{name} {await _per_call_us(run):.1f} us" for name, run in row.items()]
        print(" | ".join(figures))


if __name__ == "__main__":
    asyncio.run(main())
