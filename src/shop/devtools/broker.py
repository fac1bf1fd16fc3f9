"""Find RabbitMQ as PostgreSQL is found: ``SHOP_AMQP_URL``, else a broker on 127.0.0.1:5672,
else a private ``rabbitmq-server`` node (Debian's package, scripts/install-apt-tools.sh) under
the state folder on free ports, else none: the services run, and their outboxes keep every
event until a broker is there (``shop run`` says so).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shop.devtools.processes import free_port

LOCAL_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass(frozen=True)
class Broker:
    url: str
    kind: str  # configured, local, private


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_broker(state_dir: Path, *, configured: str | None = None) -> Broker | None:
    configured = configured or os.environ.get("SHOP_AMQP_URL")
    if configured:
        return Broker(configured, "configured")
    if reachable("127.0.0.1", 5672):
        return Broker(LOCAL_URL, "local")
    if shutil.which("rabbitmq-server") is None:
        return None
    return start_private(state_dir / "rabbitmq")


class PrivateNode:
    """A ``rabbitmq-server`` node of our own (its own name, ports and data folder)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.dist_port = free_port()
        self.name = f"shop{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        plugins = self.data_dir / "enabled_plugins"
        plugins.write_text("[].\n")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.data_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.data_dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(self.data_dir / "rabbitmq"),
        }
        _hand_to_broker_user(self.data_dir)
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            ["rabbitmq-server"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not reachable("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rabbitmq-server did not start; see {self.data_dir}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)
        self.process = None


def _hand_to_broker_user(folder: Path) -> None:
    """Debian's wrapper runs the node as the ``rabbitmq`` user when started by root: that user
    must own the node's folder (and reach it)."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("rabbitmq")
    except KeyError:
        return
    for path in (folder, *folder.rglob("*")):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    folder.chmod(0o755)
    for parent in folder.parents:  # traversable, as pgserver's folders must be too
        if parent.stat().st_mode & 0o001 == 0:
            parent.chmod(parent.stat().st_mode | 0o001)


def start_private(data_dir: Path) -> Broker | None:
    node = PrivateNode(data_dir)
    try:
        node.start()
    except (OSError, RuntimeError):
        return None
    atexit.register(node.stop)
    return Broker(node.url, "private")
