"""The notification worker exports its spans: a process with no app sets tracing up with
``worker_tracing``, and a consumer's span continues the event's ``traceparent``. It runs in a
child process (the tracer provider is one per process), exporting to the live checks' OTLP
receiver."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from tests.conftest import ROOT
from tests.monitoring.live import OtlpReceiver

CONSUMER = 5  # OTLP's SPAN_KIND_CONSUMER

CHILD = """
import asyncio, sys
from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from shop.common.events.consumer import tracer  # the consumers' tracer, as on_message uses it
from shop.common.tracing import worker_tracing
from shop.notifications.settings import NotificationsSettings

async def main():
    async with worker_tracing(NotificationsSettings()):
        parent = TraceContextTextMapPropagator().extract({"traceparent": sys.argv[1]})
        token = context.attach(parent)
        try:
            kind = trace.SpanKind.CONSUMER
            with tracer.start_as_current_span("notifications order.paid", kind=kind):
                pass
        finally:
            context.detach(token)

asyncio.run(main())
"""


def test_the_worker_exports_consumer_spans_that_join_the_events_trace() -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    with OtlpReceiver() as receiver:
        env = {
            **os.environ,
            "SHOP_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0",  # a new trace would be dropped: the parent decides
        }
        done = subprocess.run(
            [sys.executable, "-c", CHILD, f"00-{trace_id}-{parent_id}-01"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        spans = receiver.wait_for(lambda s: bool(s), timeout=30, what="the consumer's span")
    (span,) = spans
    assert (span.service, span.kind) == ("notification-service", CONSUMER)
    assert (span.trace_id, span.parent_id) == (trace_id, parent_id)
