"""The uvicorn server ``shop serve`` runs: a graceful, bounded exit on SIGTERM.

On SIGTERM (what Kubernetes and a rolling update send) readiness turns 503 at once; after
``drain_delay`` seconds (time for a load balancer to take the replica out; 0 locally, where
the gateway retries a refused connection on another replica) uvicorn stops listening, lets
the requests in flight finish for up to its graceful timeout, runs the app's shutdown (the
database pool and HTTP clients close) and exits 0. A second signal stops at once.
"""

from __future__ import annotations

import threading
from types import FrameType

import uvicorn

from shop.common.app import DRAINING


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain_delay: float = 0.0) -> None:
        super().__init__(config)
        self.drain_delay = drain_delay

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if DRAINING.is_set() or self.drain_delay <= 0:
            DRAINING.set()
            super().handle_exit(sig, frame)
            return
        DRAINING.set()
        timer = threading.Timer(self.drain_delay, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()
