"""The one pure-ASGI middleware of every service: request id, body limit, headers, metrics, log.

One layer instead of two (this and a metrics middleware): each layer is a coroutine call and a
``send`` wrapper per ASGI message, on every request (docs/performance.md, the A/B runs).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time

import orjson
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop.common.context import request_id_var, user_id_var
from shop.common.errors import PROBLEM_CONTENT_TYPE, problem_body
from shop.common.logging import access_log, get_logger
from shop.common.metrics import HTTP_EXCEPTIONS, in_progress, observe_request
from shop.common.tracing import name_server_span, record_exception

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
]
# Responses are private unless the route says otherwise (the catalogue's public, max-age=N).
_NO_STORE = (b"cache-control", b"no-store")
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})

log = get_logger("shop.http")


class _RequestIds:
    """``req-`` and 32 hex digits, unique without a syscall per request: a random prefix per
    process (drawn again in a forked child) and a counter (uuid4 read os.urandom each time)."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = f"req-{secrets.token_hex(8)}"
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_request_ids = _RequestIds()


class _BodyTooLarge(BaseException):
    """Not an Exception on purpose: FastAPI turns any Exception raised while it reads the body
    into a 400, and this must reach the middleware to become a 413."""


class RequestContextMiddleware:
    """Per request: take or make the X-Request-ID, bind it for logs and outbound calls, echo it;
    refuse bodies over the limit with 413; add security headers; turn anything unexpected into
    a 500 problem (logged once, never shown); count and time the request by its route template
    (``shop.common.metrics``); write one access-log line."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, content_security_policy: str | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        # APIs serve no documents: nothing may load. An app with pages passes its own policy.
        self.csp = (
            _API_CSP
            if content_security_policy is None
            else (_API_CSP[0], content_security_policy.encode())
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        content_length = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
                request_id = value.decode()
            elif name == b"content-length":
                content_length = int(value) if value.isdigit() else None
        request_id = request_id or _request_ids.next()
        # The request's server span (or its unsampled trace context), set round this layer:
        # looked up once, for its name, the latency's exemplar and the access-log line.
        span = trace.get_current_span()
        rid_token = request_id_var.set(request_id)
        uid_token = user_id_var.set(None)
        started = time.perf_counter()
        status = 500
        response_started = False
        is_docs = scope["path"] in ("/docs", "/redoc") or scope["path"].startswith("/docs/")
        extra_headers = [(REQUEST_ID_HEADER, request_id.encode()), *SECURITY_HEADERS]
        if not is_docs:
            extra_headers.append(self.csp)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                # Routed by now, and the server span still open (it ends with the body).
                template = getattr(scope.get("route"), "path", None) or "unmatched"
                name_server_span(span, method, template)
                headers = [*message.get("headers", []), *extra_headers]
                if not any(name == b"cache-control" for name, _ in headers):
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        method = scope["method"]
        running = in_progress(method)
        running.inc()
        try:
            if content_length is not None and content_length > self.max_body:
                await self._problem(
                    send_wrapper,
                    413,
                    "Payload Too Large",
                    f"The body may be at most {self.max_body} bytes.",
                )
            else:
                await self.app(scope, receive_limited, send_wrapper)
        except _BodyTooLarge:
            if not response_started:
                await self._problem(
                    send_wrapper,
                    413,
                    "Payload Too Large",
                    f"The body may be at most {self.max_body} bytes.",
                )
        except Exception as exc:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_EXCEPTIONS.labels(route, type(exc).__name__).inc()
            record_exception(exc)
            log.exception("unhandled error", path=scope["path"], method=scope["method"])
            if not response_started:
                await self._problem(
                    send_wrapper,
                    500,
                    "Internal Server Error",
                    "Something went wrong on our side; it has been logged.",
                )
        finally:
            running.dec()
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            context = span.get_span_context()
            observe_request(method, route, status, elapsed, context)
            if scope["path"] not in _QUIET_PATHS:
                access_log(
                    method=method,
                    path=scope["path"],
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    span=context,
                )
            request_id_var.reset(rid_token)
            user_id_var.reset(uid_token)

    @staticmethod
    async def _problem(send: Send, status: int, title: str, detail: str) -> None:
        slug = {413: "payload-too-large", 500: "internal"}[status]
        body = orjson.dumps(problem_body(status, title, detail, slug=slug))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
