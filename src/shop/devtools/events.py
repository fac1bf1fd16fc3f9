"""The event side of a local platform (``shop run``): the SMTP sink writing ``.shop/mail/*.eml``
and the notification worker, as processes beside the services (which run their consumers when
``SHOP_AMQP_URL`` is set; the ``shop relay`` process, ``Cluster(relay=True)``, publishes their
outboxes)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
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
    extra: Mapping[str, str] = field(default_factory=dict)  # more of the worker's settings
    mail_folder: Path | None = None  # where the sink writes, if not state_dir/mail
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sink: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None  # the notification worker

    @property
    def mail_dir(self) -> Path:
        return self.mail_folder or self.state_dir / "mail"

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

    def start_sink(self) -> None:
        """The SMTP sink (again, after ``stop_sink``: the fault tests' relay outage)."""
        self.sink = self._spawn(
            ["-m", "shop.devtools.mailsink", str(self.mail_dir), "--port", str(self.smtp_port)],
            "mailsink.log",
            {},
        )

    def stop_sink(self) -> None:
        if self.sink is not None and self.sink.poll() is None:
            self.sink.terminate()
            self.sink.wait(15)

    def start(self) -> None:
        self.start_sink()
        self.worker = self._spawn(
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
                **self.extra,
            },
        )

    def ready(self) -> bool:
        """The worker serves its metrics port (it has built its consumer and inbox)."""
        if self.worker is None or self.worker.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

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
