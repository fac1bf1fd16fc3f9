"""The gateway starts or continues the trace: a real Envoy (``shop.devtools.gateway``) with its
OpenTelemetry tracer in front of a stand-in upstream, exporting to the OTLP/HTTP receiver of
the live checks. What the upstream receives is what a service would continue (parent-based)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from shop.devtools.gateway import Gateway
from shop.devtools.processes import free_port
from tests.ha.conftest import needs_envoy
from tests.monitoring.live import OtlpReceiver, Span

pytestmark = [needs_envoy]
ROUTE = "/api/v1/products"  # public: no token needed at the edge

SERVER = 2  # OTLP's SPAN_KIND_SERVER


class _Upstream(ThreadingHTTPServer):
    """Answers every GET with [] and keeps the headers it was sent."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, str]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Upstream

    def do_GET(self) -> None:
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def gateway(tmp: Path, upstream: _Upstream, receiver: OtlpReceiver, sampling: float) -> Gateway:
    return Gateway(
        state_dir=tmp / "gateway",
        port=free_port(),
        admin_port=free_port(),
        upstreams={"products": [upstream.server_address[1]]},
        otlp_endpoint=receiver.endpoint,
        trace_sampling=sampling,
    )


def caller(flags: str) -> str:
    """A caller's traceparent in a trace of its own (sampled: flags 01)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{flags}"


def traceparent(headers: dict[str, str]) -> tuple[str, str, str]:
    """(trace id, parent span id, flags) of the traceparent the upstream was sent."""
    _version, trace_id, parent, flags = headers["traceparent"].split("-")
    return trace_id, parent, flags


def test_the_edge_starts_a_trace_or_continues_a_sampled_one(
    tmp_path: Path, upstream: _Upstream, receiver: OtlpReceiver
) -> None:
    sampled, unsampled = caller("01"), caller("00")
    gw = gateway(tmp_path, upstream, receiver, sampling=100.0)
    gw.start()
    try:
        upstream.seen.clear()
        with httpx.Client(base_url=gw.url, timeout=10) as edge:
            for header in ({}, {"traceparent": sampled}, {"traceparent": unsampled}):
                assert edge.get(ROUTE, headers=header).status_code == 200
        started, continued, declined = (traceparent(h) for h in upstream.seen)
        spans = receiver.wait_for(
            lambda s: {started[0], continued[0]} <= {x.trace_id for x in s},
            timeout=30,  # Envoy's tracer flushes every 5 s
            what="gateway span of both sampled requests",
        )
    finally:
        gw.stop()
    by_trace: dict[str, Span] = {s.trace_id: s for s in spans if s.service == "shop-gateway"}
    # No traceparent: the gateway's span is the root, and the service continues from it.
    root = by_trace[started[0]]
    assert (root.parent_id, root.kind, started[2]) == ("", SERVER, "01")
    assert root.name == f"gateway {ROUTE}"  # the route's decorator, not Envoy's "ingress"
    assert started[1] == root.span_id
    assert root.attributes["http.request.header.x_request_id"] == upstream.seen[0]["x-request-id"]
    # A sampled traceparent: the same trace, the gateway's span a child of the caller's.
    child = by_trace[continued[0]]
    assert continued[0] == sampled.split("-")[1]
    assert (child.parent_id, continued[1], continued[2]) == (
        sampled.split("-")[2],
        child.span_id,
        "01",
    )
    # An unsampled one stays unsampled: no span, and the services record none either.
    assert declined[0] == unsampled.split("-")[1]
    assert declined[2] == "00"
    assert declined[0] not in by_trace


def test_the_edge_decides_even_over_a_sampled_traceparent(
    tmp_path: Path, upstream: _Upstream, receiver: OtlpReceiver
) -> None:
    """At 0% nothing is kept, whatever the client claims: a client cannot make the platform
    trace (and store) its requests by sending traceparent ...-01."""
    gw = gateway(tmp_path, upstream, receiver, sampling=0.0)
    gw.start()
    try:
        upstream.seen.clear()
        with httpx.Client(base_url=gw.url, timeout=10) as edge:
            for header in ({}, {"traceparent": caller("01")}):
                assert edge.get(ROUTE, headers=header).status_code == 200
    finally:
        gw.stop()  # flushes what the tracer holds
    assert [traceparent(h)[2] for h in upstream.seen] == ["00", "00"]
    assert {s.trace_id for s in receiver.snapshot()} & {
        traceparent(h)[0] for h in upstream.seen
    } == set()
