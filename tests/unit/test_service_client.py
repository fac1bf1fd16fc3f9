"""``ServiceClient`` on httpcore's pool: a real loopback server, a refused port, the breaker."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from shop.common.auth import ServiceTokens
from shop.common.context import request_id_var
from shop.common.http import CircuitBreaker, DownstreamUnavailable, ServiceClient
from shop.devtools.processes import free_port

SECRET = "unit-test-service-secret-of-32-bytes-or-more"


async def _echo_server(status: int) -> tuple[asyncio.Server, list[bytes]]:
    """A minimal HTTP/1.1 server answering every request with its own head as JSON."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        except asyncio.IncompleteReadError:
            writer.close()  # the client closed its connection

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            body = await reader.readexactly(length)
            seen.append(head + body)
            answer = orjson.dumps({"body": body.decode()})
            writer.write(
                b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                % (status, len(answer))
                + answer
            )
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


def _client(port: int, **kw: object) -> ServiceClient:
    return ServiceClient(
        target="echo",
        base_url=f"http://127.0.0.1:{port}",
        tokens=ServiceTokens("order-service", SECRET),
        retry_deadline=0.5,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_call_sends_token_request_id_and_json_and_reads_the_reply() -> None:
    server, seen = await _echo_server(201)
    port = server.sockets[0].getsockname()[1]
    client = _client(port)
    token = request_id_var.set("req-123")
    try:
        reply = await client.request("POST", "/things", json={"n": 1}, idempotency_key="k-1")
        again = await client.request("POST", "/things", json={"n": 2})  # same connection
    finally:
        request_id_var.reset(token)
        await client.aclose()
        server.close()
    assert reply.status_code == 201
    assert reply.json() == {"body": '{"n":1}'}
    assert again.json() == {"body": '{"n":2}'}
    head = seen[0].lower()
    assert head.startswith(b"post /things http/1.1\r\n")
    assert b"authorization: bearer " in head
    assert b"x-request-id: req-123" in head
    assert b"idempotency-key: k-1" in head
    assert b"content-type: application/json" in head


async def test_a_5xx_is_downstream_unavailable() -> None:
    server, _ = await _echo_server(503)
    client = _client(server.sockets[0].getsockname()[1])
    try:
        with pytest.raises(DownstreamUnavailable) as raised:
            await client.request("GET", "/")
    finally:
        await client.aclose()
        server.close()
    assert raised.value.reason == "status 503"


async def test_a_refused_port_is_unavailable_and_opens_the_breaker() -> None:
    breaker = CircuitBreaker(threshold=2, reset_seconds=60)
    client = _client(free_port(), breaker=breaker)
    reasons = []
    for _ in range(3):
        with pytest.raises(DownstreamUnavailable) as raised:
            await client.request("GET", "/")
        reasons.append(raised.value.reason)
    await client.aclose()
    assert reasons == ["unreachable", "unreachable", "circuit open"]
