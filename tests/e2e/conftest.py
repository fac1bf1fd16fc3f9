"""The four services as real processes on free ports, started the way `make run` starts them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shop.devtools.processes import SERVICES, ServiceProcess, free_port, wait_ready
from tests.conftest import process_envs

ADMIN_PASSWORD = "e2e-admin-password"


@dataclass
class LivePlatform:
    procs: dict[str, ServiceProcess]
    logs: Path

    def url(self, service: str) -> str:
        return self.procs[service].url

    def client(self, service: str) -> httpx.Client:
        return httpx.Client(base_url=self.url(service), timeout=10)

    def log_text(self) -> str:
        return "\n".join(p.log_path.read_text() for p in self.procs.values() if p.log_path)


@pytest.fixture(scope="session")
def live(
    e2e_database_urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LivePlatform]:
    logs = tmp_path_factory.mktemp("logs")
    ports = {name: free_port() for name in SERVICES}
    envs = process_envs(
        tmp_path_factory,
        database_urls=e2e_database_urls,
        ports=ports,
        admin_password=ADMIN_PASSWORD,
    )
    procs = {
        name: ServiceProcess(name, ports[name], envs[name], logs / f"{name}.log")
        for name in SERVICES
    }
    for proc in procs.values():
        proc.start()
    try:
        # Generous: four interpreters importing FastAPI on a loaded CI machine can take minutes.
        wait_ready(list(procs.values()), timeout=300)
        yield LivePlatform(procs, logs)
    finally:
        for proc in procs.values():
            proc.stop()
