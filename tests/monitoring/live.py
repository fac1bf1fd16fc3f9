"""The four services as processes, traced into an OTLP/HTTP receiver, for the live checks.

The receiver stands where an OpenTelemetry Collector would: it accepts what the services'
OTLP/HTTP exporters POST to ``/v1/traces`` and decodes it with opentelemetry-proto.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from tests.harness import Platform

SERVER = ProtoSpan.SpanKind.SPAN_KIND_SERVER
CLIENT = ProtoSpan.SpanKind.SPAN_KIND_CLIENT
CONSUMER = ProtoSpan.SpanKind.SPAN_KIND_CONSUMER
ADMIN_PASSWORD = "live-admin-password"
PASSWORD = "a long password"


@dataclass(frozen=True)
class Span:
    service: str  # the resource's service.name
    trace_id: str  # hex
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: int
    attributes: dict[str, Any]
    scope: str = ""  # the instrumentation that made it (its instrumentation scope's name)


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


class OtlpReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP (protobuf) trace receiver on a free loopback port, in a thread."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL to configure (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
        self.server_close()

    def add(self, request: ExportTraceServiceRequest) -> None:
        received = [
            Span(
                service=str(_attributes(rs.resource.attributes).get("service.name")),
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_id=span.parent_span_id.hex(),
                name=span.name,
                kind=span.kind,
                attributes=_attributes(span.attributes),
                scope=scope.scope.name,
            )
            for rs in request.resource_spans
            for scope in rs.scope_spans
            for span in scope.spans
        ]
        with self.lock:
            self.spans.extend(received)

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)

    def wait_for(
        self, found: Callable[[list[Span]], bool], *, timeout: float, what: str
    ) -> list[Span]:
        """Poll the spans received until ``found`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout}s, no {what} among {len(spans)} spans")
            time.sleep(0.1)


class _OtlpHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        if self.headers.get("transfer-encoding") == "chunked":  # Envoy's exporter sends so
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.add(ExportTraceServiceRequest.FromString(body))
        payload = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_chunked(self) -> bytes:
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline().strip():  # trailers, up to the empty line
            pass
        return b"".join(chunks)

    def log_message(self, *_: Any) -> None:
        pass


@dataclass
class TracedPlatform(Platform):
    """The harness's platform, exporting its spans to ``receiver``."""

    receiver: OtlpReceiver | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {name: proc.port for name, proc in self.procs.items()}


def bearer(platform: TracedPlatform, username: str, password: str) -> dict[str, str]:
    with platform.sync_client("users") as users:
        response = users.post(
            "/api/v1/users/login", json={"username": username, "password": password}
        )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def register(platform: TracedPlatform, username: str) -> dict[str, str]:
    """Register a customer; return its Authorization header."""
    with platform.sync_client("users") as users:
        response = users.post(
            "/api/v1/users/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
    assert response.status_code == 201, response.text
    return bearer(platform, username, PASSWORD)


def add_product(platform: TracedPlatform, *, name: str, price: str, stock: int) -> int:
    admin = bearer(platform, "admin", ADMIN_PASSWORD)
    with platform.sync_client("products") as products:
        response = products.post(
            "/api/v1/products",
            headers=admin,
            json={"name": name, "price": price, "stock": stock, "category": "live"},
        )
    assert response.status_code == 201, response.text
    product_id: int = response.json()["id"]
    return product_id
