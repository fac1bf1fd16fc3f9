"""N replicas of each service behind the Envoy gateway, on one machine (``shop run``).

Replica ``r`` of the service at index ``i`` listens on ``base_port + i + 10 * r`` (users 5000,
5010, ...). The order service and token verification reach the other services through the
gateway's internal ports, as they would through Kubernetes Services, so losing one replica
costs a retry, not an outage. The HA tests drive the same class: kill a replica, restart the
replicas one by one. With ``storefront=True`` (``shop run``) the storefront's replicas
(``base_port + 4 + 10 * r``) join them behind the gateway's ``/``, ``/graphql`` and ``/admin``
routes, calling the services through the same internal ports. With ``relay=True`` (``shop run``
with a broker) one ``shop relay`` process publishes the four services' outboxes, as the
Deployments' relay sidecars do, with its ``/metrics`` on ``base_port + 9``; no service process
relays (docs/events.md).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shop.common.services import SERVICES, STOREFRONT
from shop.common.tracing_env import edge_collector, sample_ratio_from_env
from shop.devtools.contract import platform_openapi
from shop.devtools.gateway import Gateway
from shop.devtools.processes import (
    RelayProcess,
    ServiceProcess,
    platform_env,
    relay_env,
    storefront_env,
    wait_ready,
)
from shop.edge import Limits


@dataclass
class Cluster:
    envs: dict[str, dict[str, str]]
    replicas: dict[str, list[ServiceProcess]]
    gateway: Gateway
    ready_timeout: float = 300.0
    relay: RelayProcess | None = None

    @classmethod
    def build(
        cls,
        *,
        database_urls: Mapping[str, str],
        replicas: int,
        base_port: int,
        gateway_port: int,
        state_dir: Path,
        secrets_dir: Path,
        admin_password: str,
        service_token_secret: str,
        env: str = "development",
        extra: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        tls_port: int | None = None,
        admin_port: int = 0,
        storefront: bool = False,
        storefront_extra: Mapping[str, str] | None = None,
        relay: bool = False,
    ) -> Cluster:
        names = (*SERVICES, STOREFRONT) if storefront else SERVICES
        ports = {
            name: [base_port + i + 10 * r for r in range(replicas)] for i, name in enumerate(names)
        }
        internal = {name: gateway_port + 1 + i for i, name in enumerate(SERVICES)}
        # The services read these from their environment; the gateway's tracer is told.
        environ = {**os.environ, **(extra or {})}
        default_ratio = float(environ.get("SHOP_TRACE_SAMPLE_RATIO") or 1.0)
        gateway = Gateway(
            state_dir=state_dir / "gateway",
            port=gateway_port,
            upstreams=ports,
            internal_ports=internal,
            tls_port=tls_port,
            admin_port=admin_port,
            limits=limits or Limits.from_env(),
            openapi=platform_openapi(),
            otlp_endpoint=edge_collector(environ),
            trace_sampling=100 * sample_ratio_from_env(environ, default_ratio),
        )
        envs = platform_env(
            database_urls=database_urls,
            ports={name: ports[name][0] for name in SERVICES},
            secrets_dir=secrets_dir,
            admin_password=admin_password,
            service_token_secret=service_token_secret,
            env=env,
            extra=extra,
            peers={name: gateway.internal_url(name) for name in SERVICES},
        )
        if storefront:
            envs[STOREFRONT] = storefront_env(
                services={name: gateway.internal_url(name) for name in SERVICES},
                port=ports[STOREFRONT][0],
                shared={
                    "SHOP_ENV": env,
                    "SHOP_SERVICE_TOKEN_SECRET": service_token_secret,
                    **(storefront_extra or {}),
                },
            )
        logs = state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        procs = {
            name: [
                ServiceProcess(
                    name,
                    port,
                    {**envs[name], "SHOP_PORT": str(port), "SHOP_POD_NAME": f"{name}-{r}"},
                    logs / f"{name}-{r}.log",
                )
                for r, port in enumerate(ports[name])
            ]
            for name in names
        }
        relay_proc = None
        if relay:
            port = base_port + 9  # no replica's (those are base + i + 10 r, i < 5): stable
            relay_proc = RelayProcess(
                "relay",
                port,
                relay_env(envs, SERVICES, port),
                logs / "relay.log",
                services=SERVICES,
            )
        return cls(envs, procs, gateway, relay=relay_proc)

    @property
    def all(self) -> list[ServiceProcess]:
        """Every replica, and the relay process when there is one."""
        relay = [self.relay] if self.relay is not None else []
        return [p for procs in self.replicas.values() for p in procs] + relay

    def restart_relay(self) -> None:
        """Start the relay process anew (after it exited)."""
        if self.relay is not None:
            old = self.relay
            self.relay = RelayProcess(
                old.name, old.port, old.env, old.log_path, services=old.services
            )
            self.relay.start()

    def start(self) -> None:
        self.gateway.state_dir.mkdir(parents=True, exist_ok=True)
        for proc in self.all:
            proc.start()
        try:
            self.gateway.start()
        except Exception:
            self.stop()
            raise

    def wait_ready(self) -> None:
        """Every process is ready (each holds its pool, links and the keys that verify tokens),
        and so is the gateway: it holds the JWKS. Then a token issued now is accepted on every
        route, through the gateway or straight to a replica (tests/ha/test_readiness.py)."""
        deadline = time.monotonic() + self.ready_timeout
        wait_ready(self.all, timeout=self.ready_timeout)
        while not self.gateway.holds_jwks():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the gateway has not fetched the JWKS in {self.ready_timeout}s;"
                    f" see {self.gateway.state_dir / 'envoy.log'}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.all:
            proc.signal(signal.SIGTERM)
        for proc in self.all:
            proc.stop()
        self.gateway.stop()

    def kill(self, service: str, index: int) -> None:
        """kill -9 one replica: no drain, in-flight requests are cut."""
        proc = self.replicas[service][index].process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)

    def start_replica(self, service: str, index: int, **env: str) -> ServiceProcess:
        """Start replica ``index`` anew (after it stopped), with extra environment if given."""
        old = self.replicas[service][index]
        base = {
            **self.envs[service],
            "SHOP_PORT": str(old.port),
            "SHOP_POD_NAME": f"{service}-{index}",
        }
        new = ServiceProcess(old.name, old.port, {**base, **env}, old.log_path)
        self.replicas[service][index] = new
        new.start()
        wait_ready([new], timeout=self.ready_timeout)
        return new

    def restart(
        self, service: str, index: int, *, min_ready_seconds: float = 0.0, **env: str
    ) -> int | None:
        """What a rolling update does to one pod: out of the gateway's rotation, SIGTERM, wait
        for the drain, start anew, back in, and (like a Deployment's ``minReadySeconds``) let it
        serve a while before the next one."""
        port = self.replicas[service][index].port
        self.gateway.set_drained(port, True)  # out of the endpoints first, then SIGTERM
        code = self.replicas[service][index].stop(timeout=60)
        self.start_replica(service, index, **env)
        self.gateway.set_drained(port, False)
        time.sleep(min_ready_seconds)
        return code
