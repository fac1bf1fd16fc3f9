"""Calls to other services: timeouts, service token, request-id propagation, retries, breaker,
bulkhead.

A call either returns a ``Reply`` (status and body) with a status below 500 for the caller to
interpret, or raises ``DownstreamUnavailable`` (timeout, connection refused, 5xx, circuit
open). Only calls the caller marks ``idempotent`` are retried: with exponential backoff and
jitter, within an overall deadline, so a retry never doubles a side effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import yarl
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from shop.common.auth import ServiceTokens
from shop.common.context import request_id_var
from shop.common.errors import ServiceUnavailable
from shop.common.metrics import OUTBOUND_DURATION, OUTBOUND_REQUESTS
from shop.common.tracing import aiohttp_trace_configs

if TYPE_CHECKING:
    import httpx


class DownstreamUnavailable(ServiceUnavailable):
    """A service this one depends on did not answer usefully."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target} is unavailable ({reason}); try again shortly.")
        self.target, self.reason = target, reason


class Bulkhead:
    """At most ``limit`` callers inside at once; the rest queue up to ``queue_timeout`` seconds,
    then get 503. Bounds what one slow dependency can tie up (connections, memory, tasks)."""

    def __init__(self, limit: int, queue_timeout: float, *, name: str) -> None:
        self._slots = asyncio.Semaphore(limit)
        self.limit, self.queue_timeout, self.name = limit, queue_timeout, name

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_timeout)
        except TimeoutError:
            raise ServiceUnavailable(
                f"Too many {self.name} in progress; try again shortly."
            ) from None
        try:
            yield
        finally:
            self._slots.release()


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; lets one trial call through after ``reset``.

    While open, calls fail at once instead of tying up a worker for a full timeout each.
    """

    def __init__(self, threshold: int = 5, reset_seconds: float = 5.0) -> None:
        self.threshold, self.reset_seconds = threshold, reset_seconds
        self.failures = 0
        self.opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at >= self.reset_seconds:
            self.opened_at = time.monotonic()  # half-open: one trial per reset period
            return True
        return False

    def record(self, ok: bool) -> None:
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


@dataclass(frozen=True, slots=True)
class Reply:
    """A downstream answer with a status below 500: its status and its body, read in full."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)


class ServiceClient:
    """Calls to one service. By default on an aiohttp session (a pool per client, created on
    first use): in the order profile httpx's client layer cost as much as the HTTP work, and
    aiohttp's C parser cost the order service 0.5 ms less CPU per order than httpcore and h11
    (docs/performance.md). With tracing on, the session carries OpenTelemetry's aiohttp client
    instrumentation (a client span and the ``traceparent`` per call), so the fast client stays
    in use. With a ``transport`` (tests: httpx's ASGI transport) the call goes through an
    ``httpx.AsyncClient`` (``shop.common.httpx_client``, imported only then); both answer the
    same ``Reply``."""

    def __init__(
        self,
        *,
        target: str,
        base_url: str,
        tokens: ServiceTokens,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_deadline: float = 10.0,
        max_connections: int = 100,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.target = target
        self._tokens = tokens
        self._deadline = retry_deadline
        self._breaker = breaker or CircuitBreaker()
        connect = min(timeout, 2.0)
        self._base = base_url.rstrip("/")
        self._timeouts = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=connect, sock_read=timeout
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._client: httpx.AsyncClient | None = None
        # What a timeout and a failed connection raise, from the client in use (timeouts are
        # caught first: aiohttp's are also ClientErrors).
        self._timed_out: tuple[type[Exception], ...] = (TimeoutError,)
        self._unavailable: tuple[type[Exception], ...] = (aiohttp.ClientError,)
        if transport is not None:
            from shop.common import httpx_client

            self._client = httpx_client.traced_client(
                base_url=base_url,
                timeout=timeout,
                connect_timeout=connect,
                max_connections=max_connections,
                transport=transport,
            )
            self._timed_out += httpx_client.TIMED_OUT
            self._unavailable += httpx_client.UNAVAILABLE

    def _aiohttp(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: a session belongs to a running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    # Under uvicorn's 5 s keep-alive: an idle connection is dropped here
                    # first, not reused just as the server closes it.
                    keepalive_timeout=4.0,
                ),
                timeout=self._timeouts,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trace_configs=aiohttp_trace_configs() or None,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._client is not None:
            await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotency_key: str | None = None,
        idempotent: bool = False,
    ) -> Reply:
        headers = {"Authorization": f"Bearer {self._tokens.token()}"}
        if request_id := request_id_var.get():
            headers["X-Request-ID"] = request_id
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body = None if json is None else orjson.dumps(json)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if not idempotent:
            return await self._send(method, path, body, headers)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DownstreamUnavailable),
            stop=stop_after_attempt(5) | stop_after_delay(self._deadline),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0),
            reraise=True,
        ):
            with attempt:
                return await self._send(method, path, body, headers)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        if self._client is not None:
            response = await self._client.request(method, path, content=body, headers=headers)
            return Reply(response.status_code, response.content)
        url = yarl.URL(self._base + path, encoded=True)
        async with self._aiohttp().request(method, url, data=body, headers=headers) as answer:
            return Reply(answer.status, await answer.read())

    async def _send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        if not self._breaker.allow():
            OUTBOUND_REQUESTS.labels(self.target, "circuit_open").inc()
            raise DownstreamUnavailable(self.target, "circuit open")
        started = time.perf_counter()
        outcome = "success"
        try:
            response = await self._exchange(method, path, body, headers)
        except self._timed_out:
            outcome = "timeout"
            raise DownstreamUnavailable(self.target, "timed out") from None
        except self._unavailable:
            outcome = "unavailable"
            raise DownstreamUnavailable(self.target, "unreachable") from None
        finally:
            OUTBOUND_DURATION.labels(self.target).observe(time.perf_counter() - started)
            if outcome != "success":
                self._breaker.record(ok=False)
                OUTBOUND_REQUESTS.labels(self.target, outcome).inc()
        if response.status_code >= 500:
            self._breaker.record(ok=False)
            OUTBOUND_REQUESTS.labels(self.target, "http_error").inc()
            raise DownstreamUnavailable(self.target, f"status {response.status_code}")
        self._breaker.record(ok=True)
        OUTBOUND_REQUESTS.labels(self.target, "success").inc()
        return response
