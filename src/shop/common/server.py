"""The uvicorn server ``shop serve`` runs: a graceful, bounded exit on SIGTERM.

On SIGTERM (what Kubernetes and a rolling update send) readiness turns 503 at once; after
``drain_delay`` seconds (time for a load balancer to take the replica out; 0 locally, where
the gateway retries a refused connection on another replica) uvicorn stops listening, lets
the requests in flight finish for up to its graceful timeout, runs the app's shutdown (the
database pool and HTTP clients close) and exits 0. A second signal stops at once.
"""

from __future__ import annotations

import socket
import threading
from types import FrameType

import uvicorn

from shop.common.app import DRAINING
from shop.common.loop import freeze_startup


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain_delay: float = 0.0) -> None:
        super().__init__(config)
        self.drain_delay = drain_delay

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then freeze what start-up made. Those objects live for the whole
        process: kept out of the collector's full passes, which otherwise cause the slowest
        requests (see docs/performance.md). Frozen once the app is loaded and its lifespan
        has run, not before: the app's modules, its pools and, with tracing on, the
        OpenTelemetry SDK and exporter are start-up's too (docs/observability.md)."""
        await super().startup(sockets=sockets)
        freeze_startup()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if DRAINING.is_set() or self.drain_delay <= 0:
            DRAINING.set()
            super().handle_exit(sig, frame)
            return
        DRAINING.set()
        timer = threading.Timer(self.drain_delay, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()
