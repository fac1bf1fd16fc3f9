"""A replica's graceful exit on SIGTERM, seen from a client in flight and from the gateway."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from shop.common.auth import ServiceTokens
from shop.devtools.cluster import Cluster
from tests.ha.conftest import needs_envoy

pytestmark = [pytest.mark.ha, needs_envoy]


def test_sigterm_turns_readiness_off_finishes_in_flight_requests_and_exits(
    cluster: Cluster,
) -> None:
    # Replica 1 of the product service, with a 2 s drain delay as a Kubernetes pod would have.
    cluster.restart("products", 1, SHOP_SHUTDOWN_DELAY_SECONDS="2")
    replica = cluster.replicas["products"][1]
    secret = cluster.envs["products"]["SHOP_SERVICE_TOKEN_SECRET"]
    token = {"Authorization": f"Bearer {ServiceTokens('order-service', secret).token()}"}
    slow = {"method": "GET", "path": r"/api/v1/products", "delay_before": 4.0, "times": 1}
    with httpx.Client(base_url=replica.url, timeout=60) as direct:
        direct.put("/internal/faults", json=[slow], headers=token).raise_for_status()

        in_flight: dict[str, httpx.Response] = {}
        thread = threading.Thread(
            target=lambda: in_flight.setdefault("r", direct.get("/api/v1/products"))
        )
        thread.start()
        time.sleep(0.5)  # the slow request is inside the handler now
        replica.signal(signal.SIGTERM)
        started = time.monotonic()

        # Draining: still listening, but not ready, so a load balancer takes it out.
        with httpx.Client(base_url=replica.url, timeout=10) as probe:
            assert probe.get("/health/ready").status_code == 503
            assert probe.get("/health/live").status_code == 200
        # The gateway keeps serving from the other replica meanwhile.
        assert httpx.get(f"{cluster.gateway.url}/api/v1/products", timeout=30).status_code == 200

        thread.join(60)
        assert in_flight["r"].status_code == 200  # the request in flight was finished

    assert replica.process is not None
    code = replica.process.wait(60)
    assert code in (0, -signal.SIGTERM), code  # uvicorn re-raises the signal it handled
    assert time.monotonic() - started < 60
    assert replica.log_path is not None
    log = replica.log_path.read_text()
    assert '"message":"service stopping"' in log
    assert '"message":"service stopped"' in log  # the pool and clients were closed
    cluster.start_replica("products", 1)
