"""What a request costs in the server-span layer when tracing is on and it is not sampled,
in-process, A/B in one run: OpenTelemetry's ASGI middleware as it is (what FastAPI's
instrumentation installs) against ``tracing_sdk.server_spans`` (sampling decided first),
for a new trace and for a caller's unsampled ``traceparent``, with a bare ASGI app under both.

    .venv/bin/python -m bench.tracing_overhead   # microseconds per request, three rounds
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased

from shop.common.tracing_sdk import RequestRootSampler, server_spans

SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "GET",
    "path": "/api/v1/products/1",
    "raw_path": b"/api/v1/products/1",
    "query_string": b"",
    "headers": [(b"host", b"x"), (b"user-agent", b"wrk"), (b"x-request-id", b"abc")],
    "scheme": "http",
    "server": ("127.0.0.1", 80),
    "client": ("127.0.0.1", 5555),
    "http_version": "1.1",
    "root_path": "",
}
UNSAMPLED_PARENT = (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_: Any) -> None:
    return None


async def _per_request_us(app: Any, scope: dict[str, Any], n: int = 20_000) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), _receive, _send)
    return (time.perf_counter() - started) / n * 1e6


async def main() -> None:
    provider = TracerProvider(sampler=ParentBased(root=RequestRootSampler(0.0)))
    asgi = OpenTelemetryMiddleware(
        _app,
        tracer_provider=provider,
        default_span_details=lambda scope: ("GET", {}),
        http_capture_headers_server_request=["x-request-id"],
        exclude_spans=["receive", "send"],
    )
    ours = server_spans(_app, provider, excluded_urls="/health/live$", ratio=0.0)
    child = dict(SCOPE, headers=[*SCOPE["headers"], UNSAMPLED_PARENT])
    for _ in range(3):
        row = {
            "bare app": await _per_request_us(_app, SCOPE),
            "ASGI middleware, new trace": await _per_request_us(asgi, SCOPE),
            "server_spans, new trace": await _per_request_us(ours, SCOPE),
            "ASGI middleware, unsampled traceparent": await _per_request_us(asgi, child),
            "server_spans, unsampled traceparent": await _per_request_us(ours, child),
        }
        print(" | ".join(f"{k} {v:.1f} us" for k, v in row.items()))


if __name__ == "__main__":
    asyncio.run(main())
