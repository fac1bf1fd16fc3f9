"""Latency observations carry the trace id of their sampled span as an exemplar, once tracing
turns exemplars on, and ``/metrics`` shows them in OpenMetrics when the scraper asks for it."""

from __future__ import annotations

import re

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from shop.common import metrics
from shop.common.metrics import observe_request, render_metrics


@pytest.fixture
def exemplars_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics._Exemplars, "on", True)


def bucket_lines(route: str, accept: str | None = OPENMETRICS) -> list[str]:
    payload, _type = render_metrics(accept)
    return [
        line
        for line in payload.decode().splitlines()
        if line.startswith("http_request_duration_seconds_bucket") and f'route="{route}"' in line
    ]


def exemplar_ids(route: str) -> set[str]:
    return {m for line in bucket_lines(route) for m in re.findall(r'trace_id="([0-9a-f]+)"', line)}


def test_a_request_in_a_sampled_span_leaves_its_trace_id_in_its_bucket(exemplars_on) -> None:
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with tracer.start_as_current_span("GET /exemplar/sampled") as span:
        observe_request("GET", "/exemplar/sampled", 200, 0.2)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert exemplar_ids("/exemplar/sampled") == {trace_id}
    (line,) = [line for line in bucket_lines("/exemplar/sampled") if "trace_id" in line]
    assert 'le="0.25"' in line  # the bucket the observation fell in
    assert line.split(" # ")[1].split()[1] == "0.2"  # the exemplar's value: the duration


def test_no_exemplar_outside_a_sampled_span(exemplars_on) -> None:
    observe_request("GET", "/exemplar/none", 200, 0.2)
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with tracer.start_as_current_span("GET /exemplar/none"):
        observe_request("GET", "/exemplar/none", 200, 0.2)
    assert bucket_lines("/exemplar/none")  # observed...
    assert exemplar_ids("/exemplar/none") == set()  # ...with no trace to link to


def test_with_tracing_off_no_exemplar_even_in_a_span() -> None:
    assert metrics._Exemplars.on is False  # only shop.common.tracing turns it on
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with tracer.start_as_current_span("GET /exemplar/off"):
        observe_request("GET", "/exemplar/off", 200, 0.2)
    assert exemplar_ids("/exemplar/off") == set()


def test_metrics_answer_in_openmetrics_only_when_asked(exemplars_on) -> None:
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with tracer.start_as_current_span("GET /exemplar/format"):
        observe_request("GET", "/exemplar/format", 200, 0.2)
    # Prometheus' own Accept header, as it scrapes.
    prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    payload, content_type = render_metrics(prometheus)
    assert content_type == OPENMETRICS
    assert payload.decode().endswith("# EOF\n")
    _plain, plain_type = render_metrics("text/plain")
    assert plain_type.startswith("text/plain")
    assert "trace_id" not in "".join(bucket_lines("/exemplar/format", "text/plain"))
    assert render_metrics(None)[1] == plain_type
