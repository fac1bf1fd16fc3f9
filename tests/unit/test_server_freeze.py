"""``shop serve``'s server freezes start-up's objects once the app has started, not before:
uvicorn loads the app (and, with tracing on, the OpenTelemetry SDK) inside its run."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest
import uvicorn

from shop.common.server import DrainingServer


def test_start_up_is_frozen_after_the_app_has_started(monkeypatch: pytest.MonkeyPatch) -> None:
    happened: list[str] = []

    async def started(self: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
        happened.append("started")

    monkeypatch.setattr(uvicorn.Server, "startup", started)
    monkeypatch.setattr(gc, "freeze", lambda: happened.append("frozen"))
    server = DrainingServer(uvicorn.Config(app="shop.products.app:create_app", factory=True))
    asyncio.run(server.startup())
    assert happened == ["started", "frozen"]
