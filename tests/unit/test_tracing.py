"""Tracing configuration: when it is on, where spans go, which new traces are kept."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from shop.common.settings import ServiceSettings
from shop.common.tracing import instrument_app, instrument_client, traces_endpoint
from shop.common.tracing_sdk import RequestRootSampler

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_tracing_is_off_without_an_endpoint() -> None:
    settings = ServiceSettings()
    assert traces_endpoint(settings) is None
    app = FastAPI()
    instrument_app(app, settings)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert getattr(app.state, "tracer_provider", None) is None
    client = httpx.AsyncClient()
    assert instrument_client(client) is client
    assert not getattr(client, "_is_instrumented_by_opentelemetry", False)


def test_endpoint_from_settings_or_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServiceSettings(otlp_endpoint="http://collector:4318/")
    assert traces_endpoint(settings) == "http://collector:4318/v1/traces"
    # The standard variables: the exporter reads them itself ("" = no explicit URL).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert traces_endpoint(ServiceSettings()) == ""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert traces_endpoint(settings) is None


def test_settings_refuse_a_ratio_outside_0_1() -> None:
    with pytest.raises(ValueError, match="trace_sample_ratio"):
        ServiceSettings(trace_sample_ratio=1.5)


def _parent(sampled: bool) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    context = SpanContext(trace_id=1, span_id=2, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(context))


def test_new_traces_start_at_requests_not_at_bare_sql_or_calls() -> None:
    sampler = ParentBased(root=RequestRootSampler(1.0))

    def decide(kind: SpanKind, parent: Context | None = None) -> Decision:
        return sampler.should_sample(parent, 0xABC, "span", kind).decision

    assert decide(SpanKind.SERVER) is Decision.RECORD_AND_SAMPLE
    assert decide(SpanKind.INTERNAL) is Decision.RECORD_AND_SAMPLE
    assert decide(SpanKind.CLIENT) is Decision.DROP  # a readiness probe's SELECT 1
    # Inside a trace, the caller's decision holds: a trace is never cut in the middle.
    assert decide(SpanKind.CLIENT, _parent(sampled=True)) is Decision.RECORD_AND_SAMPLE
    assert decide(SpanKind.SERVER, _parent(sampled=False)) is Decision.DROP


def test_ratio_keeps_a_share_of_new_traces() -> None:
    never = RequestRootSampler(0.0)
    assert never.should_sample(None, 0xABC, "GET /", SpanKind.SERVER).decision is Decision.DROP
    assert "0.0" in never.get_description()
