"""The event side of a local platform (``shop run``): the SMTP sink writing ``.shop/mail/*.eml``
and the notification worker, as processes beside the services (which run their consumers when
``SHOP_AMQP_URL`` is set; the ``shop relay`` process, ``Cluster(relay=True)``, publishes their
outboxes)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shop.devtools.processes import free_port


@dataclass
class EventProcesses:
    state_dir: Path
    amqp_url: str
    users_url: str
    service_token_secret: str
    env: str = "development"
    smtp_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def mail_dir(self) -> Path:
        return self.state_dir / "mail"

    def _spawn(self, args: list[str], log: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = (logs / log).open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(proc)
        return proc

    def start(self) -> None:
        self._spawn(
            ["-m", "shop.devtools.mailsink", str(self.mail_dir), "--port", str(self.smtp_port)],
            "mailsink.log",
            {},
        )
        self._spawn(
            ["-m", "shop.cli", "notifications"],
            "notifications.log",
            {
                "SHOP_ENV": self.env,
                "SHOP_AMQP_URL": self.amqp_url,
                "SHOP_USERS_URL": self.users_url,
                "SHOP_SERVICE_TOKEN_SECRET": self.service_token_secret,
                "SHOP_SMTP_PORT": str(self.smtp_port),
                "SHOP_PORT": str(self.metrics_port),
                "SHOP_HOST": "127.0.0.1",
                # The inbox: the machine's Redis (unreachable: mail goes out at least once).
                "SHOP_REDIS_URL": os.environ.get("SHOP_REDIS_URL", "redis://127.0.0.1:6379/0"),
            },
        )

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
