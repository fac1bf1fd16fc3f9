"""Find a Redis for development, tests and the bench, the way PostgreSQL is found.

``SHOP_REDIS_URL`` if set, else a Redis on 127.0.0.1:6379, else a ``redis-server`` started on a
free loopback port (Debian's, from ``scripts/install-apt-tools.sh``), else none: the catalogue
cache is then off and reads go to PostgreSQL.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from shop.devtools.processes import stable_ports

LOCAL_URL = "redis://127.0.0.1:6379/0"


def reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


class RedisServer:
    """A throwaway redis-server on a free loopback port (no persistence), stopped by ``stop``."""

    def __init__(self) -> None:
        self.port = stable_ports([0])
        self.folder = Path(tempfile.mkdtemp(prefix="shop-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 60.0) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not reachable(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)


def find_redis(*, configured: str | None = None) -> str | None:
    """A Redis URL to use, starting a private redis-server if need be; None if there is none."""
    configured = configured or os.environ.get("SHOP_REDIS_URL")
    if configured:
        return configured
    if reachable(LOCAL_URL):
        return LOCAL_URL
    if shutil.which("redis-server") is None:
        return None
    server = RedisServer()
    try:
        server.start()
    except RuntimeError:
        return None
    atexit.register(server.stop)
    return server.url
