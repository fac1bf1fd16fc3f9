"""The platform's image, built once per test run (scripts/images.py, the build cache makes a
rerun take seconds), and the containers started from it.

The processes the image tests start come from one place, ``shop.common.services`` (names and
ports) and ``platform_env`` (their environment): a process added there is started, smoke-tested
and stopped from the image here too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from shop.devtools.postgres import SERVICE_DATABASES, Server, create_databases, drop_databases
from tests.conftest import ROOT

UID = 10001  # the Dockerfile's USER and the manifests' runAsUser


def _images_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop_images", ROOT / "scripts" / "images.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


images = _images_module()


@pytest.fixture(scope="session")
def engine():
    """The engine with the freshly built image (skips only where no engine exists at all)."""
    if shutil.which("podman") is None and shutil.which("docker") is None:
        pytest.skip("no container engine (podman: scripts/install-apt-tools.sh)")
    return images.build()


@dataclass
class Container:
    engine: object
    name: str
    port: int = 0  # where it listens on the host network

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.engine.run(*args, check=check, timeout=300)  # type: ignore[attr-defined]

    def inspect(self) -> dict:
        return json.loads(self.podman("inspect", self.name).stdout)[0]

    def logs(self) -> str:
        done = self.podman("logs", "--tail", "40", self.name, check=False)
        return done.stdout + done.stderr


def run_args(name: str, env: dict[str, str], mounts: dict[Path, str]) -> list[str]:
    """`run` as the Deployments run the image: the host network (to reach the host's
    PostgreSQL), read-only root, a tmpfs /tmp, no capabilities, its own non-root user."""
    args = [
        "run",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    for host, target in mounts.items():
        args += ["--volume", f"{host}:{target}:ro"]
    return args


def wait_http(url: str, container: Container, timeout: float = 180.0) -> None:
    """Wait until url answers 200, failing at once (with its log) if the container exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http only
                if resp.status == 200:
                    return
        except OSError:
            pass
        state = container.inspect()["State"]
        if not state["Running"]:
            raise AssertionError(
                f"{container.name} exited ({state['ExitCode']}):\n{container.logs()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready after {timeout}s:\n{container.logs()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def image_databases(pg_server: Server) -> Iterator[dict[str, str]]:
    """Four empty databases: the image's own migration job creates the schema."""
    if not pg_server.url.startswith("postgresql://") or "@127.0.0.1" not in pg_server.url:
        pytest.skip(f"containers reach PostgreSQL over TCP on the host; have {pg_server.source}")
    prefix = f"img{secrets.token_hex(3)}_"
    names = [prefix + db for db in SERVICE_DATABASES.values()]
    asyncio.run(create_databases(pg_server, names))
    yield {svc: pg_server.database_url(prefix + db) for svc, db in SERVICE_DATABASES.items()}
    asyncio.run(drop_databases(pg_server, names))


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(3)
