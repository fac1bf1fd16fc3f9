"""One harness for the suites that run the services as real processes (e2e, faults,
eventfaults, HA): start them the way `make run` does, wait until every one is ready, reach
them (HTTP, their databases), break them (kill -9, restart with another environment), wait on
what they do with the log tails on a timeout, and stop them.

``started`` builds the processes of one platform; each suite's fixture says only what is its
own (its databases, its environment, its extra processes). A suite that needs more than the
common operations subclasses ``Platform`` (tests/faults: fault rules and an own PostgreSQL;
tests/eventfaults: the broker proxy). ``cluster_started`` starts the HA suite's replicas
behind the gateway with ``shop.devtools.cluster.Cluster``, the code `shop run --replicas 2`
itself runs, so that code is what the suite tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from shop.devtools.cluster import Cluster
from shop.devtools.processes import (
    SERVICES,
    RelayProcess,
    ServiceProcess,
    free_port,
    relay_env,
    stable_ports,
    wait_ready,
)
from tests.conftest import process_envs
from tests.waiting import WAIT_SECONDS, until

# Generous: four interpreters importing FastAPI on a loaded CI machine can take minutes.
READY_TIMEOUT = 300.0


@dataclass
class Platform:
    """The processes of one test platform: ``procs`` by service (and ``relays``, when it runs
    them), their environments, their databases' URLs and their logs' folder."""

    procs: dict[str, ServiceProcess]
    envs: dict[str, dict[str, str]]
    urls: dict[str, str]  # each service's database
    logs: Path
    relays: dict[str, RelayProcess] = field(default_factory=dict)
    _conns: dict[str, asyncpg.Connection] = field(default_factory=dict)

    # --- reaching them ---------------------------------------------------------------------

    def url(self, service: str) -> str:
        return self.procs[service].url

    def client(self, service: str, timeout: float = 60.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url(service), timeout=timeout)

    def sync_client(self, service: str, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url(service), timeout=timeout)

    async def sql(self, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
        """``query`` on the service's database, over a connection kept until ``close_sql``."""
        conn = self._conns.get(service)
        if conn is None or conn.is_closed():
            conn = self._conns[service] = await asyncpg.connect(self.urls[service])
        return await conn.fetch(query, *args)

    async def close_sql(self) -> None:
        for conn in self._conns.values():
            if not conn.is_closed():
                await conn.close()
        self._conns.clear()

    # --- waiting on them -------------------------------------------------------------------

    async def until(
        self,
        done: Callable[[], Any],
        what: str,
        *,
        within: float = WAIT_SECONDS,
        interval: float = 0.1,
    ) -> Any:
        """``tests.waiting.until`` with every service's and relay's last log lines on a
        timeout."""
        logs = [*self.procs.values(), *self.relays.values()]
        return await until(done, what, within=within, interval=interval, logs=logs)

    def log_text(self) -> str:
        return "\n".join(p.log_path.read_text() for p in self.procs.values() if p.log_path)

    # --- breaking them ---------------------------------------------------------------------

    def kill(self, service: str) -> None:
        """kill -9: no shutdown hook runs, in-flight requests are cut."""
        proc = self.procs[service].process
        assert proc is not None
        assert proc.poll() is None
        proc.kill()
        proc.wait(30)

    def restart(self, service: str, **env: str) -> None:
        """Stop the service (if it runs) and start it on its port with ``env`` added."""
        old = self.procs[service]
        old.stop()
        self.procs[service] = ServiceProcess(
            service, old.port, {**self.envs[service], **env}, old.log_path
        )
        self.procs[service].start()
        wait_ready([self.procs[service]], timeout=READY_TIMEOUT)

    def restart_relay(self, service: str, **env: str) -> RelayProcess:
        """Stop the service's relay process (if it runs) and start it anew with ``env``."""
        old = self.relays[service]
        old.stop()
        new = RelayProcess(
            old.name,
            old.port,
            {**relay_env(self.envs, (service,), old.port), **env},
            old.log_path,
            services=(service,),
        )
        self.relays[service] = new
        new.start()
        wait_ready([new], timeout=READY_TIMEOUT)
        return new

    def stop(self, timeout: float = 15.0) -> None:
        for proc in [*self.procs.values(), *self.relays.values()]:
            proc.stop(timeout=timeout)


P = TypeVar("P", bound=Platform)


@contextmanager
def started(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    database_urls: Mapping[str, str],
    admin_password: str,
    service_token_secret: str | None = None,
    extra: Mapping[str, str] | None = None,
    restartable: bool = False,
    relays: bool = False,
    kind: type[P],
    stop_timeout: float = 15.0,
    **fields: Any,
) -> Iterator[P]:
    """The four services as processes (``relays``: each with its ``shop relay`` process, as
    the Deployments' sidecars), every one ready, stopped after the block.

    ``restartable``: ports that stay the same across runs and restarts (``stable_ports``), for
    suites that restart a service on its port while others hold its address. ``kind`` and
    ``fields``: ``Platform`` or a suite's own subclass, and its extra fields."""
    logs = tmp_path_factory.mktemp("logs")
    if restartable:
        base = stable_ports([0, 1, 2, 3])
        ports = {name: base + i for i, name in enumerate(SERVICES)}
    else:
        ports = {name: free_port() for name in SERVICES}
    envs = process_envs(
        tmp_path_factory,
        database_urls=database_urls,
        ports=ports,
        admin_password=admin_password,
        service_token_secret=service_token_secret,
        extra=extra,
    )
    procs = {
        name: ServiceProcess(name, ports[name], envs[name], logs / f"{name}.log")
        for name in SERVICES
    }
    relay_procs: dict[str, RelayProcess] = {}
    if relays:
        for name in SERVICES:
            port = free_port()
            relay_procs[name] = RelayProcess(
                f"{name}-relay",
                port,
                relay_env(envs, (name,), port),
                logs / f"{name}-relay.log",
                services=(name,),
            )
    platform = kind(procs, envs, dict(database_urls), logs, relay_procs, **fields)
    for proc in [*procs.values(), *relay_procs.values()]:
        proc.start()
    try:
        wait_ready([*procs.values(), *relay_procs.values()], timeout=READY_TIMEOUT)
        yield platform
    finally:
        platform.stop(timeout=stop_timeout)


@contextmanager
def cluster_started(cluster: Cluster) -> Iterator[Cluster]:
    """Every replica and the gateway of ``cluster`` started and ready, stopped after the
    block (``shop run --replicas N``'s own start, readiness and stop)."""
    cluster.start()
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()
