"""Start the four services as real processes (``make run``, end-to-end tests), stop them cleanly."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shop.common.services import SERVICES


def stable_ports(offsets: list[int]) -> int:
    """A base port with ``base + offset`` free for every offset, below Linux's ephemeral range
    (32768+), so a process restarted on its port cannot find it taken by an outgoing
    connection in between (what ``free_port`` alone risks)."""
    while True:
        base = random.randrange(20000, 32768 - max(offsets))  # noqa: S311 - not a secret
        if all(_bindable(base + o) for o in offsets):
            return base


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# Every port free_port has handed out in this process.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, and never one this process was given before: the kernel
    may offer a port again until someone binds it, and the processes started on these ports
    take seconds to bind (a CI run's bench platform gave the mail sink a service's port, and
    the service's readiness probe got the sink's SMTP greeting)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "shop.cli", "serve", self.name, "--port", str(self.port)]

    def start(self) -> None:
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            # Unbuffered, as in the image: each log line reaches the log file when it happens.
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdout=out if out else None,
            stderr=subprocess.STDOUT if out else None,
        )

    def signal(self, sig: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if not self.process:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    ready_path = "/health/ready"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=1) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False


@dataclass
class RelayProcess(ServiceProcess):
    """``shop relay SERVICE...`` as a process (the Deployments' relay sidecar, locally):
    ``services`` are relayed, ``port`` serves its /metrics (what ``ready`` asks for: the
    relay has built its pools and relays, as the sidecar's probes ask). ``env`` as
    ``relay_env`` makes it."""

    services: tuple[str, ...] = ()
    ready_path = "/metrics"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "shop.cli", "relay", *self.services]


def relay_env(
    envs: Mapping[str, Mapping[str, str]], services: tuple[str, ...], port: int
) -> dict[str, str]:
    """The environment of one relay process for ``services``, from their environments
    (``platform_env``'s): the first one's shared settings (broker, exchange, relay tuning),
    each service's database as ``SHOP_<SERVICE>_DATABASE_URL``, metrics on ``port``."""
    env = dict(envs[services[0]])
    for name in services:
        env[f"SHOP_{name.upper()}_DATABASE_URL"] = envs[name]["SHOP_DATABASE_URL"]
    env["SHOP_RELAY_PORT"] = str(port)
    env["SHOP_POD_NAME"] = "relay-" + "-".join(services)
    return env


def wait_ready(procs: list[ServiceProcess], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(procs)
    while pending:
        for proc in list(pending):
            if proc.process and proc.process.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited with {proc.process.returncode}; log tail:\n"
                    + proc.log_tail()
                )
            if proc.ready():
                pending.remove(proc)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(
                f"not ready after {timeout}s: {[p.name for p in pending]}"
                + "".join(f"\n--- {p.name} log tail:\n{p.log_tail()}" for p in pending)
            )
        time.sleep(0.1)


def platform_env(
    *,
    database_urls: Mapping[str, str],
    ports: Mapping[str, int],
    secrets_dir: Path,
    admin_password: str,
    service_token_secret: str,
    env: str = "development",
    extra: Mapping[str, str] | None = None,
    peers: Mapping[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """Each service's environment for a local platform whose parts find each other on loopback.

    ``peers`` gives the base URL by which services reach each other (a gateway standing in for
    Kubernetes Services); by default they call each other's single process directly.
    """
    base = {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICES}
    base.update(peers or {})
    jwks = f"{base['users']}/.well-known/jwks.json"
    shared = {
        "SHOP_ENV": env,
        "SHOP_SERVICE_TOKEN_SECRET": service_token_secret,
        "SHOP_HOST": "127.0.0.1",
        **(extra or {}),
    }
    envs = {
        name: {**shared, "SHOP_DATABASE_URL": database_urls[name], "SHOP_PORT": str(ports[name])}
        for name in SERVICES
    }
    envs["users"].update(
        {
            "SHOP_JWT_PRIVATE_KEY_FILE": str(secrets_dir / "jwt-signing.pem"),
            "SHOP_ADMIN_PASSWORD": admin_password,
        }
    )
    for name in ("products", "orders", "payments"):
        envs[name]["SHOP_JWKS_URL"] = jwks
    envs["orders"].update(
        {
            "SHOP_PRODUCTS_URL": base["products"],
            "SHOP_PAYMENTS_URL": base["payments"],
        }
    )
    return envs


def storefront_env(
    *, services: Mapping[str, str], port: int, shared: Mapping[str, str]
) -> dict[str, str]:
    """The storefront's environment: where the four services are (``services``: base URLs)."""
    return {
        **shared,
        "SHOP_HOST": "127.0.0.1",
        "SHOP_PORT": str(port),
        "SHOP_USERS_URL": services["users"],
        "SHOP_PRODUCTS_URL": services["products"],
        "SHOP_ORDERS_URL": services["orders"],
        "SHOP_PAYMENTS_URL": services["payments"],
        "SHOP_JWKS_URL": f"{services['users']}/.well-known/jwks.json",
    }
